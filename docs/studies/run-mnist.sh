#!/bin/bash
# The full-data slice (examples/mnist.toml, issue 32), on the two cores since the mnist5k seeds finished.
# Runs from its own clone of a commit, as run-mnist5k.sh does (which says why):
#   rm -rf /work/mnist-code && git clone -q /work/main /work/mnist-code && nohup /work/mnist-code/docs/studies/run-mnist.sh &
# A relaunch skips finished cells and resumes the others from their last epoch's checkpoint. Arguments go to
# the launch: `--families --- --cpus-per-trial 2` trained --- beta=0.3 alone on both cores (2026-12-05).
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
/work/main/.venv/bin/python -m rdsweep launch examples/mnist.toml --storage /work/main/docs/studies "$@"
