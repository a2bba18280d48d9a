"""`rdsweep compare`: two cells (or two settings over their seeds) side by side, with the error of each difference.

Two models evaluated on the same examples are compared example by example: the paired difference
mean_i (x_i^A − x_i^B) has standard error sd_i(x^A − x^B)/√N, far below that of two independent means where the
examples' own spread (easy and hard digits) is shared. Seeds add the training's randomness: where both sides
have several seeds, the difference of their seed means has a standard error from the seeds' spread. A
difference is *resolved* when it exceeds RESOLVED_AT (2) standard errors of the larger of the two sources
(docs/uncertainty.md); otherwise this comparison cannot tell it from noise.

A side is a cell id (or a unique prefix of one), or a family and a setting with an optional seed, in one
argument: "-+- β=1", "gauss-pixelcnn-normal sigma=5 seed=1". Without a seed a side is every seed of the setting.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rdsweep.errors import UserError
from rdsweep.frontier import family_label, point_knob, read_table
from rdsweep.models.families import get_family
from rdsweep.uncertainty import RESOLVED_AT, load_examples, mean_se, resolved

QUANTITIES = ("rate", "distortion", "elbo")
_NAMES = {"rate": "R", "distortion": "D", "elbo": "ELBO"}


@dataclass(frozen=True)
class Side:
    label: str                  # as printed: "-+- β=1 (seeds 0, 1, 2)"
    rows: pd.DataFrame          # its cells' rows on the split, one per seed


@dataclass(frozen=True)
class Difference:
    quantity: str               # rate | distortion | elbo
    a: float                    # the side's mean over its cells (seeds)
    b: float
    delta: float                # a − b
    examples_se: float | None   # paired over examples (and z-draws), or unpaired where no per-example file
    paired: bool                # examples_se is paired
    seeds_se: float | None      # from the seeds' spread, where both sides have ≥ 2
    resolved: bool | None       # None: no error known


@dataclass(frozen=True)
class Comparison:
    dataset: str
    split: str
    a: Side
    b: Side
    examples: int | None        # examples per cell on the split
    differences: list[Difference]
    paired_seeds: tuple | None = None   # the seeds of A and of B whose per-example values were paired


def compare(table: str | Path, a: str, b: str, split: str = "test", include_unconverged: bool = False) -> Comparison:
    path = Path(table)
    rows = read_table(path, split, include_unconverged)
    side_a, side_b = _side(rows, a, "A"), _side(rows, b, "B")
    if set(side_a.rows["cell_id"]) & set(side_b.rows["cell_id"]):
        raise UserError(f"A ({a}) and B ({b}) share cells: compare two different cells or settings")
    paired = _per_example(path, side_a.rows, side_b.rows, split)
    pairs, paired_seeds = paired if paired is not None else (None, None)
    differences = []
    for q in QUANTITIES:
        va, vb = side_a.rows[q].astype(float).to_numpy(), side_b.rows[q].astype(float).to_numpy()
        delta = float(va.mean() - vb.mean())
        if pairs is not None:
            examples_se, is_paired = mean_se(pairs[0][q] - pairs[1][q]), True
        else:
            examples_se, is_paired = _unpaired(side_a.rows, side_b.rows, q), False
        seeds_se = None
        if len(va) >= 2 and len(vb) >= 2:
            seeds_se = math.hypot(mean_se(va), mean_se(vb))
        differences.append(Difference(q, float(va.mean()), float(vb.mean()), delta, examples_se, is_paired, seeds_se,
                                      resolved(delta, examples_se, seeds_se)))
    n = side_a.rows["examples_n"].dropna()
    return Comparison(str(rows["dataset"].iloc[0]), split, side_a, side_b, int(n.iloc[0]) if len(n) else None,
                      differences, paired_seeds)


def _side(rows: pd.DataFrame, spec: str, name: str) -> Side:
    """The cells one argument names (module docstring)."""
    words = spec.split()
    if len(words) == 1 and re.fullmatch(r"[0-9a-f]{1,16}", spec):
        found = rows[rows["cell_id"].str.startswith(spec)]
        if found["cell_id"].nunique() > 1:
            raise UserError(f"{name}: cell id prefix {spec!r} matches {found['cell_id'].nunique()} cells; give more of it")
        if not found.empty:
            return Side(_label(found), found)
        raise UserError(f"{name}: no converged cell {spec!r} on this split of the table")
    if not words:
        raise UserError(f"{name} is empty: give a cell id, or a family and a setting, e.g. '-+- β=1'")
    family = get_family(words[0]).name
    setting = seed = None
    for word in words[1:]:
        word = word.replace("beta", "β").replace("sigma", "σ")
        if word.startswith("seed="):
            try:
                seed = int(word[5:])
            except ValueError:
                raise UserError(f"{name}: {word!r} is not seed=N") from None
        elif setting is None:
            setting = word
        else:
            raise UserError(f"{name}: {spec!r} names two settings; give one (e.g. β=1 or σ=5) and seed=N")
    found = rows[rows["family"] == family]
    if setting is not None:
        knobs = found.apply(point_knob, axis=1) if not found.empty else pd.Series(dtype=str)
        found = found[knobs == _canonical(setting)]
    if seed is not None:
        found = found[found["seed"] == seed]
    if found.empty:
        raise UserError(f"{name}: no converged cell of {family} {setting or ''}"
                        f"{f' seed {seed}' if seed is not None else ''} on this split of the table")
    if found.apply(point_knob, axis=1).nunique() > 1:
        raise UserError(f"{name}: {spec!r} matches several settings "
                        f"({', '.join(sorted(found.apply(point_knob, axis=1).unique()))}); name one")
    return Side(_label(found), found.sort_values("seed"))


def _canonical(setting: str) -> str:
    """β=1.0 → β=1, as point_knob writes it."""
    key, _, value = setting.partition("=")
    try:
        return f"{key}={float(value):g}"
    except ValueError:
        return setting


def _label(rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    seeds = ", ".join(str(s) for s in sorted(rows["seed"]))
    return f"{family_label(first['family'])} {point_knob(first)} (seed{'s' if len(rows) > 1 else ''} {seeds})"


def _per_example(path: Path, a: pd.DataFrame, b: pd.DataFrame, split: str):
    """Each side's per-example R, D, ELBO averaged over its cells that kept them (rdsweep 0.5 on), and those
    cells' seeds per side; None when a side has no such cell or the two were not evaluated on the same examples.
    The paired error of the difference is then measured on those cells: an estimate of the examples' noise in
    the difference of all of them."""
    sides, seeds = [], []
    for rows in (a, b):
        kept = rows[rows["examples_file"].notna()]
        if kept.empty:
            return None
        rates, distortions = zip(*(load_examples(path.parent / f, split) for f in kept["examples_file"]))
        if len({len(r) for r in rates}) > 1:
            return None
        rate, distortion = np.mean(rates, axis=0), np.mean(distortions, axis=0)
        sides.append({"rate": rate, "distortion": distortion, "elbo": -(rate + distortion)})
        seeds.append(sorted(int(s) for s in kept["seed"]))
    if len(sides[0]["rate"]) != len(sides[1]["rate"]) or a["dataset"].iloc[0] != b["dataset"].iloc[0]:
        return None
    return sides, seeds


def _unpaired(a: pd.DataFrame, b: pd.DataFrame, q: str) -> float | None:
    """The error of a difference of independent means, from each cell's standard error (None if any lacks one)."""
    errors = []
    for rows in (a, b):
        se = rows[f"{q}_se"]
        if se.isna().any():
            return None
        errors.append(math.sqrt(float((se.astype(float) ** 2).sum())) / len(rows))
    return math.hypot(*errors)


# ---- output ----------------------------------------------------------------------------------------------

def render(c: Comparison) -> Group:
    head = Text(f"{c.dataset}, {c.split} split"
                + (f" ({c.examples} examples)" if c.examples else "") + ", nats per example\n"
                f"A: {c.a.label}\nB: {c.b.label}")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("", "A", "B", "A − B", "± examples", "± seeds"):
        table.add_column(column, justify="left" if not column else "right", no_wrap=True)
    for d in c.differences:
        table.add_row(_NAMES[d.quantity], f"{d.a:.2f}", f"{d.b:.2f}", f"{d.delta:+.2f}",
                      _se(d.examples_se) + ("" if d.paired or d.examples_se is None else " u"), _se(d.seeds_se))
    notes = []
    if c.paired_seeds is not None and (len(c.paired_seeds[0]) < len(c.a.rows) or len(c.paired_seeds[1]) < len(c.b.rows)):
        notes.append("± examples: paired over the cells that kept per-example values (rdsweep 0.5 on): seeds "
                     f"{', '.join(map(str, c.paired_seeds[0]))} of A, {', '.join(map(str, c.paired_seeds[1]))} of B.")
    if any(not d.paired and d.examples_se is not None for d in c.differences):
        notes.append("u: unpaired (a cell has no per-example values: trained before rdsweep 0.5).")
    if all(d.examples_se is None for d in c.differences):
        notes.append("No error over examples is known (cells trained before rdsweep 0.5).")
    if all(d.seeds_se is None for d in c.differences):
        notes.append("± seeds needs two or more seeds on both sides; the training's own noise is not in these errors.")
    return Group(head, table, *[Text(n) for n in notes], *[Text(v) for v in verdicts(c)])


def _se(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def verdicts(c: Comparison) -> list[str]:
    """One sentence per quantity: the difference in words, resolved or not."""
    lines = []
    for d in c.differences:
        name = _NAMES[d.quantity]
        higher = "A" if d.delta > 0 else "B"
        errors = [e for e in (d.examples_se, d.seeds_se) if e is not None]
        if d.delta == 0:
            lines.append(f"{name}: equal.")
        elif d.resolved is None:
            lines.append(f"{name}: {higher} is higher by {abs(d.delta):.2f}; no error is known, so this is not judged.")
        elif d.resolved:
            lines.append(f"{name}: {higher} is higher by {abs(d.delta):.2f} ± {max(errors):.2f}: resolved "
                         f"(beyond {RESOLVED_AT:g} standard errors).")
        else:
            lines.append(f"{name}: A − B = {d.delta:+.2f} ± {max(errors):.2f}: not resolved at this noise.")
    return lines
