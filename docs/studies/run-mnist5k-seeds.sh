#!/bin/bash
# Seeds 1 and 2 of the settings the mnist5k study's claims rest on (examples/mnist5k-seeds.toml), into the same
# experiment as seed 0. Runs from its own clone of a commit (as run-mnist5k.sh, which says why):
#   rm -rf /work/study-code && git clone -q /work/main /work/study-code && nohup /work/study-code/docs/studies/run-mnist5k-seeds.sh [FAMILIES] &
# FAMILIES: comma-separated codes or names to queue now (default: all four); a session starts what it can finish.
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
/work/main/.venv/bin/python -m rdsweep launch examples/mnist5k-seeds.toml --storage /work/main/docs/studies \
    --name mnist5k ${1:+--families=$1}
