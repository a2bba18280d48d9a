#!/bin/bash
# The study runs from its own clone of a commit, with that clone as the working directory: Ray puts the
# driver's working directory on its workers' sys.path, so running from /work/main let work-tree edits in.
#   rm -rf /work/study-code && git clone -q /work/main /work/study-code && nohup docs/studies/run-mnist5k.sh &
cd /work/study-code
export PYTHONPATH=/work/study-code
R="/work/main/.venv/bin/python -m rdsweep"
S=/work/main/docs/studies
$R launch examples/mnist5k.toml --storage $S          # the cells not yet trained (finished ones are skipped)
$R launch examples/mnist5k-bilbo.toml --storage $S
# Cells finished before rdsweep 0.4 have no latent columns (before 0.3) or a probe read off the posterior
# means (0.3, which reads the digit off a collapsed encoder): set their results aside and train them again.
# A trial is deterministic on CPU, so their training must come back the same (stop, best epoch, every epoch's
# valid objective: docs/studies/retrace.py); the final evaluation only within Monte Carlo noise, since its
# batches went from 500 to 100 examples on a CPU (docs/benchmarks.md).
/work/main/.venv/bin/python - <<'PY'
import json, pathlib
cells = pathlib.Path("/work/main/docs/studies/mnist5k/cells")
aside = cells.parent / "cells-before-0.4"
aside.mkdir(exist_ok=True)
for f in cells.glob("*.json"):
    if tuple(map(int, json.loads(f.read_text())["rdsweep_version"].split("."))) < (0, 4):
        f.rename(aside / f.name)
PY
$R launch examples/mnist5k.toml --storage $S
