#!/bin/bash
# The study runs from its own clone of a commit, with that clone as the working directory: Ray puts the
# driver's working directory on its workers' sys.path, so running from /work/main let work-tree edits in.
#   rm -rf /work/study-code && git clone -q /work/main /work/study-code && nohup /work/study-code/docs/studies/run-mnist5k.sh [FAMILY…] &
# (the clone is the script's own: a second clone can queue the next families while the first one runs)
# Cells finished before rdsweep 0.4 have no latent columns (before 0.3) or a probe read off the posterior
# means (0.3, which reads the digit off a collapsed encoder): the FAMILY arguments (names as in `rdsweep
# families`) say whose such cells to set aside into cells-before-0.4/ and train again, a family or two at a
# time, so that what a session starts finishes in it (checkpoints do not outlive a fresh machine). No
# argument: every such cell. A trial is deterministic on one kind of processor only: on the machine that
# first trained it, its training comes back the same (stop, best epoch, every epoch's valid objective), on
# another it drifts apart from epoch 1 by rounding (docs/studies/retrace.py says where; docs/mnist5k-study.md).
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
R="/work/main/.venv/bin/python -m rdsweep"
S=/work/main/docs/studies
$R launch examples/mnist5k.toml --storage $S          # the cells not yet trained (finished ones are skipped)
$R launch examples/mnist5k-bilbo.toml --storage $S
/work/main/.venv/bin/python - "$@" <<'PY'
import json, pathlib, sys
cells = pathlib.Path("/work/main/docs/studies/mnist5k/cells")
aside = cells.parent / "cells-before-0.4"
aside.mkdir(exist_ok=True)
for f in cells.glob("*.json"):
    result = json.loads(f.read_text())
    old = tuple(map(int, result["rdsweep_version"].split("."))) < (0, 4)
    if old and (len(sys.argv) == 1 or result["cell"]["family"] in sys.argv[1:]):
        f.rename(aside / f.name)
PY
$R launch examples/mnist5k.toml --storage $S
