"""Run a spec's unfinished cells as Ray Tune trials: the only module that imports Ray.

One trial per cell. The trainable writes its final result into the experiment's ledger (rdsweep/ledger.py)
and checkpoints every epoch twice over: through `tune.report(checkpoint=...)`, which Ray's FailureConfig
restores from when it retries a failed trial, and into the ledger, which a later launch resumes from after
an interrupted one, or continues from when an unconverged cell is given more epochs (Ray's own restore
cannot add or drop trials, so rdsweep does not use it).

A launch can be watched three ways: its live view (Progress), its log (EXPERIMENT/launch-<time>.log, one
line per event) and, from any shell, `rdsweep status`, which reads the ledger: the launch's record
(launch.json) and each trial's progress record, rewritten every few seconds while the trial lives.
"""
from __future__ import annotations

import logging
import math
import os
import platform
import shlex
import socket
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Iterator

import ray
from ray import tune
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from rdsweep import __version__
from rdsweep.cells import Cell
from rdsweep.errors import UserError
from rdsweep.ledger import Experiment, PlannedCell, is_final
from rdsweep.schema import RESULT_STATUSES
from rdsweep.spec import Spec
from rdsweep.heartbeat import TrialProgress
from rdsweep.status import ExperimentStatus, cell_label, duration, eta_text, experiment_status


@dataclass(frozen=True)
class LaunchSummary:
    total: int
    skipped: int
    converged: int
    unconverged: int     # the epoch cap came first: kept and flagged; a larger cap continues them
    diverged: int
    failed: int
    unfinished: int      # interrupted: a relaunch resumes them
    warnings: tuple[str, ...] = ()   # from the cells' results, e.g. a checkpoint moved aside
    # What the sweep machinery cost: the cells' own seconds in this launch (training and evaluation, as
    # each trial measured them) spread over the trial slots, against the launch's wall time, Ray included.
    cell_s: float = 0.0
    slots: int = 1
    wall_s: float = 0.0

    @property
    def efficiency(self) -> float | None:
        return self.cell_s / self.slots / self.wall_s if self.wall_s > 0 and self.cell_s > 0 else None


def launch(spec: Spec, experiment: Experiment, planned: list[PlannedCell], *,
           address: str | None = None, console: Console | None = None) -> LaunchSummary:
    console = console or Console()
    started = time.perf_counter()
    todo = _families_first([p for p in planned if p.action != "skip"])
    ended: dict[str, str] = {}
    slots, name = 1, None
    if todo:
        _init_ray(address)
        try:
            resources = _trial_resources(spec)
            experiment.record_protocol(spec.protocol, __version__)
            name = time.strftime("launch-%Y%m%d-%H%M%S")
            slots = _slots(spec, resources, ray.cluster_resources(), len(todo))
            with _launch_log(experiment, name, spec, planned, todo, resources, slots, address) as log:
                ended = _run(todo, experiment, spec, resources, console, name, log)
        finally:
            ray.shutdown()
    # A cell counts by what this launch did to it (an earlier launch's result is not this one's), and only
    # the results this launch wrote bring their seconds and warnings.
    statuses = list(ended.values())
    results = [r for cell_id in ended if (r := experiment.result(cell_id)) and r.get("launch") == name]
    return LaunchSummary(
        total=len(planned), skipped=len(planned) - len(todo), converged=statuses.count("converged"),
        unconverged=statuses.count("unconverged"), diverged=statuses.count("diverged"),
        failed=statuses.count("failed"), unfinished=len(todo) - len(statuses),
        warnings=tuple(w for r in results for w in r["warnings"]),
        cell_s=sum(_seconds_this_launch(r) for r in results), slots=slots,
        wall_s=time.perf_counter() - started)


def _seconds_this_launch(result: dict) -> float:
    """A cell's own seconds in this launch: its wall_s counts every run of the trial, so the epochs an
    earlier launch trained (before resumed_from_epoch) come off."""
    if result["status"] == "failed" or result.get("wall_s") is None:
        return 0.0
    earlier = sum(h["wall_s"] for h in result["history"] if h["epoch"] <= (result["resumed_from_epoch"] or 0))
    return max(0.0, result["wall_s"] - earlier)


def _families_first(todo: list[PlannedCell]) -> list[PlannedCell]:
    """Launch order: one cell of each family first, then the rest in the spec's order. Specs expand family by
    family, so in spec order the last families would start days into a long sweep; this way the first wave of
    trials times every family (the ETA needs each family's own epoch time) and a family that fails, fails in
    the first hour."""
    first: dict[str, PlannedCell] = {}
    for p in todo:
        first.setdefault(p.cell.family, p)
    return [*first.values(), *(p for p in todo if first[p.cell.family] is not p)]


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


@contextmanager
def _launch_log(experiment: Experiment, name: str, spec: Spec, planned: list[PlannedCell],
                todo: list[PlannedCell], resources: dict, slots: int, address: str | None) -> Iterator[IO[str]]:
    """Open EXPERIMENT/<name>.log, the launch's audit trail, and record the launch in launch.json (which
    `rdsweep status` reads for the cells never started and the trial slots). The log starts with what decides
    the run (command, versions, resources); Progress adds one line per event, flushed as it goes, so a killed
    launch leaves its log up to the moment it died."""
    cluster = ray.cluster_resources()
    actions = Counter(p.action for p in planned)
    experiment.record_launch({
        "name": name, "started_at": time.time(), "command": ["rdsweep", *sys.argv[1:]], "cwd": os.getcwd(),
        "host": socket.gethostname(), "pid": os.getpid(), "address": address, "slots": slots,
        "resources": {"cpus_per_trial": resources["cpu"], "gpus_per_trial": resources["gpu"],
                      "max_concurrent": spec.resources.max_concurrent, "max_failures": spec.resources.max_failures,
                      "cluster": {k: cluster.get(k, 0) for k in ("CPU", "GPU")}},
        "cells": [{"cell_id": p.cell.cell_id, "action": p.action, "cell": p.cell.to_dict()}   # in launch order
                  for p in todo + [p for p in planned if p.action == "skip"]]})
    with experiment.launch_log_path(name).open("a", buffering=1) as log:  # line-buffered: whole lines on disk
        for line in (
            f"rdsweep launch {name} of {experiment.path} (Ray Tune's own state: ray/{name}/)",
            f"command: {shlex.join(['rdsweep', *sys.argv[1:]])}  (in {os.getcwd()}, on {socket.gethostname()})",
            f"versions: rdsweep {__version__}, torch {_version('torch')}, ray {ray.__version__}, "
            f"python {platform.python_version()} ({sys.executable})",
            f"ray: {f'the cluster at {address}' if address else 'a local instance'} with "
            f"{cluster.get('CPU', 0):g} CPU(s), {cluster.get('GPU', 0):g} GPU(s)",
            f"per trial: {resources['cpu']:g} CPU(s), {resources['gpu']:g} GPU(s); max_concurrent "
            f"{spec.resources.max_concurrent or 'none'}, max_failures {spec.resources.max_failures}: "
            f"{slots} trial(s) at once",
            f"cells: {len(planned)} in the spec: {actions['run']} to run, {actions['resume']} to resume, "
            f"{actions['continue']} to continue, {actions['skip']} finished before",
        ):
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        yield log


def _slots(spec: Spec, resources: dict, cluster: dict, cells: int) -> int:
    """How many trials run at once: what the cluster's CPUs and GPUs fit, at most max_concurrent."""
    fits = [cells, spec.resources.max_concurrent or cells]
    for kind, want in (("CPU", resources["cpu"]), ("GPU", resources["gpu"])):
        if want > 0:
            fits.append(math.floor(cluster.get(kind, 0) / want + 1e-9))
    return max(1, min(fits))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run(todo: list[PlannedCell], experiment: Experiment, spec: Spec, resources: dict,
         console: Console, name: str, log: IO[str]) -> dict[str, str]:
    """Train the cells; returns the cell ids that ended in this launch (with a result or failed)."""
    experiment.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "cell": tune.grid_search([p.cell.to_dict() for p in todo]),
        "experiment": str(experiment.path),
        "device": "cuda" if resources["gpu"] > 0 else "cpu",
        "threads": max(1, math.floor(resources["cpu"])),
        "checkpoint_s": spec.resources.checkpoint_s,
        "compile": spec.resources.compile,
        "launch": name,
    }
    progress = Progress(todo, experiment, console, log, name)
    tuner = tune.Tuner(
        tune.with_resources(_trial, resources),
        param_space=config,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.resources.max_concurrent,
            trial_dirname_creator=_trial_dirname,
            # A worker trains cell after cell instead of starting a process (and importing torch) per trial:
            # nothing a trial leaves behind reaches the next (trainer.train seeds and sets threads itself,
            # _trial empties the CUDA cache; tested: tests/test_sweep.py).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(experiment.ray_dir),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[progress],
            verbose=0,
        ),
    )
    with progress.live():
        try:
            tuner.fit()
        finally:  # also on a second Ctrl-C, which Tune lets through as KeyboardInterrupt
            progress.close()
    return {cid: state for cid, state in progress.state.items() if state in (*RESULT_STATUSES, "failed")}


def _trial_dirname(trial) -> str:
    return Cell(**trial.config["cell"]).cell_id


def _trial(config: dict) -> None:
    """The Ray trainable: train one cell, resuming from Ray's checkpoint (a retry) or the ledger's (a
    relaunch), report and checkpoint every epoch, and write the final result into the ledger."""
    started = time.time()  # before torch's import: part of the trial's time outside its epochs
    from filelock import FileLock

    from rdsweep import checkpoints, trainer  # torch is imported in the worker, not the driver

    cell = Cell.from_dict(config["cell"])
    experiment = Experiment(config["experiment"])
    ledger_checkpoint = experiment.checkpoint_path(cell.cell_id)
    progress = TrialProgress(experiment, cell, started)

    last_saved = time.monotonic()

    def on_epoch(metrics: dict, state: dict) -> None:
        # Checkpoints by time, not by epoch: at most every checkpoint_s seconds, and always at the trial's
        # last epoch (an unconverged cell continues from it); a toy cell of twenty short epochs saves once.
        nonlocal last_saved
        report = {**metrics, "cell_id": cell.cell_id, "best_epoch": state["rule"]["best_epoch"]}
        last = state["stop_reason"] is not None or metrics["epoch"] >= cell.epochs
        if not last and time.monotonic() - last_saved < config["checkpoint_s"]:
            tune.report(report)
        else:
            with tempfile.TemporaryDirectory(dir=experiment.checkpoints_dir) as d:
                checkpoints.save_state(state, Path(d) / "state.pt")
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))
                os.replace(Path(d) / "state.pt", ledger_checkpoint)  # same filesystem: a rename, not a copy
            last_saved = time.monotonic()
        progress.epoch_done(metrics, state["rule"]["best_epoch"])

    def train(resume_state: dict | None) -> dict:
        progress.begin(resume_state)
        images = None
        if cell.images:  # the spec allows it for image data only
            experiment.grids_dir.mkdir(exist_ok=True)
            images = experiment.grid_path(cell.cell_id)
        keep_model = None
        if cell.keep_model:
            experiment.models_dir.mkdir(exist_ok=True)
            keep_model = experiment.model_path(cell.cell_id)
        return trainer.train(cell, on_epoch=on_epoch, resume_state=resume_state, on_step=progress.step,
                             device=config["device"], threads=config["threads"], images=images,
                             keep_model=keep_model, compile=config["compile"])

    # One trainer per cell at a time: a worker of a killed launch may still be finishing this cell while a
    # relaunch starts it again; the second waits, then finds the result and leaves it alone.
    experiment.cell_lock_path(cell.cell_id).parent.mkdir(exist_ok=True)
    with FileLock(experiment.cell_lock_path(cell.cell_id)), progress:
        if is_final(experiment.result(cell.cell_id), cell):
            return
        warnings, resume_state = [], None
        retry = tune.get_checkpoint()
        source = retry.path if retry is not None else ledger_checkpoint if ledger_checkpoint.exists() else None
        try:
            resume_state = _saved_state(retry, ledger_checkpoint)
            result = train(resume_state)
        except checkpoints.IncompatibleCheckpoint as e:
            if source == ledger_checkpoint:
                aside = ledger_checkpoint.with_name(f"{ledger_checkpoint.name}.unusable-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(ledger_checkpoint, aside)
                warnings.append(f"cell {cell.cell_id}: its checkpoint {e}; kept as {aside}, the cell restarted")
            else:  # Ray's retry checkpoint (Ray keeps it in its own storage)
                warnings.append(f"cell {cell.cell_id}: Ray's retry checkpoint {source} {e}; the cell restarted")
            resume_state = None
            result = train(None)
        result.update(resumed_from_epoch=resume_state["epoch"] if resume_state else 0,
                      experiment=experiment.name, warnings=warnings, launch=config["launch"])
        experiment.write_result(result)
        progress.finish()
        if result["status"] != "unconverged":  # an unconverged cell keeps its state: a larger cap continues it
            ledger_checkpoint.unlink(missing_ok=True)
    if config["device"] == "cuda":  # the worker may train the next cell: hand back what this one cached
        import torch

        torch.cuda.empty_cache()


def _saved_state(retry, ledger_checkpoint: Path) -> dict | None:
    """Where to continue from: Ray's checkpoint when Ray retries this trial, else the ledger's, if any."""
    from rdsweep.checkpoints import load_state

    if retry is not None:
        with retry.as_directory() as d:
            return load_state(Path(d) / "state.pt")
    return load_state(ledger_checkpoint) if ledger_checkpoint.exists() else None


SNAPSHOT_S = 5.0      # the live view rereads the ledger (rdsweep/status.py) at most this often
LONG_EPOCH_S = 20.0   # a family's epochs at least this long (or not timed yet) show the step under way
WIDE = 120            # from this many columns, the live view also names each running cell's family


class Progress(tune.Callback):
    """What a launch shows as it runs. In a terminal: a bar of this launch's cells done, with elapsed time and
    ETA (rdsweep/status.py's, from the ledger), and a row per running cell: its time, epoch of the cap, the
    step of a long epoch under way, latest R, D, valid objective and best epoch. Otherwise one line per
    start, retry and end of a cell. Every event, each epoch included, also goes to the launch log."""

    def __init__(self, todo: list[PlannedCell], experiment: Experiment, console: Console, log: IO[str],
                 launch: str):
        self.launch = launch   # the results this launch's trials write carry its name
        self.cells = {p.cell.cell_id: p.cell for p in todo}
        self.actions = {p.cell.cell_id: p.action for p in todo}
        self.labels = {cell_id: cell_label(cell.to_dict()) for cell_id, cell in self.cells.items()}
        self.experiment = experiment
        self.console = console
        self.log = log
        self.state = {cid: "pending" for cid in self.cells}
        self.latest: dict[str, dict] = {}
        self.started: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.began = time.time()
        self._snapshot: ExperimentStatus | None = None
        self._snapshot_at = 0.0

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; the terminal and the log are not part of it.
        return {k: v for k, v in self.__dict__.items() if k not in ("console", "log", "_snapshot")}

    def live(self) -> Live:
        return Live(console=self.console, get_renderable=self._view, refresh_per_second=2,
                    transient=not self.console.is_terminal)

    def on_trial_start(self, iteration, trials, trial, **info):
        cell_id = self._set(trial, "running")
        self.started[cell_id] = time.time()
        how = {"resume": ", from its checkpoint", "continue": ", continuing to the raised cap"}.get(
            self.actions[cell_id], "")
        self._event(f"start {self.labels[cell_id]} (cell {cell_id}{how})")

    def on_trial_recover(self, iteration, trials, trial, **info):
        cell_id = self._set(trial, "retrying")
        error = _last_line(trial.error_file)
        self._event(f"retry {self.labels[cell_id]} from its last checkpoint, after: {error}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        cell_id = self._set(trial, "running")
        self.latest[cell_id] = result
        valid = (f", valid {result['valid_objective']:.3f} (best epoch {result['best_epoch']})"
                 if "valid_objective" in result else "")
        self._event(f"epoch {result['epoch']}/{self.cells[cell_id].epochs} {self.labels[cell_id]}: R "
                    f"{result['rate']:.3f}, D {result['distortion']:.3f}{valid}, {result['wall_s']:.1f}s",
                    console=False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        cell_id = _trial_dirname(trial)
        self._set(trial, self.experiment.status(cell_id) or "failed")
        self._ended(cell_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        # Out of retries: record the failure in the ledger (collect shows it; a relaunch runs it again).
        cell_id = _trial_dirname(trial)
        try:
            earlier = self.experiment.result(cell_id)
        except UserError:
            earlier = None
        if earlier is not None and earlier.get("launch") == self.launch:  # written, then the worker died
            self._set(trial, earlier["status"])
            self._ended(cell_id)
            return
        cell = self.cells[cell_id]
        error = _last_line(trial.error_file)
        if earlier is None or earlier["status"] == "failed":
            self.experiment.write_result({
                "cell": cell.to_dict(), "cell_id": cell_id, "status": "failed", "error": error,
                "epochs": self.latest.get(cell_id, {}).get("epoch"), "experiment": self.experiment.name,
                "rdsweep_version": __version__, "launch": self.launch})
        # else an earlier launch's result (e.g. unconverged, being continued) stays: its numbers are still
        # true; the failure is this launch's (exit 1, the log and stderr say it), and a relaunch retries it.
        self._set(trial, "failed")
        self.errors[cell_id] = error
        self._ended(cell_id)

    def close(self) -> None:
        """The log's last line: what this launch ended, and what it leaves to the next one."""
        counts = Counter(self.state.values())
        ended = ", ".join(f"{counts[s]} {s}" for s in (*RESULT_STATUSES, "failed") if counts[s]) or "no cell ended"
        left = counts["pending"] + counts["running"] + counts["retrying"]
        self._event(f"end after {duration(time.time() - self.began)}: {ended}" + (
            f"; {left} unfinished (stopped before they ended): run the same command again to resume them"
            if left else ""), console=False)

    def _set(self, trial, state: str) -> str:
        cell_id = _trial_dirname(trial)
        self.state[cell_id] = state
        return cell_id

    def _done(self) -> int:
        return sum(s in (*RESULT_STATUSES, "failed") for s in self.state.values())

    def _ended(self, cell_id: str) -> None:
        epoch = self.latest.get(cell_id, {}).get("epoch")
        took = duration(time.time() - self.started.get(cell_id, self.began))
        detail = self.errors.get(cell_id) or (
            f"at epoch {epoch}/{self.cells[cell_id].epochs} after {took}" if epoch else f"after {took}")
        self._event(f"[{self._done()}/{len(self.cells)}] {self.state[cell_id]} {self.labels[cell_id]}: {detail}; "
                    f"{self._eta(self._status(force=True))}")

    def _event(self, text: str, console: bool = True) -> None:
        """One line in the launch log and, when the output is not a terminal (CI, nohup), on the console."""
        now = time.localtime()
        self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S', now)} {text}\n")
        if console and not self.console.is_terminal:
            self.console.print(f"{time.strftime('%H:%M:%S', now)} {text}", highlight=False, markup=False,
                               soft_wrap=True)

    def _status(self, force: bool = False) -> ExperimentStatus | None:
        now = time.time()
        if force or now - self._snapshot_at >= SNAPSHOT_S:
            self._snapshot_at = now
            try:
                self._snapshot = experiment_status(self.experiment, now)
            except Exception:  # a damaged ledger file, or a bug in the view: the sweep itself must go on
                pass
        return self._snapshot

    def _eta(self, status: ExperimentStatus | None) -> str:
        return eta_text(status, running=True) if status else "ETA: after the first epoch"

    def _view(self) -> Group:
        status, now = self._status(), time.time()
        total, done = len(self.cells), self._done()
        head = Table.grid(expand=True, padding=(0, 1))
        head.add_column(no_wrap=True)
        head.add_column(ratio=1)
        head.add_column(no_wrap=True)
        head.add_row(f"{done}/{total} cells", ProgressBar(total=total, completed=done),
                     f"{duration(now - self.began)} elapsed")
        counts = Counter(self.state.values())
        states = ("running", "retrying", "pending", *RESULT_STATUSES, "failed")
        parts = [head, Text(", ".join(f"{counts[s]} {s}" for s in states if counts[s]) + f"; {self._eta(status)}")]
        rows = [cid for cid, s in self.state.items() if s in ("running", "retrying")]
        if rows:
            parts.append(self._table(rows, status, now))
        parts += [Text(f"failed {self.labels[cid]}: {error}", no_wrap=True, overflow="ellipsis")
                  for cid, error in list(self.errors.items())[-3:]]
        return Group(*parts)

    def _table(self, rows: list[str], status: ExperimentStatus | None, now: float) -> Table:
        ledger = {c.cell_id: c for c in status.cells} if status else {}
        families = status.families if status else {}
        steps = {}
        for cid in rows:
            c, timing = ledger.get(cid), families.get(self.cells[cid].family)
            if c is None or c.state != "running" or not c.steps:
                continue
            per_epoch = timing and timing.seconds_per_epoch
            long_epochs = per_epoch is None or per_epoch >= LONG_EPOCH_S
            if long_epochs and c.epoch == self.latest.get(cid, {}).get("epoch", c.epoch):  # else the step is stale
                steps[cid] = f"{c.step}/{c.steps}"
        columns = (["cell"] + (["family"] if self.console.width >= WIDE else []) + ["epoch"]
                   + (["step"] if steps else []) + ["time", "R", "D", "valid", "best"]
                   + (["state"] if any(self.state[cid] != "running" for cid in rows) else []))
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=column in ("cell", "family"),
                             justify="left" if column in ("cell", "family", "state") else "right")
        for cid in rows:
            latest = self.latest.get(cid, {})
            epoch = latest.get("epoch", ledger[cid].epoch if cid in ledger else None)
            values = {
                "cell": self.labels[cid], "family": self.cells[cid].family,
                "epoch": f"{'' if epoch is None else epoch}/{self.cells[cid].epochs}", "step": steps.get(cid, ""),
                "time": duration(now - self.started.get(cid, now)), "R": _num(latest.get("rate")),
                "D": _num(latest.get("distortion")), "valid": _num(latest.get("valid_objective")),
                "best": str(latest.get("best_epoch") or ""), "state": self.state[cid]}
            table.add_row(*(values[column] for column in columns))
        return table


def _num(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _last_line(path) -> str:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):
        return "trial failed (no error file)"
    return lines[-1].strip()[:300] if lines else "trial failed"
