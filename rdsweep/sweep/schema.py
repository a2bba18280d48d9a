"""The files of an experiment's ledger, as pydantic models: what launch writes is what collect reads.

    cells/<cell_id>.json   CellResult: a trial's outcome (written by the trial, or by the driver for a
                           trial that failed), read by launch's plan, collect, curves and status
    experiment.json        ExperimentRecord: the protocol every cell of the experiment shares
    progress/<cell_id>.json  ProgressRecord: a trial's heartbeat, read by the live view and status
    launch.json            LaunchRecord: the latest launch's plan and trial slots, read by status

All are checked when read, and results also when written (a bug cannot leave one the readers reject); a file
that does not fit (a crash mid-copy, a hand edit, another program's file) is one UserError naming that
file, never a traceback further on. Unknown keys are kept, so a newer rdsweep's extra fields pass through;
in a result's cell too (read_result warns once that they are ignored).

A result is also checked for what no trial can produce: a cell_id that is not its cell's hash (a hand edit, or
two results' cells swapped), and a rate (or, on discrete data, a distortion) below 0 by more than estimation
noise (`below_zero`). The frontier table's readers apply the same bounds (rdsweep/analysis/frontier.py, table_fault).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rdsweep.cells import MAX_COUNT, SPLITS, Cell, cell_knob
from rdsweep.errors import UserError, one_line
from rdsweep.models.families import get_family

RESULT_STATUSES = ("converged", "unconverged", "diverged")  # a trial that ended with a result
CELL_FIELDS = frozenset(f.name for f in fields(Cell))
# R is a KL and D, on discrete data (binary images, the toy's bins), −log of a probability: both ≥ 0. Their
# estimates can dip below 0 by noise: the rate of an IAF encoder or a learned marginal (VampPrior, MAF, the toy's
# mixture) is a Monte Carlo estimate, log e(z|x) − log m(z) at a drawn z (rdsweep/models/vae.py), whose mean for
# a collapsed model sits at 0 ± its standard error (the toy study has R = −0.00006); float rounding does the
# rest. So a value counts as ≥ 0 down to −max(NEGATIVE_TOLERANCE, SE_TOLERANCE standard errors of the mean).
NEGATIVE_TOLERANCE = 0.01   # nats
SE_TOLERANCE = 4.0
DISCRETE_DATA = ("image", "toy")   # the data kinds (Family.data_kind) whose D is −log of a probability


def below_zero(value: float, se: float | None = None) -> bool:
    """Whether an estimate of a quantity ≥ 0 (R; D on discrete data) is below 0 by more than its noise."""
    noise = SE_TOLERANCE * se if isinstance(se, (int, float)) and math.isfinite(se) else 0.0
    return value < -max(NEGATIVE_TOLERANCE, noise)

_Count = Field(default=None, ge=0, le=MAX_COUNT)
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Time = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]   # seconds since the epoch
_Finite = Annotated[float, Field(allow_inf_nan=False)]
_CellId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


def _valid_cell(cell: dict) -> dict:
    """A cell as its trial saw it, canonicalised (Cell.validated is the one judge of a cell's values). Fields
    this rdsweep does not know (a newer one's) are kept as they are, and ignored."""
    try:
        known = Cell.from_dict({k: v for k, v in cell.items() if k in CELL_FIELDS}).to_dict()
    except (UserError, TypeError) as e:
        raise ValueError(str(e)) from None
    return {**known, **{k: v for k, v in cell.items() if k not in CELL_FIELDS}}


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
    mutual_info: Optional[float] = None         # what the latent is worth (rdsweep/training/latent.py)
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
    node: Optional[str] = None                  # Ray's id of the node whose worker wrote it; none before 0.6
    gpu_ids: list[str] = []                     # the accelerator ids Ray assigned the trial (empty: none)
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
    def _its_own_cell(self) -> "CellResult":
        """The cell_id is the hash of the cell (Cell.cell_id), so a result's cell cannot have been edited or
        swapped with another's. A newer rdsweep's cell field hashes only where it is set (None: not used, as
        every field added after 0.2), so the check is skipped, not failed, where an unknown field is set."""
        unknown = {k: v for k, v in self.cell.items() if k not in CELL_FIELDS}
        if any(v is not None for v in unknown.values()):
            return self
        own = Cell(**{k: v for k, v in self.cell.items() if k in CELL_FIELDS}).cell_id
        if own != self.cell_id:
            raise ValueError(f"cell_id {self.cell_id} is not the id of the cell it holds ({self.cell['family']} "
                             f"{cell_knob(self.cell)} seed {self.cell['seed']}: {own}): its cell was edited, or "
                             "swapped with another result's")
        return self

    @model_validator(mode="after")
    def _complete_for_its_status(self) -> "CellResult":
        if self.status == "failed":
            if not self.error:
                raise ValueError("a failed result needs its error")
            return self
        if self.epochs is None or self.splits is None or set(self.splits) != set(SPLITS):
            raise ValueError(f"a {self.status} result needs epochs and the splits {', '.join(SPLITS)}")
        if self.status != "diverged":
            discrete = get_family(self.cell["family"]).data_kind in DISCRETE_DATA
            for split, m in self.splits.items():
                if not all(isinstance(v, float) and math.isfinite(v) for v in (m.rate, m.distortion)):
                    raise ValueError(f"a {self.status} result needs finite rate and distortion ({split})")
                if below_zero(m.rate, m.rate_se):
                    raise ValueError(f"rate {m.rate!r} ({split}) is below 0 by more than estimation noise: "
                                     "R is a KL, ≥ 0")
                if discrete and below_zero(m.distortion, m.distortion_se):
                    raise ValueError(f"distortion {m.distortion!r} ({split}) is below 0 by more than estimation "
                                     "noise: on discrete data D is −log of a probability, ≥ 0")
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
    unknown = {k: v for k, v in result["cell"].items() if k not in CELL_FIELDS}
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
    try:
        return model.model_validate(json.loads(path.read_text())).model_dump()
    except (OSError, ValueError, RecursionError) as e:  # ValidationError and JSONDecodeError are ValueErrors
        reason = _first_error(e) if isinstance(e, ValidationError) else one_line(e)
        raise UserError(f"cannot read {what} {path}: {reason} (move the file away to rerun)") from None


def _first_error(e: ValidationError) -> str:
    error = e.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{one_line(message)}{more}"
