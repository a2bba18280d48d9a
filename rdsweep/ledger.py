"""An experiment directory: rdsweep's own ledger of which cells finished, independent of Ray's state.

    STORAGE/NAME/
        experiment.json           the protocol (dataset, size, budget, evaluation) every cell shares
        cells/<cell_id>.json      a cell's result, written atomically: converged | unconverged | diverged | failed
        checkpoints/<cell_id>.pt  the latest epoch of an interrupted or unconverged cell (removed once
                                  it converges or diverges)
        locks/<cell_id>.lock      held by the trial that trains the cell
        launch.lock               held by the running launch (launch.lock.json: who)
        grids/<cell_id>.png       data / reconstruction / sample grids ([evaluation] images = true)
        models/<cell_id>.pt       the evaluated weights ([evaluation] keep_model = true; checkpoints.load_model)
        examples/<cell_id>.npz    each example's R and D per split (uncertainty.save_examples): the paired
                                  comparisons of `rdsweep compare`; since rdsweep 0.5
        ray/launch-<time>/        Ray Tune's own state, one folder per launch
        launch-<time>.log         what that launch did, one line per event (command, versions, resources,
                                  each cell's start, epochs, retries and end), for auditing a sweep later
        launch.json               the latest launch: its name, start, command, trial resources, how many
                                  trials run at once, and every cell of its spec with the plan's action
                                  (run, resume, continue, skip), so `rdsweep status` knows the cells that
                                  never started
        progress/<cell_id>.json   a trial's progress as it goes: epoch of the cap, step of the epoch, latest
                                  valid objective, each epoch's seconds, start and `updated_at`, rewritten
                                  every few seconds while it lives (a heartbeat) and once more with
                                  `finished_at` when its result is written; kept, so the trial's time
                                  outside its epochs stays known
        frontier.parquet          written by `rdsweep collect`

Ray's `Tuner.restore` cannot add trials, so launch decides from this ledger what to train: a cell whose
result says converged or diverged is done; so is an unconverged one, unless the spec now allows more epochs
than it ran with, in which case it continues from its checkpoint (the epoch budget is a cap, not part of a
cell's identity); a failed or missing one runs again, from its checkpoint if any.
Writers and readers only need a shared filesystem, which is also what a multi-node Ray cluster needs.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from rdsweep.cells import Cell
from rdsweep.errors import UserError
from rdsweep.files import atomic_write
from rdsweep.schema import read_launch, read_progress, read_record, read_result, validated_result

FINISHED = ("converged", "diverged")      # nothing more to do, whatever the budget
DEFAULT_STORAGE = "rdsweep-results"


class Experiment:
    def __init__(self, path: str | Path):
        self.path = Path(path).absolute()
        self.name = self.path.name
        self.meta_path = self.path / "experiment.json"
        self.cells_dir = self.path / "cells"
        self.checkpoints_dir = self.path / "checkpoints"
        self.ray_dir = self.path / "ray"
        self.grids_dir = self.path / "grids"
        self.models_dir = self.path / "models"
        self.examples_dir = self.path / "examples"
        self.progress_dir = self.path / "progress"
        self.launch_path = self.path / "launch.json"
        self.lock_path = self.path / "launch.lock"
        self.holder_path = self.path / "launch.lock.json"   # who holds the lock, for the refusal message

    @classmethod
    def at(cls, storage: str | Path | None, name: str) -> "Experiment":
        if not name.strip() or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
            raise UserError(f"experiment name {name!r} (--name, or the spec's file stem) must be one path "
                            "segment, not empty (no '/', not '.' or '..')")
        experiment = cls(Path(storage or DEFAULT_STORAGE) / name)
        for path in (experiment.path.parent, experiment.path):
            if path.exists() and not path.is_dir():
                raise UserError(f"{path} exists and is not a directory: choose another --storage or --name")
        return experiment

    def result_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def grid_path(self, cell_id: str) -> Path:
        return self.grids_dir / f"{cell_id}.png"

    def model_path(self, cell_id: str) -> Path:
        return self.models_dir / f"{cell_id}.pt"

    def examples_path(self, cell_id: str) -> Path:
        """Each example's R and D per split (rdsweep/uncertainty.py): what `compare` pairs two cells on."""
        return self.examples_dir / f"{cell_id}.npz"

    def checkpoint_path(self, cell_id: str) -> Path:
        return self.checkpoints_dir / f"{cell_id}.pt"

    def cell_lock_path(self, cell_id: str) -> Path:
        """Held by the trial training the cell (rdsweep/sweep.py), so two never train one cell at once."""
        return self.path / "locks" / f"{cell_id}.lock"

    def progress_path(self, cell_id: str) -> Path:
        return self.progress_dir / f"{cell_id}.json"

    def launch_log_path(self, launch: str) -> Path:
        return self.path / f"{launch}.log"

    def progress(self) -> dict[str, dict]:
        """The progress record of every cell that has started a trial, by cell id."""
        return {path.stem: read_progress(path) for path in sorted(self.progress_dir.glob("*.json"))}

    def write_progress(self, record: dict) -> None:
        write_json_atomic(self.progress_path(record["cell_id"]), record)

    def last_launch(self) -> dict | None:
        """The latest launch's record (launch.json), or None before any launch recorded one."""
        return read_launch(self.launch_path) if self.launch_path.exists() else None

    def record_launch(self, record: dict) -> None:
        write_json_atomic(self.launch_path, record)

    def results(self) -> list[dict]:
        """Every cell result on disk, ordered by file name (cell id), so readers are deterministic."""
        return [read_result(path) for path in sorted(self.cells_dir.glob("*.json"))]

    def status(self, cell_id: str) -> str | None:
        result = self.result(cell_id)
        return None if result is None else result.get("status")

    def result(self, cell_id: str) -> dict | None:
        path = self.result_path(cell_id)
        return read_result(path) if path.exists() else None

    def write_result(self, result: dict) -> None:
        write_json_atomic(self.result_path(result["cell_id"]), validated_result(result))

    def check_protocol(self, protocol: dict) -> None:
        """Refuse to mix budgets in one experiment: its points would not be comparable."""
        if not self.meta_path.exists():
            return
        recorded = read_record(self.meta_path)["protocol"]
        if recorded != protocol:
            changed = sorted(_diff(recorded, protocol))
            raise UserError(
                f"experiment {self.path} was run with a different {', '.join(changed)} "
                f"({_show(recorded, changed)}; the spec now says {_show(protocol, changed)}): "
                f"give this spec a new experiment name with --name NEW (nothing was changed)")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One launch at a time per experiment, or two would train the same cells. The lock is the kernel's
        (flock, through filelock): it dies with its process, so a killed launch leaves no stale lock behind.
        A second launch is a UserError naming the first."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create experiment directory {self.path}: {e.strerror} "
                            "(choose another --storage)") from None
        lock = FileLock(self.lock_path, blocking=False, fallback_to_soft=False)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(f"experiment {self.path} is being launched by {self._holder()}: wait for it to end "
                            "(`rdsweep status`) or stop it first") from None
        except OSError as e:  # a filesystem without flock: say so, and go on unguarded
            print(f"rdsweep: warning: cannot lock {self.lock_path} ({e.strerror}); do not launch this "
                  "experiment twice at once", file=sys.stderr)
            lock = None
        try:
            if lock is not None:
                write_json_atomic(self.holder_path, {"pid": os.getpid(), "host": socket.gethostname(),
                                                     "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                     "command": " ".join(sys.argv)})
            yield
        finally:
            if lock is not None:
                self.holder_path.unlink(missing_ok=True)
                lock.release()

    def _holder(self) -> str:
        try:
            holder = json.loads(self.holder_path.read_text())
            return f"pid {holder['pid']} on {holder['host']} since {holder['since']} ({holder['command']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def record_protocol(self, protocol: dict, version: str) -> None:
        if not self.meta_path.exists():
            write_json_atomic(self.meta_path, {"protocol": protocol, "rdsweep_version": version})


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    action: str     # "skip" (finished), "run" (new or failed before), "resume" (from a checkpoint),
                    # "continue" (unconverged, and the budget now allows more epochs)
    status: str | None   # what the ledger says now


def plan(experiment: Experiment, cells: list[Cell]) -> list[PlannedCell]:
    """What launching these cells in this experiment would do, cell by cell."""
    planned = []
    for cell in cells:
        result = experiment.result(cell.cell_id)
        status = None if result is None else result["status"]
        checkpoint = experiment.checkpoint_path(cell.cell_id).exists()
        if is_final(result, cell):
            action = "skip"
        elif status == "unconverged":  # the cap was raised
            action = "continue" if checkpoint else "run"
        elif checkpoint:
            action = "resume"
        else:
            action = "run"
        planned.append(PlannedCell(cell, action, status))
    return planned


def is_final(result: dict | None, cell: Cell) -> bool:
    """Whether a ledger result ends this cell for good: converged or diverged, or unconverged under a cap
    this cell does not raise. The plan skips such a cell, and a trial that finds one does not train."""
    if result is None:
        return False
    return result["status"] in FINISHED or (result["status"] == "unconverged" and cell.epochs <= result["cell"]["epochs"])


def write_json_atomic(path: Path, obj) -> None:
    """Readers (collect, a relaunch, another node) see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, prefix + key + ".")
        elif va != vb:
            out.append(prefix + key)
    return out


def _show(protocol: dict, keys: list[str]) -> str:
    def get(key):
        value = protocol
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    return ", ".join(f"{k}={get(k)!r}" for k in keys)
