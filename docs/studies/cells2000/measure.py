"""Issue 31: what a sweep of thousands of cells costs the driver. Launches SPEC (short lingauss cells) into
a fresh experiment under OUT and samples, every 2 s, the launch process's resident memory (the driver and its
children: Ray's own processes started by a local ray.init are listed apart) and the cells finished; then
times `status`, `collect` and a relaunch that finds everything done. Writes OUT/samples.csv and OUT/summary.json.

    python docs/studies/cells2000/measure.py SPEC OUT [--seeds N]
"""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path


spec, out = Path(sys.argv[1]), Path(sys.argv[2])
extra = sys.argv[3:]
out.mkdir(parents=True, exist_ok=True)
storage = out / "results"
rdsweep = str(Path(sys.executable).parent / "rdsweep")
cells_dir = storage / spec.stem / "cells"

def rss_mib(pid: int) -> float:
    """Resident memory of one process (Linux /proc), MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_trial(pid: int) -> bool:
    try:
        return b"ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


t0 = time.monotonic()
launch = subprocess.Popen([rdsweep, "launch", str(spec), "--storage", str(storage), *extra],
                          stdout=open(out / "launch.out", "w"), stderr=open(out / "launch.err", "w"))
peak = 0
with open(out / "samples.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["t_s", "cells_done", "driver_rss_mib", "ray_processes_rss_mib"])
    while launch.poll() is None:
        rss = rss_mib(launch.pid)
        others = sum(rss_mib(p) for p in descendants(launch.pid) if not is_trial(p))
        peak = max(peak, rss)
        done = len(list(cells_dir.glob("*.json"))) if cells_dir.is_dir() else 0
        w.writerow([round(time.monotonic() - t0, 1), done, round(rss, 1), round(others, 1)])
        f.flush()
        time.sleep(2)
launch_s = time.monotonic() - t0


def timed(*args):
    t = time.monotonic()
    r = subprocess.run([rdsweep, *args], capture_output=True, text=True)
    return round(time.monotonic() - t, 2), r.returncode


experiment = storage / spec.stem
summary = {"cells": len(list(cells_dir.glob("*.json"))), "launch_exit": launch.returncode,
           "launch_s": round(launch_s, 1), "driver_peak_rss_mib": round(peak, 1),
           "status_s": timed("status", str(experiment)), "collect_s": timed("collect", str(experiment)),
           "relaunch_nothing_to_train_s": timed("launch", str(spec), "--storage", str(storage), *extra),
           "dry_run_s": timed("launch", str(spec), "--storage", str(storage), "--dry-run", *extra)}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary))
