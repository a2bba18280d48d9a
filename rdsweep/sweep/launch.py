"""Run a spec's unfinished cells as Ray Tune trials: the only module that imports Ray.

One trial per cell. The trainable writes its final result into the experiment's ledger (rdsweep/sweep/ledger.py)
and checkpoints every epoch twice over: through `tune.report(checkpoint=...)`, which Ray's FailureConfig
restores from when it retries a failed trial, and into the ledger, which a later launch resumes from after
an interrupted one, or continues from when an unconverged cell is given more epochs (Ray's own restore
cannot add or drop trials, so rdsweep does not use it).

A launch can be watched three ways: its live view (rdsweep/sweep/live.py), its log (EXPERIMENT/launch-<time>.log, one
line per event) and, from any shell, `rdsweep status`, which reads the ledger: the launch's record
(launch.json) and each trial's progress record, rewritten every few seconds while the trial lives.
"""
from __future__ import annotations

import logging
import math
import os
import platform
import re
import shlex
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Iterator

import ray
from ray import tune
from rich.console import Console

from rdsweep import __version__

from rdsweep.cells import Cell
from rdsweep.errors import UserError, one_line
from rdsweep.files import mount_point
from rdsweep.spec import Spec
from rdsweep.sweep import stops
from rdsweep.sweep.heartbeat import TrialProgress
from rdsweep.sweep.ledger import Experiment, PlannedCell, is_final
from rdsweep.sweep.live import LaunchView
from rdsweep.training.result import CellResult, cell_result


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
    no_space: str | None = None   # a trial failed on a full disk: the filesystem's mount point (docs/reliability.md)

    @property
    def efficiency(self) -> float | None:
        return self.cell_s / self.slots / self.wall_s if self.wall_s > 0 and self.cell_s > 0 else None


def launch(spec: Spec, experiment: Experiment, planned: list[PlannedCell], *,
           address: str | None = None, console: Console | None = None) -> LaunchSummary:
    console = console or Console()
    started = time.perf_counter()
    todo = _families_first([p for p in planned if p.action != "skip"])
    ended: dict[str, str] = {}
    slots, name, no_space = 1, None, False
    if todo:
        try:
            _init_ray(address)
            resources = _trial_resources(spec)
            experiment.record_protocol(spec.protocol, __version__)
            name = time.strftime("launch-%Y%m%d-%H%M%S")
            slots = _slots(spec, resources, ray.cluster_resources(), min(len(todo), spec.resources.cells_per_wave))
            with _launch_log(experiment, name, spec, planned, todo, resources, slots, address) as log:
                ended, no_space = _run(todo, experiment, spec, resources, console, name, log)
        finally:
            ray.shutdown()
    # A cell counts by what this launch did to it (an earlier launch's result is not this one's), and only
    # the results this launch wrote bring their seconds and warnings.
    statuses = list(ended.values())
    results = [r for cell_id in ended if (r := experiment.result(cell_id)) and r.launch == name]
    return LaunchSummary(
        total=len(planned), skipped=len(planned) - len(todo), converged=statuses.count("converged"),
        unconverged=statuses.count("unconverged"), diverged=statuses.count("diverged"),
        failed=statuses.count("failed"), unfinished=len(todo) - len(statuses),
        warnings=tuple(w for r in results for w in r.warnings),
        cell_s=sum(_seconds_this_launch(r) for r in results), slots=slots,
        wall_s=time.perf_counter() - started, no_space=mount_point(experiment.path) if no_space else None)


class _TuneFaultLines(logging.Filter):
    """Drops Tune's own ERROR lines about failed trials (a traceback per trial, then "Trials did not
    complete"): rdsweep reports a failed cell itself, with its error, in the table, the log, the ledger
    (`rdsweep status`) and one line on stderr; the full traceback stays in the trial's error file. Also
    Tune's failed save of its experiment state (a traceback when a signal stops the launch while Tune
    syncs it): rdsweep never restores from that state, the ledger and the cells' checkpoints are what a
    launch resumes from."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Trial task failed", "Trials did not complete",
                                               "Saving experiment state to storage"))


@contextmanager
def _quiet_trial_failures() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("ray.tune.execution.tune_controller", "ray.tune.tune",
                                              "ray.tune.execution.experiment_state")]
    quiet = _TuneFaultLines()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _seconds_this_launch(result: CellResult) -> float:
    """A cell's own seconds in this launch: its wall_s counts every run of the trial, so the epochs an
    earlier launch trained (before resumed_from_epoch) come off."""
    if result.status == "failed" or result.wall_s is None:
        return 0.0
    earlier = sum(h["wall_s"] for h in result.history if h["epoch"] <= (result.resumed_from_epoch or 0))
    return max(0.0, result.wall_s - earlier)


def _families_first(todo: list[PlannedCell]) -> list[PlannedCell]:
    """Launch order: one cell of each family first, then the rest in the spec's order. Specs expand family by
    family, so in spec order the last families would start days into a long sweep; this way the first wave of
    trials times every family (the ETA needs each family's own epoch time) and a family that fails, fails in
    the first hour."""
    first: dict[str, PlannedCell] = {}
    for p in todo:
        first.setdefault(p.cell.family, p)
    return [*first.values(), *(p for p in todo if first[p.cell.family] is not p)]


CONNECT_S = 5.0   # how long a Ray cluster may take to accept a connection and answer it (Ray's own GCS connect
                  # timeout is 5 s too, after which ray.init retries without end)
# An HTTP/2 client's opening (RFC 9113 §3.4): its preface and an empty SETTINGS frame; and a GOAWAY to leave.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_GOAWAY = bytes([0, 0, 8, 7, 0, 0, 0, 0, 0]) + bytes(8)


def check_address(address: str | None) -> str | None:
    """Refuse in seconds a Ray address where no Ray cluster answers, before anything is locked or written:
    ray.init waits for one without end (a dead --address was still waiting after 290 s, holding the
    experiment's lock). The address is resolved as ray.init resolves it: RAY_ADDRESS when none or "auto" is
    given, "auto" the latest cluster started on this machine, a localhost address this node's own address,
    "ray://HOST:PORT" a Ray Client server. Its host must accept a TCP connection within CONNECT_S and answer an
    HTTP/2 preface as a gRPC server does (Ray's GCS and its Client server are; unless RAY_USE_TLS, whose
    handshake comes first). Returns the host:port checked (None: a local instance will be started); a
    UserError names the address."""
    from ray._private import services

    given, env = address, os.environ.get("RAY_ADDRESS") or None
    if env and address in (None, "auto"):
        address = env
    if address is None or address == "local":
        return None
    named = (f"RAY_ADDRESS={env}" if given is None else
             f"--address auto (RAY_ADDRESS={env})" if given == "auto" and env else f"--address {given}")

    def refuse(why: str) -> UserError:
        return UserError(f"cannot join the Ray cluster at {named}: {why} (nothing was changed)")

    try:
        if "://" in address:
            scheme, target = address.split("://", 1)
            if scheme != "ray":
                raise refuse(f"{scheme}:// is not a Ray cluster's address: give HOST:PORT of its head (the GCS, "
                             "port 6379 by default), ray://HOST:PORT of a Ray Client server, or 'auto'")
        else:
            target = services.canonicalize_bootstrap_address(address)
    except ConnectionError as e:   # 'auto' (or none) and no cluster found on this machine
        raise refuse(one_line(e)) from None
    except ValueError:             # Ray's "Invalid address format"
        target = ""
    parsed = services.parse_address(target.rstrip("/"))
    if parsed is None or not parsed[1].isdigit() or not 0 < int(parsed[1]) < 65536:
        raise refuse("not HOST:PORT (e.g. 10.0.0.1:6379, the head's GCS), ray://HOST:PORT or 'auto'")
    host, port = parsed[0], int(parsed[1])
    where = services.build_address(host, port)
    if where != address.split("://")[-1].rstrip("/"):
        named += f", that is {where}"   # 'auto', or localhost as this node's address

    def not_ray(seen: str) -> UserError:
        return refuse(f"something listens there but it is not a Ray cluster (it {seen}, where a Ray head answers "
                      "as a gRPC server): check the host and the port (the GCS's, 6379 by default)")

    try:
        with socket.create_connection((host, port), timeout=CONNECT_S) as connection:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", ""):
                frame = b""   # the server's first frame: SETTINGS (type 4, its 4th byte) on stream 0
                try:
                    connection.sendall(_H2_PREFACE)
                    while len(frame) < 4 and (more := connection.recv(9 - len(frame))):
                        frame += more
                except (ConnectionResetError, BrokenPipeError):
                    pass
                if len(frame) < 4 or frame[3] != 4:
                    raise not_ray("closed the connection" if not frame else f"answered {frame!r}")
                with suppress(OSError):
                    connection.sendall(_H2_GOAWAY)   # a polite goodbye; the answer is in
    except socket.gaierror as e:
        raise refuse(f"host {host!r} not found ({e.strerror})") from None
    except TimeoutError:
        raise refuse(f"no answer within {CONNECT_S:g} s: is the cluster up, and is its head reachable from here "
                     "(firewall, VPN)?") from None
    except OSError as e:   # refused, no route, network unreachable, reset
        raise refuse(f"{e.strerror or e}: no Ray cluster listens there; start one (`ray start --head`) or give "
                     "its head's address") from None
    return where


@contextmanager
def _ray_starting() -> Iterator[None]:
    """ray.init, shielded: a Ctrl-C or SIGHUP that lands meanwhile waits until Ray is up (rdsweep.sweep.stops.deferred
    says why; a SIGTERM meets Ray's own handler, sys.exit(15), once ray.init has set it), and what is written
    to file descriptor 2 is held and given back unless the start was stopped or refused (the launch then says
    one line): Ray's C++ core installs a failure-signal handler that answers a SIGTERM with a stack dump on
    stderr before passing it on. Ray's handlers live until the launcher's go back, then stderr does."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        waiting: list[int] = []
        replay = False
        try:
            with stops.deferred() as waiting:
                os.dup2(held.fileno(), 2)
                try:
                    yield
                except (SystemExit, KeyboardInterrupt, ConnectionError, ValueError, RuntimeError):
                    raise             # stopped, or refused: the launch says its one line
                except BaseException:
                    replay = True     # a crash: Ray's own words may say why
                    raise
                replay = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if replay and not waiting:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
                sys.stderr.flush()


@contextmanager
def _rays_sigterm_handler_kept_out() -> Iterator[None]:
    """ray.init's first step sets Ray's SIGTERM handler, sys.exit(15), which a SIGTERM then raises anywhere in
    ray.init: once mid-connect, and Ray's C++ core aborted the launch as it exited (−6 with no word, in CI).
    Kept out, a SIGTERM waits with Ctrl-C and SIGHUP until Ray is up (_ray_starting). Should Ray lose this
    function, its handler stays, and _init_ray turns its exit into the launcher's stop."""
    from ray._private import utils as ray_utils

    original = getattr(ray_utils, "set_sigterm_handler", None)
    if original is not None:
        ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        if original is not None:
            ray_utils.set_sigterm_handler = original


def _init_ray(address: str | None) -> None:
    # Trials keep the driver's working directory (relative paths keep their meaning); Ray's own chatter
    # and the trials' stdout stay in Ray's logs, so the terminal shows rdsweep's progress table only.
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0, the legacy reporter prints nothing
    options = dict(log_to_driver=False, logging_level=logging.ERROR)
    sigterm = signal.getsignal(signal.SIGTERM)   # the launcher's (rdsweep.sweep.stops), put back as the block ends
    try:
        with _ray_starting(), _rays_sigterm_handler_kept_out():
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(include_dashboard=False, **options)
    except SystemExit as e:   # Ray's handler: a SIGTERM while Ray started; the launcher's handler decides
        if e.code != signal.SIGTERM or not callable(sigterm):
            raise
        sigterm(signal.SIGTERM, None)
        raise
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise UserError(f"cannot start or join {where}: {one_line(e, 300)}") from None


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
    the run (command, versions, resources); the live view (rdsweep/sweep/live.py) adds one line per event, flushed as it goes, so a killed
    launch leaves its log up to the moment it died."""
    cluster = ray.cluster_resources()
    actions = Counter(p.action for p in planned)
    experiment.record_launch({
        "name": name, "started_at": time.time(), "command": ["rdsweep", *sys.argv[1:]], "cwd": os.getcwd(),
        "host": socket.gethostname(), "pid": os.getpid(), "address": address, "slots": slots,
        "resources": {"cpus_per_trial": resources["cpu"], "gpus_per_trial": resources["gpu"],
                      "max_concurrent": spec.resources.max_concurrent, "max_failures": spec.resources.max_failures,
                      "cells_per_wave": spec.resources.cells_per_wave,
                      "cluster": {k: cluster.get(k, 0) for k in ("CPU", "GPU")}},
        "cells": [{"cell_id": p.cell.cell_id, "action": p.action, "cell": p.cell.to_dict()}   # in launch order
                  for p in todo + [p for p in planned if p.action == "skip"]]})
    waves = math.ceil(len(todo) / spec.resources.cells_per_wave)
    tune_state = f"ray/{name}/" + (f" to ray/{name}.{waves}/, a wave of {spec.resources.cells_per_wave} cells each"
                                   if waves > 1 else "")
    with experiment.launch_log_path(name).open("a", buffering=1) as log:  # line-buffered: whole lines on disk
        for line in (
            f"rdsweep launch {name} of {experiment.path} (Ray Tune's own state: {tune_state})",
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
         console: Console, name: str, log: IO[str]) -> tuple[dict[str, str], bool]:
    """Train the cells; returns the cell ids that ended in this launch (with a result or failed), and whether
    a trial failed on a full disk. The cells go to Tune in waves of at most resources.cells_per_wave, one Tune
    run each (Ray Tune folders <name>, <name>.2, ...): the driver's memory grows with the trials of a Tune run
    (docs/benchmarks.md, "Sweeps of thousands of cells"). A wave that leaves a cell unfinished (a stop) ends
    the launch."""
    experiment.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    view = LaunchView(todo, experiment, console, log)
    progress = Progress(view, experiment, name)
    size = spec.resources.cells_per_wave
    with view.live(), _quiet_trial_failures():
        try:
            for start in range(0, len(todo), size):
                wave = todo[start:start + size]
                tuner = _tuner(wave, experiment, spec, resources,
                               name if start == 0 else f"{name}.{start // size + 1}", name, progress)
                stopped = _fit(tuner)
                ended = view.ended_cells()
                if stopped or any(p.cell.cell_id not in ended for p in wave):
                    break
        finally:  # also on a second Ctrl-C, which Tune lets through as KeyboardInterrupt
            view.close()
    return view.ended_cells(), progress.no_space


def _fit(tuner: tune.Tuner) -> bool:
    """One Tune run; True when a stop (Ctrl-C, SIGTERM, SIGHUP) reached Tune meanwhile. Tune's Ctrl-C handler
    puts the one before it back when a stop reaches it, and stays otherwise: left so, the next wave's would
    chain to it, and a stop would need one signal more per wave. Once Tune has stopped, the launch only ends,
    so later stops are ignored (stops.ignore_further)."""
    ours = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1)}
    tune_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "0"
    try:
        tuner.fit()
    finally:
        stopped = tune_catches and signal.getsignal(signal.SIGINT) is ours[signal.SIGINT]
        for signum, handler in ours.items():
            signal.signal(signum, handler)
    if stopped:
        stops.ignore_further()
    return stopped


def _tuner(wave: list[PlannedCell], experiment: Experiment, spec: Spec, resources: dict, folder: str,
           launch: str, progress: "Progress") -> tune.Tuner:
    config = {
        "cell": tune.grid_search([p.cell.to_dict() for p in wave]),
        "experiment": str(experiment.path),
        "device": "cuda" if resources["gpu"] > 0 else "cpu",
        "threads": max(1, math.floor(resources["cpu"])),
        "checkpoint_s": spec.resources.checkpoint_s,
        "compile": spec.resources.compile,
        "launch": launch,
    }
    return tune.Tuner(
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
            name=folder,
            storage_path=str(experiment.ray_dir),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[progress],
            verbose=0,
        ),
    )


def _trial_dirname(trial) -> str:
    return Cell(**trial.config["cell"]).cell_id


def _trial(config: dict) -> None:
    """The Ray trainable: train one cell, resuming from Ray's checkpoint (a retry) or the ledger's (a
    relaunch), report and checkpoint every epoch, and write the final result into the ledger."""
    started = time.time()  # before torch's import: part of the trial's time outside its epochs
    from filelock import FileLock

    from rdsweep.training import checkpoints  # torch is imported in the worker, not the driver

    from rdsweep.training import trainer

    cell = Cell.from_dict(config["cell"])
    experiment = Experiment(config["experiment"])
    ledger_checkpoint = experiment.checkpoint_path(cell.cell_id)
    where = {"node": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(i) for i in ray.get_gpu_ids()]}
    progress = TrialProgress(experiment, cell, started, where["node"])
    device, device_warnings = _trial_device(config["device"], cell, where)

    last_saved = time.monotonic()

    def on_epoch(metrics: dict, state: dict) -> None:
        # Checkpoints by time, not by epoch: at most every checkpoint_s seconds, and always at the trial's
        # last epoch (an unconverged cell continues from it); a toy cell of twenty short epochs saves once.
        nonlocal last_saved
        blew_up = metrics["epoch"] in state["rule"]["blowups"]   # far above its best: a number to distrust
        report = {**metrics, "cell_id": cell.cell_id, "best_epoch": state["rule"]["best_epoch"], "blew_up": blew_up}
        last = state["stop_reason"] is not None or metrics["epoch"] >= cell.epochs
        if not last and time.monotonic() - last_saved < config["checkpoint_s"]:
            tune.report(report)
        else:
            with tempfile.TemporaryDirectory(dir=experiment.checkpoints_dir) as d:
                checkpoints.save_state(state, Path(d) / "state.pt")
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))
                os.replace(Path(d) / "state.pt", ledger_checkpoint)  # same filesystem: a rename, not a copy
            last_saved = time.monotonic()
        progress.epoch_done(metrics, state["rule"]["best_epoch"], blew_up)

    def train(resume_state: dict | None) -> CellResult:
        progress.begin(resume_state)
        images = None
        if cell.images:  # the spec allows it for image data only
            experiment.grids_dir.mkdir(exist_ok=True)
            images = experiment.grid_path(cell.cell_id)
        keep_model = None
        if cell.keep_model:
            experiment.models_dir.mkdir(exist_ok=True)
            keep_model = experiment.model_path(cell.cell_id)
        experiment.examples_dir.mkdir(exist_ok=True)
        return trainer.train(cell, on_epoch=on_epoch, resume_state=resume_state, on_step=progress.step,
                             device=device, threads=config["threads"], images=images,
                             keep_model=keep_model, examples=experiment.examples_path(cell.cell_id),
                             compile=config["compile"])

    # One trainer per cell at a time: a worker of a killed launch may still be finishing this cell while a
    # relaunch starts it again; the second waits, then finds the result and leaves it alone.
    experiment.cell_lock_path(cell.cell_id).parent.mkdir(exist_ok=True)
    with FileLock(experiment.cell_lock_path(cell.cell_id)), progress:
        if is_final(experiment.result(cell.cell_id), cell):
            return
        warnings, resume_state = list(device_warnings), None
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
        result = result.model_copy(update={"resumed_from_epoch": resume_state["epoch"] if resume_state else 0,
                                           "experiment": experiment.name, "warnings": warnings,
                                           "launch": config["launch"], **where})
        experiment.write_result(result)   # checks the ledger's fields as it writes them
        progress.finish()
        if result.status != "unconverged":  # an unconverged cell keeps its state: a larger cap continues it
            ledger_checkpoint.unlink(missing_ok=True)
    if device == "cuda":  # the worker may train the next cell: hand back what this one cached
        import torch

        torch.cuda.empty_cache()


def _trial_device(device: str, cell: Cell, where: dict) -> tuple[str, list[str]]:
    """The device a trial trains on: the CPU, with a warning, where Ray booked a GPU that the worker cannot
    see (a node that advertises GPUs it lacks, a driver without CUDA, a torch built for the CPU); a crash
    there would fail every cell of the sweep."""
    import torch

    if device != "cuda" or torch.cuda.is_available():
        return device, []
    return "cpu", [f"cell {cell.cell_id}: Ray booked GPU {','.join(where['gpu_ids']) or '(none)'} on node "
                   f"{where['node'][:12]} but its worker finds no CUDA device (torch {torch.__version__}, "
                   f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}); trained on the CPU"]


def _saved_state(retry, ledger_checkpoint: Path) -> dict | None:
    """Where to continue from: Ray's checkpoint when Ray retries this trial, else the ledger's, if any."""
    from rdsweep.training.checkpoints import load_state

    if retry is not None:
        with retry.as_directory() as d:
            return load_state(Path(d) / "state.pt")
    return load_state(ledger_checkpoint) if ledger_checkpoint.exists() else None


class Progress(tune.Callback):
    """Tune's trial events, by cell id, to the launch's view (rdsweep/sweep/live.py); a trial out of retries is
    recorded as failed in the ledger here."""

    def __init__(self, view: LaunchView, experiment: Experiment, launch: str):
        self.view = view
        self.experiment = experiment
        self.launch = launch   # the results this launch's trials write carry its name
        self.no_space = False  # a trial failed on a full disk (ENOSPC)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.view.started(_trial_dirname(trial))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.view.retrying(_trial_dirname(trial), _last_line(trial.error_file))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.view.reported(_trial_dirname(trial), result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        cell_id = _trial_dirname(trial)
        self.view.ended(cell_id, self.experiment.status(cell_id) or "failed")

    def on_trial_error(self, iteration, trials, trial, **info):
        # Out of retries: record the failure in the ledger (collect shows it; a relaunch runs it again).
        cell_id = _trial_dirname(trial)
        try:
            earlier = self.experiment.result(cell_id)
        except UserError:
            earlier = None
        if earlier is not None and earlier.launch == self.launch:  # written, then the worker died
            self.view.ended(cell_id, earlier.status)
            return
        cell = self.view.cells[cell_id]
        error = _last_line(trial.error_file)
        if _ENOSPC.search(error):
            self.no_space = True
        if earlier is None or earlier.status == "failed":
            self.experiment.write_result(cell_result({
                "cell": cell.to_dict(), "cell_id": cell_id, "status": "failed", "error": error,
                "epochs": self.view.latest.get(cell_id, {}).get("epoch"), "experiment": self.experiment.name,
                "rdsweep_version": __version__, "launch": self.launch}))
        # else an earlier launch's result (e.g. unconverged, being continued) stays: its numbers are still
        # true; the failure is this launch's (exit 1, the log and stderr say it), and a relaunch retries it.
        self.view.ended(cell_id, "failed", error)


_ENOSPC = re.compile(r"errno 28\b|no space left on device", re.IGNORECASE)


def _last_line(path) -> str:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):
        return "trial failed (no error file)"
    return lines[-1].strip()[:300] if lines else "trial failed"
