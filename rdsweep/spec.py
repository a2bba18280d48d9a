"""Sweep specs: a TOML file that names the axes of a study, expanded into validated cells (DESIGN §5).

A spec is data, in the manner of disentanglement_lib's study files:

    dataset = "toy"
    families = ["toy"]          # names, paper codes or import paths, or "all" (every built-in family for the dataset)
    seeds = [0, 1]
    size = "small"
    [budget]      epochs (a cap), batch_size, lr, schedule, eval_every, patience, min_delta (nats),
                  min_delta_relative (neither: 1e-4 relative), lr_reductions, lr_divisor (the stopping
                  rule: rdsweep/training/stopping.py)
    [evaluation]  eval_samples, iwae_k, images (grids per image cell: EXPERIMENT/grids/<cell_id>.png),
                  keep_model (the evaluated weights: EXPERIMENT/models/<cell_id>.pt)
    encoder_std = "learned" | "shared" | 0.5 (or a list: an axis; default: each family's own)
    [[objective]] kind = "beta" | "target-rate" | "squared-target-rate" | "free-bits" | "warmup" | "two-stage"
                  (or a plugin's objective, or an import path "package.module:OBJECTIVE"),
                  values = [...]  (β, or σ for the target rates, or λ for free-bits),
                  beta = [...] (free-bits only, default 1), warmup_epochs = [...] (warmup only, required),
                  families = [...] (optional: only these of the spec's families)   (blocks are chained)
    [resources]   cpus_per_trial, gpus_per_trial ("auto" or a number), max_failures, max_concurrent, cells_per_wave,
                  checkpoint_s (a trial saves its state at most this often, and at its end)

Cells = families × encoder_std × (chained objective settings) × seeds. Everything is checked up front, unknown keys
included, and every mistake is one SpecError naming the file and the key.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Annotated, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from rdsweep.cells import MAX_COUNT, Cell, tolerance
from rdsweep.data.datasets import DatasetEntry, parse_dataset
from rdsweep.errors import SpecError, UserError
from rdsweep.models.families import FAMILIES, get_family
from rdsweep.training.objectives import get_objective


# The file's structure and types (pydantic); what the values mean (datasets, families, the cells' own
# checks) is judged after it, in _parse.
def _one_or_many(value):
    return [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value


Names = Annotated[list[str], BeforeValidator(_one_or_many), Field(min_length=1)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BudgetTable(_Table):          # unset keys take the Cell defaults; Cell.validated judges the values
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    schedule: Optional[str] = None
    eval_every: Optional[int] = None
    patience: Optional[int] = None
    min_delta: Optional[float] = None
    min_delta_relative: Optional[float] = None   # neither: cells.tolerance's relative default
    lr_reductions: Optional[int] = None
    lr_divisor: Optional[float] = None


class EvaluationTable(_Table):
    eval_samples: Optional[int] = None
    iwae_k: Optional[int] = None
    images: Optional[bool] = None
    keep_model: Optional[bool] = None


def _numbers(value):
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class ObjectiveBlock(_Table):
    kind: str                   # an objective's name or import path (rdsweep/training/objectives.py)
    values: list[float] = Field(min_length=1)
    families: Names = ["all"]   # a block may name its own: a subset of the spec's families
    beta: Annotated[Optional[list[float]], BeforeValidator(_numbers)] = None             # free-bits
    warmup_epochs: Annotated[Optional[list[int]], BeforeValidator(_numbers)] = None      # warmup

    @field_validator("kind")
    @classmethod
    def _known(cls, kind: str) -> str:
        try:
            get_objective(kind)
        except UserError as e:
            raise ValueError(str(e)) from None
        return kind

    @model_validator(mode="after")
    def _values_in_range(self) -> "ObjectiveBlock":
        entry = get_objective(self.kind)
        positive = entry.values_field == "beta"   # a β; λ and σ may be 0
        for v in self.values:
            if not math.isfinite(v) or v < 0 or (v == 0 and positive):
                raise ValueError(f"{self.kind} values must be finite numbers {'> 0' if positive else '≥ 0'}, got {v!r}")
        beta_separate = entry.knob == "beta" and entry.values_field != "beta"
        if self.beta is not None and not beta_separate:
            raise ValueError(f"beta is a parameter of free-bits blocks only (a {self.kind} block's β are its values)")
        if (self.warmup_epochs is not None) != (entry.extra == "warmup_epochs"):
            raise ValueError("a warmup block needs warmup_epochs (the ramp's length), and only it takes one")
        for name in ("beta", "warmup_epochs"):
            if getattr(self, name) == []:
                raise ValueError(f"{name} needs at least one value")
        return self

    def settings(self) -> list[dict]:
        """The block's objective settings: the Cell fields each of its values sets."""
        entry = get_objective(self.kind)
        base = {"objective": self.kind, "beta": None}
        if entry.knob == "beta" and entry.values_field != "beta":        # free-bits: λ values, β from `beta`
            return [{**base, "beta": b, entry.values_field: v} for b in self.beta or [1.0] for v in self.values]
        if self.warmup_epochs is not None:
            return [{**base, "beta": v, "warmup_epochs": w} for w in self.warmup_epochs for v in self.values]
        return [{**base, entry.knob: v} for v in self.values]


class ResourcesTable(_Table):
    cpus_per_trial: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    gpus_per_trial: Optional[float] = None   # "auto" in the file: 1 when the Ray cluster has GPUs, else 0
    max_failures: int = Field(default=2, ge=-1, le=MAX_COUNT)
    max_concurrent: Optional[int] = Field(default=None, ge=1, le=MAX_COUNT)
    checkpoint_s: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    compile: bool = False
    cells_per_wave: int = Field(default=500, ge=1, le=MAX_COUNT)

    @field_validator("gpus_per_trial", mode="before")
    @classmethod
    def _auto_or_fraction(cls, value):
        if value == "auto" or value is None:
            return None
        # A trial trains one model on one device: more than one GPU per trial would sit idle.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"must be \"auto\", 0, 1 or a fraction in (0, 1) to pack trials per GPU, got {value!r}")
        return float(value)


class SpecFile(_Table):
    dataset: str
    families: Names = ["all"]
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**32)]], BeforeValidator(_one_or_many),
                     Field(min_length=1)] = [0]
    size: str = "small"
    encoder_std: Annotated[list[str | float], BeforeValidator(lambda v: v if isinstance(v, list) else [v]),
                           Field(min_length=1)] = [None]
    budget: BudgetTable = BudgetTable()
    evaluation: EvaluationTable = EvaluationTable()
    objective: list[ObjectiveBlock] = Field(min_length=1)
    resources: ResourcesTable = ResourcesTable()


_TABLES = {"budget": BudgetTable, "evaluation": EvaluationTable, "objective": ObjectiveBlock,
           "resources": ResourcesTable}


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None   # None: "auto", i.e. 1 when the Ray cluster has GPUs, else 0
    max_failures: int = 2                 # retries per trial, each from its last checkpoint
    max_concurrent: int | None = None     # None: as many as the resources allow
    checkpoint_s: float = 60.0            # a trial saves its state at most this often (and at its end)
    compile: bool = False                 # torch.compile each trial's model (docs/benchmarks.md: when it pays)
    cells_per_wave: int = 500             # trials per Tune run: the driver's memory grows with them (benchmarks.md)


@dataclass(frozen=True)
class Spec:
    path: Path
    dataset: str
    data_kind: str
    families: tuple[str, ...]             # readable names
    objectives: tuple[tuple[tuple[dict, ...], tuple[str, ...]], ...]  # (settings, families) per block, chained
    seeds: tuple[int, ...]
    base: Cell                            # dataset, size, budget and evaluation shared by every cell
    resources: Resources
    encoder_stds: tuple = (None,)         # None: each family's own
    @property
    def protocol(self) -> dict:
        """What must stay fixed within one experiment for its points to be comparable. The epoch budget is a
        cap that may be raised (unconverged cells then continue), unless the schedule is 'paper', whose
        learning rate depends on it. Keeping the weights changes no number, so it may differ between launches."""
        b = self.base
        # min_delta_relative only when used: specs that give min_delta alone keep their experiments' protocol
        budget = {key: getattr(b, key) for key in sorted(BudgetTable.model_fields) if getattr(b, key) is not None}
        if b.schedule != "paper":
            del budget["epochs"]
        return {"dataset": b.dataset, "size": b.size, "budget": budget,
                "evaluation": {"eval_samples": b.eval_samples, "iwae_k": b.iwae_k, "images": b.images}}

    def cells(self) -> list[Cell]:
        return list(self._cells)

    @cached_property   # a spec is frozen: expanded and validated once (load_spec does it, then launch uses them)
    def _cells(self) -> tuple[Cell, ...]:
        cells = []
        for family in self.families:
            for encoder_std in self.encoder_stds:
                for settings, families in self.objectives:
                    if family not in families:
                        continue
                    for setting in settings:
                        for seed in self.seeds:
                            cells.append(replace(self.base, family=family, encoder_std=encoder_std, seed=seed,
                                                 **setting))
        unique = list({c.cell_id: c for c in cells}.values())  # a value listed twice is one cell
        return tuple(self._validated(c) for c in unique)

    def _validated(self, cell: Cell) -> Cell:
        try:
            return cell.validated()
        except UserError as e:
            raise SpecError(f"{self.path}: {e}") from None


def load_spec(path: str | Path, overrides: dict | None = None) -> Spec:
    """Read, override and validate a spec. `overrides` maps dotted keys ("budget.epochs", "seeds") to values
    given on the command line; they replace the file's values before validation."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"spec file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read spec file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid TOML: nested too deeply") from None
    for dotted, value in (overrides or {}).items():
        *tables, key = dotted.split(".")
        target = raw
        for table in tables:
            target = target.setdefault(table, {})
        if isinstance(target, dict):  # else the file's table is not a table, which _parse reports
            target[key] = value
    return _parse(path, raw)


def _parse(path: Path, raw: dict) -> Spec:
    def fail(key: str, message: str):
        raise SpecError(f"{path}: {key}: {message}")

    try:
        file = SpecFile.model_validate(raw)
    except ValidationError as e:
        raise SpecError(f"{path}: {_first_error(e)}") from None
    dataset, data = _dataset(file.dataset, lambda m: fail("dataset", m))
    data_kind = data.kind
    families = _families(file.families, data, dataset, lambda m: fail("families", m))
    budget = file.budget.model_dump(exclude_none=True)
    budget.update(tolerance(budget.pop("min_delta", None), budget.pop("min_delta_relative", None)))
    base = Cell(dataset=dataset, size=file.size, **budget, **file.evaluation.model_dump(exclude_none=True))
    try:
        base = base.validated()
    except UserError as e:  # its message names the field: size, epochs, lr, iwae_k...
        raise SpecError(f"{path}: {e}") from None
    if base.images and data_kind != "image":
        fail("evaluation.images", f"image grids need image data; {dataset!r} is {data_kind} data")

    objectives = []
    for i, block in enumerate(file.objective):
        # A block's own families narrow the spec's, so overriding --families still narrows every block.
        only = families if block.families == ["all"] else _families(block.families, data, dataset,
                                                                      lambda m: fail(f"objective[{i}].families", m))
        objectives.append((tuple(block.settings()), tuple(f for f in families if f in only)))

    r = file.resources
    spec = Spec(path=path, dataset=dataset, data_kind=data_kind, families=families,
                objectives=tuple(objectives), seeds=tuple(dict.fromkeys(file.seeds)), base=base,
                resources=Resources(r.cpus_per_trial, r.gpus_per_trial, r.max_failures, r.max_concurrent,
                                   r.checkpoint_s, r.compile, r.cells_per_wave), encoder_stds=tuple(dict.fromkeys(file.encoder_std)))
    if not spec.cells():  # validates every cell now, so a bad grid fails before anything starts
        blocks = "; ".join(f"objective[{i}].families = {', '.join(b.families)}" for i, b in enumerate(file.objective))
        fail("objective", f"the grid is empty: no [[objective]] block is for any of the spec's families "
                          f"({', '.join(families)}): {blocks}")
    return spec


def _first_error(e: ValidationError) -> str:
    """The first of pydantic's errors as one line: where in the file (objective[0].values), and what."""
    error = e.errors(include_url=False)[0]
    loc = error["loc"]
    where = _where(loc)
    if error["type"] == "extra_forbidden":
        table = _TABLES.get(loc[0], SpecFile) if len(loc) > 1 else SpecFile
        key = str(loc[-1]) if str(loc[-1]).isprintable() and str(loc[-1]).strip() else repr(loc[-1])
        where = f"{_where(loc[:-1])}.{key}".lstrip(".")
        return f"unknown key {where}; allowed here: {', '.join(table.model_fields)}"
    if loc == ("objective",):
        return "objective: no [[objective]] block: add e.g. [[objective]] kind = \"beta\" values = [0.1, 1, 10]"
    if error["type"] == "missing":
        return f"{where}: missing" + (' (e.g. dataset = "mnist5k")' if loc == ("dataset",) else "")
    message = " ".join(error["msg"].removeprefix("Value error, ").split())
    got = "" if "got " in message else f", got {error['input']!r}"[:80]
    return f"{where}: {message}{got}"


def _where(loc: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _dataset(name: str, fail) -> tuple[str, DatasetEntry]:
    """The dataset name (directory datasets made absolute, so every Ray worker reads the same files) and its
    entry. Only names and directories are checked here; launch loads the data before starting any trial."""
    try:
        entry, root = parse_dataset(name)
    except UserError as e:
        fail(str(e))
    if root is None:
        return name, entry
    if not root.resolve().is_dir():
        fail(f"directory {root.resolve()} does not exist")
    return f"{entry.name}:{root.resolve()}", entry


def _families(value: list[str], data: DatasetEntry, dataset: str, fail) -> tuple[str, ...]:
    if value == ["all"]:   # the built-ins: a plugin's family joins a study only where it is named
        found = tuple(f.name for f in FAMILIES.builtins() if f.mismatch(dataset, data.kind, data.shape) is None)
        if not found:
            fail(f"no built-in family models dataset {dataset!r} ({data.kind} data"
                 + (f", examples of shape {'×'.join(map(str, data.shape))}" if data.shape else "")
                 + "): name its families (rdsweep families lists the installed ones)")
        return found
    names = []
    for item in value:
        try:
            family = get_family(item)
        except UserError as e:
            fail(str(e))
        if (why := family.mismatch(dataset, data.kind, data.shape)) is not None:
            fail(why)
        if family.name not in names:
            names.append(family.name)
    return tuple(names)


def cli_overrides(**options) -> dict:
    """Command-line options (strings as typed, None when not given) as `load_spec` overrides."""
    where = {**{key: f"budget.{key}" for key in BudgetTable.model_fields}, "cpus_per_trial": "resources.cpus_per_trial",
             "gpus_per_trial": "resources.gpus_per_trial", "max_failures": "resources.max_failures",
             "max_concurrent": "resources.max_concurrent", "cells_per_wave": "resources.cells_per_wave"}
    overrides = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "families" and value != "all":
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif key == "seeds":
            try:
                value = [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise SpecError(f"--seeds must be comma-separated integers, got {value!r}") from None
        elif key == "gpus_per_trial" and value != "auto":
            try:
                value = float(value)
            except ValueError:
                raise SpecError(f"--gpus-per-trial must be 'auto' or a number, got {value!r}") from None
        overrides[where.get(key, key)] = value
    tolerances = ("budget.min_delta", "budget.min_delta_relative")
    if any(key in overrides for key in tolerances):   # a tolerance on the command line replaces the file's
        overrides.update({key: overrides.get(key) for key in tolerances})
    return overrides
