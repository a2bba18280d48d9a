"""Learning curves of experiment directories: the valid objective and −ELBO of every cell, epoch by epoch.

The frontier shows where each model landed; its curve shows how it got there and whether it had stopped
improving: a converged cell's curve flattens before its best epoch, an unconverged one is still falling at
the epoch cap. Read from the ledger (EXPERIMENT/cells/<cell_id>.json, the per-epoch "history"), so it
needs no Ray and works on a sweep that is still running.

    curves(dirs)             one row per cell × evaluated epoch (plus one row, epoch NaN, per cell that
                             never reached an evaluation, e.g. a failed one), so summary() still sees it
    summary(frame)           one row per cell: status, epochs run, best epoch, best and last valid objective,
                             the epochs whose evaluation blew up (rdsweep/training/stopping.py), and whether the last
                             evaluation was back within bounds
    neg_elbo(frame)          the valid −ELBO = valid_rate + valid_distortion of each row: unlike a cell's own
                             objective (D + βR, D + |σ − R|, …), the same quantity for every cell
    draw_curves(frame, show) one panel per family and quantity (show: both, objective or elbo), one line per
                             cell coloured by its β or σ; plot_curves(frame, path, show) writes it
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pandas as pd

from rdsweep.cells import cell_knob
from rdsweep.errors import UserError
from rdsweep.sweep.ledger import Experiment
from rdsweep.training.objectives import get_objective
from rdsweep.training.result import CellResult
from rdsweep.training.stopping import blowups, evaluations, recovered

COLUMNS = ["experiment", "cell_id", "family", "objective", "beta", "target_rate", "knob", "seed", "status",
           "best_epoch", "epochs_run", "epoch_cap", "stop_reason", "recovered", "epoch", "valid_objective",
           "valid_rate", "valid_distortion", "lr", "blew_up"]
VALID = ("valid_objective", "valid_rate", "valid_distortion")


def curves(experiment_dirs: list) -> pd.DataFrame:
    """The evaluated epochs of every cell of these experiments: experiments in the order given, then by
    family, knob, seed and epoch."""
    rows = []
    for directory in experiment_dirs:
        experiment = Experiment(directory)
        if not experiment.path.is_dir():
            raise UserError(f"{experiment.path} is not a directory: give an experiment directory")
        experiment.check_layout(reads=("cells",))   # cells/ a file or a link that loops: one line, exit 2
        found = [_rows(experiment.name, result) for result in experiment.each_result()]
        if not found:
            raise UserError(f"{experiment.path} has no cell results in cells/: has it been launched?")
        if all(pd.isna(r["valid_objective"]) for cell_rows in found for r in cell_rows):
            raise UserError(f"{experiment.path}: no cell has evaluated the valid objective yet")
        rows += [r for cell_rows in found for r in cell_rows]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("best_epoch", "epochs_run", "epoch_cap", "epoch"):
        frame[column] = frame[column].astype("Int64")   # integers that may be missing (failed cells)
    return _ordered(frame).reset_index(drop=True)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: how it ended (status, stop reason, epochs run of the cap) and its valid objective
    at the best epoch (the state the frontier reports) and at the last evaluation."""
    out = []
    for _, cell in frame.groupby(["experiment", "cell_id"], sort=False):
        first = cell.iloc[0]
        evaluated = cell.dropna(subset=["valid_objective"]).sort_values("epoch")
        at_best = evaluated[evaluated["epoch"] == first["best_epoch"]] if pd.notna(first["best_epoch"]) else evaluated[:0]
        out.append({
            **{k: first[k] for k in ("experiment", "cell_id", "family", "knob", "seed", "status")},
            "epochs_run": first["epochs_run"], "epoch_cap": first["epoch_cap"], "best_epoch": first["best_epoch"],
            "best_valid_objective": at_best["valid_objective"].iloc[0] if len(at_best) else math.nan,
            "last_valid_objective": evaluated["valid_objective"].iloc[-1] if len(evaluated) else math.nan,
            "stop_reason": first["stop_reason"],
            "blowups": [int(e) for e in cell.loc[cell["blew_up"], "epoch"]],
            "evaluated": [int(e) for e in evaluated["epoch"]],
            "recovered": first["recovered"],
        })
    table = pd.DataFrame(out)
    for column in ("epochs_run", "epoch_cap", "best_epoch"):
        table[column] = table[column].astype("Int64")
    return table


SHOWS = ("both", "objective", "elbo")   # what plot_curves draws per family; the first is the default
_QUANTITIES = {   # column of the frame, y label
    "objective": ("valid_objective", "valid objective (nats)"),
    "elbo": ("valid_neg_elbo", "valid −ELBO = R + D (nats)"),
}


def neg_elbo(frame: pd.DataFrame) -> pd.Series:
    """−ELBO on the valid split at each evaluated epoch: valid_rate + valid_distortion, in nats. Unlike a
    cell's own objective (D + βR, D + |σ − R|, …) it is the same quantity for every cell, so curves of
    different β, σ or objectives compare on it."""
    return frame["valid_rate"].astype(float) + frame["valid_distortion"].astype(float)


def plot_curves(frame: pd.DataFrame, path: str | Path, show: str = SHOWS[0]) -> Path:
    """Write draw_curves(frame, show) to this PNG (or another format matplotlib knows by the suffix)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: directory {path.parent} does not exist")
    fig = draw_curves(frame, show)
    import matplotlib.pyplot as plt   # after draw_curves has chosen the Agg backend

    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def draw_curves(frame: pd.DataFrame, show: str = SHOWS[0]):
    """A figure with one panel per family (up to 4 columns) and quantity: with show = "objective", each
    cell's own valid objective (what its stopping rule judges) against epoch; "elbo", the valid −ELBO = R + D
    (`neg_elbo`), the one quantity that compares across cells; "both" (the default), the objective above the
    −ELBO for each family. One line per cell, β cells solid and σ cells dashed, coloured from low rate
    (large β, small σ) to high rate; the best epoch marked (star: converged, hollow circle: unconverged,
    cross: diverged), the status in the legend; an evaluation that blew up (rdsweep/training/stopping.py), far above
    the range, as a triangle on the top edge. Each line's gid is "EXPERIMENT/CELL_ID/objective" or ".../elbo"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    from rdsweep.analysis.frontier import family_label  # results are schema-checked: every family is a known one

    if show not in SHOWS:
        raise UserError(f"show {show!r}: use one of {', '.join(SHOWS)}")
    if frame["valid_objective"].notna().sum() == 0:
        raise UserError("no cell has evaluated the valid objective: nothing to plot")
    frame = _ordered(frame).assign(valid_neg_elbo=lambda f: neg_elbo(f))
    quantities = ["objective", "elbo"] if show == "both" else [show]
    if show == "elbo" and frame["valid_neg_elbo"].notna().sum() == 0:
        raise UserError("no evaluation recorded the valid rate and distortion: no −ELBO to plot "
                        "(--show objective draws the valid objective)")
    families = list(dict.fromkeys(frame["family"]))
    experiments = list(dict.fromkeys(frame["experiment"]))
    several = len(experiments) > 1
    columns = min(4, len(families))
    rows = math.ceil(len(families) / columns)
    # Legends sit under their family's (last) panel, two columns, so they never hide a curve: leave them room.
    cells = frame.dropna(subset=["valid_objective"]).groupby("family")["cell_id"].nunique()
    legend_lines = [math.ceil(cells.get(f, 0) / 2) for f in families]
    row_lines = [max(legend_lines[r * columns:(r + 1) * columns]) for r in range(rows)]
    panel = 3.0 if len(quantities) == 1 else 2.5
    ratios = [panel + (0.14 * n if k == len(quantities) - 1 else 0.0) for n in row_lines for k in range(len(quantities))]
    height = (0.9 if columns > 2 else 1.2) + (0.3 if len(quantities) > 1 else 0.0) + sum(ratios)
    fig, axes = plt.subplots(rows * len(quantities), columns, figsize=(max(4.6 * columns, 5.5), height),
                             squeeze=False, layout="constrained", height_ratios=ratios)
    cmap = matplotlib.colormaps["viridis"]
    best_marker = {"converged": dict(marker="*", ms=11, mew=0.5),
                   "unconverged": dict(marker="o", ms=6.5, mfc="white", mew=1.6),
                   "diverged": dict(marker="X", ms=8, mew=0.5)}
    blowup_marker = dict(marker="^", ms=6, mec="black", mew=0.5)

    for i, family in enumerate(families):
        row, col = divmod(i, columns)
        fam = frame[frame["family"] == family]
        knobs = list(dict.fromkeys(fam["knob"]))
        colour = {k: cmap(0.9 * j / max(1, len(knobs) - 1)) for j, k in enumerate(knobs)}
        seeds = fam.groupby("knob")["seed"].nunique()
        no_curve = fam.groupby(["experiment", "cell_id"])["valid_objective"].count().eq(0).sum()
        for k, quantity in enumerate(quantities):
            ax = axes[row * len(quantities) + k, col]
            column, ylabel = _QUANTITIES[quantity]
            last = k == len(quantities) - 1
            handles, values, plateaus = [], [], []
            for (experiment, cell_id), cell in fam.groupby(["experiment", "cell_id"], sort=False):
                first = cell.iloc[0]
                curve = cell.dropna(subset=[column])
                if curve.empty:
                    continue      # failed before its first evaluation: counted in the panel title
                style = dict(color=colour[first["knob"]], ls="-" if get_objective(first["objective"]).knob == "beta" else "--",
                             lw=1.3)
                ax.plot(curve["epoch"], curve[column], gid=f"{experiment}/{cell_id}/{quantity}", **style)
                if curve["blew_up"].any():   # far above the range: marked on the top edge, where the curve leaves
                    ax.plot(curve.loc[curve["blew_up"], "epoch"], [1.0] * int(curve["blew_up"].sum()), ls="",
                            transform=ax.get_xaxis_transform(), clip_on=False, zorder=4, **blowup_marker,
                            mfc=style["color"])
                best = curve[curve["epoch"] == first["best_epoch"]] if pd.notna(first["best_epoch"]) else curve[:0]
                values.append(curve[column].tolist())
                plateaus.append(best[column].iloc[0] if len(best) else curve[column].min())
                marker = {"mfc": style["color"], "mec": "black" if first["status"] != "unconverged" else style["color"],
                          **best_marker.get(first["status"], dict(marker="s", ms=6))}
                ax.plot(best["epoch"], best[column], ls="", color=style["color"], zorder=3, **marker)
                label = first["knob"] + (f" s{first['seed']}" if seeds[first["knob"]] > 1 else "")
                label += f" {first['status']}" + (f" @{first['best_epoch']}" if pd.notna(first["best_epoch"]) else "")
                handles.append(Line2D([], [], **style, **marker, label=(f"{experiment}: " if several else "") + label))
            if (span := y_range(values, plateaus)) is not None:
                ax.set_ylim(*span)
            elif quantity == "elbo":   # results from before the history kept the valid R and D
                ax.text(0.5, 0.5, "no valid R and D recorded", transform=ax.transAxes, ha="center", va="center",
                        fontsize=8, color="0.4")
            if k == 0:
                ax.set_title(family_label(family) + (f"  (+{no_curve} cell{'s' if no_curve > 1 else ''} without "
                                                      "curve)" if no_curve else ""), fontsize=9)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            if not last:
                ax.tick_params(labelbottom=False)   # the panel below has the same epochs
                continue
            ax.set_xlabel("epoch", fontsize=8)
            if handles:
                # anchored a fixed distance below the axes, clear of the tick labels and "epoch"
                below = offset_copy(ax.transAxes, fig=fig, y=-27, units="points")
                ax.legend(handles=handles, fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, 0),
                          bbox_transform=below, ncol=2, frameon=False, handlelength=2.6, columnspacing=1.0,
                          borderaxespad=0.0)
        if len(quantities) > 1:   # the two panels of a family share their epochs
            axes[row * 2 + 1, col].sharex(axes[row * 2, col])
    for i in range(len(families), rows * columns):
        row, col = divmod(i, columns)
        for k in range(len(quantities)):
            axes[row * len(quantities) + k, col].set_visible(False)
    key = [Line2D([], [], color="0.3", ls="-", label="a β (β-VAE, free bits, warm-up, two-stage)"),
           Line2D([], [], color="0.3", ls="--", label="a target rate σ"),
           Line2D([], [], ls="", color="0.5", mec="black", label="best epoch: converged", **best_marker["converged"]),
           Line2D([], [], ls="", color="0.5", mec="0.5", label="unconverged (still improving)",
                  **best_marker["unconverged"]),
           Line2D([], [], ls="", color="0.5", mec="black", label="diverged", **best_marker["diverged"])]
    if frame["blew_up"].any():
        key.append(Line2D([], [], ls="", mfc="0.5", label="blew up (on the top edge)", **blowup_marker))
    # up to six keys fit in one line under three or more panels; narrower figures wrap them
    fig.legend(handles=key, loc="outside lower center", ncol={1: 2, 2: 3}.get(columns, len(key)), fontsize=8,
               frameon=False)
    title = f"learning curves: {', '.join(experiments)}"
    if show == "both":   # wrapped to the figure's width (≈ 12 characters an inch at this size)
        title += "\n" + textwrap.fill(
            "above, each cell's own valid objective (D + βR, D + |σ − R|, …: what its stopping rule judges; not "
            "comparable across β, σ or objectives); below, its valid −ELBO = R + D (comparable)",
            int(fig.get_figwidth() * 12))
    elif show == "elbo":
        title += ": valid −ELBO = R + D"
    fig.suptitle(title, fontsize=11 if show != "both" else 10)
    return fig


def _rows(experiment: str, result: CellResult) -> list[dict]:
    """A cell's evaluated epochs as rows; one row with epoch NaN if it has none (failed, or too early)."""
    cell = result.cell
    objective, beta, target_rate = cell.get("objective"), cell.get("beta"), cell.get("target_rate")
    value = target_rate if beta is None else beta
    history = result.history
    blown = blowups(cell, history)
    base = {
        "experiment": experiment, "cell_id": result.cell_id, "family": cell.get("family"),
        "objective": objective, "beta": beta, "target_rate": target_rate,
        "knob": cell_knob(cell) if value is not None else str(objective),
        "seed": cell.get("seed"), "status": result.status, "best_epoch": result.best_epoch,
        "epochs_run": len(history), "epoch_cap": cell.get("epochs"),
        # a failed cell has no stop reason, only the last line of its error
        "stop_reason": result.stop_reason or result.error,
        "recovered": recovered(history, blown),
    }
    rows = [{**base, "epoch": h.get("epoch"), "lr": h.get("lr"), **{k: h.get(k) for k in VALID},
             "blew_up": h.get("epoch") in blown}
            for h in evaluations(history)]
    return rows or [{**base, "epoch": math.nan, "lr": math.nan, **{k: math.nan for k in VALID}, "blew_up": False}]


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Experiments in the order given; families in rdsweep's order; within one, β cells from large to small β (low to high rate), then σ
    cells from small to large σ; then seed, and epoch within a cell."""
    from rdsweep.models.families import FAMILIES

    rank = {name: i for i, name in enumerate(FAMILIES)}
    keys = pd.DataFrame({
        "experiment": pd.factorize(frame["experiment"])[0],     # as given, not alphabetical
        "family": frame["family"].map(lambda f: rank.get(f, len(rank))),
        "name": frame["family"].astype(str),
        "objective": (frame["objective"] != "beta").astype(int),
        "value": -frame["beta"].astype(float).where(frame["objective"] == "beta", -frame["target_rate"].astype(float)),
        "seed": frame["seed"], "cell": frame["cell_id"], "epoch": frame["epoch"],
    }, index=frame.index)
    order = keys.sort_values(list(keys.columns), kind="stable", na_position="last").index
    return frame.loc[order]


def y_range(curves: list[list[float]], plateaus: list[float]) -> tuple[float, float] | None:
    """A y range for the plateaus: from the lowest best value to the highest, plus a margin as large as
    their spread (at least 10%) so the approach to each plateau shows, but no higher than the highest value
    after the cells' first evaluation: the first epochs sit far above and would flatten every plateau.
    A curve of a few evaluations (a demonstration's cap) is shown whole: without its first there is no curve."""
    plateaus = [v for v in plateaus if math.isfinite(v)]
    later = [v for curve in curves if len(curve) > _SHORT for v in curve[1:] if math.isfinite(v)]
    short = [v for curve in curves if len(curve) <= _SHORT for v in curve if math.isfinite(v)]
    if not plateaus:
        return None
    lo, top = min(plateaus), max(plateaus)
    hi = top + max(top - lo, 0.1 * abs(top), 1.0)
    if later:
        hi = max(min(hi, max(later)), top)
    hi = max([hi, *short])
    pad = 0.04 * (hi - lo) or 0.05 * max(abs(hi), 1.0)
    return lo - pad, hi + pad


_SHORT = 3   # evaluations: a curve this short keeps its first point in range
