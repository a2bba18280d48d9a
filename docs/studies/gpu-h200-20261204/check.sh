#!/usr/bin/env bash
# One-shot GPU check of rdsweep (not committed). Run from the repo root.
#   device: bash .gpu/check.sh            (wheels in .whl installed to /tmp/site)
#   local : LOCAL=1 QUICK=1 OUT=/tmp/gpu-local bash .gpu/check.sh
set -x
export PYTHONUNBUFFERED=1 COLUMNS=160
export RDSWEEP_CACHE=/tmp/rdsweep-cache
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
T0=$(date +%s)
DEADLINE=${DEADLINE:-395}          # seconds after start by which everything must be over
el() { echo $(( $(date +%s) - T0 )); }
step() { echo; echo "=== $1  (t=$(el)s) ==="; }
exec > >(tee -a "$OUT/00-all.log") 2>&1

step "0 environment"
timeout 20 nvidia-smi || echo "nvidia-smi failed rc=$?"
if [ -z "$LOCAL" ]; then
  timeout 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || { echo "WHEEL INSTALL FAILED rc=$?"; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
timeout 60 python3 - <<'EOF'
import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
import mlxtend, pydantic, rdsweep
print("mlxtend", mlxtend.__version__, "pydantic", pydantic.VERSION, "rdsweep", rdsweep.__version__)
from rdsweep.training.devices import pick_device; print("pick_device()", pick_device())
EOF
echo "env rc=$?"
RD="python3 -m rdsweep"

step "1 pytest tests/test_cuda.py"
timeout 150 python3 -m pytest -q -rA -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/01-pytest.log"
echo "pytest rc=${PIPESTATUS[0]}  (t=$(el)s)"

step "2 bench --size small --size paper"
S=$(date +%s)
if [ -n "$QUICK" ]; then BSTEPS="--steps 1"; else BSTEPS=""; fi
timeout 120 $RD bench --size small --size paper $BSTEPS 2>&1 | tee "$OUT/02-bench.log"
echo "bench rc=${PIPESTATUS[0]} wall=$(( $(date +%s) - S ))s  (t=$(el)s)"

step "3 bench --compile=--- --compile=-+- --size small"
S=$(date +%s)
if [ -n "$QUICK" ]; then CFAM="--compile=---"; else CFAM="--compile=--- --compile=-+-"; fi
timeout 170 $RD bench $CFAM --size small 2>&1 | tee "$OUT/03-compile.log"
echo "compile bench rc=${PIPESTATUS[0]} wall=$(( $(date +%s) - S ))s  (t=$(el)s)"

step "4 train the -+- beta=1 cell of examples/mnist5k.toml (CPU: a883783f868b4e67.json)"
LEFT=$(( DEADLINE - $(el) ))
[ "$LEFT" -gt 210 ] && LEFT=210
echo "train budget ${LEFT}s"
if [ "$LEFT" -gt 20 ]; then
  if [ -n "$QUICK" ]; then EP=1; else EP=100; fi
  S=$(date +%s)
  timeout "$LEFT" $RD train --dataset mnist5k --family=-+- --objective beta --beta 1.0 --seed 0 \
      --epochs $EP --size small --batch-size 50 --lr 2e-3 --schedule plateau --eval-every 1 \
      --patience 5 --min-delta 0.1 --lr-reductions 1 --lr-divisor 10 --eval-samples 4 --iwae-k 0 \
      --device ${DEV:-cuda} --json "$OUT/04-train.json" --images "$OUT/04-grid.png" 2>&1 \
      | tee "$OUT/04-train.log"
  echo "train rc=${PIPESTATUS[0]} wall=$(( $(date +%s) - S ))s  (t=$(el)s)"
else
  echo "SKIPPED train: too little time left"
fi
step "done"
sleep 1
