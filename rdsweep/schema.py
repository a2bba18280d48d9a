"""The files of an experiment's ledger, as pydantic models: what launch writes is what collect reads.

    cells/<cell_id>.json   CellResult: a trial's outcome (written by the trial, or by the driver for a
                           trial that failed), read by launch's plan, collect, curves and status
    experiment.json        ExperimentRecord: the protocol every cell of the experiment shares
    progress/<cell_id>.json  ProgressRecord: a trial's heartbeat, read by the live view and status
    launch.json            LaunchRecord: the latest launch's plan and trial slots, read by status

All are checked when read, and results also when written (a bug cannot leave one the readers reject); a file
that does not fit (a crash mid-copy, a hand edit, another program's file) is one UserError naming that
file, never a traceback further on. Unknown keys are kept, so a newer rdsweep's extra fields pass through.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rdsweep.cells import MAX_COUNT, SPLITS, Cell
from rdsweep.errors import UserError

RESULT_STATUSES = ("converged", "unconverged", "diverged")  # a trial that ended with a result

_Count = Field(default=None, ge=0, le=MAX_COUNT)
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Time = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]   # seconds since the epoch
_Finite = Annotated[float, Field(allow_inf_nan=False)]
_CellId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


def _valid_cell(cell: dict) -> dict:
    """A cell as its trial saw it, canonicalised (Cell.validated is the one judge of a cell's values)."""
    try:
        return Cell.from_dict(cell).to_dict()
    except (UserError, TypeError) as e:
        raise ValueError(str(e)) from None


_Cell = Annotated[dict, AfterValidator(_valid_cell)]


class _Record(BaseModel):
    """Every ledger file: exact types, and unknown keys kept (a newer rdsweep's fields pass through)."""
    model_config = ConfigDict(strict=True, extra="allow")


class SplitMetrics(_Record):
    """R, D, ELBO (and IWAE) of one split in nats per example; null or non-finite when the model diverged."""
    rate: Optional[float]
    distortion: Optional[float]
    elbo: Optional[float]
    iwae: Optional[float] = None
    mutual_info: Optional[float] = None         # what the latent is worth (rdsweep/latent.py)
    active_units: Optional[int] = _Count
    probe_accuracy: Optional[float] = Field(default=None, ge=0, le=1)
    # standard errors of the split means over examples and z-draws (rdsweep/uncertainty.py); none before 0.5
    rate_se: Optional[float] = Field(default=None, ge=0)
    distortion_se: Optional[float] = Field(default=None, ge=0)
    elbo_se: Optional[float] = Field(default=None, ge=0)
    examples_n: Optional[int] = _Count          # examples the means are over
    latent_examples: Optional[int] = _Count     # examples mutual_info and probe_accuracy are over


class Epoch(_Record):
    """One epoch of the history: training means, and the valid objective, R, D when it was evaluated."""
    epoch: int = Field(ge=1, le=MAX_COUNT)
    wall_s: _Seconds                            # what status and the launch summary add up
    loss: Optional[float] = None
    rate: Optional[float] = None
    distortion: Optional[float] = None
    lr: Optional[_Finite] = None
    valid_objective: Optional[float] = None
    valid_rate: Optional[float] = None
    valid_distortion: Optional[float] = None


class Truth(_Record):
    """What the dataset knows exactly: toy's entropy and I(x; z*), lingauss's closed-form optimum."""
    entropy: Optional[_Finite] = None
    mutual_information: Optional[_Finite] = None
    rate: Optional[_Finite] = None
    distortion: Optional[_Finite] = None
    elbo: Optional[_Finite] = None


class CellResult(_Record):
    cell: _Cell
    cell_id: _CellId
    status: Literal["converged", "unconverged", "diverged", "failed"]
    rdsweep_version: str
    experiment: Optional[str] = None
    epochs: Optional[int] = _Count              # epochs completed
    stop_reason: Optional[str] = None
    best_epoch: Optional[int] = _Count
    best_valid_objective: Optional[float] = None
    wall_s: Optional[float] = Field(default=None, ge=0)
    device: Optional[str] = None
    kernels: Optional[dict[str, str]] = None    # torch build and CPU kernels (devices.kernels); none before 0.4.1
    compiled: bool = False                      # torch.compile (resources.compile); none before 0.4
    splits: Optional[dict[Literal["train", "valid", "test"], SplitMetrics]] = None
    truth: Truth = Truth()
    history: list[Epoch] = []
    launch: Optional[str] = None                # the launch whose trial wrote it (ray/<launch>/)
    resumed_from_epoch: Optional[int] = _Count
    error: Optional[str] = None                 # failed only
    warnings: list[str] = []                    # e.g. a checkpoint that could not be loaded and was moved aside

    @model_validator(mode="after")
    def _complete_for_its_status(self) -> "CellResult":
        if self.status == "failed":
            if not self.error:
                raise ValueError("a failed result needs its error")
            return self
        if self.epochs is None or self.splits is None or set(self.splits) != set(SPLITS):
            raise ValueError(f"a {self.status} result needs epochs and the splits {', '.join(SPLITS)}")
        if self.status != "diverged":
            for split, m in self.splits.items():
                if not all(isinstance(v, float) and math.isfinite(v) for v in (m.rate, m.distortion)):
                    raise ValueError(f"a {self.status} result needs finite rate and distortion ({split})")
        return self


class ProgressRecord(_Record):
    cell_id: _CellId
    cell: _Cell
    host: Optional[str] = None
    started_at: _Time
    updated_at: _Time
    finished_at: Optional[_Time] = None
    first_step_at: Optional[_Time] = None
    resumed_from_epoch: Optional[int] = _Count
    epoch: Optional[int] = _Count
    step: Optional[int] = _Count
    steps: Optional[int] = Field(default=None, ge=1, le=MAX_COUNT)
    valid_objective: Optional[float] = None
    best_epoch: Optional[int] = _Count
    epoch_wall_s: list[_Seconds] = []

    @model_validator(mode="after")
    def _steps_of_an_epoch(self) -> "ProgressRecord":
        if self.step and self.steps is None:
            raise ValueError("a step needs the epoch's number of steps")
        return self


class LaunchedCell(_Record):
    cell_id: _CellId
    action: Literal["run", "resume", "continue", "skip"]
    cell: _Cell


class LaunchRecord(_Record):
    name: str
    started_at: _Time
    slots: int = Field(ge=1, le=MAX_COUNT)
    resources: dict = {}
    cells: list[LaunchedCell]


class ExperimentRecord(_Record):
    protocol: dict
    rdsweep_version: str


def validated_result(result: dict) -> dict:
    """A result about to be written, checked (and canonicalised) by the schema the readers use."""
    try:
        return CellResult.model_validate(result).model_dump()
    except ValidationError as e:
        raise ValueError(f"refusing to write an invalid trial result: {_first_error(e)}") from None


def read_result(path: Path) -> dict:
    """A cell result from the ledger; its cell_id must be its file name (launch finds results by it)."""
    result = _read(path, CellResult, "trial result")
    if result["cell_id"] != path.stem:
        raise UserError(f"cannot read trial result {path}: it holds cell {result['cell_id']}, not {path.stem} "
                        "(move the file away to rerun)")
    return result


def read_record(path: Path) -> dict:
    return _read(path, ExperimentRecord, "experiment record")


def read_progress(path: Path) -> dict:
    return _read(path, ProgressRecord, "progress record")


def read_launch(path: Path) -> dict:
    return _read(path, LaunchRecord, "launch record")


def _read(path: Path, model: type[BaseModel], what: str) -> dict:
    try:
        return model.model_validate(json.loads(path.read_text())).model_dump()
    except (OSError, ValueError, RecursionError) as e:  # ValidationError and JSONDecodeError are ValueErrors
        reason = _first_error(e) if isinstance(e, ValidationError) else " ".join(str(e).split())[:200]
        raise UserError(f"cannot read {what} {path}: {reason} (move the file away to rerun)") from None


def _first_error(e: ValidationError) -> str:
    error = e.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{' '.join(message.split())[:200]}{more}"
