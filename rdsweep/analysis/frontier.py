"""The RD plane of a frontier table: per-family frontiers, the entropy bound Ĥ, regimes, and the plot.

Seeds of one setting (experiment, family, objective value) are averaged first (mean ± std); frontiers are
computed on those means, on one split (the test split by default), converged cells only unless unconverged
ones are asked for (they are then drawn hollow: a point whose model was still improving).

- Pareto frontier: settings that no other setting beats in both R and D (lower is better for both).
- Convex frontier: the lower convex hull of the Pareto points, i.e. the points a β-sweep can reach, since
  minimising D + βR picks the hull point where the frontier's slope is −β.
- Ĥ: the data entropy where the dataset knows it exactly (toy), else the best −ELBO = min(R + D) over every
  included run of that split, an upper bound on H (every model has −ELBO ≥ H).
- Regime of a point, in the paper's order of increasing rate (its four example models: an auto-decoder at
  β = 1.1, a semantic encoder at β = 1, a syntactic encoder at β = 0.15, an auto-encoder at β = 0.1):
  auto-decoder if R < 2% of Ĥ (the latent is essentially unused); auto-encoder if D < 10% of Ĥ
  (near-lossless reconstructions); otherwise semantic up to a measured rate of its family, syntactic
  beyond. Where the table has labels (a probe accuracy), that rate is the lowest at which the family's
  code identifies the label, i.e. its probe reaches 80% of the best probe in the table (an auto-decoder's
  never does): a code that keeps what the example is, at the fewest nats; rate beyond it goes to how the
  example is drawn. Where no point of the family identifies the label (no labels, or codes that never carry
  them), it is the rate of the family's best-ELBO setting: up to it every extra nat of rate bought at least
  a nat of distortion (β ≥ 1: a compressed code that keeps what matters most), beyond it rate costs ELBO
  (β < 1).
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from rich import box as boxes
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rdsweep.cells import ENCODER_STDS, SPLITS, cell_knob
from rdsweep.data.datasets import parse_dataset
from rdsweep.errors import UserError, one_line
from rdsweep.models.families import FAMILIES, IMAGE_FAMILIES
from rdsweep.training.objectives import OBJECTIVES, get_objective

AUTO_DECODER_RATE = 0.02
AUTO_ENCODER_DISTORTION = 0.10
IDENTIFIES = 0.8   # a code identifies the label when its probe reaches this share of the table's best probe
REGIMES = ("auto-decoder", "semantic", "syntactic", "auto-encoder")   # by increasing rate
INCLUDED = {False: ("converged",), True: ("converged", "unconverged")}
_NUMERIC = {"beta", "target_rate", "free_bits", "warmup_epochs"}
_SETTING = ["experiment", "dataset", "family", "paper_code", "objective", "beta", "target_rate", "free_bits",
            "warmup_epochs", "encoder_std"]
# Columns that tables collected by an earlier rdsweep lack: read as null.
_ADDED_LATER = ["free_bits", "warmup_epochs", "encoder_std", "grid", "mutual_info", "marginal_kl", "active_units",
                "probe_accuracy", "rate_se", "distortion_se", "elbo_se", "examples_n", "mutual_info_at_ceiling",
                "probe_accuracy_se", "latent_examples", "examples_file", "min_delta_relative"]


@dataclass(frozen=True)
class Frontier:
    dataset: str
    split: str
    h_hat: float
    h_exact: bool             # True: the dataset's exact entropy; False: the best −ELBO seen
    points: pd.DataFrame      # one row per setting: means, stds, seeds, probe, identifies, pareto, hull,
                              # overall_*, regime
    bounds: dict              # family → SemanticBound

    @cached_property
    def _regimes(self) -> dict:
        return {setting_key(p): p["regime"] for p in self.points.to_dict("records")}

    def regime_of(self, row: dict) -> str | None:
        """The regime of the setting a cell (a table row as a dict) belongs to; None if it has no point."""
        return self._regimes.get(setting_key(row))


def setting_key(row: dict) -> tuple:
    """The setting a row or point belongs to (the columns seeds are averaged over), nulls as None."""
    return tuple(None if pd.isna(row.get(c)) else float(row[c]) if c in _NUMERIC else row[c] for c in _SETTING)


def read_table(path: str | Path, split: str = "test", include_unconverged: bool = False) -> pd.DataFrame:
    """The converged (and, if asked, unconverged) rows of one split of a frontier table."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"frontier table {path} does not exist (write it with `rdsweep collect`)")
    if not path.is_file():
        raise UserError(f"frontier table {path} is not a file (`rdsweep collect` writes one)")
    try:
        with path.open("rb") as file:   # Python opens any path; pyarrow's own opening needs UTF-8
            table = pd.read_parquet(file, dtype_backend="numpy_nullable")
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise UserError(f"cannot read frontier table {path}: {one_line(e)}") from None
    table = table.assign(**{c: pd.NA for c in _ADDED_LATER if c not in table})
    _check_columns(path, table)
    table = _schema_dtypes(table)
    fault = table_fault(table)
    if fault is not None:
        raise UserError(f"{path} is not a valid frontier table: {fault} (docs/reliability.md, what a table must "
                        "hold)")
    splits = sorted(table["split"].dropna().unique())
    if split not in splits:
        raise UserError(f"{path} has no {split!r} split (it has: {', '.join(splits) or 'none'})")
    rows = table[(table["split"] == split) & table["status"].isin(INCLUDED[include_unconverged])]
    if rows.empty:
        hint = "" if include_unconverged else (
            f" ({table.loc[table['status'] == 'unconverged', 'cell_id'].nunique()} unconverged cells: add --include-unconverged to see "
            "them, or raise the epoch cap and launch again)")
        raise UserError(f"{path} has no converged cells on the {split!r} split{hint}")
    datasets = sorted(rows["dataset"].unique())
    if len(datasets) > 1:
        raise UserError(f"{path} mixes datasets ({', '.join(datasets)}); an RD plane needs one: "
                        "collect each dataset's experiments into its own table")
    return rows


def _check_columns(path: Path, table: pd.DataFrame) -> None:
    """The columns the readers need, and every column of the table schema it has, with the schema's types (a
    hand-made or foreign file); a column of nulls fits any type. Columns the schema does not name are ignored."""
    import pyarrow as pa

    from rdsweep.analysis.collect import SCHEMA

    for column in _SETTING + ["cell_id", "seed", "split", "rate", "distortion", "elbo", "status"]:
        if column not in table:
            raise UserError(f"{path} is not a frontier table: no column {column!r}")
    for column in (c for c in SCHEMA.names if c in table):
        expected = SCHEMA.field(column).type
        values = table[column]
        if pa.types.is_boolean(expected):
            ok = pd.api.types.is_bool_dtype(values)
        elif pa.types.is_floating(expected) or pa.types.is_integer(expected):
            ok = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        else:
            ok = pd.api.types.is_string_dtype(values)
        if not (ok or values.isna().all()):
            raise UserError(f"{path} is not a frontier table: column {column!r} holds {values.dtype}, "
                            f"not {expected}")


_DTYPES = {"double": "Float64", "int64": "Int64", "string": "string", "bool": "boolean"}   # Arrow → pandas


def _schema_dtypes(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every column of the schema: those it lacks (an earlier rdsweep's or another tool's table
    without, say, `iwae`) as nulls, and its columns of nulls, of the schema's types, as numpy_nullable reads a
    column collect wrote."""
    from rdsweep.analysis.collect import SCHEMA

    table = table.assign(**{c: pd.NA for c in SCHEMA.names if c not in table})
    nulls = [c for c in SCHEMA.names if table[c].isna().all()]
    return table.astype({c: _DTYPES[str(SCHEMA.field(c).type)] for c in nulls})


# ---- what a table must hold ----------------------------------------------------------------------------
# Every row of a frontier table, for `frontier`, `select` and `compare` to read it (docs/reliability.md, "What
# a table must hold"). read_table checks the whole file (every split and status, whichever rows are asked for),
# and collect the table it is about to write, so no reader meets an impossible value further on: a traceback,
# a point dropped without a word, a −inf distortion drawn as an auto-encoder.

EVALUATED = ("converged", "unconverged")                      # the rows with R and D
STATUSES = EVALUATED + ("diverged", "failed")
ELBO_RTOL = ELBO_ATOL = 1e-6   # elbo is −(rate + distortion); collect writes it exactly, another tool may round


@dataclass(frozen=True)
class TableFault:
    """The first row of a table that breaks a rule, the column and value at fault, and how many more rows do."""
    row: int              # its position in the file, from 0 (pandas' iloc)
    cell_id: object
    split: object
    column: str
    value: object
    rule: str
    more: int

    @property
    def problem(self) -> str:
        return f"{self.column} = {_shown(self.value)}: {self.rule}"

    def __str__(self) -> str:
        more = f" (and {self.more} more row{'s' * (self.more > 1)})" if self.more else ""
        return (f"row {self.row} (cell {_shown(self.cell_id, quote=False)}, {_shown(self.split, quote=False)} "
                f"split): {self.problem}{more}")


def _shown(value, quote: bool = True) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "null"
    text = repr(value) if quote and isinstance(value, str) else str(value)
    return one_line(text, 60)


def table_fault(table: pd.DataFrame) -> TableFault | None:
    """The first row of a frontier table (its columns checked by _check_columns) that breaks a rule of what a
    table must hold, or None when every row holds."""
    from rdsweep.training.result import DISCRETE_DATA, NEGATIVE_TOLERANCE, SE_TOLERANCE

    if table.empty:
        return None

    def num(column: str) -> np.ndarray:
        return table[column].astype("Float64").to_numpy(dtype=float, na_value=np.nan)

    def null(column: str) -> np.ndarray:
        return table[column].isna().to_numpy(bool)

    def among(column: str, values) -> np.ndarray:
        return table[column].isin(list(values)).fillna(False).to_numpy(bool)

    def each(column: str, ok) -> np.ndarray:
        """ok(value) for every row's value (judged once per distinct value), nulls passed as None."""
        values = [None if v is pd.NA or v is None or v != v else v for v in table[column].astype(object)]
        judged = {v: bool(ok(v)) for v in set(values)}
        return np.array([judged[v] for v in values], bool)

    def known_dataset(name) -> bool:
        try:
            parse_dataset(name)
            return True
        except UserError:
            return False

    def encoder_std(value) -> bool:
        if value is None or value in ENCODER_STDS:
            return True
        try:
            return np.isfinite(float(value)) and float(value) > 0
        except ValueError:
            return False

    def present(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Where a value is given, it must be ok (null is fine)."""
        return ~np.isnan(values) & ~ok

    evaluated = among("status", EVALUATED)
    family = each("family", lambda f: f in FAMILIES)
    codes = [FAMILIES[f].code if f in FAMILIES else None for f in table["family"].astype(object)]
    paper_code = [None if pd.isna(c) else c for c in table["paper_code"].astype(object)]
    wrong_code = np.array([c != expected for c, expected in zip(paper_code, codes)], bool)
    discrete = each("family", lambda f: f in FAMILIES and FAMILIES[f].data_kind in DISCRETE_DATA)
    # the table's objectives as this rdsweep knows them: installed ones, and import paths that import here
    entries = {o: OBJECTIVES[o] for o in dict.fromkeys([*OBJECTIVES, *table["objective"].dropna()]) if o in OBJECTIVES}
    objectives = list(entries)
    beta_objectives = [o for o, e in entries.items() if e.knob == "beta"]
    target_objectives = [o for o, e in entries.items() if e.knob != "beta"]
    needs_beta, needs_sigma = among("objective", beta_objectives), among("objective", target_objectives)
    free_bits = among("objective", [o for o, e in entries.items() if e.extra == "free_bits"])
    warmup = among("objective", [o for o, e in entries.items() if e.extra == "warmup_epochs"])
    beta, sigma, lam, ramp, seed = num("beta"), num("target_rate"), num("free_bits"), num("warmup_epochs"), num("seed")
    rate, distortion, elbo = num("rate"), num("distortion"), num("elbo")

    def floor(se: np.ndarray) -> np.ndarray:
        return -np.maximum(NEGATIVE_TOLERANCE, SE_TOLERANCE * np.where(np.isfinite(se), se, 0.0))

    with np.errstate(invalid="ignore"):
        rules = [
            ("cell_id", null("cell_id"), "every row needs its cell's id"),
            ("experiment", null("experiment"), "every row needs its experiment's name"),
            ("split", ~among("split", SPLITS), f"the split is one of {', '.join(SPLITS)}"),
            ("status", ~among("status", STATUSES), f"the status is one of {', '.join(STATUSES)}"),
            ("cell_id", table.duplicated(["experiment", "cell_id", "split"]).to_numpy(bool),
             "a second row of this cell and split (a table has one per cell × split)"),
            ("dataset", ~each("dataset", known_dataset), "every row needs a dataset rdsweep knows"),
            ("family", ~family, "not a family this rdsweep knows (`rdsweep families`)"),
            ("paper_code", family & wrong_code, "not its family's paper code"),
            ("objective", ~among("objective", objectives), f"the objective is one of {', '.join(objectives)}"),
            ("beta", needs_beta & ~(np.isfinite(beta) & (beta > 0)),
             f"its objective ({', '.join(beta_objectives)}) needs a finite β > 0"),
            ("beta", ~needs_beta & ~np.isnan(beta), "β is not a parameter of its objective: null"),
            ("target_rate", needs_sigma & ~(np.isfinite(sigma) & (sigma >= 0)),
             f"its objective ({', '.join(target_objectives)}) needs a finite σ ≥ 0"),
            ("target_rate", ~needs_sigma & ~np.isnan(sigma), "σ is not a parameter of its objective: null"),
            ("free_bits", free_bits & ~(np.isfinite(lam) & (lam >= 0)), "objective free-bits needs a finite λ ≥ 0"),
            ("free_bits", ~free_bits & ~np.isnan(lam), "λ is the parameter of objective free-bits only: null"),
            ("warmup_epochs", warmup & ~(ramp >= 1), "objective warmup needs warmup_epochs ≥ 1"),
            ("warmup_epochs", ~warmup & ~np.isnan(ramp),
             "warmup_epochs is the parameter of objective warmup only: null"),
            ("encoder_std", ~each("encoder_std", encoder_std),
             f"the posterior's std is {' or '.join(ENCODER_STDS)} or a number > 0"),
            ("seed", ~(seed >= 0), "every row needs a seed ≥ 0"),
            # the rows the readers take R and D from
            ("rate", evaluated & ~np.isfinite(rate), "a converged or unconverged row needs a finite rate"),
            ("rate", evaluated & (rate < floor(num("rate_se"))),
             f"below 0 by more than estimation noise (R is a KL, ≥ 0; tolerance {NEGATIVE_TOLERANCE:g} nats or "
             f"{SE_TOLERANCE:g} rate_se)"),
            ("distortion", evaluated & ~np.isfinite(distortion),
             "a converged or unconverged row needs a finite distortion"),
            ("distortion", evaluated & discrete & (distortion < floor(num("distortion_se"))),
             f"below 0 by more than estimation noise (on its family's discrete data D is −log of a probability, "
             f"≥ 0; tolerance {NEGATIVE_TOLERANCE:g} nats or {SE_TOLERANCE:g} distortion_se)"),
            ("elbo", evaluated & np.isfinite(rate) & np.isfinite(distortion)
             & ~np.isclose(elbo, -(rate + distortion), rtol=ELBO_RTOL, atol=ELBO_ATOL),
             "not −(rate + distortion), as the elbo of a converged or unconverged row is"),
        ]
        for column in ("rate_se", "distortion_se", "elbo_se", "probe_accuracy_se"):
            v = num(column)
            rules.append((column, evaluated & present(v, np.isfinite(v) & (v >= 0)),
                          "a standard error, where given, is finite and ≥ 0"))
        for column in ("iwae", "mutual_info", "marginal_kl", "true_entropy"):
            v = num(column)
            rules.append((column, evaluated & present(v, np.isfinite(v)), "finite where given"))
        v = num("probe_accuracy")
        rules.append(("probe_accuracy", evaluated & present(v, (v >= 0) & (v <= 1)),
                      "an accuracy, where given, is between 0 and 1"))
        for column in ("active_units", "examples_n", "latent_examples"):
            v = num(column)
            rules.append((column, evaluated & present(v, v >= 0), "a count, where given, is ≥ 0"))

    bad = np.vstack([mask for _, mask, _ in rules])
    rows = np.flatnonzero(bad.any(axis=0))
    if not len(rows):
        return None
    row = int(rows[0])
    column, _, rule = rules[int(np.argmax(bad[:, row]))]
    record = table.iloc[row]
    return TableFault(row, record["cell_id"], record["split"], column, record[column], rule, len(rows) - 1)


def analyse(rows: pd.DataFrame, split: str = "test") -> Frontier:
    truth = rows["true_entropy"].dropna().unique() if "true_entropy" in rows else []
    if len(truth) == 1:
        h_hat, exact = float(truth[0]), True
    else:
        h_hat, exact = float((rows["rate"] + rows["distortion"]).min()), False

    points = aggregate(rows)
    points["pareto"] = False
    points["hull"] = False
    for _, group in points.groupby("family", sort=False):
        points.loc[group.index, "pareto"] = pareto_mask(group["rate"], group["distortion"])
        points.loc[group.index, "hull"] = hull_mask(group["rate"], group["distortion"])
    points["overall_pareto"] = pareto_mask(points["rate"], points["distortion"])
    points["overall_hull"] = hull_mask(points["rate"], points["distortion"])
    points["identifies"] = identifies(points, h_hat)
    bounds = semantic_bounds(points)
    points["regime"] = [regime(r, d, h_hat, bounds[f].rate)
                        for r, d, f in zip(points["rate"], points["distortion"], points["family"])]
    return Frontier(str(rows["dataset"].iloc[0]), split, h_hat, exact, points, bounds)


@dataclass(frozen=True)
class SemanticBound:
    rate: float       # a point of the family is semantic up to this rate, syntactic beyond
    basis: str        # "probe": the lowest rate whose code identifies the label; else the best-ELBO rate, for
                      # "best-elbo" (the family's probes name no label) or "no probe" (it has none)


def identifies(points: pd.DataFrame, h_hat: float) -> pd.Series:
    """Whether each point's code identifies the label (module docstring); False without a probe. An
    auto-decoder's never does, whatever the others' probes (in a table of collapsed codes the best is chance)."""
    probe = points["probe"]
    named = (probe >= IDENTIFIES * probe.max(skipna=True)) & (points["rate"] >= AUTO_DECODER_RATE * h_hat)
    return named.fillna(False).astype(bool)


def semantic_bounds(points: pd.DataFrame) -> dict[str, SemanticBound]:
    """Per family, the rate that splits its semantic from its syntactic points (module docstring)."""
    bounds = {}
    for family, fam in points.groupby("family", sort=False):
        named = fam[fam["identifies"]]
        bounds[family] = (SemanticBound(float(named["rate"].min()), "probe") if len(named) else
                          SemanticBound(float(fam.loc[fam["neg_elbo"].idxmin(), "rate"]),
                                        "best-elbo" if fam["probe"].notna().any() else "no probe"))
    return bounds


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of each setting (std 0 for a single seed), in the table's family order; `*_se`:
    the largest of its cells' standard errors over examples (their seeds share the examples)."""
    rows = rows.astype({"rate": float, "distortion": float, "probe_accuracy": "Float64", "elbo_se": "Float64",
                        "rate_se": "Float64", "distortion_se": "Float64"}).assign(
        neg_elbo=lambda r: r["rate"] + r["distortion"],
        beta=rows["beta"].astype(float), target_rate=rows["target_rate"].astype(float))
    grouped = rows.groupby(_SETTING, dropna=False, sort=False)
    points = grouped.agg(seeds=("seed", "nunique"), rate=("rate", "mean"), rate_std=("rate", "std"),
                         distortion=("distortion", "mean"), distortion_std=("distortion", "std"),
                         neg_elbo=("neg_elbo", "mean"), neg_elbo_std=("neg_elbo", "std"),
                         rate_se=("rate_se", "max"), distortion_se=("distortion_se", "max"),
                         elbo_se=("elbo_se", "max"), probe=("probe_accuracy", "mean"),
                         converged=("status", lambda s: bool((s == "converged").all())),
                         grid=("grid", "first")).reset_index()
    points[["rate_std", "distortion_std"]] = points[["rate_std", "distortion_std"]].fillna(0.0)
    order = {name: i for i, name in enumerate(FAMILIES)}
    points["_order"] = points["family"].map(order)
    points = points.sort_values(["_order", "objective", "beta", "target_rate", "free_bits", "warmup_epochs",
                                 "experiment"], na_position="first")
    return points.drop(columns="_order").reset_index(drop=True)


def point_error(point, quantity: str) -> float | None:
    """The standard error of a point's seed mean of `quantity` (rate, distortion or neg_elbo): the seeds'
    (std/√n, where n ≥ 2) and the examples' in quadrature; None where neither is known."""
    std = getattr(point, f"{quantity}_std", None)
    se = getattr(point, "elbo_se" if quantity == "neg_elbo" else f"{quantity}_se", None)
    parts = [std / math.sqrt(point.seeds)] if point.seeds > 1 and std is not None and not pd.isna(std) else []
    parts += [] if se is None or pd.isna(se) else [float(se)]
    return math.hypot(*parts) if parts else None


def point_knob(point) -> str:
    """The objective's setting of a point (a row of `points`, as a Series, dict or itertuples row)."""
    get = point.get if hasattr(point, "get") else lambda key: getattr(point, key, None)
    return cell_knob({key: None if pd.isna(get(key)) else get(key)
                      for key in ("objective", "beta", "target_rate", "free_bits", "warmup_epochs")})


def pareto_mask(rate, distortion) -> np.ndarray:
    """True for points no other point beats in both R and D (of equal points, the first is kept)."""
    r, d = np.asarray(rate, float), np.asarray(distortion, float)
    keep = np.zeros(len(r), bool)
    best = np.inf
    for i in np.lexsort((d, r)):  # by R, then D
        if d[i] < best:
            keep[i], best = True, d[i]
    return keep


def hull_mask(rate, distortion) -> np.ndarray:
    """True for the vertices of the lower convex hull of the Pareto points: the points some β > 0 selects."""
    r, d = np.asarray(rate, float), np.asarray(distortion, float)
    pareto = pareto_mask(r, d)
    candidates = [i for i in np.lexsort((d, r)) if pareto[i]]
    hull: list[int] = []
    for i in candidates:  # Andrew's monotone chain, lower half
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], i, r, d) <= 0:
            hull.pop()
        hull.append(i)
    keep = np.zeros(len(r), bool)
    keep[hull] = True
    return keep


def _cross(o: int, a: int, b: int, r, d) -> float:
    return (r[a] - r[o]) * (d[b] - d[o]) - (d[a] - d[o]) * (r[b] - r[o])


def regime(rate: float, distortion: float, h_hat: float, semantic_rate: float) -> str:
    """The point's regime (module docstring); semantic_rate is its family's SemanticBound.rate."""
    if rate < AUTO_DECODER_RATE * h_hat:
        return "auto-decoder"
    if distortion < AUTO_ENCODER_DISTORTION * h_hat:
        return "auto-encoder"
    return "semantic" if rate <= semantic_rate else "syntactic"


def regime_rule(frontier: Frontier) -> str:
    """One line: where each family's semantic points end, and on what basis (docs/frontier.md)."""
    by_basis = {basis: [FAMILIES[f].code or f for f, b in frontier.bounds.items() if b.basis == basis]
                for basis in ("probe", "best-elbo", "no probe")}
    best = frontier.points["probe"].max(skipna=True)
    parts = []
    if by_basis["probe"]:
        parts.append(f"up to the lowest rate whose code identifies the label (probe ≥ {IDENTIFIES * best:.3f}, "
                     f"{IDENTIFIES:.0%} of the table's best, {best:.3f}) in {', '.join(by_basis['probe'])}")
    for basis, why in (("best-elbo", "no code that identifies the label"), ("no probe", "no probe accuracy")):
        if by_basis[basis]:
            parts.append(f"up to the best-ELBO rate in {', '.join(by_basis[basis])} ({why})")
    return f"regimes: semantic {'; '.join(parts)}; syntactic beyond (docs/frontier.md)"



def render(result: Frontier, split: str) -> Group:
    """`rdsweep frontier`: a line on the table, each family's frontier, the overall one, and the regime rule."""
    pts = result.points
    what = "exact entropy H" if result.h_exact else "Ĥ = best −ELBO"
    unconverged = int((~pts["converged"]).sum())
    head = Text(f"{result.dataset}, {split} split: {len(pts)} settings"
                + (f" ({unconverged} unconverged, marked ~)" if unconverged else "")
                + f"; {what} = {result.h_hat:.3f} nats")
    stds = len(pts["encoder_std"].dropna().unique()) > 1   # the posterior's std varies: say which
    probes = pts["probe"].notna().any()

    def frontier_table(title: str, rows, with_family: bool) -> Table:
        t = Table(title=title, title_justify="left", box=boxes.SIMPLE_HEAD, show_edge=False, padding=0,
                  caption="±: the standard error of the point (its seeds' mean): seeds and the split's examples "
                          "together (docs/uncertainty.md)", caption_justify="left")
        # Numbers whole at 80 columns (never cut): the model's and the setting's names wrap instead, and a
        # regime folds as a last resort. "hull": on the convex hull, the frontier's convex part.
        for col in ((["model"] if with_family else []) + ["objective", "seeds", "R", "D", "−ELBO"]
                    + (["probe"] if probes else []) + ["hull", "regime"]):
            t.add_column(col, justify="right" if col in ("seeds", "R", "D", "−ELBO", "probe") else "left",
                         no_wrap=col not in ("model", "objective", "regime"), min_width=len(col),
                         overflow="fold" if col == "regime" else "ellipsis")
        for p in rows.sort_values("rate").itertuples():
            err = lambda quantity: "" if (e := point_error(p, quantity)) is None else f"±{e:.2f}"   # no spaces
            hull = p.overall_hull if with_family else p.hull
            t.add_row(*([FAMILIES[p.family].code or p.family] if with_family else []),   # codes: 80 columns
                      point_knob(p) + (f" {p.encoder_std}" if stds else "") + ("" if p.converged else " ~"),
                      str(p.seeds), f"{p.rate:.2f}{err('rate')}", f"{p.distortion:.2f}{err('distortion')}",
                      f"{p.neg_elbo:.2f}{err('neg_elbo')}",
                      *([("" if pd.isna(p.probe) else f"{p.probe:.3f}")] if probes else []),
                      "✓" if hull else "", p.regime)
        return t

    parts = [head]
    for name, fam in pts.groupby("family", sort=False):
        front = fam[fam["pareto"]]
        parts.append(frontier_table(f"{family_label(name)}: {len(front)} of {len(fam)} settings on its frontier",
                                    front, with_family=False))
    overall = pts[pts["overall_pareto"]]
    parts.append(frontier_table(f"overall: {len(overall)} of {len(pts)} settings on the frontier", overall, True))
    parts.append(Text(regime_rule(result)))
    return Group(*parts)

def regime_examples(frontier: Frontier, table_dir: Path) -> list[dict]:
    """One example model per regime found, in the paper's order: of that regime's settings with an image
    grid, the one with the best ELBO (an example of the regime at its best, not a half-trained one), among
    those whose code identifies the label where some do (a semantic example that keeps what the digit is)."""
    pts = frontier.points.dropna(subset=["grid"])
    if pts.empty:
        raise UserError("no cell of this table has image grids: set `images = true` under [evaluation] "
                        "in the spec and launch again")
    rows = []
    for name in REGIMES:
        found = pts[pts["regime"] == name]
        if found.empty:
            continue
        named = found[found["identifies"]]
        found = named if len(named) else found
        p = found.loc[found["neg_elbo"].idxmin()]
        label = (f"{family_label(p['family'])} {point_knob(p)}: "
                 f"R = {p['rate']:.1f}, D = {p['distortion']:.1f}, −ELBO = {p['neg_elbo']:.1f} nats"
                 + ("" if pd.isna(p["probe"]) else f", probe {p['probe']:.2f}"))
        rows.append({"regime": name, "label": label, "png": table_dir / p["grid"]})
    return rows


def family_label(name: str) -> str:
    code = FAMILIES[name].code
    return f"{name} ({code})" if code else name


def family_colours(families: list[str]) -> dict[str, tuple]:
    """Image families: hue by (decoder, marginal), dark for the Gaussian encoder and light for its IAF twin
    (matplotlib's 'tab20' pairs), so decoders and marginals differ in hue and the two encoders pair up."""
    import matplotlib

    tab20 = matplotlib.colormaps["tab20"].colors
    colours = {}
    for name in families:
        family = FAMILIES[name]
        if family in IMAGE_FAMILIES:
            hue = 3 * ("deconv", "pixelcnn").index(family.decoder) + ("normal", "maf", "vamp").index(family.marginal)
            colours[name] = tab20[2 * hue + ("gauss", "iaf").index(family.encoder)]
        else:
            colours[name] = tab20[2 * (len(colours) % 10)]
    return colours


def crowded_labels(ax, rates, distortions, labels: list[str], near_px: float = 8.0, char_px: float = 6.0
                   ) -> list[tuple[tuple, str]]:
    """One label per group of points on one spot (within `near_px` display pixels, about a marker, of the
    group's first point), their texts joined without repeats ("1, 1.5, 3, 10": collapsed models sit on one
    spot); a point whose label says what a group's already says joins it from a label's width away (`char_px`
    a character) and a line's height (three families' β=0.1 side by side print one "β=0.1"). Points further
    apart keep their own labels, which place_label moves apart."""
    where = ax.transData.transform(np.column_stack([np.asarray(rates, float), np.asarray(distortions, float)]))
    groups: list[tuple[np.ndarray, tuple, list[str]]] = []
    for xy, r, d, label in zip(where, rates, distortions, labels):
        def joins(g) -> bool:
            dx, dy = np.abs(xy - g[0])
            return max(dx, dy) <= near_px or (label in g[2] and dx <= char_px * len(label) and dy <= near_px * 1.5)
        near = next((g for g in groups if joins(g)), None)
        if near is None:
            groups.append((xy, (r, d), [label]))
        elif label not in near[2]:
            near[2].append(label)
    return [(at, ", ".join(texts)) for _, at, texts in groups]


MARKER_PT = 6   # the points' marker size; labels keep clear of a box a little inside it
# Where a label may sit beside its point, in order of preference: (offset in points, alignment).
_LABEL_SPOTS = [((3, 3), "left", "bottom"), ((3, -3), "left", "top"), ((-3, 3), "right", "bottom"),
                ((-3, -3), "right", "top")]


def marker_boxes(ax, rates, distortions, size_pt: float) -> list:
    """The display boxes of round markers of `size_pt` points at these (R, D): obstacles for the labels."""
    from matplotlib.transforms import Bbox

    half = size_pt / 2 * ax.figure.dpi / 72
    where = ax.transData.transform(np.column_stack([np.asarray(rates, float), np.asarray(distortions, float)]))
    return [Bbox([[x - half, y - half], [x + half, y + half]]) for x, y in where]


def place_label(label, placed: list) -> None:
    """Move an annotation to the first spot around its point that stays inside the axes and overlaps nothing
    in `placed` (display boxes of markers and earlier labels; its own is added); where every spot is taken
    it stays up and to the right."""
    renderer = label.figure.canvas.get_renderer()
    inside = label.axes.get_window_extent(renderer)
    for offset, ha, va in _LABEL_SPOTS + [_LABEL_SPOTS[0]]:
        label.xyann = offset
        label.set_horizontalalignment(ha), label.set_verticalalignment(va)
        box = label.get_window_extent(renderer)
        if (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
                and not any(box.overlaps(other) for other in placed)):
            break
    placed.append(box.padded(2))      # a little air between labels (not around markers: its own is that near)


RATE_AXES = ("auto", "linear", "symlog")   # auto: symlog where the rates span more than 10 nats
_IAF_DASHES = (0, (5, 2))   # the IAF-encoder twin of a family: its frontier dashed, so overlapping pairs show


def _objective_order(name: str) -> tuple:
    """The registry's order (built-ins first), then import paths by name."""
    order = list(OBJECTIVES)
    return (order.index(name), "") if name in order else (len(order), name)


def seeds_note(points: pd.DataFrame) -> str:
    """What the plot's title says about seeds: how many per setting, and what the error bars are (±1 sample
    std over a setting's seeds, drawn only where it has ≥ 2: one seed has no spread to show)."""
    low, high, n = int(points["seeds"].min()), int(points["seeds"].max()), len(points)
    if high == 1:
        return f"{n} settings, 1 seed each"
    seeds = f"{low} seeds each" if low == high else f"{low}–{high} seeds per setting"
    return f"{n} settings, {seeds}: means; bars: ±1 std over seeds" + (" where ≥ 2" if low == 1 else "")


def bound_rates(end: float, symlog: bool) -> np.ndarray:
    """The rates from 0 to `end` at which the line D = Ĥ − R is drawn: its two ends on a linear rate axis
    (where it is straight); on a symlog axis, where it is a curve, densely and evenly in the axis' own
    coordinate (linear below 1 nat, logarithmic above), so that it is drawn smooth."""
    if not symlog:
        return np.array([0.0, end])
    low = np.linspace(0.0, min(end, 1.0), 100)
    return low if end <= 1.0 else np.concatenate([low, np.geomspace(1.0, end, 400)[1:]])


def _family_dashes(name: str):
    family = FAMILIES[name]
    return _IAF_DASHES if family in IMAGE_FAMILIES and family.encoder == "iaf" else "-"


def _draw_plane(ax, frontier: Frontier, colours: dict, symlog: bool, labels: bool, r_end: float,
                d_floor: float) -> list:
    """The bound line (to R = `r_end`) and the region below it (down to D = `d_floor`), each family's Pareto
    frontier and its points (error bars where a setting has ≥ 2 seeds) on `ax`; returns the region's and the
    line's artists, given their legend labels if `labels`."""
    pts, h = frontier.points, frontier.h_hat
    line_r = bound_rates(r_end, symlog)
    if frontier.h_exact:
        below = "infeasible: D < H − R (every model has −ELBO ≥ H)"
        line = f"D = H − R, H = {h:.2f} nats (exact entropy)"
    else:
        below = "below the best ELBO seen: D < Ĥ − R\n(no model here reached it; not proven infeasible)"
        line = f"D = Ĥ − R, Ĥ = {h:.2f} nats (the best −ELBO seen)"
    if symlog:
        line += "\n(a curve on this symlog rate axis)"
    bound = [ax.fill_between(line_r, d_floor, h - line_r, color="0.85", lw=0, zorder=0,
                             label=below if labels else None),
             *ax.plot(line_r, h - line_r, color="black", lw=1.2, ls="--", zorder=1, label=line if labels else None)]
    for name in dict.fromkeys(pts["family"]):
        fam = pts[pts["family"] == name]
        colour = colours[name]
        front = fam[fam["pareto"]].sort_values("rate")
        # Straight in R, D (a chord between two models), hence sampled densely: on a symlog axis it curves.
        r = np.linspace(front["rate"].min(), front["rate"].max(), 300) if symlog else front["rate"]
        ax.plot(r, np.interp(r, front["rate"], front["distortion"]), color=colour, lw=1.4, ls=_family_dashes(name),
                zorder=2)
        for (objective, converged, seeds), sub in fam.groupby(["objective", "converged", fam["seeds"] >= 2]):
            ax.errorbar(sub["rate"], sub["distortion"], xerr=sub["rate_std"] if seeds else None,
                        yerr=sub["distortion_std"] if seeds else None,
                        fmt=get_objective(objective).marker, color=colour, ms=MARKER_PT,
                        mec="black" if converged else colour, mew=0.4 if converged else 1.5,
                        mfc=colour if converged else "white", elinewidth=0.8, capsize=2, zorder=3)
    return bound


def crowded_band(ax, points: pd.DataFrame, near_px: float | None = None) -> list[str]:
    """The families whose Pareto frontiers run together on `ax`: two are linked when, over at least half of
    the shorter one's width on screen, their lines are a median of `near_px` display pixels apart or less
    (default: a marker's width); of the groups so linked, the largest, if it has three families or more
    (two that overlap tell apart by colour and dashes), else []."""
    near_px = MARKER_PT * ax.figure.dpi / 72 if near_px is None else near_px
    lines = {}
    for name, fam in points.groupby("family", sort=False):
        front = fam[fam["pareto"]].sort_values("rate")
        xy = ax.transData.transform(np.column_stack([front["rate"].to_numpy(float),
                                                     front["distortion"].to_numpy(float)]))
        if len(xy) >= 2 and xy[-1, 0] > xy[0, 0]:
            lines[name] = xy
    group = {name: name for name in lines}

    def root(name):
        while group[name] != name:
            name = group[name]
        return name

    names = list(lines)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            lo, hi = max(lines[a][0, 0], lines[b][0, 0]), min(lines[a][-1, 0], lines[b][-1, 0])
            shorter = min(lines[a][-1, 0] - lines[a][0, 0], lines[b][-1, 0] - lines[b][0, 0])
            if hi - lo < 0.5 * shorter:
                continue
            x = np.linspace(lo, hi, 100)
            gap = np.abs(np.interp(x, *lines[a].T) - np.interp(x, *lines[b].T))
            if np.median(gap) <= near_px:
                group[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(root(name), []).append(name)
    largest = max(groups.values(), key=len, default=[])
    return largest if len(largest) >= 3 else []


# Where a zoom on a crowded band may go, in axes fractions (x0, y0, width, height), largest first: the lower
# left, below the line D = Ĥ − R, where no model is.
_INSET_BOXES = sorted(((0.04, 0.06, w / 100, h / 100) for w in range(30, 65, 4) for h in range(30, 60, 4)),
                      key=lambda box: -box[2] * box[3])


def _inset_box(ax, h_hat: float, clear_px: float = 20.0):
    """The largest (in area) of _INSET_BOXES whose top right corner is `clear_px` below the line D = Ĥ − R on screen
    (the line falls with R, so then the whole box is below it, clear of every point); None if none is."""
    for box in _INSET_BOXES:
        corner = ax.transAxes.transform((box[0] + box[2], box[1] + box[3]))
        r = ax.transData.inverted().transform(corner)[0]
        line_y = ax.transData.transform((r, h_hat - r))[1]
        if line_y - corner[1] >= clear_px:
            return box
    return None


def spread(y, gap: float, low: float) -> np.ndarray:
    """Positions as near `y` as can be with at least `gap` between neighbours, in `y`'s order, none below `low`
    (labels in a column beside the points they name, pushed apart from the top down, then up off the floor)."""
    y = np.asarray(y, float)
    order = np.argsort(-y, kind="stable")          # from the top down
    out = np.empty_like(y)
    previous = np.inf
    for i in order:
        out[i] = previous = min(y[i], previous - gap)
    return out + max(0.0, low - out.min()) if len(y) else out


def _zoom_on_band(ax, frontier: Frontier, band: list[str], colours: dict, symlog: bool, r_end: float,
                  d_floor: float):
    """An inset in the empty region below the bound line that magnifies the crowded band of `band`'s families,
    each frontier labelled there with its paper code; None where no inset fits."""
    from matplotlib.patheffects import withStroke

    box = _inset_box(ax, frontier.h_hat)
    if box is None:
        return None
    pts = frontier.points
    members = pts[pts["family"].isin(band)]
    where = ax.transData.transform(np.column_stack([members["rate"].to_numpy(float),
                                                    members["distortion"].to_numpy(float)]))
    pad = MARKER_PT * ax.figure.dpi / 72
    (r0, d0), (r1, d1) = ax.transData.inverted().transform([where.min(axis=0) - pad, where.max(axis=0) + pad])
    inset = ax.inset_axes(box)
    if symlog:
        inset.set_xscale("symlog", linthresh=1.0, linscale=1.0)
    _draw_plane(inset, frontier, colours, symlog, labels=False, r_end=r_end, d_floor=d_floor)
    inset.set_xlim(r0, r1)
    inset.set_ylim(d0, d1)
    inset.tick_params(labelsize=7)
    inset.grid(alpha=0.3)
    inset.set_title(f"zoom: {len(band)} frontiers that run together", fontsize=8)
    ax.indicate_inset_zoom(inset, edgecolor="0.3")
    # Each frontier named at its high-rate end, where the lines part most: the names in a column just right of
    # the inset (grey and empty: below the bound line), in the order of the ends, each joined to its end.
    ends = [(name, pts[(pts["family"] == name) & pts["pareto"]].sort_values("rate").iloc[-1]) for name in band]
    frame = inset.get_window_extent(inset.figure.canvas.get_renderer())
    y_end = [inset.transData.transform((e["rate"], e["distortion"]))[1] for _, e in ends]
    y_text = spread(y_end, 1.3 * 7 * ax.figure.dpi / 72, frame.y0)
    for (name, end), y in zip(ends, y_text):
        inset.annotate(FAMILIES[name].code or name, (end["rate"], end["distortion"]),
                       xytext=(1.03, (y - frame.y0) / frame.height), textcoords="axes fraction", va="center",
                       fontsize=7, fontweight="bold", color=colours[name], annotation_clip=False, zorder=4,
                       path_effects=[withStroke(linewidth=2.5, foreground="white")],
                       arrowprops=dict(arrowstyle="-", color=colours[name], lw=0.7, shrinkA=0, shrinkB=3))
    return inset


def figure(frontier: Frontier, *, rate_axis: str = "auto", label_limit: int = 80):
    """The RD plane as a matplotlib figure (`plot` writes it): settings coloured by family (dashed frontier
    for an IAF encoder, marker by objective, bars ±1 std over seeds where a setting has ≥ 2), family Pareto
    frontiers as lines, the line D = Ĥ − R with the region below it shaded, β/σ labels, and where three or
    more families' frontiers run together an inset that magnifies them. `rate_axis`: linear, symlog (linear
    below 1 nat, logarithmic above), or auto (symlog where the rates span more than 10 nats)."""
    if rate_axis not in RATE_AXES:
        raise UserError(f"rate axis {rate_axis!r}: use one of {', '.join(RATE_AXES)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patheffects import withStroke

    pts, h = frontier.points, frontier.h_hat
    families = list(dict.fromkeys(pts["family"]))
    colours = family_colours(families)
    plain = set(pts["objective"]) <= {"beta", "target-rate"}   # then a label is the bare β or σ
    stds = pts["encoder_std"].dropna().unique()

    fig, ax = plt.subplots(figsize=(11, 7))
    rate_top = max(float(pts["rate"].max()), 0.25 * h)
    d_max = max(float(pts["distortion"].max()), h) * 1.08
    # Collapsed models crowd R ≈ 0 while others carry tens of nats: a rate axis linear below 1 nat and
    # logarithmic above spreads both out (symlog), by default where the rates span that much.
    symlog = rate_top * 1.08 > 10 if rate_axis == "auto" else rate_axis == "symlog"
    # The largest rate keeps clear of the right edge, its label too: 8 % on a linear axis; on symlog 8 % is a
    # thirtieth of a decade, which left that point cut in half by the frame, so a tenth of a decade there.
    r_max = rate_top * (1.25 if symlog else 1.08)
    # From D = 0 as in the paper, unless the points and the bound line sit in a thin band far above it (toy).
    # Below it where some D is negative (continuous data, where D = −log p(x|z) can be): the points stay in view.
    lowest = float(pts["distortion"].min())
    d_min = (lowest - 0.05 * (d_max - lowest) if lowest < 0
             else max(0.0, min(lowest, h - r_max) - 0.05 * d_max))
    r_end = max(h, r_max)
    bound = _draw_plane(ax, frontier, colours, symlog, labels=True, r_end=r_end, d_floor=d_min)

    handles = [Line2D([], [], color=colours[n], marker="o", mec="black", mew=0.4, lw=1.4, ls=_family_dashes(n),
                      label=family_label(n)) for n in families]
    handles += [Line2D([], [], color="0.4", marker=o.marker, ls="", label=o.label or o.name)
                for o in map(get_objective, sorted(set(pts["objective"]), key=_objective_order))]
    if (pts["seeds"] >= 2).any():
        handles.append(ax.errorbar([np.nan], [np.nan], xerr=[1.0], yerr=[1.0], fmt="o", color="0.4", ms=MARKER_PT,
                                   elinewidth=0.8, capsize=2, label="±1 std over seeds" + (
                                       " (settings with ≥ 2)" if (pts["seeds"] < 2).any() else "")))
    if not pts["converged"].all():
        handles.append(Line2D([], [], color="0.4", marker="o", mfc="white", mew=1.5, ls="",
                              label="unconverged (hollow): still improving at the epoch cap"))
    handles += bound   # the region below the bound line, then the line
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title="family (paper code)" + ("; dashed: IAF encoder" if any(_family_dashes(n) != "-" for n in families)
                                             else "") + "\n"
                    + ("labels: β, or σ for target rate" if plain else "labels: the objective's setting")
                    + (", posterior std" if len(stds) > 1 else ""),
              title_fontsize=8)
    if symlog:
        ax.set_xscale("symlog", linthresh=1.0, linscale=1.0)
    ax.set_xlim(0, r_max)
    ax.set_ylim(d_min, d_max)
    ax.set_xlabel("rate R (nats)" + (": linear below 1, logarithmic above" if symlog else ""))
    ax.set_ylabel("distortion D (nats)")
    title = f"{frontier.dataset}: rate–distortion, {frontier.split} split"
    ax.set_title(f"{title} ({seeds_note(pts)})" if len(title) + len(seeds_note(pts)) <= 95   # what fits one line
                 else f"{title}\n{seeds_note(pts)}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # Judged on the final axes: which frontiers run together, and where the labels go.
    band = crowded_band(ax, pts)
    inset = _zoom_on_band(ax, frontier, band, colours, symlog, r_end, d_min) if band else None
    if len(pts) <= label_limit:
        labels = []
        for p in pts.itertuples():
            label = point_knob(p).split("=", 1)[1] if plain else point_knob(p)
            if len(stds) > 1:   # the posterior's std varies: say which
                label += f" {p.encoder_std}"
            labels.append(label)
        placed = marker_boxes(ax, pts["rate"], pts["distortion"], size_pt=MARKER_PT - 1)
        if inset is not None:   # the β labels keep off the inset
            placed.append(inset.get_window_extent(fig.canvas.get_renderer()).padded(4))
        for (r, d), text in crowded_labels(ax, pts["rate"], pts["distortion"], labels):
            label = ax.annotate(text, (r, d), xytext=_LABEL_SPOTS[0][0], textcoords="offset points", fontsize=6,
                                color="0.25", zorder=4, path_effects=[withStroke(linewidth=2, foreground="white")])
            place_label(label, placed)
    return fig


def plot(frontier: Frontier, path: str | Path, *, rate_axis: str = "auto", label_limit: int = 80) -> Path:
    """The RD plane (`figure`) as a PNG at `path`."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: directory {path.parent} does not exist")
    fig = figure(frontier, rate_axis=rate_axis, label_limit=label_limit)
    import matplotlib.pyplot as plt   # after figure() chose the Agg backend

    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
