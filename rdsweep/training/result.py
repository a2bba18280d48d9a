"""A trial's outcome, typed (CellResult): what the trainer returns, the ledger keeps as cells/<cell_id>.json
(rdsweep/sweep/schema.py) and launch, status, collect and curves read. One is made only by validation
(`cell_result`, or reading the file), so neither a trial nor a bug can hand on one that the readers reject.
Unknown keys are kept, so a newer rdsweep's extra fields pass through; in a result's cell too.

A result is checked for what no trial can produce: a cell_id that is not its cell's hash (a hand edit, or two
results' cells swapped), and a rate (or, on discrete data, a distortion) below 0 by more than estimation noise
(`below_zero`). The frontier table's readers apply the same bounds (rdsweep/analysis/frontier.py, table_fault).
"""
from __future__ import annotations

import math
from dataclasses import fields
from typing import Annotated, Literal, Optional

from typing_extensions import NotRequired, TypedDict   # pydantic reads TypedDicts from here before 3.12

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator, with_config

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

Count = Field(default=None, ge=0, le=MAX_COUNT)
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Time = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]   # seconds since the epoch
Finite = Annotated[float, Field(allow_inf_nan=False)]
CellId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


def _valid_cell(cell: dict) -> dict:
    """A cell as its trial saw it, canonicalised (Cell.validated is the one judge of a cell's values). Fields
    this rdsweep does not know (a newer one's) are kept as they are, and ignored."""
    try:
        known = Cell.from_dict({k: v for k, v in cell.items() if k in CELL_FIELDS}).to_dict()
    except (UserError, TypeError) as e:
        raise ValueError(str(e)) from None
    return {**known, **{k: v for k, v in cell.items() if k not in CELL_FIELDS}}


CellFields = Annotated[dict, AfterValidator(_valid_cell)]


class Record(BaseModel):
    """Every ledger file: exact types, and unknown keys kept (a newer rdsweep's fields pass through)."""
    model_config = ConfigDict(strict=True, extra="allow")


class SplitMetrics(Record):
    """R, D, ELBO (and IWAE) of one split in nats per example; null or non-finite when the model diverged."""
    rate: Optional[float]
    distortion: Optional[float]
    elbo: Optional[float]
    iwae: Optional[float] = None
    mutual_info: Optional[float] = None         # what the latent is worth (rdsweep/training/latent.py)
    active_units: Optional[int] = Count
    probe_accuracy: Optional[float] = Field(default=None, ge=0, le=1)
    # standard errors of the split means over examples and z-draws (rdsweep/uncertainty.py); none before 0.5
    rate_se: Optional[float] = Field(default=None, ge=0)
    distortion_se: Optional[float] = Field(default=None, ge=0)
    elbo_se: Optional[float] = Field(default=None, ge=0)
    examples_n: Optional[int] = Count          # examples the means are over
    latent_examples: Optional[int] = Count     # examples mutual_info and probe_accuracy are over


@with_config(ConfigDict(strict=True, extra="allow"))
class EpochRecord(TypedDict):
    """One epoch of the history, kept a plain dict, as the trainer and its checkpoints keep it (stopping.replay
    reads it): training means, and the valid objective, R, D when it was evaluated. A dict, not a model: a
    history holds hundreds of them, and collect reads thousands of histories."""
    epoch: Annotated[int, Field(ge=1, le=MAX_COUNT)]
    wall_s: Seconds                            # what status and the launch summary add up
    loss: NotRequired[Optional[float]]
    rate: NotRequired[Optional[float]]
    distortion: NotRequired[Optional[float]]
    lr: NotRequired[Optional[Finite]]
    valid_objective: NotRequired[Optional[float]]
    valid_rate: NotRequired[Optional[float]]
    valid_distortion: NotRequired[Optional[float]]


class Truth(Record):
    """What the dataset knows exactly: toy's entropy and I(x; z*), lingauss's closed-form optimum."""
    entropy: Optional[Finite] = None
    mutual_information: Optional[Finite] = None
    rate: Optional[Finite] = None
    distortion: Optional[Finite] = None
    elbo: Optional[Finite] = None


class CellResult(Record):
    """One cell's outcome: its cell, how training ended, R, D, ELBO per split (SplitMetrics), the history, and
    where it ran. A failed one (written by the driver for a trial out of retries) has only its error."""
    cell: CellFields
    cell_id: CellId
    status: Literal["converged", "unconverged", "diverged", "failed"]
    rdsweep_version: str
    experiment: Optional[str] = None
    epochs: Optional[int] = Count              # epochs completed
    stop_reason: Optional[str] = None
    best_epoch: Optional[int] = Count
    best_valid_objective: Optional[float] = None
    wall_s: Optional[float] = Field(default=None, ge=0)
    device: Optional[str] = None
    node: Optional[str] = None                  # Ray's id of the node whose worker wrote it; none before 0.6
    gpu_ids: list[str] = []                     # the accelerator ids Ray assigned the trial (empty: none)
    kernels: Optional[dict[str, str]] = None    # torch build and CPU kernels (devices.kernels); none before 0.4.1
    compiled: bool = False                      # torch.compile (resources.compile); none before 0.4
    splits: Optional[dict[Literal["train", "valid", "test"], SplitMetrics]] = None
    truth: Truth = Truth()
    history: list[EpochRecord] = []
    launch: Optional[str] = None                # the launch whose trial wrote it (ray/<launch>/)
    resumed_from_epoch: Optional[int] = Count
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


class InvalidResult(ValueError):
    """Values that no trial can produce (a bug, or numbers gone wrong): refused, never written."""


def cell_result(values: dict) -> CellResult:
    """A trial's outcome from its fields' values, checked; InvalidResult says the first fault."""
    try:
        return CellResult.model_validate(values)
    except ValidationError as e:
        raise InvalidResult(f"not a valid trial result: {first_error(e)}") from None


def first_error(e: ValidationError) -> str:
    error = e.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{one_line(message)}{more}"

