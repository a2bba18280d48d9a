"""The files of an experiment's ledger, as pydantic models: what launch writes is what collect reads.

    cells/<cell_id>.json   CellResult (rdsweep/training/result.py): a trial's outcome (written by the trial,
                           or by the driver for a trial that failed), read by launch's plan, collect, curves
                           and status
    experiment.json        ExperimentRecord: the protocol every cell of the experiment shares
    progress/<cell_id>.json  ProgressRecord: a trial's heartbeat, read by the live view and status
    launch.json            LaunchRecord: the latest launch's plan and trial slots, read by status

All are checked when read, and results also when made (a bug cannot leave one the readers reject); a file
that does not fit (a crash mid-copy, a hand edit, another program's file) is one UserError naming that
file, never a traceback further on. Unknown keys are kept, so a newer rdsweep's extra fields pass through;
in a result's cell too (read_result warns once that they are ignored).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, Field, ValidationError, model_validator

from rdsweep.cells import MAX_COUNT
from rdsweep.errors import UserError, one_line
from rdsweep.training.result import (CELL_FIELDS, CellFields, CellId, CellResult, Count, Record, Seconds, Time,
                                     first_error)


class ProgressRecord(Record):
    cell_id: CellId
    cell: CellFields
    host: Optional[str] = None
    started_at: Time
    updated_at: Time
    finished_at: Optional[Time] = None
    stopped_at: Optional[Time] = None   # the trial raised (failed, or Ray stopped it) before its result
    first_step_at: Optional[Time] = None
    resumed_from_epoch: Optional[int] = Count
    epoch: Optional[int] = Count
    step: Optional[int] = Count
    steps: Optional[int] = Field(default=None, ge=1, le=MAX_COUNT)
    valid_objective: Optional[float] = None
    best_epoch: Optional[int] = Count
    epoch_wall_s: list[Seconds] = []

    @model_validator(mode="after")
    def _steps_of_an_epoch(self) -> "ProgressRecord":
        if self.step and self.steps is None:
            raise ValueError("a step needs the epoch's number of steps")
        return self


class LaunchedCell(Record):
    cell_id: CellId
    action: Literal["run", "resume", "continue", "skip"]
    cell: CellFields


class LaunchRecord(Record):
    name: str
    started_at: Time
    slots: int = Field(ge=1, le=MAX_COUNT)
    resources: dict = {}
    cells: list[LaunchedCell]


class ExperimentRecord(Record):
    protocol: dict
    rdsweep_version: str


def read_result(path: Path) -> CellResult:
    """A cell result from the ledger; its cell_id must be its file name (launch finds results by it)."""
    result = _validated(path, CellResult, "trial result")
    if result.cell_id != path.stem:
        raise UserError(f"cannot read trial result {path}: it holds cell {result.cell_id}, not {path.stem} "
                        "(move the file away to rerun)")
    unknown = {k: v for k, v in result.cell.items() if k not in CELL_FIELDS}
    unchecked = any(v is not None for v in unknown.values())
    if unknown and (frozenset(unknown), unchecked) not in _WARNED:
        _WARNED.add((frozenset(unknown), unchecked))
        names = one_line(", ".join(repr(k) for k in sorted(unknown)))
        print(f"rdsweep: warning: cell field(s) {names} of trial result {path} (and of any others) are unknown to "
              f"this rdsweep (written by a newer one?): ignored"
              + ("; set, they enter a newer rdsweep's cell id, so its id is not checked" if unchecked else ""),
              file=sys.stderr)
    return result


_WARNED: set[tuple] = set()   # (unknown cell fields, id unchecked) warned about, once each per process


def read_record(path: Path) -> dict:
    return _read(path, ExperimentRecord, "experiment record")


def read_progress(path: Path) -> dict:
    return _read(path, ProgressRecord, "progress record")


def read_launch(path: Path) -> dict:
    return _read(path, LaunchRecord, "launch record")


def _read(path: Path, model: type[BaseModel], what: str) -> dict:
    return _validated(path, model, what).model_dump()


def _validated(path: Path, model: type[BaseModel], what: str) -> BaseModel:
    try:
        raw = path.read_bytes()
        try:
            return model.model_validate_json(raw)   # pydantic's own parser: no dicts built twice
        except ValidationError as e:
            if e.errors()[0]["type"] != "json_invalid":
                raise
            # Python's json writes what pydantic's parser refuses: a lone surrogate escape, which is how a
            # path with a non-UTF-8 byte (an experiment's name) reaches the JSON. Python's json reads it back.
            return model.model_validate(json.loads(raw))
    except (OSError, ValueError, RecursionError) as e:  # ValidationError and JSONDecodeError are ValueErrors
        reason = first_error(e) if isinstance(e, ValidationError) else one_line(e)
        raise UserError(f"cannot read {what} {path}: {reason} (move the file away to rerun)") from None
