"""An experiment directory: rdsweep's own ledger of which cells finished, independent of Ray's state.

    STORAGE/NAME/
        experiment.json           the protocol (dataset, size, budget, evaluation) every cell shares
        cells/<cell_id>.json      a cell's result, written atomically: converged | unconverged | diverged | failed
        checkpoints/<cell_id>.pt  the latest epoch of an interrupted or unconverged cell (removed once
                                  it converges or diverges)
        grids/<cell_id>.png       data / reconstruction / sample grids ([evaluation] images = true)
        ray/launch-<time>/        Ray Tune's own state, one folder per launch
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
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rdsweep.cells import Cell
from rdsweep.errors import UserError

FINISHED = ("converged", "diverged")      # nothing more to do, whatever the budget
RESULT_STATUSES = ("converged", "unconverged", "diverged")  # a trial that ended with a result
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

    @classmethod
    def at(cls, storage: str | Path | None, name: str) -> "Experiment":
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise UserError(f"experiment name {name!r} must be one path segment (no '/')")
        experiment = cls(Path(storage or DEFAULT_STORAGE) / name)
        for path in (experiment.path.parent, experiment.path):
            if path.exists() and not path.is_dir():
                raise UserError(f"{path} exists and is not a directory: choose another --storage or --name")
        return experiment

    def result_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def grid_path(self, cell_id: str) -> Path:
        return self.grids_dir / f"{cell_id}.png"

    def checkpoint_path(self, cell_id: str) -> Path:
        return self.checkpoints_dir / f"{cell_id}.pt"

    def results(self) -> list[dict]:
        """Every cell result on disk, ordered by file name (cell id), so readers are deterministic."""
        return [_read_json(path) for path in sorted(self.cells_dir.glob("*.json"))]

    def status(self, cell_id: str) -> str | None:
        result = self.result(cell_id)
        return None if result is None else result.get("status")

    def result(self, cell_id: str) -> dict | None:
        path = self.result_path(cell_id)
        return _read_json(path) if path.exists() else None

    def write_result(self, result: dict) -> None:
        write_json_atomic(self.result_path(result["cell_id"]), result)

    def check_protocol(self, protocol: dict) -> None:
        """Refuse to mix budgets in one experiment: its points would not be comparable."""
        if not self.meta_path.exists():
            return
        recorded = _read_json(self.meta_path, "experiment record").get("protocol") or {}
        if recorded != protocol:
            changed = sorted(_diff(recorded, protocol))
            raise UserError(
                f"experiment {self.path} was run with a different {', '.join(changed)} "
                f"({_show(recorded, changed)}; the spec now says {_show(protocol, changed)}): "
                f"give this spec a new experiment name with --name NEW (nothing was changed)")

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
        status = None if result is None else result.get("status")
        checkpoint = experiment.checkpoint_path(cell.cell_id).exists()
        if status in FINISHED:
            action = "skip"
        elif status == "unconverged":
            ran = (result.get("cell") or {}).get("epochs")
            more = isinstance(ran, int) and cell.epochs > ran
            action = ("continue" if checkpoint else "run") if more else "skip"
        elif checkpoint:
            action = "resume"
        else:
            action = "run"
        planned.append(PlannedCell(cell, action, status))
    return planned


def _read_json(path: Path, what: str = "trial result") -> dict:
    """A ledger file; a damaged one (a crash mid-copy, a hand edit) is the user's to fix: say which."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {what} {path}: {' '.join(str(e).split())[:200]} "
                        "(move the file away to rerun)") from None
    if not isinstance(obj, dict):
        raise UserError(f"cannot read {what} {path}: not a JSON object (move the file away to rerun)")
    return obj


def write_json_atomic(path: Path, obj) -> None:
    """Readers (collect, a relaunch, another node) see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
