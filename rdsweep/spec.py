"""Sweep specs: a TOML file that names the axes of a study, expanded into validated cells (DESIGN §5).

A spec is data, in the manner of disentanglement_lib's study files:

    dataset = "toy"
    families = ["toy"]          # names or paper codes, or "all" (every family for the dataset's kind)
    seeds = [0, 1]
    size = "small"
    [budget]      epochs (a cap), batch_size, lr, schedule, eval_every, patience, min_delta,
                  lr_reductions, lr_divisor (the stopping rule: rdsweep/stopping.py)
    [evaluation]  eval_samples, iwae_k, images (grids per image cell: EXPERIMENT/grids/<cell_id>.png)
    [[objective]] kind = "beta" | "target-rate", values = [...], families = [...] (optional: only
                  these of the spec's families)   (blocks are chained)
    [resources]   cpus_per_trial, gpus_per_trial ("auto" or a number), max_failures, max_concurrent

Cells = families × (chained objective values) × seeds. Everything is checked up front, unknown keys
included, and every mistake is one SpecError naming the file and the key.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from rdsweep.cells import Cell
from rdsweep.errors import SpecError, UserError
from rdsweep.models.families import FAMILIES, get_family

_TOP_KEYS = {"dataset", "families", "seeds", "size", "budget", "evaluation", "objective", "resources"}
_BUDGET_KEYS = {"epochs", "batch_size", "lr", "schedule", "eval_every", "patience", "min_delta",
                "lr_reductions", "lr_divisor"}
_EVALUATION_KEYS = {"eval_samples", "iwae_k", "images"}
_OBJECTIVE_KEYS = {"kind", "values", "families"}
_RESOURCE_KEYS = {"cpus_per_trial", "gpus_per_trial", "max_failures", "max_concurrent"}
_NAMED_DATASETS = {"mnist5k": "image", "toy": "toy", "lingauss": "lingauss"}
_DIR_DATASETS = ("amat", "idx")  # "amat:DIR", "idx:DIR": binarized images read from a directory


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None   # None: "auto", i.e. 1 when the Ray cluster has GPUs, else 0
    max_failures: int = 2                 # retries per trial, each from its last checkpoint
    max_concurrent: int | None = None     # None: as many as the resources allow


@dataclass(frozen=True)
class Spec:
    path: Path
    dataset: str
    data_kind: str
    families: tuple[str, ...]             # readable names
    objectives: tuple[tuple[str, tuple[float, ...], tuple[str, ...]], ...]   # (kind, values, families), chained
    seeds: tuple[int, ...]
    base: Cell                            # dataset, size, budget and evaluation shared by every cell
    resources: Resources

    @property
    def protocol(self) -> dict:
        """What must stay fixed within one experiment for its points to be comparable. The epoch budget is a
        cap that may be raised (unconverged cells then continue), unless the schedule is 'paper', whose
        learning rate depends on it."""
        b = self.base
        budget = {key: getattr(b, key) for key in sorted(_BUDGET_KEYS)}
        if b.schedule != "paper":
            del budget["epochs"]
        return {"dataset": b.dataset, "size": b.size, "budget": budget,
                "evaluation": {"eval_samples": b.eval_samples, "iwae_k": b.iwae_k, "images": b.images}}

    def cells(self) -> list[Cell]:
        cells = []
        for family in self.families:
            for kind, values, families in self.objectives:
                if family not in families:
                    continue
                for value in values:
                    for seed in self.seeds:
                        cells.append(replace(self.base, family=family, objective=kind, seed=seed,
                                             beta=value if kind == "beta" else None,
                                             target_rate=value if kind == "target-rate" else None))
        unique = list({c.cell_id: c for c in cells}.values())  # a value listed twice is one cell
        return [self._validated(c) for c in unique]

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
    for dotted, value in (overrides or {}).items():
        *tables, key = dotted.split(".")
        target = raw
        for table in tables:
            target = target.setdefault(table, {})
        target[key] = value
    return _parse(path, raw)


def _parse(path: Path, raw: dict) -> Spec:
    def fail(key: str, message: str):
        raise SpecError(f"{path}: {key}: {message}")

    _check_keys(path, "", raw, _TOP_KEYS)
    if "dataset" not in raw:
        fail("dataset", "missing (e.g. dataset = \"mnist5k\")")
    dataset, data_kind = _dataset(raw["dataset"], lambda m: fail("dataset", m))
    families = _families(raw.get("families", "all"), data_kind, dataset, lambda m: fail("families", m))
    seeds = _int_list(raw.get("seeds", [0]), lambda m: fail("seeds", m))

    budget = _table(path, raw, "budget", _BUDGET_KEYS)
    evaluation = _table(path, raw, "evaluation", _EVALUATION_KEYS)
    base = Cell(dataset=dataset, size=raw.get("size", "small"), **budget, **evaluation)
    try:
        base = base.validated()
    except UserError as e:  # its message names the field: size, epochs, lr, iwae_k...
        raise SpecError(f"{path}: {e}") from None

    if base.images and data_kind != "image":
        fail("evaluation.images", f"image grids need image data; {dataset!r} is {data_kind} data")

    blocks = raw.get("objective")
    if not isinstance(blocks, list) or not blocks:
        fail("objective", "no [[objective]] block: add e.g. [[objective]] kind = \"beta\" values = [0.1, 1, 10]")
    objectives = []
    for i, block in enumerate(blocks):
        key = f"objective[{i}]"
        if not isinstance(block, dict):
            fail(key, "must be a table ([[objective]])")
        _check_keys(path, key + ".", block, _OBJECTIVE_KEYS)
        if block.get("kind") not in ("beta", "target-rate"):
            fail(key + ".kind", f"must be \"beta\" or \"target-rate\", got {block.get('kind')!r}")
        values = block.get("values")
        if not isinstance(values, list) or not values:
            fail(key + ".values", "must be a non-empty list of numbers (an empty grid trains nothing)")
        for v in values:
            bad = not _is_number(v) or not math.isfinite(v) or v < 0 or (v == 0 and block["kind"] == "beta")
            if bad:
                bound = "> 0" if block["kind"] == "beta" else "≥ 0"
                fail(key + ".values", f"{block['kind']} values must be finite numbers {bound}, got {v!r}")
        # A block may name its own families (e.g. target rates for the PixelCNN decoders only): a subset
        # of the spec's families, so overriding --families still narrows every block.
        only = _families(block.get("families", "all"), data_kind, dataset, lambda m: fail(key + ".families", m))
        objectives.append((block["kind"], tuple(float(v) for v in values),
                           tuple(f for f in families if f in only)))

    spec = Spec(path=path, dataset=dataset, data_kind=data_kind, families=families,
                objectives=tuple(objectives), seeds=seeds, base=base,
                resources=_resources(path, raw))
    spec.cells()  # validates every cell now, so a bad grid fails before anything starts
    return spec


def _dataset(name, fail) -> tuple[str, str]:
    """The dataset name (directory datasets made absolute, so every Ray worker reads the same files) and its
    kind. Only names and directories are checked here; launch loads the data before starting any trial."""
    if not isinstance(name, str):
        fail(f"must be a string, got {name!r}")
    if name in _NAMED_DATASETS:
        return name, _NAMED_DATASETS[name]
    prefix, colon, directory = name.partition(":")
    if colon and prefix in _DIR_DATASETS and directory.strip():
        root = Path(directory).expanduser().resolve()
        if not root.is_dir():
            fail(f"directory {root} does not exist")
        return f"{prefix}:{root}", "image"
    fail(f"unknown dataset {name!r}: use {', '.join(_NAMED_DATASETS)}, amat:DIR or idx:DIR")


def _families(value, data_kind: str, dataset: str, fail) -> tuple[str, ...]:
    if value == "all":
        return tuple(f.name for f in FAMILIES.values() if f.data_kind == data_kind)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        fail("must be \"all\" or a non-empty list of family names or paper codes")
    names = []
    for item in value:
        try:
            family = get_family(item if isinstance(item, str) else repr(item))
        except UserError as e:
            fail(str(e))
        if family.data_kind != data_kind:
            fail(f"family {family.name!r} models {family.data_kind} data, but dataset {dataset!r} is {data_kind} data")
        if family.name not in names:
            names.append(family.name)
    return tuple(names)


def _resources(path: Path, raw: dict) -> Resources:
    table = _table(path, raw, "resources", _RESOURCE_KEYS)

    def fail(key, message):
        raise SpecError(f"{path}: resources.{key}: {message}")

    cpus = table.get("cpus_per_trial", 1)
    if not _is_number(cpus) or cpus <= 0:
        fail("cpus_per_trial", f"must be a number > 0, got {cpus!r}")
    gpus = table.get("gpus_per_trial", "auto")
    if gpus != "auto" and (not _is_number(gpus) or gpus < 0 or gpus > 1):
        # A trial trains one model on one device: more than one GPU per trial would sit idle.
        fail("gpus_per_trial", f"must be \"auto\", 0, 1 or a fraction in (0, 1) to pack trials per GPU, got {gpus!r}")
    failures = table.get("max_failures", 2)
    if not isinstance(failures, int) or isinstance(failures, bool) or failures < -1:
        fail("max_failures", f"must be an integer ≥ 0 (or -1: retry forever), got {failures!r}")
    concurrent = table.get("max_concurrent")
    if concurrent is not None and (not isinstance(concurrent, int) or isinstance(concurrent, bool) or concurrent < 1):
        fail("max_concurrent", f"must be a positive integer, got {concurrent!r}")
    return Resources(float(cpus), None if gpus == "auto" else float(gpus), failures, concurrent)


def _table(path: Path, raw: dict, name: str, allowed: set) -> dict:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise SpecError(f"{path}: {name}: must be a table ([{name}])")
    _check_keys(path, name + ".", table, allowed)
    return table


def _check_keys(path: Path, prefix: str, table: dict, allowed: set) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(f"{path}: unknown key {prefix}{unknown[0]}; allowed here: {', '.join(sorted(allowed))}")


def _int_list(value, fail) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        fail("must be a non-empty list of integers")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool):
            fail(f"must be integers, got {v!r}")
    return tuple(dict.fromkeys(value))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def cli_overrides(**options) -> dict:
    """Command-line options (strings as typed, None when not given) as `load_spec` overrides."""
    where = {**{key: f"budget.{key}" for key in _BUDGET_KEYS}, "cpus_per_trial": "resources.cpus_per_trial",
             "gpus_per_trial": "resources.gpus_per_trial", "max_failures": "resources.max_failures",
             "max_concurrent": "resources.max_concurrent"}
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
    return overrides
