"""A cell: one point of a sweep grid, i.e. everything that decides what one trial trains.

Its `cell_id` is a stable hash of exactly the fields that change the trained model's trajectory (dataset,
family, objective, beta or target rate, seed, size, optimiser and stopping rule), so relaunching a spec
recognises the cells that already finished, and adding β values or seeds adds only new ids.

`epochs` is a cap, not part of the trajectory, unless the learning-rate schedule depends on it ('paper'
decays to 0 at the last epoch): raising the cap continues an unconverged cell instead of starting a new one.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property

from rdsweep.data.datasets import parse_dataset
from rdsweep.errors import UserError
from rdsweep.models.families import ENCODER_STD, get_family
from rdsweep.registry import pins
from rdsweep.training.objectives import OBJECTIVES, get_objective
from rdsweep.training.stopping import DEFAULT_RELATIVE_DELTA

SPLITS = ("train", "valid", "test")   # every trial is evaluated on all three
ENCODER_STDS = ("learned", "shared")  # or a fixed number: the posterior's std (BILBO)
SIZES = ("small", "paper")
SCHEDULES = ("constant", "paper", "plateau")
# Evaluation settings: recorded with the cell, but they do not change the trained model, so not in the id.
EVAL_FIELDS = ("eval_samples", "iwae_k", "images", "keep_model")
PLATEAU_FIELDS = ("lr_reductions", "lr_divisor")  # only the plateau schedule reads them
MAX_COUNT = 2**31 - 1  # counts beyond it are typos, and would overflow the table's and torch's integers


@dataclass(frozen=True)
class Cell:
    dataset: str = "mnist5k"
    family: str = "gauss-deconv-normal"   # readable name (paper codes are canonicalised on validation)
    objective: str = "beta"               # an entry of rdsweep.training.objectives.OBJECTIVES
    beta: float | None = 1.0              # set iff the objective's knob is β
    target_rate: float | None = None      # σ in nats, set iff the objective is a target rate
    seed: int = 0
    size: str = "small"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 3e-4
    schedule: str = "plateau"             # "plateau": divide by lr_divisor on each plateau of the valid objective;
                                          # "paper": constant for the first half, then linear decay to 0
    eval_every: int = 1                   # epochs between evaluations of the valid objective
    patience: int = 5                     # evaluations without an improvement > min_delta that make a plateau
    min_delta: float = 0.05               # nats; the default cell ids were written with: specs and `rdsweep
                                          # train` default to min_delta_relative instead (`tolerance` below)
    lr_reductions: int = 2                # plateau schedule: rate reductions before a plateau stops the trial
    lr_divisor: float = 10.0              # plateau schedule: what each reduction divides the rate by
    eval_samples: int = 1                 # z-samples per example in the final R, D, ELBO
    iwae_k: int = 0                       # importance samples for the IWAE bound (0: not computed)
    images: bool = False                  # write data / reconstruction / sample grids (image data only)
    keep_model: bool = False              # save the evaluated (best-valid) weights (checkpoints.load_model)
    # Fields added after 0.2 default to None ("not used"), which keeps every earlier cell's id.
    free_bits: float | None = None        # λ, nats per latent: free-bits only
    warmup_epochs: int | None = None      # W, epochs of the β ramp: warmup only
    encoder_std: str | float | None = None  # the posterior's std: None the family's own; "learned" (a function
                                          # of x), "shared" (one learnt value per latent), or a fixed number
    min_delta_relative: float | None = None  # an improvement must also exceed this fraction of the valid
                                          # objective's size (at least 1 nat): rdsweep/training/stopping.py
    plugins: str | None = None            # the plugins the cell's family, dataset and objective come from,
                                          # "package==version,..." (registry.pins): None for built-ins

    @cached_property   # a cell is frozen: hashed once (a spec of 10^5 cells asks for each id several times)
    def cell_id(self) -> str:
        ignored = set(EVAL_FIELDS)
        if self.schedule != "paper":
            ignored.add("epochs")
        if self.schedule != "plateau":
            ignored.update(PLATEAU_FIELDS)
        # None means "not used by this cell"; fields added later default to None, so old ids stay valid.
        # Every field is a plain value, so getattr gives what asdict's deep copy would, at a tenth of its cost.
        identity = {f.name: v for f in fields(self)
                    if f.name not in ignored and (v := getattr(self, f.name)) is not None}
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown cell field(s): {', '.join(sorted(unknown))}")
        return cls(**d).validated()

    def installed_plugins(self) -> str | None:
        """registry.pins of the family, dataset and objective as installed here (the cell's own may differ)."""
        return pins(parse_dataset(self.dataset)[0], get_family(self.family), get_objective(self.objective))

    def validated(self) -> "Cell":
        """The same cell with its family canonicalised; a UserError for any value that cannot train."""
        data, _ = parse_dataset(self.dataset)
        family = get_family(self.family)
        objective = get_objective(self.objective)
        if objective.knob == "beta":
            _positive("beta", self.beta)
            if self.target_rate is not None:
                raise UserError(f"target_rate is not a parameter of objective {self.objective!r}")
        else:
            _positive("target rate", self.target_rate, allow_zero=True)
            if self.beta is not None:
                raise UserError(f"beta is not a parameter of objective {self.objective!r}")
        if objective.stages == 2 and (family.data_kind == "image" or not family.source.builtin):
            raise UserError(f"two-stage needs a low-dimensional latent (the toy, linear or curve family): "
                            f"importance sampling from the marginal does not reach {family.name!r}'s latent")
        for extra, owner in _EXTRAS.items():
            if (objective.extra == extra) != (getattr(self, extra) is not None):
                raise UserError(f"{extra}{_SYMBOLS.get(extra, '')} is the parameter of objective {owner!r}, and only of it")
        if self.free_bits is not None:
            _positive("free_bits", self.free_bits, allow_zero=True)
        if self.encoder_std is not None:
            if not family.source.builtin:
                raise UserError(f"encoder_std: family {family.name!r} ({family.source}) sets its own posterior std")
            if isinstance(self.encoder_std, str):
                if self.encoder_std not in ENCODER_STDS:
                    raise UserError(f"encoder_std must be {' or '.join(ENCODER_STDS)} or a number > 0, "
                                    f"got {self.encoder_std!r}")
            else:
                _positive("encoder_std", self.encoder_std)
            if family.encoder == "iaf" and self.encoder_std != ENCODER_STD["iaf"]:
                raise UserError(f"encoder_std {self.encoder_std!r} needs a Gaussian encoder; "
                                f"{family.name!r} has an IAF encoder")
        # What it was planned with is kept (a table read where a plugin was since upgraded still reads); the
        # trainer refuses to train a cell whose plugins are not the installed ones.
        plugins = self.plugins if self.plugins is not None else pins(data, family, objective)
        if self.size not in SIZES:
            raise UserError(f"unknown size {self.size!r}: use one of {', '.join(SIZES)}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "eval_samples", "eval_every", "patience"):
            if not _is_int(getattr(self, name)) or not 1 <= getattr(self, name) <= MAX_COUNT:
                raise UserError(f"{name} must be a positive integer (at most {MAX_COUNT}), got {getattr(self, name)!r}")
        for name in ("iwae_k", "lr_reductions"):
            if not _is_int(getattr(self, name)) or not 0 <= getattr(self, name) <= MAX_COUNT:
                raise UserError(f"{name} must be a non-negative integer (at most {MAX_COUNT}), got {getattr(self, name)!r}")
        if self.warmup_epochs is not None:
            if not _is_int(self.warmup_epochs) or not 1 <= self.warmup_epochs <= MAX_COUNT:
                raise UserError(f"warmup_epochs must be a positive integer, got {self.warmup_epochs!r}")
            if self.epochs // self.eval_every * self.eval_every <= self.warmup_epochs:
                raise UserError(f"warmup_epochs ({self.warmup_epochs}) leaves no evaluation of the valid objective "
                                f"within epochs ({self.epochs}): the stopping rule waits for the ramp to end")
        for name in ("images", "keep_model"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.eval_every > self.epochs:
            raise UserError(f"eval_every ({self.eval_every}) must not exceed epochs ({self.epochs}): "
                            "a trial is judged on its valid objective at least once")
        _positive("min_delta", self.min_delta, allow_zero=True)
        if self.min_delta_relative is not None:
            _positive("min_delta_relative", self.min_delta_relative)
            if self.min_delta_relative >= 1:
                raise UserError(f"min_delta_relative is a fraction of the objective, < 1 (e.g. 1e-4), "
                                f"got {self.min_delta_relative!r}")
        _positive("lr_divisor", self.lr_divisor)
        if self.lr_divisor <= 1:
            raise UserError(f"lr_divisor must be > 1 (it divides the rate on a plateau), got {self.lr_divisor!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise UserError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        _positive("lr", self.lr)
        canonical = dict(family=family.name,
                         beta=None if self.beta is None else float(self.beta),
                         target_rate=None if self.target_rate is None else float(self.target_rate),
                         lr=float(self.lr), min_delta=float(self.min_delta), lr_divisor=float(self.lr_divisor),
                         free_bits=None if self.free_bits is None else float(self.free_bits),
                         min_delta_relative=None if self.min_delta_relative is None else float(self.min_delta_relative),
                         encoder_std=_encoder_std(self.encoder_std, family), plugins=plugins)
        # Already canonical (types too: 1 and 1.0 hash differently): the cell itself, its id kept if hashed.
        if all(type(v) is type(old := getattr(self, k)) and v == old for k, v in canonical.items()):
            return self
        return replace(self, **canonical)


def tolerance(min_delta: float | None = None, min_delta_relative: float | None = None) -> dict:
    """The stopping rule's tolerance as Cell fields, from a spec's budget or a command's options (None: not
    given). What is given is kept, so a spec or command that gives min_delta alone names the same cells as
    before min_delta_relative existed; when neither is given, the relative default, which scales with the data."""
    if min_delta is None and min_delta_relative is None:
        min_delta_relative = DEFAULT_RELATIVE_DELTA
    return {"min_delta": 0.0 if min_delta is None else min_delta, "min_delta_relative": min_delta_relative}


def knob(objective: str, beta: float | None, target_rate: float | None,
         free_bits: float | None = None, warmup_epochs: int | None = None) -> str:
    """The objective's setting as people write it: β=0.3, σ=5, σ=5 sq, λ=0.5 (β=1 omitted), β=1 W=10,
    β=1 2-stage, and a plugin objective's name after its β or σ (β=1 my-objective)."""
    if free_bits is not None:
        return f"λ={free_bits:g}" + ("" if beta == 1 else f" β={beta:g}")
    setting = f"σ={target_rate:g}" if beta is None else f"β={beta:g}"
    if warmup_epochs:
        setting += f" W={warmup_epochs}"
    entry = OBJECTIVES[objective] if objective in OBJECTIVES else None
    tag = objective if entry is None else entry.setting_tag
    return f"{setting} {tag}" if tag else setting


def cell_knob(cell: dict) -> str:
    """knob() of a cell's dict (a result's `cell`)."""
    return knob(cell.get("objective"), cell.get("beta"), cell.get("target_rate"), cell.get("free_bits"),
                cell.get("warmup_epochs"))


def encoder_std_label(value, family: str) -> str | None:
    """How a cell's encoder sets its posterior std, spelled out: learned, shared or the fixed number; None for a
    plugin's family, which sets its own."""
    family = get_family(family)
    if not family.source.builtin:
        return None
    value = ENCODER_STD[family.encoder] if value is None else value
    return value if isinstance(value, str) else f"{value:g}"


def _encoder_std(value, family) -> str | float | None:
    """None for the encoder's own way (so writing it out names the same cell), else the value."""
    if value is None or value == ENCODER_STD.get(family.encoder) and family.source.builtin:
        return None
    return value if isinstance(value, str) else float(value)


# The built-in objectives' second parameters: the Cell field, and the objective it belongs to
_EXTRAS = {e.extra: e.name for e in OBJECTIVES.builtins() if e.extra}
_SYMBOLS = {"free_bits": " (λ)"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(name: str, value, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise UserError(f"{name} must be a finite number {bound}, got {value!r}")
