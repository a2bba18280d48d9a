"""`rdsweep compare`: two cells (or two settings over their seeds) side by side, with the error of each difference.

Two models evaluated on the same examples are compared example by example: the paired difference
mean_i (x_i^A − x_i^B) has standard error sd_i(x^A − x^B)/√N, far below that of two independent means where the
examples' own spread (easy and hard digits) is shared. Seeds add the training's randomness: where both sides
have several seeds, the difference of their seed means has a standard error from the seeds' spread, on few
degrees of freedom (Welch–Satterthwaite). The two sources add in quadrature, and a difference is *resolved*
when it exceeds t(0.975, df) times that total (2 without seeds; docs/uncertainty.md); otherwise this comparison
cannot tell it from noise. Where a side has one seed, the training's noise is not measured, and the verdict
says so.

A side is a cell id (or a unique prefix of one), or a family and a setting with an optional seed, experiment
and posterior std, in one argument: "-+- β=1", "gauss-pixelcnn-normal sigma=5 seed=1", "--- β=1 W=10 exp=quick".
Without a seed a side is every seed of the setting.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rdsweep.analysis.frontier import family_label, point_knob, read_table
from rdsweep.errors import UserError
from rdsweep.models.families import get_family
from rdsweep.uncertainty import Error, mean_examples, mean_se, seeds_error

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
    error: Error                # over examples (paired, or unpaired where no per-example file) and seeds
    paired: bool                # error.examples is paired

    @property
    def resolved(self) -> bool | None:   # None: no error known
        return self.error.resolves(self.delta)


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
        seeds_se, df = seeds_error(list(va), list(vb))
        differences.append(Difference(q, float(va.mean()), float(vb.mean()), delta,
                                      Error(examples_se, seeds_se, df), is_paired))
    n = side_a.rows["examples_n"].dropna()
    return Comparison(str(rows["dataset"].iloc[0]), split, side_a, side_b, int(n.iloc[0]) if len(n) else None,
                      differences, paired_seeds)


def _side(rows: pd.DataFrame, spec: str, name: str) -> Side:
    """The cells one argument names (module docstring): cells of one setting (experiment, family, objective
    setting, posterior std), one row each."""
    words = spec.split()
    if not words:
        raise UserError(f"{name} is empty: give a cell id, or a family and a setting, e.g. '-+- β=1'")
    if len(words) == 1 and re.fullmatch(r"[0-9a-f]{1,16}", spec):
        found = rows[rows["cell_id"].str.startswith(spec)]
        if found.empty:
            raise UserError(f"{name}: no converged cell {spec!r} on this split of the table")
        if len(found) > 1:
            where = "cells" if found["cell_id"].nunique() > 1 else "experiments"
            raise UserError(f"{name}: {spec!r} matches {len(found)} {where} "
                            f"({', '.join(sorted(found['experiment'] + '/' + found['cell_id']))}); give more of it")
        return Side(_label(found), found)
    family = get_family(words[0]).name
    setting, seed, experiment, std = [], None, None, None
    for word in words[1:]:
        for long, short in (("beta", "β"), ("sigma", "σ"), ("lambda", "λ")):
            word = word.replace(long, short)
        key, _, value = word.partition("=")
        if key == "seed":
            try:
                seed = int(value)
            except ValueError:
                raise UserError(f"{name}: {word!r} is not seed=N") from None
        elif key == "exp":
            experiment = value
        elif key == "std":
            std = value
        else:
            setting.append(_canonical(word))
    found = rows[rows["family"] == family]
    if setting:
        knobs = found.apply(point_knob, axis=1) if not found.empty else pd.Series(dtype=str)
        found = found[knobs == " ".join(setting)]
    for column, value in (("experiment", experiment), ("encoder_std", std)):
        if value is not None:
            found = found[found[column] == value]
    if seed is not None:
        found = found[found["seed"] == seed]
    if found.empty:
        raise UserError(f"{name}: no converged cell of {family} {' '.join(setting)}"
                        f"{f' seed {seed}' if seed is not None else ''} on this split of the table")
    knobs = found.apply(point_knob, axis=1)
    if knobs.nunique() > 1:
        raise UserError(f"{name}: {spec!r} matches several settings ({', '.join(sorted(knobs.unique()))}); name one")
    for column, option in (("experiment", "exp"), ("encoder_std", "std")):
        if found[column].nunique(dropna=False) > 1:
            raise UserError(f"{name}: {spec!r} matches cells of several {column.replace('_', ' ')}s "
                            f"({', '.join(sorted(map(str, found[column].unique())))}); name one with {option}=…")
    if found["seed"].duplicated().any():
        raise UserError(f"{name}: {spec!r} matches two cells with one seed; name the experiment with exp=…")
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
        found = mean_examples([(path.parent / r.examples_file, r.cell_id, r.rate) for r in kept.itertuples()], split)
        if found is None:
            return None
        rate, distortion, used = found
        sides.append({"rate": rate, "distortion": distortion, "elbo": -(rate + distortion)})
        seeds.append(sorted(int(kept["seed"].iloc[i]) for i in used))
    if len(sides[0]["rate"]) != len(sides[1]["rate"]) or a["dataset"].iloc[0] != b["dataset"].iloc[0]:
        return None
    return sides, seeds


def _unpaired(a: pd.DataFrame, b: pd.DataFrame, q: str) -> float | None:
    """The error of a difference of two independent means, each side's the largest of its cells' standard
    errors (its seeds share the examples, so their errors do not average out); None where a side has none."""
    errors = []
    for rows in (a, b):
        se = rows[f"{q}_se"].dropna() if f"{q}_se" in rows else pd.Series(dtype=float)
        if se.empty:
            return None
        errors.append(float(se.astype(float).max()))
    return math.hypot(*errors)


# ---- output ----------------------------------------------------------------------------------------------

def render(c: Comparison) -> Group:
    head = Text(f"{c.dataset}, {c.split} split"
                + (f" ({c.examples} examples)" if c.examples else "") + ", nats per example\n"
                f"A: {c.a.label}\nB: {c.b.label}")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("", "A", "B", "A − B", "± examples", "± seeds", "± total"):
        table.add_column(column, justify="left" if not column else "right", no_wrap=True)
    for d in c.differences:
        e = d.error
        table.add_row(_NAMES[d.quantity], f"{d.a:.2f}", f"{d.b:.2f}", f"{d.delta:+.2f}",
                      _se(e.examples) + ("" if d.paired or e.examples is None else " u"), _se(e.seeds), _se(e.total))
    notes = []
    if c.paired_seeds is not None and (len(c.paired_seeds[0]) < len(c.a.rows) or len(c.paired_seeds[1]) < len(c.b.rows)):
        notes.append("± examples: paired over the cells whose per-example values were found (rdsweep 0.5 on): seeds "
                     f"{', '.join(map(str, c.paired_seeds[0]))} of A, {', '.join(map(str, c.paired_seeds[1]))} of B.")
    if any(not d.paired and d.error.examples is not None for d in c.differences):
        notes.append("u: unpaired, from the cells' standard errors (a cell's per-example values are missing).")
    if all(d.error.examples is None for d in c.differences):
        notes.append("No error over examples is known (cells trained before rdsweep 0.5).")
    seeds = next(d.error for d in c.differences)
    if seeds.seeds is None:
        notes.append("Training noise not measured: ± seeds needs two or more seeds on both sides.")
    else:
        notes.append("± total = √(examples² + seeds²); a difference is resolved beyond t × ± total, t Student's "
                     "at the seeds' degrees of freedom (df; 2 without seeds).")
    return Group(head, table, *[Text(n) for n in notes], *[Text(v) for v in verdicts(c)])


def _se(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def verdicts(c: Comparison) -> list[str]:
    """One sentence per quantity: the difference in words, resolved or not, and at which noise."""
    lines = []
    for d in c.differences:
        name, total = _NAMES[d.quantity], d.error.total
        higher = "A" if d.delta > 0 else "B"
        at = (f" (t = {d.error.factor:.2f} at {d.error.total_df:.1f} df)" if d.error.total_df else
              " at the examples' noise (training noise not measured)")
        if d.delta == 0:
            lines.append(f"{name}: equal.")
        elif d.resolved is None:
            lines.append(f"{name}: {higher} is higher by {abs(d.delta):.2f}; no error is known, so this is not judged.")
        elif d.resolved:
            lines.append(f"{name}: {higher} is higher by {abs(d.delta):.2f} ± {total:.2f}: resolved{at}.")
        else:
            lines.append(f"{name}: A − B = {d.delta:+.2f} ± {total:.2f}: not resolved{at}.")
    return lines
