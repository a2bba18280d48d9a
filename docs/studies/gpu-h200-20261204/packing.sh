#!/usr/bin/env bash
# Several trials on one GPU, as gpus_per_trial = 1/n would pack them (without Ray: n rdsweep train processes).
export PYTHONUNBUFFERED=1 RDSWEEP_CACHE=/tmp/rdsweep-cache OMP_NUM_THREADS=2
timeout 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
python3 -c "from rdsweep.data.loaders import load_dataset; load_dataset('mnist5k')"   # the cache, once
for size in small paper; do
  for n in 1 2 4 8; do
    [ $size = paper ] && [ $n = 8 ] && continue
    S=$(date +%s.%N)
    for i in $(seq 1 $n); do
      timeout 150 python3 -m rdsweep train --dataset mnist5k --family=-+- --beta 1 --seed $i --epochs 6 --size $size \
        --batch-size 50 --lr 2e-3 --eval-samples 1 --device cuda --json $OUT/$size-$n-$i.json > /dev/null 2>&1 &
    done
    wait
    echo "$size n=$n wall $(python3 -c "import time; print(round(time.time() - $S, 1))") s"
  done
done
python3 - <<'PY'
import json, glob, os, statistics
out = os.environ["OUT"]
for size in ("small", "paper"):
    for n in (1, 2, 4, 8):
        files = glob.glob(f"{out}/{size}-{n}-*.json")
        if not files: continue
        per = []
        for f in files:
            h = json.load(open(f))["history"]
            per.append(statistics.median(h[i]["wall_s"] for i in range(2, len(h))))
        s = statistics.mean(per)
        print(f"{size} {n} trials: {len(files)} results, median s/epoch (epochs 3-6) {s:.2f}, "
              f"per trial {4000 / s:.0f} images/s, together {n * 4000 / s:.0f} images/s")
PY
