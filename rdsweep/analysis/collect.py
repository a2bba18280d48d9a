"""Experiment directories → the frontier table (DESIGN §6): one Parquet row per cell × split.

Reads only the ledger on disk (`cells/<cell_id>.json`, see rdsweep/sweep/ledger.py), never Ray's objects, so it
works after the cluster is gone and on several experiments at once. The columns and their Arrow types are
fixed by SCHEMA; rows are sorted, and the file is replaced atomically, so collecting twice gives the same
bytes. ELBO is recomputed here as −(rate + distortion) from the stored floats, so it holds exactly.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rdsweep.cells import SPLITS, encoder_std_label
from rdsweep.data.datasets import SPLIT_SIZES
from rdsweep.errors import UserError
from rdsweep.files import atomic_write
from rdsweep.models.families import FAMILIES, get_family
from rdsweep.sweep.ledger import Experiment
from rdsweep.training.stopping import blowups, evaluated_epochs
from rdsweep.training.result import CellResult, SplitMetrics
from rdsweep.uncertainty import LATENT_EXAMPLES, at_ceiling, binomial_se

TABLE_NAME = "frontier.parquet"

SCHEMA = pa.schema([
    ("cell_id", pa.string()),
    ("experiment", pa.string()),
    ("dataset", pa.string()),
    ("family", pa.string()),
    ("paper_code", pa.string()),          # null for the synthetic-data models (toy, linear)
    ("encoder", pa.string()),
    ("decoder", pa.string()),
    ("marginal", pa.string()),
    ("objective", pa.string()),           # beta | target-rate | squared-target-rate | free-bits | warmup | two-stage
                                          # | a plugin's
    ("beta", pa.float64()),               # β of beta, free-bits, warmup, two-stage; null for target rates
    ("target_rate", pa.float64()),        # σ of the target-rate objectives, else null
    ("free_bits", pa.float64()),          # λ of free-bits (nats), else null
    ("warmup_epochs", pa.int64()),        # W of warmup, else null
    ("encoder_std", pa.string()),         # the posterior's std: learned (a function of x), shared (one learnt
                                          # value per latent), or a fixed number; null for older tables
    ("seed", pa.int64()),
    ("size", pa.string()),
    ("split", pa.string()),               # train | valid | test
    ("rate", pa.float64()),               # nats per example, of the best-valid state; null unless
                                          # converged or unconverged
    ("distortion", pa.float64()),
    ("elbo", pa.float64()),               # −(rate + distortion)
    ("rate_se", pa.float64()),            # standard errors of the split means over examples and z-draws
    ("distortion_se", pa.float64()),      # (rdsweep/uncertainty.py); null before 0.5
    ("elbo_se", pa.float64()),
    ("examples_n", pa.int64()),           # examples the split means are over (null before 0.5)
    ("iwae", pa.float64()),               # null unless the cell asked for iwae_k > 0
    ("mutual_info", pa.float64()),        # I(x; z) estimated with the aggregate posterior of the split's
                                          # examples (at most log N nats); null when not computable
    ("mutual_info_at_ceiling", pa.bool_()),  # mutual_info within 0.05 nats of log N: only a lower bound
    ("marginal_kl", pa.float64()),        # rate − mutual_info: how far the aggregate posterior is from m(z)
    ("active_units", pa.int64()),         # latents u with Var_x E[z_u | x] > 0.01
    ("probe_accuracy", pa.float64()),     # a linear classifier on draws z ~ e(z|x) (fit on train), scored
                                          # on this split; null for data without labels and before 0.4
    ("probe_accuracy_se", pa.float64()),  # its binomial standard error over latent_examples
    ("latent_examples", pa.int64()),      # N: the split's examples mutual_info and probe_accuracy are over
    ("true_entropy", pa.float64()),       # exact H(x) where the dataset knows it (toy), else null
    ("epochs", pa.int64()),               # epochs completed
    ("max_epochs", pa.int64()),           # the cap it ran under
    ("best_epoch", pa.int64()),           # the epoch of the best valid objective: the reported state
    ("best_valid_objective", pa.float64()),  # the cell's own objective on valid at best_epoch (fixed noise)
    ("stop_reason", pa.string()),         # plateau | max epochs | blow-up | non-finite loss | ... | error
    ("blowups", pa.int64()),              # evaluations whose valid objective blew up (rdsweep/training/stopping.py),
                                          # recovered from or not; null when none was evaluated
    ("batch_size", pa.int64()),
    ("lr", pa.float64()),
    ("schedule", pa.string()),
    ("eval_every", pa.int64()),
    ("patience", pa.int64()),
    ("min_delta", pa.float64()),
    ("min_delta_relative", pa.float64()),  # the relative tolerance (a fraction of the valid objective), or null
    ("lr_reductions", pa.int64()),        # plateau schedule only, else null
    ("lr_divisor", pa.float64()),         # plateau schedule only, else null
    ("eval_samples", pa.int64()),
    ("iwae_k", pa.int64()),
    ("status", pa.string()),              # converged | unconverged | diverged | failed
    ("error", pa.string()),               # last line of a failed trial's error
    ("wall_s", pa.float64()),
    ("grid", pa.string()),                # the cell's image grid, relative to the table's folder, or null
    ("examples_file", pa.string()),       # its per-example R and D (rdsweep compare), relative as grid; null
                                          # before 0.5
    ("device", pa.string()),
    ("node", pa.string()),                # Ray's id of the node that trained it (its last run); null before 0.6
    ("gpu_ids", pa.string()),             # the accelerator ids Ray assigned it, comma-separated; "" none
    ("rdsweep_version", pa.string()),
    ("plugins", pa.string()),             # the plugins its family, dataset, objective come from; null: built-ins
], metadata={"rdsweep": "frontier table"})  # how collect knows a file it may replace
_FAMILY_ORDER = {name: i for i, name in enumerate(FAMILIES)}


def collect(experiment_dirs: list[str | Path], out: str | Path | None = None) -> tuple[Path, pa.Table]:
    """Gather the experiments' cell results into one table and write it to `out` (default: the single
    experiment's frontier.parquet). Every check happens before anything is written."""
    if not experiment_dirs:
        raise UserError("collect needs at least one experiment directory")
    experiments = [Experiment(d) for d in experiment_dirs]
    names = [e.name for e in experiments]
    for experiment in experiments:
        if not experiment.path.is_dir():
            raise UserError(f"experiment directory {experiment.path} does not exist")
        experiment.check_layout(reads=("cells",))   # cells/ a file or a link that loops: one line, exit 2
    if len(set(names)) < len(names):
        raise UserError(f"two experiments share the name {_first_duplicate(names)!r}; "
                        "rows are labelled by experiment name, so merge experiments with distinct names")
    if out is None:
        if len(experiments) > 1:
            raise UserError("collecting several experiments needs --out PATH for the merged table")
        out = experiments[0].path / TABLE_NAME
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: directory {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"cannot write {out}: directory {out.parent} is not writable")

    _refuse_to_overwrite(out, experiments)

    rows = []
    for experiment in experiments:
        found = len(rows)
        for result in experiment.each_result():  # each checked against the result schema (training/result.py)
            cell_id = result.cell_id
            rows += result_rows(result, experiment.name, _relative(experiment.grid_path(cell_id), out),
                                _relative(experiment.examples_path(cell_id), out))
        if len(rows) == found:
            raise UserError(f"no trial results in {experiment.cells_dir} (run `rdsweep launch` first)")
    rows.sort(key=_row_order)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    _refuse_what_readers_refuse(table, experiments)
    with atomic_write(out) as tmp, open(tmp, "wb") as file:   # Python opens any path; pyarrow needs UTF-8
        pq.write_table(table, file)
    return out, table


def _refuse_what_readers_refuse(table: pa.Table, experiments: list[Experiment]) -> None:
    """The rules of what a table must hold (frontier.table_fault), checked before writing, so that collect
    never writes a table `frontier`, `select` or `compare` refuse: the result a faulty row came from is named."""
    import pandas as pd

    from rdsweep.analysis.frontier import table_fault

    nullable = {pa.float64(): pd.Float64Dtype(), pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype(),
                pa.bool_(): pd.BooleanDtype()}
    fault = table_fault(table.to_pandas(types_mapper=nullable.get))
    if fault is not None:
        experiment = next(e for e in experiments if e.name == table["experiment"][fault.row].as_py())
        raise UserError(f"cannot collect trial result {experiment.result_path(str(fault.cell_id))}: its "
                        f"{fault.split} row would be {fault.problem} (move the file away to collect the others)")


def _refuse_to_overwrite(out: Path, experiments: list[Experiment]) -> None:
    """collect replaces only its own tables: not a result, a spec or anyone's data file given as --out."""
    if out.is_dir():
        raise UserError(f"--out {out} is a directory: give a file path, e.g. {out / TABLE_NAME}")
    for experiment in experiments:
        if out.resolve().parent in (experiment.cells_dir.resolve(), experiment.checkpoints_dir.resolve()):
            raise UserError(f"--out {out} is inside the ledger of {experiment.path}: choose another path")
    if out.exists() and not is_table(out):
        raise UserError(f"{out} exists and is not a table written by rdsweep collect: "
                        "refusing to overwrite it (choose another --out)")


def is_table(path: Path) -> bool:
    """A Parquet file collect wrote: marked in its schema's metadata, or (tables from before the mark) with
    only frontier-table columns, the identifying ones among them."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return False
    if (schema.metadata or {}).get(b"rdsweep") == b"frontier table":
        return True
    # An older collect's table has a subset of today's columns; a user's own table (extra columns) is theirs.
    names = set(schema.names)
    return {"cell_id", "experiment", "split", "rate", "distortion", "status"} <= names <= set(SCHEMA.names)


def _relative(path: Path, out: Path) -> str | None:
    return os.path.relpath(path, out.absolute().parent) if path.is_file() else None


def result_rows(result: CellResult, experiment: str, grid: str | None = None,
                examples_file: str | None = None) -> list[dict]:
    """The three split rows of one cell result (metrics null when it diverged or failed)."""
    cell = result.cell
    family = get_family(cell["family"])
    evaluated = result.status in ("converged", "unconverged")
    plateau = cell.get("schedule") == "plateau"
    history = result.history
    blowup_count = len(blowups(cell, history)) if evaluated_epochs(history) else None
    rows = []
    for split in SPLITS:
        metrics = (result.splits or {}).get(split) or SplitMetrics(rate=None, distortion=None, elbo=None)
        rate, distortion = _finite(metrics.rate), _finite(metrics.distortion)
        if not evaluated or rate is None or distortion is None:
            rate = distortion = None
        mutual_info = _finite(metrics.mutual_info) if rate is not None else None
        probe = _finite(metrics.probe_accuracy) if evaluated and _probe_on_draws(result) else None
        n_latent = _latent_examples(metrics, cell["dataset"], split) if evaluated else None
        rows.append({
            "cell_id": result.cell_id, "experiment": experiment, "dataset": cell["dataset"],
            "family": family.name, "paper_code": family.code, "encoder": family.encoder,
            "decoder": family.decoder, "marginal": family.marginal, "objective": cell["objective"],
            "beta": cell["beta"], "target_rate": cell["target_rate"], "free_bits": cell.get("free_bits"),
            "warmup_epochs": cell.get("warmup_epochs"), "encoder_std": encoder_std_label(cell.get("encoder_std"), family.name),
            "seed": cell["seed"], "size": cell["size"],
            "split": split, "rate": rate, "distortion": distortion,
            "elbo": None if rate is None else -(rate + distortion),
            **{f"{k}_se": _finite(getattr(metrics, f"{k}_se")) if rate is not None else None
               for k in ("rate", "distortion", "elbo")},
            "examples_n": metrics.examples_n if rate is not None else None,
            "iwae": _finite(metrics.iwae) if evaluated else None,
            "mutual_info": mutual_info, "mutual_info_at_ceiling": at_ceiling(mutual_info, n_latent),
            "marginal_kl": None if mutual_info is None else rate - mutual_info,
            "active_units": metrics.active_units if evaluated else None,
            "probe_accuracy": probe, "probe_accuracy_se": binomial_se(probe, n_latent), "latent_examples": n_latent,
            "true_entropy": result.truth.entropy,
            "epochs": result.epochs, "max_epochs": cell["epochs"], "best_epoch": result.best_epoch,
            "best_valid_objective": _finite(result.best_valid_objective),
            "stop_reason": result.stop_reason or ("error" if result.status == "failed" else None),
            "blowups": blowup_count,
            "batch_size": cell["batch_size"], "lr": cell["lr"], "schedule": cell["schedule"],
            "eval_every": cell.get("eval_every"), "patience": cell.get("patience"),
            "min_delta": cell.get("min_delta"), "min_delta_relative": cell.get("min_delta_relative"),
            "lr_reductions": cell.get("lr_reductions") if plateau else None,
            "lr_divisor": cell.get("lr_divisor") if plateau else None, "eval_samples": cell["eval_samples"],
            "iwae_k": cell["iwae_k"], "status": result.status, "error": result.error,
            "wall_s": result.wall_s, "grid": grid, "examples_file": examples_file if evaluated else None,
            "device": result.device, "node": result.node,
            "gpu_ids": ",".join(result.gpu_ids) if result.node else None,
            "rdsweep_version": result.rdsweep_version, "plugins": cell.get("plugins"),
        })
    return rows


def _latent_examples(metrics: SplitMetrics, dataset: str, split: str) -> int | None:
    """The examples a split's latent metrics are over: recorded since 0.5; before, the split's first
    LATENT_EXAMPLES where the dataset's size is fixed by its name, else unknown."""
    if metrics.latent_examples is not None:
        return metrics.latent_examples
    sizes = SPLIT_SIZES.get(dataset)
    return min(sizes[SPLITS.index(split)], LATENT_EXAMPLES) if sizes else None


def _probe_on_draws(result: CellResult) -> bool:
    """rdsweep 0.3 fit its probe on posterior means, which read a label off an encoder that transmits nothing
    (rdsweep/training/latent.py); one column keeps one meaning, so those values stay out of the table."""
    try:
        return tuple(int(n) for n in result.rdsweep_version.split(".")[:2]) >= (0, 4)
    except ValueError:
        return True  # a version string of another form (a development build) is today's


def cell_order(row: dict) -> tuple:
    """The table's order of cells: experiment, family (in `rdsweep families` order), objective, β, σ, λ, W,
    seed, cell id (nulls before values). `rdsweep select` breaks ties by it."""
    def num(v):
        return (v is not None, v or 0.0)
    return (row["experiment"], _FAMILY_ORDER.get(row["family"], len(_FAMILY_ORDER)), row["objective"],
            num(row["beta"]), num(row["target_rate"]), num(row["free_bits"]), num(row["warmup_epochs"]),
            row["seed"], row["cell_id"])


def _row_order(row: dict) -> tuple:
    return cell_order(row) + (SPLITS.index(row["split"]),)


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _first_duplicate(names: list[str]) -> str:
    return next(n for n in names if names.count(n) > 1)
