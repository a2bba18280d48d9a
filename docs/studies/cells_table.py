"""The cells table of docs/mnist5k-study.md, from the ledger: one Markdown row per cell, test split, nats.

    python docs/studies/cells_table.py docs/studies/mnist5k [more experiments …]

Reads the experiments through `rdsweep collect` into a temporary table (nothing in the ledger is written), so
the columns mean what table-schema.md says: the probe is left out for cells trained before 0.4.
"""
import sys
import tempfile
from pathlib import Path

from rdsweep.cells import knob
from rdsweep.collect import collect


def fmt(value, spec, missing="—"):
    return missing if value is None else format(value, spec)


def main(paths: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        _, table = collect(paths, out=Path(d) / "cells.parquet")
    print("| family | setting | std | status | epochs | best epoch | R | D | −ELBO | I(x;z) | AU | probe | minutes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table.to_pylist():
        if r["split"] != "test":
            continue
        setting = knob(r["objective"], r["beta"], r["target_rate"], r["free_bits"], r["warmup_epochs"])
        elbo = None if r["elbo"] is None else -r["elbo"]
        print(f"| `{r['paper_code']}` | {setting} | {r['encoder_std']} | {r['status']} | {r['epochs']} "
              f"| {fmt(r['best_epoch'], 'd')} | {fmt(r['rate'], '.1f')} | {fmt(r['distortion'], '.1f')} "
              f"| {fmt(elbo, '.1f')} | {fmt(r['mutual_info'], '.2f')} | {fmt(r['active_units'], 'd')} "
              f"| {fmt(r['probe_accuracy'], '.3f')} | {fmt(r['wall_s'] and r['wall_s'] / 60, '.0f')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
