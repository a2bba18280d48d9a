"""Did the cells trained again retrace their first run? For each result set aside in cells-before-0.4/ whose
cell has finished again, compare the training (stop, best epoch, every epoch's training loss and valid
objective, which validation computes with its own fixed z-draws) and show how far the final test R and D
moved (the final evaluation's draws depend on its batch, so that is Monte Carlo noise, not a failure).
Where the training differs it says at which epoch it first does, and by how much: the same code on another
processor rounds differently (the +-- cells of 2026-12-02: the first epoch's loss 1e-7 to 3e-5 apart, and
rdsweep 0.3's code gives this machine's numbers, not the old ones), and the difference then grows with
training, so a changed stop there is a different machine, not a different model.

    python docs/studies/retrace.py docs/studies/mnist5k
"""
import json
import sys
from pathlib import Path

from rdsweep.cells import knob
from rdsweep.models.families import get_family


def training(result: dict) -> tuple:
    return (result["stop_reason"], result["best_epoch"],
            [(h["epoch"], h["loss"], h.get("valid_objective")) for h in result["history"]])


def first_difference(old: dict, new: dict) -> str:
    kernels = old.get("kernels"), new.get("kernels")  # recorded since 0.4.1
    where = f"  kernels {kernels[0]} -> {kernels[1]}" if None not in kernels and kernels[0] != kernels[1] else ""
    for a, b in zip(old["history"], new["history"]):
        if a["loss"] != b["loss"] or a.get("valid_objective") != b.get("valid_objective"):
            apart = abs(a["loss"] - b["loss"]) / abs(a["loss"])
            return f"  first at epoch {a['epoch']}: loss {a['loss']:.6f} -> {b['loss']:.6f} ({apart:.0e} apart)" + where
    return "  first in the stop or best epoch" + where


def main(experiment: Path) -> int:
    aside, cells = experiment / "cells-before-0.4", experiment / "cells"
    retraced = differ = 0
    for old_file in sorted(aside.glob("*.json")):
        new_file = cells / old_file.name
        if not new_file.exists():
            continue
        old, new = json.loads(old_file.read_text()), json.loads(new_file.read_text())
        same = training(old) == training(new)
        retraced, differ = retraced + same, differ + (not same)
        a, b = old["splits"]["test"], new["splits"]["test"]
        c = old["cell"]
        setting = knob(c["objective"], c["beta"], c["target_rate"], c.get("free_bits"), c.get("warmup_epochs"))
        print(f"{get_family(c['family']).code or c['family']} {setting:>8}  "
              f"{'training retraced' if same else 'TRAINING DIFFERS '}  epochs {len(old['history'])}/"
              f"{len(new['history'])}  test R {a['rate']:.3f} -> {b['rate']:.3f}  D {a['distortion']:.3f} -> "
              f"{b['distortion']:.3f}  ({old['rdsweep_version']} -> {new['rdsweep_version']})"
              + ("" if same else first_difference(old, new)))
    print(f"{retraced} retraced bit for bit, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
