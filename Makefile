# Set-up and the two things a newcomer runs. Each target creates .venv and installs rdsweep if needed.
# constraints.txt pins torch below 2.14 so pip takes the local CPU wheel instead of a 3 GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rdsweep train --dataset mnist5k --family=--- --beta 1 --epochs 1 --size small --json demo-result.json

test: $(STAMP)
	$(BIN)/python -m pytest -q
