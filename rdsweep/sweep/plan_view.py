"""What `rdsweep launch` prints of its plan (ledger.plan): the counts, and on a dry run every cell."""
from __future__ import annotations

from rich import box
from rich.console import Console

from rdsweep.cells import encoder_std_label, knob
from rdsweep.models.families import get_family


def print_plan(console: Console, experiment, planned, dry_run: bool) -> None:
    """The plan's counts (what a launch will skip, run, resume, continue) and, for a dry run, every cell."""

    actions = [p.action for p in planned]
    console.print(f"experiment {experiment.path}: {len(planned)} cells, {actions.count('skip')} finished, "
                  f"{actions.count('run')} to run, {actions.count('resume')} to resume, "
                  f"{actions.count('continue')} to continue (unconverged, the cap was raised)", highlight=False)
    if not dry_run:
        return
    stds = any(p.cell.encoder_std is not None for p in planned)   # a column only when the spec varies it
    columns = [col for col in ("cell_id", "model", "objective", "std", "seed", "ledger", "action")
               if col != "std" or stds]
    models = {}   # the paper code where the family has one (`rdsweep families` names it), else its name
    rows = []
    for p in planned:
        c = p.cell
        if c.family not in models:
            models[c.family] = get_family(c.family).code or c.family
        std = [encoder_std_label(c.encoder_std, c.family) or "own"] if stds else []
        rows.append((c.cell_id, models[c.family],
                     knob(c.objective, c.beta, c.target_rate, c.free_bits, c.warmup_epochs), *std,
                     str(c.seed), p.status or "", p.action))
    _print_rows(console, "cells (dry run: nothing started)", columns, rows)


def _print_rows(console: Console, title: str, columns: list[str], rows: list[tuple[str, ...]]) -> None:
    """A table drawn as rich draws one (its heavy-head box), a line per row, written as it goes: rich's own
    Table lays out every cell of every row in memory first, some 0.5 ms and several kB a row, which made the
    dry run of a spec of 10^5 cells take minutes and half a gigabyte. Every column is shown whole (72 columns
    for the built-in families), except a long plugin family's name, cut to fit the terminal: a cell id is what
    a reader copies."""
    widths = [max([len(col)] + [len(row[i]) for row in rows]) for i, col in enumerate(columns)]
    if "model" in columns:   # rich's own frame: 3 columns per column, and 1 more
        model = columns.index("model")
        over = sum(widths) + 3 * len(widths) + 1 - console.width
        widths[model] = max(len("model") + 1, widths[model] - max(0, over))
    frame = box.HEAVY_HEAD
    padded = [w + 2 for w in widths]

    def line(left: str, middle: str, right: str, cells) -> str:
        return left + middle.join(f" {_fit(v, w)} " for v, w in zip(cells, widths)) + right + "\n"

    out = console.file
    out.write(title.center(sum(padded) + len(padded) + 1).rstrip() + "\n")
    out.write(frame.get_top(padded) + "\n")
    out.write(line(frame.head_left, frame.head_vertical, frame.head_right, columns))
    out.write(frame.get_row(padded, "head") + "\n")
    for start in range(0, len(rows), 1000):
        out.write("".join(line(frame.mid_left, frame.mid_vertical, frame.mid_right, row)
                          for row in rows[start:start + 1000]))
    out.write(frame.get_bottom(padded) + "\n")
    out.flush()


def _fit(value: str, width: int) -> str:
    return value.ljust(width) if len(value) <= width else value[:width - 1] + "…"
