"""Run a spec's unfinished cells as Ray Tune trials: the only module that imports Ray.

One trial per cell. The trainable writes its final result into the experiment's ledger (rdsweep/ledger.py)
and checkpoints every epoch twice over: through `tune.report(checkpoint=...)`, which Ray's FailureConfig
restores from when it retries a failed trial, and into the ledger, which a later launch resumes from after
an interrupted one, or continues from when an unconverged cell is given more epochs (Ray's own restore
cannot add or drop trials, so rdsweep does not use it).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rdsweep import __version__
from rdsweep.cells import Cell, knob
from rdsweep.errors import UserError
from rdsweep.ledger import RESULT_STATUSES, Experiment, PlannedCell
from rdsweep.spec import Spec


@dataclass(frozen=True)
class LaunchSummary:
    total: int
    skipped: int
    converged: int
    unconverged: int     # the epoch cap came first: kept and flagged; a larger cap continues them
    diverged: int
    failed: int
    unfinished: int      # interrupted: a relaunch resumes them


def launch(spec: Spec, experiment: Experiment, planned: list[PlannedCell], *,
           address: str | None = None, console: Console | None = None) -> LaunchSummary:
    console = console or Console()
    todo = [p for p in planned if p.action != "skip"]
    if todo:
        experiment.record_protocol(spec.protocol, __version__)
        _init_ray(address)
        try:
            resources = _trial_resources(spec)
            _run(todo, experiment, spec, resources, console)
        finally:
            ray.shutdown()
    statuses = [experiment.status(p.cell.cell_id) for p in todo]
    return LaunchSummary(
        total=len(planned), skipped=len(planned) - len(todo), converged=statuses.count("converged"),
        unconverged=statuses.count("unconverged"), diverged=statuses.count("diverged"),
        failed=statuses.count("failed"), unfinished=statuses.count(None))


def _init_ray(address: str | None) -> None:
    # Trials keep the driver's working directory (relative paths keep their meaning); Ray's own chatter
    # and the trials' stdout stay in Ray's logs, so the terminal shows rdsweep's progress table only.
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0, the legacy reporter prints nothing
    options = dict(log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(include_dashboard=False, **options)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise UserError(f"cannot start or join {where}: {' '.join(str(e).split())[:300]}") from None


def _trial_resources(spec: Spec) -> dict:
    """CPUs and GPUs per trial; "auto" GPUs means one when the cluster has any (judged on the cluster,
    not the driver, which may be a CPU-only login node)."""
    cluster = ray.cluster_resources()
    res = spec.resources
    gpus = res.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) > 0 else 0.0
    for kind, want in (("CPU", res.cpus_per_trial), ("GPU", gpus)):
        if want > cluster.get(kind, 0):
            raise UserError(f"each trial asks for {want:g} {kind}(s) but the Ray cluster has "
                            f"{cluster.get(kind, 0):g}: lower {kind.lower()}s_per_trial")
    return {"cpu": res.cpus_per_trial, "gpu": gpus}


def _run(todo: list[PlannedCell], experiment: Experiment, spec: Spec, resources: dict,
         console: Console) -> None:
    experiment.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "cell": tune.grid_search([p.cell.to_dict() for p in todo]),
        "experiment": str(experiment.path),
        "device": "cuda" if resources["gpu"] > 0 else "cpu",
        "threads": max(1, math.floor(resources["cpu"])),
    }
    progress = Progress(todo, experiment, console)
    tuner = tune.Tuner(
        tune.with_resources(_trial, resources),
        param_space=config,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.resources.max_concurrent,
            trial_dirname_creator=_trial_dirname,
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=time.strftime("launch-%Y%m%d-%H%M%S"),
            storage_path=str(experiment.ray_dir),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[progress],
            verbose=0,
        ),
    )
    with progress.live():
        tuner.fit()


def _trial_dirname(trial) -> str:
    return Cell(**trial.config["cell"]).cell_id


def _trial(config: dict) -> None:
    """The Ray trainable: train one cell, resuming from Ray's checkpoint (a retry) or the ledger's (a
    relaunch), report and checkpoint every epoch, and write the final result into the ledger."""
    from rdsweep import trainer  # torch is imported in the worker, not the driver

    cell = Cell.from_dict(config["cell"])
    experiment = Experiment(config["experiment"])
    ledger_checkpoint = experiment.checkpoint_path(cell.cell_id)
    resume_state = None
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as d:
            resume_state = trainer.load_state(Path(d) / "state.pt")
    elif ledger_checkpoint.exists():
        resume_state = trainer.load_state(ledger_checkpoint)

    def on_epoch(metrics: dict, state: dict) -> None:
        with tempfile.TemporaryDirectory(dir=experiment.checkpoints_dir) as d:
            trainer.save_state(state, Path(d) / "state.pt")
            tune.report({**metrics, "cell_id": cell.cell_id, "best_epoch": state["rule"]["best_epoch"]},
                        checkpoint=tune.Checkpoint.from_directory(d))
            os.replace(Path(d) / "state.pt", ledger_checkpoint)  # same filesystem: a rename, not a copy

    images = None
    if cell.images:  # the spec allows it for image data only
        experiment.grids_dir.mkdir(exist_ok=True)
        images = experiment.grid_path(cell.cell_id)
    result = trainer.train(cell, on_epoch=on_epoch, resume_state=resume_state,
                           device=config["device"], threads=config["threads"], images=images)
    result["resumed_from_epoch"] = resume_state["epoch"] if resume_state else 0
    result["experiment"] = experiment.name
    experiment.write_result(result)
    if result["status"] != "unconverged":  # an unconverged cell keeps its last state: a larger cap continues it
        ledger_checkpoint.unlink(missing_ok=True)


class Progress(tune.Callback):
    """A live table in the driver: cells done / running / failed, with each running cell's latest R, D."""

    def __init__(self, todo: list[PlannedCell], experiment: Experiment, console: Console):
        self.cells = {p.cell.cell_id: p.cell for p in todo}
        self.experiment = experiment
        self.console = console
        self.state = {cid: "pending" for cid in self.cells}
        self.latest: dict[str, dict] = {}
        self._live: Live | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; the terminal is not part of it.
        return {k: v for k, v in self.__dict__.items() if k not in ("console", "_live")}

    def live(self) -> Live:
        self._live = Live(self._table(), console=self.console, refresh_per_second=2,
                          transient=not self.console.is_terminal)
        return self._live

    def _update(self, trial, state: str) -> None:
        self.state[_trial_dirname(trial)] = state
        if self._live is not None:
            self._live.update(self._table())

    def on_trial_start(self, iteration, trials, trial, **info):
        self._update(trial, "running")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._update(trial, "retrying")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.latest[_trial_dirname(trial)] = result
        self._update(trial, "running")

    def on_trial_complete(self, iteration, trials, trial, **info):
        cell_id = _trial_dirname(trial)
        self._update(trial, self.experiment.status(cell_id) or "failed")
        self._report(cell_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        # Out of retries: record the failure in the ledger (collect shows it; a relaunch runs it again).
        cell_id = _trial_dirname(trial)
        if self.experiment.status(cell_id) in RESULT_STATUSES:  # the trial wrote its result, then its worker died
            self._update(trial, self.experiment.status(cell_id))
            return
        cell = self.cells[cell_id]
        error = _last_line(trial.error_file)
        self.experiment.write_result({
            "cell": cell.to_dict(), "cell_id": cell_id, "status": "failed", "error": error,
            "epochs": self.latest.get(cell_id, {}).get("epoch"), "experiment": self.experiment.name,
            "rdsweep_version": __version__})
        self._update(trial, "failed")
        self._report(cell_id, error)

    def _report(self, cell_id: str, error: str = "") -> None:
        """One line per finished cell, so a non-terminal log (CI, nohup) shows the sweep as it goes."""
        if self.console.is_terminal:
            return
        cell = self.cells[cell_id]
        done = sum(s in (*RESULT_STATUSES, "failed") for s in self.state.values())
        label = knob(cell.objective, cell.beta, cell.target_rate)
        self.console.print(f"[{done}/{len(self.cells)}] {cell.family} {label} seed={cell.seed}: "
                           f"{self.state[cell_id]} {error}".rstrip(), highlight=False)

    def _table(self) -> Table:
        counts = {s: list(self.state.values()).count(s)
                  for s in ("pending", "running", "retrying", *RESULT_STATUSES, "failed")}
        table = Table(title="rdsweep launch: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
                      title_justify="left")
        numeric = ("seed", "epoch", "R", "D", "valid obj", "best")
        for column in ("cell", "family", "objective") + numeric[:2] + ("state",) + numeric[2:]:
            table.add_column(column, justify="right" if column in numeric else "left")
        shown = [cid for cid, s in self.state.items() if s in ("running", "retrying", "failed")]
        for cell_id in shown:
            cell, latest = self.cells[cell_id], self.latest.get(cell_id, {})
            table.add_row(cell_id[:8], cell.family, knob(cell.objective, cell.beta, cell.target_rate),
                          str(cell.seed), f"{latest.get('epoch', '')}/{cell.epochs}", self.state[cell_id],
                          _num(latest.get("rate")), _num(latest.get("distortion")),
                          _num(latest.get("valid_objective")), str(latest.get("best_epoch") or ""))
        return table


def _num(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _last_line(path) -> str:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):
        return "trial failed (no error file)"
    return lines[-1].strip()[:300] if lines else "trial failed"
