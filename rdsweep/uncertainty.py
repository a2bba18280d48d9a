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
from pathlib import Path

import numpy as np

from rdsweep.files import atomic_write

LATENT_EXAMPLES = 1000   # the examples of a split the latent's worth is measured on (rdsweep/latent.py)
RESOLVED_AT = 2.0   # a difference is resolved when it exceeds this many standard errors of its larger source


def mean_se(values) -> float | None:
    """Standard error of the mean of per-example values: sample standard deviation / √N (None for N < 2)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return None
    se = float(values.std(ddof=1) / math.sqrt(values.size))
    return se if math.isfinite(se) else None


def binomial_se(p: float | None, n: int | None) -> float | None:
    """Standard error of an accuracy p measured on n examples, √(p(1 − p)/n)."""
    if p is None or not n:
        return None
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def seed_spread(values) -> float | None:
    """Standard error of a mean over seeds (their sample standard deviation / √seeds); None for one seed."""
    return mean_se([v for v in values if v is not None and math.isfinite(v)])


def resolved(difference: float, *errors: float | None) -> bool | None:
    """Whether |difference| exceeds RESOLVED_AT times the largest of the known errors; None when none is known."""
    known = [e for e in errors if e is not None and math.isfinite(e)]
    if not known:
        return None
    return abs(difference) > RESOLVED_AT * max(known)


def tied(a: float, a_se: float | None, b: float, b_se: float | None) -> bool:
    """Two independent estimates are tied when their difference is within RESOLVED_AT standard errors of the
    difference (√(se_a² + se_b²)); unknown errors count as zero, so without errors nothing is tied but equals."""
    se = math.hypot(a_se or 0.0, b_se or 0.0)
    return abs(a - b) <= RESOLVED_AT * se


def mutual_info_ceiling(n: int | None) -> float | None:
    """log N: the most the mutual-information estimate over N examples can read (rdsweep/latent.py)."""
    return math.log(n) if n else None


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


def load_examples(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(rate, distortion) per example of one split, as `save_examples` wrote them."""
    with np.load(path) as f:
        return f[f"{split}_rate"], f[f"{split}_distortion"]
