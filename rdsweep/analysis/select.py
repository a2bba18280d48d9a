"""Model selection on a frontier table (seed 003): the cell each criterion picks, and what a useful latent costs.

The usual recipe picks the β whose model has the best held-out ELBO. With a decoder that can model the data
on its own, that model often ignores its latent (R ≈ 0: an auto-decoder), since every nat of rate costs a nat
of ELBO unless it buys at least as much distortion. `rdsweep select` puts that pick beside the picks of other
criteria, over all families and per family:

    valid-elbo       the highest ELBO = −(R + D) on the judging split
    iwae             the highest IWAE bound on the judging split (among the cells that have one)
    probe-accuracy   the highest accuracy of a linear probe on draws z ~ e(z|x) (labelled data)
    rate ≥ σ         (--rate σ) the highest ELBO among the cells whose rate on the judging split is at least
                     σ nats: the cheapest latent of at least that rate, priced in ELBO
    probe ≥ p        (--probe p) the highest ELBO among the cells whose probe accuracy on the judging split
                     is at least p: the cheapest latent that names the label that often

Candidates are cells, i.e. single trained models (a user keeps one model), or with `by_setting` settings judged
by their seeds' means; converged ones only unless unconverged ones are asked for. The criteria judge on one
split (valid by default) and the pick's numbers are read on another (test by default), so the numbers shown
are not the ones the choice was fitted to. Every pick's ELBO carries its error, and the candidates that cannot
be told from a pick at this noise are listed as tied with it (docs/uncertainty.md). Exactly equal judged
values go to the cell that comes first in collect's row order: experiment, family (in `rdsweep families`
order), objective, β, σ, λ, W, seed, cell id; this does not depend on how the file happens to be sorted.

A pick's regime is that of its setting in `rdsweep frontier --split REPORT` (the same rows, seeds averaged),
so the two commands never disagree on a setting. The cost of a useful latent
is the ELBO (report split) given up by taking the probe-accuracy (or rate ≥ σ, or probe ≥ p) pick instead of
the valid-elbo pick.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rdsweep.analysis.collect import cell_order
from rdsweep.analysis.frontier import analyse, family_label, point_knob, read_table, setting_key
from rdsweep.errors import UserError
from rdsweep.models.families import FAMILIES
from rdsweep.uncertainty import Error, mean_examples, mean_se, seeds_error, typical_seed_sd, welch

CRITERIA = ("valid-elbo", "iwae", "probe-accuracy")   # plus one rate criterion per --rate σ, probe per --probe p
OVERALL = "overall"
# The criteria that price a useful latent against the valid-elbo pick (the closing lines).
_PRICED = ("probe-accuracy", "rate", "probe")
# The column each criterion maximises on the judging split (rate ≥ σ: the ELBO of the cells that reach σ).
SCORE = {"valid-elbo": "elbo", "iwae": "iwae", "probe-accuracy": "probe_accuracy", "rate": "elbo", "probe": "elbo"}
# Why a criterion cannot be answered by the whole table (an error when it is asked for), and by one family.
_MISSING = {
    "iwae": "has an IWAE bound (set iwae_k > 0 under [evaluation] in the spec and launch again)",
    "probe-accuracy": "has a probe accuracy (the data has no labels, or the table was collected before "
                      "rdsweep measured the latent)",
}
_NO_VALUES = {"iwae": "no cell has an IWAE bound", "probe-accuracy": "no cell has a probe accuracy"}
# What the per-family table's short names stand for (Criterion.short), kind by kind.
_SHORT = {"valid-elbo": "elbo=valid-elbo", "probe-accuracy": "probe=probe-accuracy", "rate": "R≥σ=rate≥σ",
          "probe": "p≥P=probe≥P"}
_IDENTITY = ["cell_id", "experiment", "dataset", "family", "paper_code", "objective", "beta", "target_rate",
             "free_bits", "warmup_epochs", "encoder_std", "seed", "status", "examples_file"]
_REPORTED = ["rate", "distortion", "elbo", "iwae", "mutual_info", "marginal_kl", "active_units", "probe_accuracy",
             "elbo_se", "probe_accuracy_se", "mutual_info_at_ceiling", "seeds", "seeds_se", "seeds_pooled"]
# The error of each criterion's score, for ties: a score column → its standard error column.
_SCORE_SE = {"elbo": "elbo_se", "probe_accuracy": "probe_accuracy_se"}


@dataclass(frozen=True)
class Criterion:
    name: str                         # valid-elbo | iwae | probe-accuracy | rate | probe
    min_rate: float | None = None     # σ of the rate criterion, nats
    min_probe: float | None = None    # p of the probe criterion, a fraction of the examples

    @property
    def label(self) -> str:
        if self.name == "rate":
            return f"rate ≥ {self.min_rate:g}"
        return f"probe ≥ {self.min_probe:g}" if self.name == "probe" else self.name

    @property
    def short(self) -> str:
        """The per-family table's name for it, where the criteria that pick one cell share its row."""
        if self.name == "rate":
            return f"R≥{self.min_rate:g}"
        if self.name == "probe":
            return f"p≥{self.min_probe:g}"
        return {"valid-elbo": "elbo", "probe-accuracy": "probe"}.get(self.name, self.name)

    @classmethod
    def of(cls, pick: dict) -> "Criterion":
        return cls(pick["criterion"], pick["min_rate"], pick["min_probe"])


@dataclass(frozen=True)
class Selection:
    path: Path
    dataset: str
    judged_on: str
    reported_on: str
    included: str                     # "converged" or "converged and unconverged"
    cells: int
    seeds: int                        # distinct seeds among the cells; by setting, the most seeds of a setting
    families: list[str]
    criteria: list[Criterion]
    has_probe: bool                   # some candidate has a probe accuracy on the judging split
    picks: list[dict]                 # one per scope (overall, then each family) × criterion; `--json` prints them
    reference: dict                   # the overall valid-elbo pick, asked for or not: what costs are measured from
    by_setting: bool = False          # candidates are settings (their seeds' means), not cells


def select(path: str | Path, by: list[str] | None = None, rates: list[float] | None = None,
           split: str = "valid", report_split: str = "test", include_unconverged: bool = False,
           probes: list[float] | None = None, by_setting: bool = False) -> Selection:
    """Each criterion's pick among the table's cells, overall and per family (module docstring).
    `by` None: every criterion the table can answer; `rates`: one rate criterion per σ (nats); `probes`: one
    probe criterion per p (a probe accuracy); `by_setting`: judge each setting by its seeds' mean."""
    path = Path(path)
    judged_rows = read_table(path, split, include_unconverged)
    reported_rows = judged_rows if report_split == split else read_table(path, report_split, include_unconverged)
    cells = _records(judged_rows)
    if by_setting:
        cells = _settings(cells)
    criteria = _criteria(path, cells, by, rates or [], probes or [], split)

    # Regimes as `rdsweep frontier --split REPORT` labels them: each pick gets its setting's.
    frontier = analyse(reported_rows.dropna(subset=["rate", "distortion"]), report_split)
    reported_records = _records(reported_rows)
    reported = {(r["experiment"], r["cell_id"]): r for r in (_settings(reported_records) if by_setting else reported_records)}
    examples = _Examples(path, split, report_split)

    def numbers(cell: dict) -> dict:
        row = reported.get((cell["experiment"], cell["cell_id"]), {})
        out = {name: row.get(name) for name in _REPORTED}
        out["elbo_error"] = row["noise"].total if row else None   # examples and seeds (settings) together
        out["regime"] = (None if out["rate"] is None else
                         frontier.regime_of(cell))
        return out

    families = list(dict.fromkeys(c["family"] for c in cells))
    picks, reference = [], None
    for scope in [OVERALL] + families:
        among = cells if scope == OVERALL else [c for c in cells if c["family"] == scope]
        ref_cell = _best(among, Criterion("valid-elbo"))[0]
        ref = {**ref_cell, **numbers(ref_cell)}
        if scope == OVERALL:
            reference = {**ref, "setting": point_knob(ref)}
        for criterion in criteria:
            cell, n = _best(among, criterion)
            pick = {"criterion": criterion.name, "min_rate": criterion.min_rate, "min_probe": criterion.min_probe,
                    "scope": scope, "candidates": n,
                    "note": None if cell else _why_none(criterion, among, split),
                    **{k: (cell or {}).get(k) for k in _IDENTITY},
                    "setting": point_knob(cell) if cell else None,
                    "judged_on": split, "score": cell[SCORE[criterion.name]] if cell else None,
                    "judged_rate": cell["rate"] if cell else None, "reported_on": report_split,
                    **(numbers(cell) if cell else dict.fromkeys(_REPORTED + ["regime", "elbo_error"]))}
            pick["elbo_given_up"] = (None if pick["elbo"] is None or ref["elbo"] is None
                                     else ref["elbo"] - pick["elbo"])
            cost = (examples.difference(ref_cell, cell, reported, reported_split=True)
                    if pick["elbo_given_up"] is not None else None)
            pick["elbo_given_up_se"] = cost.total if cost else None
            pick["elbo_given_up_resolved"] = cost.resolves(pick["elbo_given_up"]) if cost else None
            tied, unjudged = _tied(cell, among, criterion, examples) if cell else ([], 0)
            pick["tied"] = [_name(c, scope == OVERALL, by_setting) for c in tied]
            pick["ties_unjudged"] = unjudged
            picks.append(pick)
    return Selection(path, str(judged_rows["dataset"].iloc[0]), split, report_split,
                     "converged and unconverged" if include_unconverged else "converged", len(cells),
                     max(c["seeds"] for c in cells) if by_setting else len({c["seed"] for c in cells}), families, criteria,
                     any(c["probe_accuracy"] is not None for c in cells), picks, reference, by_setting)


def _name(c: dict, with_family: bool, by_setting: bool) -> str:
    """A candidate as a tied list names it: paper code (overall), setting, and seed (cells)."""
    family = f"{FAMILIES[c['family']].code or c['family']} " if with_family else ""
    return family + point_knob(c) + ("" if by_setting else f" seed {c['seed']}")


def _settings(cells: list[dict]) -> list[dict]:
    """One candidate per setting: its seeds' means of R, D, ELBO, probe, active units (the first cell stands
    for its identity), `seeds`, the seeds' ELBOs, and its `noise`: the examples' (the largest of its cells':
    they share the examples, so their errors do not average out) with the seeds' standard error of the mean.
    A one-seed setting's training noise is not measured; it gets the seed spread typical of the table's
    settings with several seeds (`seeds_pooled`: the median of their standard deviations), where there are any."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault(setting_key(c), []).append(c)
    pooled_sd, pooled_df = typical_seed_sd([[c["elbo"] for c in g] for g in groups.values()])
    out = []
    for members in groups.values():
        setting = {**members[0], "seed": None, "examples_file": None, "seeds": len(members),
                   "seed_list": [c["seed"] for c in members], "seed_elbos": [c["elbo"] for c in members],
                   "cells": [c["cell_id"] for c in members], "examples_files": [c["examples_file"] for c in members],
                   # a setting is as unconverged as its least converged seed
                   "status": "unconverged" if any(c["status"] != "converged" for c in members) else "converged"}
        for key in ("rate", "distortion", "iwae", "mutual_info", "marginal_kl", "active_units", "probe_accuracy"):
            values = [c[key] for c in members if c[key] is not None]
            setting[key] = sum(values) / len(values) if len(values) == len(members) else None
        setting["elbo"] = -(setting["rate"] + setting["distortion"])
        setting["elbo_se"] = max([c["elbo_se"] for c in members if c["elbo_se"] is not None], default=None)
        seeds_se, df = seeds_error(setting["seed_elbos"])
        setting["seeds_pooled"] = seeds_se is None and pooled_sd is not None
        if setting["seeds_pooled"]:
            seeds_se, df = pooled_sd, pooled_df
        setting["seeds_se"] = seeds_se
        setting["noise"] = Error(setting["elbo_se"], seeds_se, df)
        ceilings = [c["mutual_info_at_ceiling"] for c in members]
        setting["mutual_info_at_ceiling"] = any(ceilings) if None not in ceilings else None
        setting["probe_accuracy_se"] = max([c["probe_accuracy_se"] for c in members if c["probe_accuracy_se"] is not None],
                                           default=None)
        out.append(setting)
    return sorted(out, key=cell_order)


class _Examples:
    """Per-example values of the candidates (rdsweep/uncertainty.py), read once each, for paired errors."""

    def __init__(self, path: Path, judged_on: str, reported_on: str):
        self.root, self.splits, self.cache = path.parent, {False: judged_on, True: reported_on}, {}

    def elbo(self, candidate: dict, reported_split: bool) -> np.ndarray | None:
        """The candidate's per-example ELBO on the split: a cell's, or the mean of a setting's cells that kept
        theirs (rdsweep 0.5 on; their paired error stands for the others'); None where none was found."""
        cells = (zip(candidate["cells"], candidate["examples_files"]) if "cells" in candidate
                 else [(candidate["cell_id"], candidate["examples_file"])])
        found = mean_examples([(f and self.root / f, cell_id, None) for cell_id, f in cells],
                              self.splits[reported_split], self.cache)
        return None if found is None else -(found[0] + found[1])

    def difference(self, a: dict, b: dict, records: dict | None = None, reported_split: bool = False) -> Error:
        """The error of ELBO(a) − ELBO(b) (candidates of the judging split; `records`: the report split's, by
        (experiment, cell_id), for the numbers' own standard errors there): over examples, paired where both
        kept per-example values, else from their standard errors as independent; and for settings the seeds'."""
        if (a["experiment"], a["cell_id"]) == (b["experiment"], b["cell_id"]):
            return Error(0.0)
        if records is not None:
            a, b = (records.get((c["experiment"], c["cell_id"]), c) for c in (a, b))
        ea, eb = self.elbo(a, reported_split), self.elbo(b, reported_split)
        if ea is not None and eb is not None and len(ea) == len(eb):
            examples = mean_se(ea - eb)
        elif a["elbo_se"] is not None and b["elbo_se"] is not None:
            examples = math.hypot(a["elbo_se"], b["elbo_se"])
        else:
            examples = None
        if "noise" not in a or a["noise"].seeds is None or b["noise"].seeds is None:
            return Error(examples)
        seeds, df = welch([(a["noise"].seeds, a["noise"].df), (b["noise"].seeds, b["noise"].df)])
        return Error(examples, seeds, df)


def _tied(pick: dict, among: list[dict], criterion: Criterion, examples: _Examples) -> tuple[list[dict], int]:
    """The candidates whose score cannot be told from the pick's at this noise (judging split): within t
    standard errors of the difference (2 without seeds; docs/uncertainty.md), paired for ELBO scores where the
    per-example values are kept, binomial for the probe. A candidate whose difference has no known error is
    tied only when exactly equal; their number is returned beside the list (ties not judged)."""
    score = SCORE[criterion.name]
    tied, unjudged = [], 0
    for c in _best(among, criterion, pool_only=True):
        if (c["experiment"], c["cell_id"]) == (pick["experiment"], pick["cell_id"]):
            continue
        if score == "elbo":
            error = examples.difference(pick, c)
        elif score in _SCORE_SE and pick[_SCORE_SE[score]] is not None and c[_SCORE_SE[score]] is not None:
            error = Error(math.hypot(pick[_SCORE_SE[score]], c[_SCORE_SE[score]]))
        else:
            error = Error()
        difference = pick[score] - c[score]
        if error.total is None:
            unjudged += difference != 0
            if difference == 0:
                tied.append(c)
        elif not error.resolves(difference):
            tied.append(c)
    return tied, unjudged


def _records(rows: pd.DataFrame) -> list[dict]:
    """The rows as plain dicts (null → None), ELBO = −(R + D) as frontier.py reads it, in the tie order."""
    rows = rows.assign(**{c: pd.NA for c in _IDENTITY + _REPORTED if c not in rows})  # tables of older versions
    records = []
    for row in rows.to_dict("records"):
        row = {k: _plain(row[k]) for k in _IDENTITY + _REPORTED}
        if row["rate"] is None or row["distortion"] is None:
            continue
        row["elbo"] = -(row["rate"] + row["distortion"])
        row["seeds"] = 1
        row["noise"] = Error(row["elbo_se"])
        records.append(row)
    return sorted(records, key=cell_order)


def _plain(value):
    """A table value as JSON-ready Python: None for nulls and NaN, int/float/str for numpy scalars."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _criteria(path: Path, cells: list[dict], by: list[str] | None, rates: list[float], probes: list[float],
              split: str) -> list[Criterion]:
    for name in by or []:
        if name not in CRITERIA:
            raise UserError(f"unknown criterion {name!r}: use {', '.join(CRITERIA)} (a target rate is --rate SIGMA, "
                            "a probe accuracy to reach --probe P)")
    for sigma in rates:
        if not math.isfinite(sigma) or sigma < 0:
            raise UserError(f"--rate must be a finite number of nats ≥ 0, got {sigma:g}")
    for p in probes:
        if not 0 <= p <= 1:
            raise UserError(f"--probe must be an accuracy between 0 and 1, got {p:g}")
    answerable = [name for name in CRITERIA if any(c[SCORE[name]] is not None for c in cells)]
    if probes and "probe-accuracy" not in answerable:
        raise UserError(f"--probe: no cell of {path} on the {split!r} split {_MISSING['probe-accuracy']}")
    if by:
        for name in dict.fromkeys(by):
            if name not in answerable:
                raise UserError(f"--by {name}: no cell of {path} on the {split!r} split {_MISSING[name]}")
        names = [name for name in CRITERIA if name in by]
    else:
        names = answerable
    return ([Criterion(name) for name in names] + [Criterion("rate", float(s)) for s in dict.fromkeys(rates)]
            + [Criterion("probe", min_probe=float(p)) for p in dict.fromkeys(probes)])


def _best(cells: list[dict], criterion: Criterion, pool_only: bool = False):
    """The criterion's pick (None if no cell qualifies) and the number of cells it chose among; with
    pool_only, the cells that qualify."""
    score = SCORE[criterion.name]
    pool = [c for c in cells if c[score] is not None
            and (criterion.name != "rate" or c["rate"] >= criterion.min_rate)
            and (criterion.name != "probe" or (c["probe_accuracy"] or 0) >= criterion.min_probe)]
    if pool_only:
        return pool
    # max() keeps the first of equal maxima, and the cells are in the tie order.
    return (max(pool, key=lambda c: c[score]) if pool else None), len(pool)


def _why_none(criterion: Criterion, cells: list[dict], split: str) -> str:
    if criterion.name == "rate":
        return (f"no cell reaches R ≥ {criterion.min_rate:g} nats on the {split} split "
                f"(the highest is {max(c['rate'] for c in cells):.2f})")
    if criterion.name == "probe":
        accuracies = [c["probe_accuracy"] for c in cells if c["probe_accuracy"] is not None]
        return (f"no cell's probe accuracy reaches {criterion.min_probe:g} on the {split} split "
                + (f"(the highest is {max(accuracies):.3f})" if accuracies else "(none has one)"))
    return _NO_VALUES[criterion.name]


# ---- output ----------------------------------------------------------------------------------------------

def render(selection: Selection, width: int = 80) -> Group:
    """`rdsweep select`: a line on what was compared, the overall picks, the per-family picks (when there are
    several families), and the ELBO price of a useful latent. `width`: the columns the tables should fit (they
    grow past it rather than cut a number)."""
    s = selection
    what = (f"settings (n: a setting's seeds, {s.seeds} at most; each judged by its seeds' mean)" if s.by_setting
            else f"{s.included} cells" + (" (s: a cell's seed)" if s.seeds > 1 else ""))
    head = Text(f"{s.dataset}: {s.cells} {what} of {len(s.families)} "
                f"famil{'y' if len(s.families) == 1 else 'ies'} in {s.path}. Each criterion picks by its score on "
                f"the {s.judged_on} split; R, ELBO (nats) and the latent's numbers are on the {s.reported_on} "
                "split; ±: the ELBO's standard error over the split's examples"
                + (" and the seeds (a one-seed setting's: the median seed spread of the settings with several)"
                   if s.by_setting else "") + "; I(x;z) ≥: at its log N ceiling; AU: active units; cost: the ELBO "
                "given up against the valid-elbo pick.")
    overall = [[p] for p in s.picks if p["scope"] == OVERALL]
    parts = [head, Text(""), _table(s, overall, per_family=False)]
    if len(s.families) > 1:   # one table, a family's rows together under its paper code: a study fits a screen
        parts += [Text(""), _table(s, [row for f in s.families for row in _folded(s, f)], per_family=True,
                                          width=width)]
    ties = tied_lines(s)
    parts += [Text("")] + [Text(line) for line in ties] + ([Text("")] if ties else [])
    parts += [Text(line) for line in cost_lines(s)]
    return Group(*parts)


def tied_lines(s: Selection) -> list[str]:
    """The overall picks that are not alone: the candidates that cannot be told from each pick on the judging
    split, and how many could not be judged (no error known)."""
    lines = []
    for p in s.picks:
        if p["scope"] != OVERALL or p["cell_id"] is None:
            continue
        label = Criterion.of(p).label
        if p["tied"]:
            lines.append(f"{label}: tied with its pick at this noise ({len(p['tied'])} not resolved from it on "
                         f"{s.judged_on}): " + ", ".join(p["tied"]))
        if p["ties_unjudged"]:
            why = ("rdsweep does not estimate the IWAE bound's error" if SCORE[p["criterion"]] not in _SCORE_SE
                   else "no standard error: trained before rdsweep 0.5")
            lines.append(f"{label}: ties not judged for {p['ties_unjudged']} of {p['candidates'] - 1} other "
                         f"candidates ({why}).")
    return lines


def _folded(s: Selection, family: str) -> list[list[dict]]:
    """A family's picks, one row per cell picked (and one for the criteria that pick none), in the order of
    the criteria: the criteria that agree share a row."""
    rows: dict[tuple, list[dict]] = {}
    for p in s.picks:
        if p["scope"] == family:
            rows.setdefault((p["experiment"], p["cell_id"]), []).append(p)
    return list(rows.values())


def _table(s: Selection, rows: list[list[dict]], per_family: bool, width: int = 80) -> Table:
    """Each row is a list of picks of one cell. Overall: a row per criterion. Per family: a row per cell
    picked, named by the criteria that pick it (short names, explained in the title), without D (−ELBO − R)
    so that it fits `width` columns; the names go on more lines where they do not."""
    if per_family:
        names = ", ".join(dict.fromkeys(_SHORT[c.name] for c in s.criteria if c.name in _SHORT))
        title = ("per family (paper code): the cells the criteria pick among the family's cells"
                 + (f" ({names})" if names else ""))
    else:
        title = f"overall: each criterion's pick among all {s.cells} {'settings' if s.by_setting else 'cells'}"
    # No vertical rules, the model by paper code, and no column that is empty for every pick: the comparison
    # fits 80 columns (each criterion's own score is in --json).
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=0)  # the box's blank divider is the gap
    columns = ["code", "picked by", "setting"] if per_family else ["criterion", "model"]
    seed_column = "n" if s.by_setting else "s"   # n: the setting's seeds; s: the cell's (one letter: 80 columns)
    # no D (= −ELBO − R): the errors' column fits instead
    columns += ([seed_column] if s.seeds > 1 else []) + ["R"] + [
        "ELBO", "±", "IWAE", "regime", "I(x;z)", "AU", "probe", "cost"]
    picks = [criteria[0] for criteria in rows]
    empty = {column for column, key in (("IWAE", "iwae"), ("I(x;z)", "mutual_info"), ("probe", "probe_accuracy"),
                                        ("±", "elbo_error"))
             if all(p[key] is None for p in picks)}
    columns = [c for c in columns if c not in empty]
    numeric = {"s", "n", "R", "D", "ELBO", "±", "IWAE", "I(x;z)", "AU", "probe", "cost"}
    lines = []
    for i, (criteria, p) in enumerate(zip(rows, picks)):
        picked = p["cell_id"] is not None
        first_of_family = i == 0 or picks[i - 1]["scope"] != p["scope"]
        # Marked as `rdsweep frontier` marks them: a model still improving at its epoch cap.
        setting = (p["setting"] + (" ~" if p["status"] == "unconverged" else "")) if picked else "none"
        cells = {
            "code": (FAMILIES[p["scope"]].code or p["scope"]) if per_family and first_of_family else "",
            "criterion": Criterion.of(p).label, "picked by": [Criterion.of(c).short for c in criteria],
            "setting": setting,
            "model": f"{FAMILIES[p['family']].code or p['family']} {setting}" if picked else setting,
            "s": _fmt(p["seed"], "d"), "n": _fmt(p["seeds"], "d"),
            "R": _fmt(p["rate"]), "D": _fmt(p["distortion"]), "ELBO": _fmt(p["elbo"]), "±": _fmt(p["elbo_error"]),
            "IWAE": _fmt(p["iwae"]), "regime": p["regime"] or "",
            "I(x;z)": ("≥" if p["mutual_info_at_ceiling"] else "") + _fmt(p["mutual_info"]),
            "AU": _fmt(p["active_units"], "d" if isinstance(p["active_units"], int) else ".0f"),   # settings: a mean
            "probe": _fmt(p["probe_accuracy"], ".3f"),
            "cost": "" if any(c["criterion"] == "valid-elbo" for c in criteria) else _fmt(p["elbo_given_up"]),
        }
        lines.append([cells[c] for c in columns])
    widths = [max([len(column)] + [len(line[j]) if column != "picked by" else 0 for line in lines])
              for j, column in enumerate(columns)]
    if "picked by" in columns:
        # Numbers are never cut short: where a row is too wide, the criteria's names go on more lines (a gap
        # of one column between columns).
        j = columns.index("picked by")
        room = max(max(len(n) for line in lines for n in line[j]) + 2, width - (sum(widths) - widths[j]) - (len(columns) - 1))
        for line in lines:
            line[j] = _names(line[j], room)
        widths[j] = max([len("picked by")] + [len(n) for line in lines for n in line[j].splitlines()])
    for column, widest in zip(columns, widths):
        table.add_column(column, justify="right" if column in numeric else "left", no_wrap=True, min_width=widest)
    for line in lines:
        table.add_row(*line)
    return table


def _names(names: list[str], room: int) -> str:
    """The criteria that pick one cell, on as many lines of at most `room` characters as they need. A line
    that goes on is indented, so that it does not read as a row of its own (a criterion without a pick)."""
    lines = [names[0]]
    for name in names[1:]:
        if len(lines[-1]) + 1 + len(name) <= room:
            lines[-1] += " " + name
        else:
            lines.append("  " + name)
    return "\n".join(lines)


def _fmt(value, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def cost_lines(s: Selection) -> list[str]:
    """The ELBO given up, overall, for a useful latent: the probe-accuracy and rate ≥ σ picks against the
    valid-elbo pick, one line each (a line, too, for a rate no cell reaches)."""
    ref, report = s.reference, s.reported_on
    lines = []
    for p in s.picks:
        if p["scope"] != OVERALL or p["criterion"] not in _PRICED:
            continue
        name = Criterion.of(p).label
        what = ("a useful latent" if p["criterion"] == "probe-accuracy" else
                f"a latent of at least {p['min_rate']:g} nats" if p["criterion"] == "rate" else
                f"a latent whose probe names the label at least {p['min_probe']:g} of the time")
        if p["cell_id"] is None:
            lines.append(f"{name}: {p['note']}; {what} is not on offer in this table.")
        elif (p["experiment"], p["cell_id"]) == (ref["experiment"], ref["cell_id"]):
            lines.append(f"The valid-elbo pick is also the {name} pick ({_describe(ref)}): here {what} costs "
                         "no ELBO.")
        elif p["elbo_given_up"] is not None:
            cost, se, resolved = p["elbo_given_up"], p["elbo_given_up_se"], p["elbo_given_up_resolved"]
            error = "" if se is None else f" ± {se:.2f}"
            price = (f"costs {cost:.2f}{error} nats of {report} ELBO" if cost >= 0 else
                     f"gains {-cost:.2f}{error} nats of {report} ELBO (the {report} split disagrees with the "
                     f"{s.judged_on} split)")
            if resolved is False:
                price += ", not resolved at this noise"
            lines.append(f"{what[0].upper()}{what[1:]} {price}: the {name} pick ({_describe(p)}) against the "
                         f"valid-elbo pick ({_describe(ref)}).")
    if not any(c.name in _PRICED for c in s.criteria):
        hint = ("--by probe-accuracy or --rate SIGMA" if s.has_probe
                else "--rate SIGMA (this table has no probe accuracy)")
        lines.append(f"To price a useful latent in ELBO, add {hint}.")
    return lines


def _describe(p: dict) -> str:
    probe = "" if p["probe_accuracy"] is None else f", probe {p['probe_accuracy']:.3f}" + (
        "" if p["probe_accuracy_se"] is None else f" ± {p['probe_accuracy_se']:.3f}")
    rate = "" if p["rate"] is None else f": R {p['rate']:.2f}"
    return f"{family_label(p['family'])} {p['setting']}{rate}{probe}, {p['regime'] or 'no regime'}"
