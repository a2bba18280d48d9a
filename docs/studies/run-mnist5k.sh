#!/bin/bash
# The study runs from its own clone of a commit, with that clone as the working directory: Ray puts the
# driver's working directory on its workers' sys.path, so running from /work/main let work-tree edits in.
cd /work/study-code
export PYTHONPATH=/work/study-code
R="/work/main/.venv/bin/python -m rdsweep"
S=/work/main/docs/studies
$R launch examples/mnist5k.toml --storage $S --families=---,--+,--v,+--,+-+,+-v
$R launch examples/mnist5k.toml --storage $S
$R launch examples/mnist5k-bilbo.toml --storage $S
# Cells finished before 0.3 have no latent columns: set their results aside and train them again (a trial is
# deterministic on CPU, so their R and D must come back the same: a reproducibility check).
/work/main/.venv/bin/python - <<'PY'
import json, pathlib
cells = pathlib.Path("/work/main/docs/studies/mnist5k/cells")
aside = cells.parent / "cells-0.2"
aside.mkdir(exist_ok=True)
for f in cells.glob("*.json"):
    if "active_units" not in json.loads(f.read_text())["splits"]["test"]:
        f.rename(aside / f.name)
PY
$R launch examples/mnist5k.toml --storage $S
