"""The generated tables of docs/mnist5k-study.md, from the ledger: the cells (test split, nats) and the cost.

    python docs/studies/cells_table.py docs/studies/mnist5k                  # print the cells table
    python docs/studies/cells_table.py docs/studies/mnist5k --update docs/mnist5k-study.md

`--update` rewrites, in the page, what lies between `<!-- begin: cells -->` and `<!-- end: cells -->` (and
the same for `cost`), and nothing else: the prose and the claims are written by hand. The cells are read
through `rdsweep collect` into a temporary table (nothing in the ledger is written), so the columns mean what
table-schema.md says: the probe is left out for cells trained before 0.4. The cost is `rdsweep status`'s
per-family timing of the first experiment given.
"""
import argparse
import re
import tempfile
from pathlib import Path

from rdsweep.analysis.collect import collect
from rdsweep.cells import knob
from rdsweep.models.families import FAMILIES
from rdsweep.sweep.ledger import Experiment
from rdsweep.sweep.status import experiment_status


def fmt(value, spec, missing="—"):
    return missing if value is None else format(value, spec)


def cells_table(paths: list[str]) -> str:
    with tempfile.TemporaryDirectory() as d:
        _, table = collect(paths, out=Path(d) / "cells.parquet")
    rows = ["| family | setting | seed | std | status | epochs | best epoch | R | D | −ELBO | ± | I(x;z) | AU | probe | minutes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.to_pylist():
        if r["split"] != "test":
            continue
        setting = knob(r["objective"], r["beta"], r["target_rate"], r["free_bits"], r["warmup_epochs"])
        elbo = None if r["elbo"] is None else -r["elbo"]
        rows.append(
            f"| `{r['paper_code']}` | {setting} | {r['seed']} | {r['encoder_std']} | {r['status']} | {r['epochs']} "
            f"| {fmt(r['best_epoch'], 'd')} | {fmt(r['rate'], '.1f')} | {fmt(r['distortion'], '.1f')} "
            f"| {fmt(elbo, '.1f')} | {fmt(r['elbo_se'], '.2f')} "
            f"| {('≥' if r['mutual_info_at_ceiling'] else '') + fmt(r['mutual_info'], '.2f')} | {fmt(r['active_units'], 'd')} "
            f"| {fmt(r['probe_accuracy'], '.3f')} | {fmt(r['wall_s'] and r['wall_s'] / 60, '.0f')} |")
    return "\n".join(rows)


def cost_table(path: str) -> str:
    """Per family, in the paper's order: seconds per epoch, mean epochs to the stop, and a cell's minutes."""
    timing = experiment_status(Experiment(path)).families
    rows = ["| family | s/epoch | epochs to stop (mean) | minutes per cell |", "|---|---|---|---|"]
    for family in FAMILIES.values():
        t = timing.get(family.name)
        if t is None or not t.stopped_at:
            continue
        epochs = sum(t.stopped_at) / len(t.stopped_at)
        minutes = (t.seconds_per_epoch * epochs + (t.overhead or 0)) / 60
        rows.append(f"| `{family.code}` | {t.seconds_per_epoch:.1f} | {epochs:.0f} | {minutes:.0f} |")
    return "\n".join(rows)


def replace_block(page: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- begin: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.S)
    if not pattern.search(page):
        raise SystemExit(f"no '<!-- begin: {name} -->' … '<!-- end: {name} -->' in the page")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--update", type=Path, help="the page whose generated tables to rewrite")
    args = parser.parse_args()
    cells = cells_table(args.experiments)
    if args.update is None:
        print(cells)
        return
    page = replace_block(args.update.read_text(), "cells", cells)
    page = replace_block(page, "cost", cost_table(args.experiments[0]))
    args.update.write_text(page)
    print(f"{args.update}: {cells.count(chr(10)) - 1} cells")


if __name__ == "__main__":
    main()
