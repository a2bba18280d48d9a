"""`rdsweep status` and the launch's watchers: every state a cell can be in, read from the ledger alone, and
the ETA of a half-finished synthetic sweep against its known end. A real launch's log and status are tested
with it: tests/test_sweep.py (a finished launch), tests/test_reliability.py (an interrupted one)."""
import json
import random
import time

from rdsweep.cells import Cell
from rdsweep.sweep.heartbeat import TrialProgress
from rdsweep.sweep.ledger import Experiment
from rdsweep.sweep.status import STALE_S, experiment_status
from rdsweep.training.result import cell_result

SPLITS = {s: {"rate": 1.0, "distortion": 2.0, "elbo": -3.0, "iwae": None} for s in ("train", "valid", "test")}


def image_cell(code_family: str, beta: float, seed: int = 0, epochs: int = 50) -> Cell:
    return Cell(family=code_family, beta=beta, seed=seed, epochs=epochs).validated()


def finished(experiment, cell, epoch_s: list[float], status="converged"):
    experiment.write_result(cell_result({
        "cell": cell.to_dict(), "cell_id": cell.cell_id, "status": status, "rdsweep_version": "0.1.0",
        "epochs": len(epoch_s), "best_epoch": len(epoch_s), "splits": SPLITS,
        "history": [{"epoch": i + 1, "wall_s": s} for i, s in enumerate(epoch_s)]}))


def progress(experiment, cell, *, started, updated, epoch_s, finished_at=None, step=0, steps=None, valid=None,
             blew_up=False, node=None):
    experiment.write_progress({
        "cell_id": cell.cell_id, "cell": cell.to_dict(), "host": "node-1", "node": node, "started_at": started,
        "updated_at": updated, "finished_at": finished_at, "resumed_from_epoch": 0, "epoch": len(epoch_s),
        "step": step, "steps": steps, "valid_objective": valid, "best_epoch": len(epoch_s) or None,
        "epoch_wall_s": epoch_s, "blew_up": blew_up})


def record_launch(experiment, cells, slots, started):
    experiment.record_launch({"name": "launch-20260101-000000", "started_at": started, "slots": slots,
                              "cells": [{"cell_id": c.cell_id, "action": "run", "cell": c.to_dict()} for c in cells]})


def test_status_shows_every_kind_of_cell(tmp_path, rdsweep):
    experiment = Experiment(tmp_path / "sweep")
    experiment.record_protocol({"dataset": "mnist5k"}, "0.1.0")
    done, slow, broken, running, interrupted, never = (
        image_cell("---", 0.3), image_cell("---", 1.0), image_cell("---", 3.0), image_cell("-+v", 0.3),
        image_cell("-+v", 1.0), image_cell("-+v", 3.0))
    now = time.time()
    record_launch(experiment, [done, slow, broken, running, interrupted, never], 2, now - 600)
    finished(experiment, done, [2.0] * 10)
    finished(experiment, slow, [2.0] * 50, status="unconverged")
    experiment.write_result(cell_result({"cell": broken.to_dict(), "cell_id": broken.cell_id, "status": "failed",
                                         "rdsweep_version": "0.1.0",
                                         "error": "Traceback ...\nRuntimeError: CUDA out of memory"}))
    progress(experiment, running, started=now - 300, updated=now - 2, epoch_s=[30.0] * 7, step=40, steps=50,
             valid=91.25)
    progress(experiment, interrupted, started=now - 7200, updated=now - 3600, epoch_s=[30.0] * 4, valid=4.5e18,
             blew_up=True)
    experiment.checkpoints_dir.mkdir()
    experiment.checkpoint_path(interrupted.cell_id).write_bytes(b"")  # resumable: a checkpoint, no live trial

    shown = rdsweep("status", experiment.path)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "6 cells: 1 running, 1 resumable, 1 never started, 1 converged, 1 unconverged, 1 failed" in out
    assert "failed --- β=3 seed=0: RuntimeError: CUDA out of memory" in out
    assert "never started:\n-+v β=3 seed=0" in out
    row = {label: next(line.split() for line in out.splitlines() if line.startswith(label))
           for label in ("-+v β=0.3 seed=0", "-+v β=1 seed=0")}
    assert {"running", "7/50", "40/50", "91.25"} <= set(row["-+v β=0.3 seed=0"])
    assert {"resumable", "4/50", "4500000000000000000.00", "▲", "1h"} <= set(row["-+v β=1 seed=0"])  # 1h ago
    assert "▲" not in row["-+v β=0.3 seed=0"] and "▲ the latest evaluation blew up: far above the best" in out
    assert "about" in out and "left, ends" in out  # a cell runs: an ETA with its end

    listed = rdsweep("status", experiment.path, "--json")
    assert listed.returncode == 0, listed.stderr
    (report,) = json.loads(listed.stdout)
    states = {c["cell_id"]: c["state"] for c in report["cells"]}
    assert states == {done.cell_id: "converged", slow.cell_id: "unconverged", broken.cell_id: "failed",
                      running.cell_id: "running", interrupted.cell_id: "resumable", never.cell_id: "pending"}
    by_id = {c["cell_id"]: c for c in report["cells"]}
    assert by_id[broken.cell_id]["error"] == "RuntimeError: CUDA out of memory"
    assert by_id[running.cell_id]["epoch"] == 7 and by_id[running.cell_id]["host"] == "node-1"
    assert report["eta"]["cells_left"] == 3 and report["eta"]["remaining_s"] > 0

    # Once the running trial stops sending heartbeats, it is resumable too.
    later = experiment_status(experiment, now=time.time() + STALE_S)
    assert {c.cell_id: c.state for c in later.cells}[running.cell_id] == "resumable"

    missing = rdsweep("status", tmp_path / "nope")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "not a directory" in missing.stderr


def test_a_resumed_cell_keeps_the_mark_of_its_blown_up_last_evaluation(tmp_path, rdsweep):
    """The trial's heartbeat, begun from a checkpoint whose last evaluation blew up: status marks it ▲."""
    experiment = Experiment(tmp_path / "sweep")
    experiment.record_protocol({"dataset": "mnist5k"}, "0.1.0")
    cell = image_cell("-+v", 0.3)
    history = [{"epoch": 1, "valid_objective": 95.0, "wall_s": 30.0}, {"epoch": 2, "wall_s": 30.0},
               {"epoch": 3, "valid_objective": 4.5e18, "wall_s": 30.0}]
    for blowups, marked in (([], False), ([3], True)):
        with TrialProgress(experiment, cell, time.time()) as trial:
            trial.begin({"epoch": 3, "history": history, "rule": {"best_epoch": 1, "blowups": blowups}})
            shown = rdsweep("status", experiment.path)
        row = next(line.split() for line in shown.stdout.splitlines() if line.startswith("-+v β=0.3 seed=0"))
        assert ("▲" in row) is marked and "4500000000000000000.00" in row, shown.stdout


def schedule(durations: list[float], slots: int) -> list[tuple[float, float]]:
    """(start, end) of each cell when cells start in order on whichever slot frees first: how Tune runs them."""
    free, spans = [0.0] * slots, []
    for d in durations:
        i = min(range(slots), key=free.__getitem__)
        spans.append((free[i], free[i] + d))
        free[i] += d
    return spans


FAMILIES = (("---", 2.0, (15, 30)), ("-+-", 10.0, (20, 40)), ("--v", 4.0, (10, 40)))  # s/epoch, stops


def synthetic_sweep(tmp_path, seed: int, per_family: int = 8, done: float = 0.5, slots: int = 2):
    """A sweep of three families as fast as 2, 10 and 4 s per epoch, `per_family` cells each stopping after a
    uniformly random number of epochs in the family's range, ±15% noise on every epoch, 3 s setup and 2 s
    evaluation per trial, run in launch order (one cell per family first) on `slots` slots, and stopped
    when a fraction `done` of its cells finished. Returns the experiment as the ledger would hold it then,
    'now', the true time left, and a naive estimate (mean time of a finished cell × cells left / slots)."""
    rng = random.Random(seed)
    experiment = Experiment(tmp_path / f"sweep-{seed}-{per_family}-{done}-{slots}")
    experiment.record_protocol({"dataset": "mnist5k"}, "0.1.0")
    blocks = [[(image_cell(family, round(0.1 * (i + 1), 3)),
                [per_epoch * rng.uniform(0.85, 1.15) for _ in range(rng.randint(*stop))]) for i in range(per_family)]
              for family, per_epoch, stop in FAMILIES]
    trials = [block[0] for block in blocks] + [t for block in blocks for t in block[1:]]
    spans = schedule([3.0 + sum(epochs) + 2.0 for _, epochs in trials], slots)
    t_now = sorted(end for _, end in spans)[int(done * len(trials)) - 1] + 1.0
    base = time.time() - t_now  # the sweep began t_now seconds ago
    record_launch(experiment, [cell for cell, _ in trials], slots, base)
    for (cell, epochs), (start, end) in zip(trials, spans):
        if end <= t_now:
            finished(experiment, cell, epochs)
            progress(experiment, cell, started=base + start, updated=base + end, finished_at=base + end,
                     epoch_s=epochs)
        elif start <= t_now:  # running: the epochs it has finished by now, and the step of the next one
            elapsed, ran = t_now - start - 3.0, 0
            while ran < len(epochs) and sum(epochs[:ran + 1]) <= elapsed:
                ran += 1
            into = max(0.0, elapsed - sum(epochs[:ran])) / epochs[ran] if ran < len(epochs) else 0.0
            progress(experiment, cell, started=base + start, updated=base + t_now - 1, epoch_s=epochs[:ran],
                     step=int(into * 100), steps=100)
    truth = max(end for _, end in spans) - t_now
    finished_s = [end - start for start, end in spans if end <= t_now]
    naive = sum(finished_s) / len(finished_s) * (len(trials) - len(finished_s)) / slots
    return experiment, base + t_now, truth, naive


def test_a_trial_that_raised_is_not_shown_running_while_its_heartbeat_is_fresh(tmp_path, rdsweep):
    """A trial that raised stops counting as live at once, not a minute later when its heartbeat is stale;
    once the launch records the failure, status says failed with its error."""
    experiment = Experiment(tmp_path / "sweep")
    experiment.record_protocol({"dataset": "mnist5k"}, "0.1.0")
    cell = image_cell("---", 1.0)
    try:
        with TrialProgress(experiment, cell, time.time()) as trial:
            trial.begin(None)
            assert experiment_status(experiment).cells[0].state == "running"
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
    except RuntimeError:
        pass
    assert experiment_status(experiment).cells[0].state == "resumable"
    experiment.write_result(cell_result({"cell": cell.to_dict(), "cell_id": cell.cell_id, "status": "failed",
                                         "error": "RuntimeError: CUDA error", "rdsweep_version": "0.1.0"}))
    shown = rdsweep("status", experiment.path)
    row = next(line for line in shown.stdout.splitlines() if line.startswith("--- β=1 seed=0"))
    assert shown.returncode == 0 and "failed" in row and "running" not in row, shown.stdout


def test_eta_of_half_finished_sweeps_is_within_the_stated_error(tmp_path):
    """What docs/launch.md states, on 20 synthetic sweeps stopped half-way: the ETA's median error is at most
    15% and no error exceeds 40%. A naive average over finished cells (more of them from the fast family)
    is further off."""
    errors, naive_errors = [], []
    for seed in range(20):
        experiment, now, truth, naive = synthetic_sweep(tmp_path, seed)
        status = experiment_status(experiment, now=now)
        assert status.counts()["converged"] == 12 and status.estimate.cells_left == 12
        errors.append(abs(status.estimate.remaining_s - truth) / truth)
        naive_errors.append(abs(naive - truth) / truth)
    assert sorted(errors)[10] <= 0.15 and max(errors) <= 0.4, errors
    assert sorted(naive_errors)[10] > 2 * sorted(errors)[10], naive_errors



def test_the_eta_of_a_resumed_study_runs_at_the_latest_launchs_pace(tmp_path, rdsweep):
    """A study trained over sessions: its first launch ran two trials on a busy machine (200 s an epoch), the
    latest runs one trial alone (80 s). The time left is counted at the latest launch's pace, not at the
    mean of every epoch the family ever ran (which would say 2.4 times as long)."""
    experiment = Experiment(tmp_path / "study")
    experiment.record_protocol({"dataset": "mnist"}, "0.1.0")
    first, second = image_cell("---", 1.0, epochs=100), image_cell("---", 0.3, epochs=100)
    now = time.time()
    finished(experiment, first, [200.0] * 60)
    progress(experiment, first, started=now - 20_000, updated=now - 8_000, finished_at=now - 8_000,
             epoch_s=[200.0] * 60)
    record_launch(experiment, [first, second], 1, now - 410)
    progress(experiment, second, started=now - 405, updated=now - 1, epoch_s=[80.0] * 5, step=1, steps=1000)
    status = experiment_status(experiment, now=now)
    assert abs(status.estimate.remaining_s - 55 * 80.0) < 80.0, status.estimate
    shown = rdsweep("status", experiment.path)
    family_row = shown.stdout.split("s/epoch")[-1]
    assert shown.returncode == 0 and "80.00" in family_row.split(), shown.stdout


def _tree(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_heartbeat_dated_in_the_future_shows_the_clock_ahead_not_just_now(tmp_path, rdsweep):
    """A trial on a node whose clock runs 5 minutes ahead: its record is dated after `now`. It used to read
    "running, 0s ago"; status says the clock is ahead, and that its age tells nothing (issue 33)."""
    import re

    from rdsweep.sweep.status import AHEAD_KEY

    experiment = Experiment(tmp_path / "sweep")
    experiment.record_protocol({"dataset": "mnist5k"}, "0.1.0")
    ahead, fine = image_cell("-+v", 0.3), image_cell("-+v", 1.0)
    now = time.time()
    record_launch(experiment, [ahead, fine], 2, now - 120)
    progress(experiment, ahead, started=now - 60, updated=now + 300, epoch_s=[30.0], step=3, steps=50, valid=91.0)
    progress(experiment, fine, started=now - 60, updated=now - 3, epoch_s=[30.0], step=3, steps=50, valid=92.0)
    before = _tree(tmp_path)
    shown = rdsweep("status", experiment.path)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("-+v β=0.3 seed=0"))
    assert re.search(r"ahead [45]m", row) and " ago" not in row, row
    other = next(line for line in shown.stdout.splitlines() if line.startswith("-+v β=1 seed=0"))
    assert re.search(r"\b[0-9]s ago", other) and "ahead" not in other
    assert AHEAD_KEY in " ".join(shown.stdout.split())
    listed = rdsweep("status", experiment.path, "--json")
    by_id = {c["cell_id"]: c for c in json.loads(listed.stdout)[0]["cells"]}
    assert 280 < by_id[ahead.cell_id]["clock_ahead_s"] <= 300 and by_id[fine.cell_id]["clock_ahead_s"] is None
    assert _tree(tmp_path) == before                    # status writes nothing


def test_status_while_a_launch_starts_says_so(tmp_path, rdsweep):
    """A launch holds the lock (launch.lock, launch.lock.json) some 20 s before it writes experiment.json and
    launch.json (Ray starts in between): status said "is not an rdsweep experiment" (issue 33)."""
    import os
    import socket
    import subprocess

    experiment = Experiment(tmp_path / "new")
    experiment.path.mkdir()
    experiment.lock_path.touch()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": "2026-12-04 21:00:00",
              "command": "rdsweep launch new.toml"}
    experiment.holder_path.write_text(json.dumps(holder))
    before = _tree(tmp_path)
    shown = rdsweep("status", experiment.path)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert f"starting: a launch by pid {os.getpid()} on {holder['host']}" in shown.stdout
    assert "not an rdsweep experiment" not in shown.stdout
    (report,) = json.loads(rdsweep("status", experiment.path, "--json").stdout)
    assert report["starting"]["alive"] is True and report["cells"] == [] and report["counts"] == {}
    assert _tree(tmp_path) == before

    # the launcher died before it recorded anything (its lock record is left over): said so
    gone = subprocess.Popen(["true"])
    gone.wait()
    experiment.holder_path.write_text(json.dumps({**holder, "pid": gone.pid}))
    shown = rdsweep("status", experiment.path)
    assert shown.returncode == 0 and "no launch running" in shown.stdout and "nothing of it was trained" in shown.stdout

    # only the lock file of a launch that ended before it started a cell: one line, exit 2
    experiment.holder_path.unlink()
    shown = rdsweep("status", experiment.path)
    assert shown.returncode == 2 and shown.stderr.count("\n") == 1 and "no launch has recorded anything" in shown.stderr

    # a relaunch of an experiment with cells: the new launch's start is said above the latest launch's cells
    cell = image_cell("---", 1.0)
    experiment.record_protocol({"dataset": "mnist5k"}, "0.1.0")
    experiment.record_launch({"name": "launch-20260101-000000", "started_at": time.time() - 3600, "slots": 1,
                              "pid": 1, "host": "elsewhere",
                              "cells": [{"cell_id": cell.cell_id, "action": "run", "cell": cell.to_dict()}]})
    finished(experiment, cell, [2.0] * 3)
    experiment.holder_path.write_text(json.dumps(holder))
    before = _tree(tmp_path)
    shown = rdsweep("status", experiment.path)
    assert shown.returncode == 0 and "starting: a launch by pid" in shown.stdout and "1 converged" in shown.stdout
    assert _tree(tmp_path) == before                    # status writes nothing


def test_status_names_the_node_of_each_running_cell_on_a_cluster(tmp_path, rdsweep):
    """Issue 31: trials running on more than one Ray node get a node column (the id's first 8 digits); on one
    node there is none (nothing to tell apart)."""
    experiment = Experiment(tmp_path / "sweep")
    experiment.record_protocol({"dataset": "mnist5k"}, "0.6.0")
    a, b = image_cell("---", 0.3), image_cell("---", 1.0)
    now = time.time()
    record_launch(experiment, [a, b], 2, now - 600)
    for cell, node in ((a, "3f2a9c01" + "0" * 48), (b, "b7e410d2" + "1" * 48)):
        progress(experiment, cell, started=now - 300, updated=now - 2, epoch_s=[30.0] * 3, step=1, steps=50,
                 node=node)
    out = rdsweep("status", experiment.path).stdout
    header = next(line for line in out.splitlines() if line.startswith("cell"))
    assert header.split()[-1] == "node"
    assert next(line for line in out.splitlines() if line.startswith("--- β=0.3")).split()[-1] == "3f2a9c01"
    assert next(line for line in out.splitlines() if line.startswith("--- β=1 ")).split()[-1] == "b7e410d2"
    progress(experiment, b, started=now - 300, updated=now - 2, epoch_s=[30.0] * 3, step=1, steps=50,
             node="3f2a9c01" + "0" * 48)
    out = rdsweep("status", experiment.path).stdout
    assert "node" not in next(line for line in out.splitlines() if line.startswith("cell"))
