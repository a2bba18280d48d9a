"""How far a number can be trusted (docs/uncertainty.md): the standard error of a split mean, of a paired
difference between two models evaluated on the same examples, of an accuracy, and what "resolved" and "tied"
mean. numpy only: the trainer, collect, compare and select all read it.

Three sources of noise move a reported number: the finite split (which examples), the Monte Carlo draws of
z (how each example's R and D were estimated), and training (the seed; the processor's rounding). The first
two are in every per-example value, so one standard error over examples covers both; the third shows only
across seeds, as their spread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from rdsweep.files import atomic_write

LATENT_EXAMPLES = 1000   # the examples of a split the latent's worth is measured on (rdsweep/training/latent.py)
RESOLVED_AT = 2.0   # a difference is resolved beyond this many standard errors (many degrees of freedom)


def mean_se(values) -> float | None:
    """Standard error of the mean of per-example values: sample standard deviation / √N (None for N < 2)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return None
    se = float(values.std(ddof=1) / math.sqrt(values.size))
    return se if math.isfinite(se) else None


def binomial_se(p: float | None, n: int | None) -> float | None:
    """Standard error of an accuracy p measured on n examples, √(p(1 − p)/n), with p kept half an example
    inside [0, 1]: an accuracy of 1.000 on 500 examples is not known to ±0."""
    if p is None or not n:
        return None
    p = min(max(p, 0.5 / n), 1 - 0.5 / n)
    return math.sqrt(p * (1 - p) / n)


@dataclass(frozen=True)
class Error:
    """The standard error of a number or a difference, by source: the examples (and z-draws) of the split, and
    the seeds (training). The two are independent, so they add in quadrature. The seeds' part rests on few
    degrees of freedom, so a difference is judged against Student's t at `df` (Welch–Satterthwaite for two
    sides), not against 2."""
    examples: float | None = None
    seeds: float | None = None
    df: float | None = None          # of the seeds' part; None without one

    @property
    def total(self) -> float | None:
        known = [e for e in (self.examples, self.seeds) if e is not None]
        return math.hypot(*known) if known else None

    @property
    def total_df(self) -> float | None:
        """Degrees of freedom of the total (Welch–Satterthwaite, the examples' part taken as exact: N is
        hundreds); None without a seeds' part."""
        if self.seeds is None or not self.df or not self.total:
            return None
        return self.df * (self.total / self.seeds) ** 4

    @property
    def factor(self) -> float:
        """How many standard errors a resolved difference exceeds: t(0.975, total_df), or 2 without seeds."""
        return float(student_t.ppf(0.975, self.total_df)) if self.total_df else RESOLVED_AT

    def resolves(self, difference: float) -> bool | None:
        """|difference| beyond `factor` standard errors; None when no error is known."""
        return None if self.total is None else abs(difference) > self.factor * self.total


def seeds_error(a: list[float], b: list[float] | None = None) -> tuple[float | None, float | None]:
    """(standard error, degrees of freedom) from the seeds' spread: of the mean of `a`, or of mean(a) − mean(b)
    (Welch–Satterthwaite); (None, None) where a side has fewer than two seeds."""
    sides = [np.asarray(v, dtype=np.float64) for v in ((a,) if b is None else (a, b))]
    if any(v.size < 2 for v in sides):
        return None, None
    return welch([(math.sqrt(v.var(ddof=1) / v.size), v.size - 1) for v in sides])


def welch(parts: list[tuple[float, float]]) -> tuple[float, float]:
    """(standard error, degrees of freedom) of a sum or difference of independent estimates, each given as
    (standard error, degrees of freedom): errors in quadrature, Welch–Satterthwaite's degrees of freedom."""
    variances = [se ** 2 for se, _ in parts]
    if not sum(variances):
        return 0.0, float(sum(df for _, df in parts))
    return math.sqrt(sum(variances)), sum(variances) ** 2 / sum(v ** 2 / df for v, (_, df) in zip(variances, parts))


def typical_seed_sd(groups: list[list[float]]) -> tuple[float | None, float | None]:
    """(standard deviation, degrees of freedom) of one seed's value around its setting's mean, typical of the
    groups (settings) with two or more seeds: the median of their sample standard deviations, on their pooled
    degrees of freedom. The training noise a one-seed setting carries unmeasured. A median, not the pooled
    variance: one setting whose seeds land in different optima (a seed that collapses) would otherwise set
    every other setting's error."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups if len(g) >= 2]
    df = sum(g.size - 1 for g in groups)
    if not df:
        return None, None
    return float(np.median([g.std(ddof=1) for g in groups])), float(df)


CEILING_SLACK = 0.05   # nats: an estimate this close to log N may hide any larger I(x; z)


def at_ceiling(mutual_info: float | None, n: int | None) -> bool | None:
    """Whether an I(x; z) estimate sits at its log N ceiling, where it is only a lower bound."""
    if mutual_info is None or not n:
        return None
    return mutual_info >= math.log(n) - CEILING_SLACK


def save_examples(path: str | Path, cell_id: str, per_example: dict[str, dict[str, np.ndarray]]) -> None:
    """Each example's R and D (nats, the mean of its z-draws) per split, as `<split>_rate`, `<split>_distortion`
    in one .npz, written whole or not at all; examples in the split's own (fixed) order."""
    arrays = {f"{split}_{k}": np.asarray(v, dtype=np.float64) for split, m in per_example.items() for k, v in m.items()}
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, cell_id=np.array(cell_id), **arrays)


def load_examples(path: str | Path, split: str, cell_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rate, distortion) per example of one split, as `save_examples` wrote them; a ValueError when the file
    is another cell's (`cell_id` given)."""
    with np.load(path) as f:
        if cell_id is not None and str(f["cell_id"]) != cell_id:
            raise ValueError(f"{path} holds cell {f['cell_id']}, not {cell_id}")
        return f[f"{split}_rate"], f[f"{split}_distortion"]


def mean_examples(cells, split: str, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    """Per-example R and D averaged over cells (a setting's seeds; or one cell): `cells` are (path, cell_id,
    rate), rate the row's mean R on the split, to check the file against (None: unchecked). A cell whose file
    is missing, is another cell's, or no longer has its row's mean (retrained after collect) is left out.
    Returns (rate, distortion, the positions in `cells` used); None when none was, or their examples differ
    in number. `cache` keeps what was read, by (path, cell id, split)."""
    cache = {} if cache is None else cache
    used, rates, distortions = [], [], []
    for i, (path, cell_id, row_rate) in enumerate(cells):
        if path is None:
            continue
        key = (str(path), cell_id, split)
        if key not in cache:
            try:
                cache[key] = load_examples(path, split, cell_id)
            except (OSError, KeyError, ValueError):   # moved without its examples/, or another cell's file
                cache[key] = None
        if cache[key] is None:
            continue
        rate, distortion = cache[key]
        if row_rate is not None and not math.isclose(rate.mean(), row_rate, rel_tol=1e-9, abs_tol=1e-9):
            continue
        used.append(i)
        rates.append(rate)
        distortions.append(distortion)
    if not used or len({len(r) for r in rates}) > 1:
        return None
    return np.mean(rates, axis=0), np.mean(distortions, axis=0), used
