"""The exit-status contract, the experiment lock, damaged files and killed launchers, through the installed
`rdsweep` console script against a real Ray cluster (docs/reliability.md)."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdsweep.training import checkpoints

from rdsweep.spec import load_spec
from rdsweep.sweep.ledger import Experiment
from rdsweep.sweep.status import STALE_S, experiment_status
from rdsweep.training import trainer
from rdsweep.training.result import cell_result

from conftest import BIN, RAY_ENV, trial_workers

# ~1 s per epoch and a cap far away: a cell that is still training when the test acts on it (the test then
# lowers the cap, which may change between launches, to end it soon).
SLOW = ('dataset = "toy"\nfamilies = ["toy"]\nseeds = [0]\n'
        "[budget]\nepochs = 100\nbatch_size = 100\nlr = 0.01\npatience = 50\n"
        '[[objective]]\nkind = "beta"\nvalues = [1.0]\n'
        "[resources]\ncpus_per_trial = 1\nmax_failures = MAX_FAILURES\ncheckpoint_s = 0\n")  # every epoch
# Six short cells that converge in a few seconds each.
QUICK = ('dataset = "toy"\nfamilies = ["toy"]\nseeds = [0, 1]\n'
         "[budget]\nepochs = 40\nbatch_size = 500\nlr = 0.01\npatience = 2\nmin_delta = 0.01\nlr_reductions = 1\n"
         '[[objective]]\nkind = "beta"\nvalues = [0.3, 1.0, 3.0]\n'
         "[resources]\ncpus_per_trial = 1\nmax_failures = 1\n")


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "rdsweep"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **RAY_ENV, "COLUMNS": "200"})


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the launch ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_lock_interrupt_and_resume(tmp_path, rdsweep, ray_address):
    """A second launch of a running experiment exits 2 naming the first, while status sees the cell running;
    Ctrl-C exits 130 with the checkpoint kept and the log saying so; the lock of the interrupted launch does not
    block the relaunch, which resumes the cell."""
    spec = tmp_path / "toy.toml"
    spec.write_text(SLOW.replace("MAX_FAILURES", "1"))
    storage = tmp_path / "results"
    experiment = Experiment(storage / "toy")
    (cell,) = load_spec(spec).cells()
    first = start("launch", spec, "--storage", storage, "--address", ray_address)
    try:
        wait_for(lambda: experiment.checkpoint_path(cell.cell_id).exists() and experiment.progress_dir.is_dir()
                 and any(r["epoch"] >= 1 for r in experiment.progress().values()), "the first checkpoint", first)
        second = rdsweep("launch", spec, "--storage", storage, "--address", ray_address)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and f"pid {first.pid}" in second.stderr
        live = rdsweep("status", experiment.path, "--json")     # status sees the cell running at its epoch
        (report,) = json.loads(live.stdout)
        (running,) = report["cells"]
        assert running["state"] == "running" and running["epoch"] >= 1 and report["eta"]["ends_at"] is not None
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, out + err
    assert "interrupted: 1 cell(s) unfinished" in err
    assert experiment.checkpoint_path(cell.cell_id).exists() and experiment.results() == []
    # The log says what was left unfinished; the cell is resumable once its heartbeat is stale.
    (log,) = experiment.path.glob("launch-*.log")
    text = log.read_text()
    assert "start toy β=1 seed=0" in text and "epoch 1/100 toy β=1 seed=0" in text
    assert "1 unfinished (stopped before they ended)" in text.splitlines()[-1]
    (record,) = experiment.progress().values()
    assert record["finished_at"] is None and record["epoch"] >= 1
    later = experiment_status(experiment, now=time.time() + STALE_S)
    assert [c.state for c in later.cells] == ["resumable"]

    saved = checkpoints.load_state(experiment.checkpoint_path(cell.cell_id))["epoch"]
    cap = ("--epochs", saved + 2)
    done = rdsweep("launch", spec, "--storage", storage, "--address", ray_address, *cap)
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = experiment.results()
    assert result.resumed_from_epoch == saved and result.epochs == saved + 2
    assert result.status == "unconverged" and "raise --epochs" in done.stderr  # a warning, still exit 0
    strict = rdsweep("launch", spec, "--storage", storage, "--address", ray_address, *cap, "--strict")
    assert strict.returncode == 1 and "nothing to train" in strict.stdout and "--strict" in strict.stderr


def test_sigterm_to_the_launchers_group_stops_it_like_ctrl_c(tmp_path, rdsweep, ray_address):
    """Issue 33: SIGTERM (SLURM, Kubernetes before a kill) to a launch's process group while a trial trains: exit
    143 with one line on stderr (no Ray crash lines), the checkpoint kept, no result; the same command resumes
    the cell. SIGHUP takes the same path (exit 129), a second signal too (stops at once, still one line).
    In waves of one cell, the stop ends the launch: the next wave's cell never starts."""
    spec = tmp_path / "toy.toml"
    spec.write_text(SLOW.replace("MAX_FAILURES", "1").replace("seeds = [0]", "seeds = [0, 1]"))
    storage = tmp_path / "results"
    experiment = Experiment(storage / "toy")
    cell, later = load_spec(spec).cells()
    launch = subprocess.Popen([str(BIN / "rdsweep"), "launch", str(spec), "--storage", str(storage), "--address",
                               ray_address, "--cells-per-wave", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True, env={**os.environ, **RAY_ENV, "COLUMNS": "200"})
    try:
        wait_for(lambda: experiment.checkpoint_path(cell.cell_id).exists() and experiment.progress_dir.is_dir()
                 and any(r["epoch"] >= 1 for r in experiment.progress().values()), "the first checkpoint", launch)
        os.killpg(launch.pid, signal.SIGTERM)
        out, err = launch.communicate(timeout=120)
    finally:
        launch.kill()
    assert launch.returncode == 143, out + err
    assert err.count("\n") == 1 and err.startswith("rdsweep: interrupted by SIGTERM: 2 cell(s) unfinished"), err
    assert experiment.checkpoint_path(cell.cell_id).exists() and experiment.results() == []
    assert list(experiment.progress()) == [cell.cell_id]   # the second wave never started

    saved = checkpoints.load_state(experiment.checkpoint_path(cell.cell_id))["epoch"]
    done = rdsweep("launch", spec, "--storage", storage, "--address", ray_address, "--epochs", saved + 1)
    assert done.returncode == 0, done.stdout + done.stderr
    result = {r.cell_id: r for r in experiment.results()}
    assert result[cell.cell_id].resumed_from_epoch == saved and result[cell.cell_id].epochs == saved + 1
    assert result[later.cell_id].resumed_from_epoch == 0


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_signal_while_ray_starts_exits_128_plus_it_with_one_line(tmp_path, ray_address, sig):
    """Issue 33: SIGHUP or SIGTERM before Tune runs, while the launch imports or joins Ray (ray.init sets its
    own SIGTERM handler, sys.exit(15), once an exit 15 with no word): 128 + the signal, one line."""
    spec = tmp_path / "toy.toml"
    spec.write_text(SLOW.replace("MAX_FAILURES", "1"))
    experiment = Experiment(tmp_path / "results" / "toy")
    launch = start("launch", spec, "--storage", tmp_path / "results", "--address", ray_address)
    try:
        wait_for(experiment.holder_path.exists, "the launch to take its lock", launch)
        launch.send_signal(sig)
        out, err = launch.communicate(timeout=120)
    finally:
        launch.kill()
    assert launch.returncode == 128 + sig, out + err
    assert err.count("\n") == 1 and err.startswith(f"rdsweep: interrupted by {sig.name}: "), err


def test_a_second_ctrl_c_stops_at_once_with_one_line(tmp_path, ray_address):
    """Issue 33: Ctrl-C twice while a trial trains (Tune's graceful stop cut short, or just done: a stop takes
    about half a second): exit 130, one line. A Ctrl-C after that line, while the launch exits, changes
    nothing (one there once killed it by SIGINT, exit −2)."""
    spec = tmp_path / "toy.toml"
    spec.write_text(SLOW.replace("MAX_FAILURES", "1"))
    experiment = Experiment(tmp_path / "results" / "toy")
    (cell,) = load_spec(spec).cells()
    launch = start("launch", spec, "--storage", tmp_path / "results", "--address", ray_address)
    try:
        wait_for(lambda: experiment.checkpoint_path(cell.cell_id).exists(), "the first checkpoint", launch)
        launch.send_signal(signal.SIGINT)
        time.sleep(0.3)
        launch.send_signal(signal.SIGINT)
        line = launch.stderr.readline()   # the launch's one line: it is exiting now
        launch.send_signal(signal.SIGINT)
        out, err = launch.communicate(timeout=120)
    finally:
        launch.kill()
    err = line + err
    assert launch.returncode == 130, out + err
    assert err.count("\n") == 1 and err.startswith("rdsweep: interrupted: "), err
    assert experiment.checkpoint_path(cell.cell_id).exists() and experiment.results() == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the trial's worker process through /proc")
def test_a_failed_cell_exits_1_and_an_unusable_checkpoint_is_moved_aside(tmp_path, rdsweep, ray_address):
    """A cell whose continuation fails (worker killed, no retries left) exits 1 and keeps its earlier result;
    its checkpoint, then damaged, is moved aside on the next launch and the cell restarts."""
    spec = tmp_path / "toy.toml"
    spec.write_text(SLOW.replace("MAX_FAILURES", "0"))
    storage = tmp_path / "results"
    experiment = Experiment(storage / "toy")
    (cell,) = load_spec(spec).cells()
    done = rdsweep("launch", spec, "--storage", storage, "--address", ray_address, "--epochs", 2)
    assert done.returncode == 0 and "1 unconverged" in done.stdout, done.stdout + done.stderr
    earlier = experiment.result(cell.cell_id)

    launch = start("launch", spec, "--storage", storage, "--address", ray_address)   # continues it
    try:
        wait_for(lambda: checkpoints.load_state(experiment.checkpoint_path(cell.cell_id))["epoch"] > 2,
                 "an epoch of the continuation", launch)
        (worker,) = trial_workers(RAY_ENV["RAY_AUTH_TOKEN"])
        os.kill(worker, signal.SIGKILL)                          # no retries left: the continuation fails
        out, err = launch.communicate(timeout=120)
    finally:
        launch.kill()
    assert launch.returncode == 1, out + err
    assert "1 failed" in out and "1 cell(s) failed" in err
    assert experiment.result(cell.cell_id) == earlier            # its earlier numbers are still true: kept

    # The kept checkpoint is damaged (a disk filled up, a code change): the cell restarts instead of failing
    # on every launch, and the damaged file is kept and named.
    checkpoint = experiment.checkpoint_path(cell.cell_id)
    cap = ("--epochs", checkpoints.load_state(checkpoint)["epoch"] + 2)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    done = rdsweep("launch", spec, "--storage", storage, "--address", ray_address, *cap)
    assert done.returncode == 0, done.stdout + done.stderr
    (aside,) = experiment.checkpoints_dir.glob("*.unusable-*")
    assert str(aside) in done.stderr and "the cell restarted" in done.stderr
    (result,) = experiment.results()
    assert result.status == "unconverged" and result.resumed_from_epoch == 0
    assert result.warnings and str(aside) in result.warnings[0]


def test_a_checkpoint_of_another_model_structure_is_refused(tmp_path):
    """What the sweep moves aside: a state saved for other parameter shapes, or a file that is not one."""
    from dataclasses import replace

    from rdsweep.cells import Cell

    cell = Cell(dataset="toy", family="toy", epochs=1, batch_size=500).validated()
    states = []
    trainer.train(cell, on_epoch=lambda metrics, state: states.append(state))
    state = states[-1]
    state["model"] = {k: v[..., :1] for k, v in state["model"].items()}  # other shapes, same fingerprint
    with pytest.raises(checkpoints.IncompatibleCheckpoint, match="does not fit"):
        trainer.train(replace(cell, epochs=2), resume_state=state)
    with pytest.raises(checkpoints.IncompatibleCheckpoint, match="model structure"):
        trainer.train(replace(cell, epochs=2), resume_state={**states[-1], "fingerprint": "0" * 16})
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(checkpoints.IncompatibleCheckpoint, match="cannot be read"):
        checkpoints.load_state(tmp_path / "junk.pt")


def test_a_killed_launcher_loses_nothing_and_trains_nothing_twice(tmp_path, rdsweep, ray_address):
    """SIGKILL the launcher itself mid-sweep (no handler runs), relaunch: the finished cells are left alone,
    every cell appears once in the table, and those that ended after the kill have the numbers of an
    uninterrupted run."""
    spec = tmp_path / "toy.toml"
    spec.write_text(QUICK)
    storage = tmp_path / "results"
    experiment = Experiment(storage / "toy")
    cells = load_spec(spec).cells()
    launch = start("launch", spec, "--storage", storage, "--address", ray_address)
    try:
        wait_for(lambda: len(list(experiment.cells_dir.glob("*.json"))) >= 2 if experiment.cells_dir.is_dir()
                 else False, "two finished cells", launch)
        launch.send_signal(signal.SIGKILL)
        launch.wait(30)
    finally:
        launch.kill()
    before = {p.name: p.read_bytes() for p in experiment.cells_dir.glob("*.json")}
    assert 2 <= len(before) < len(cells)

    # The relaunch runs its cells one wave each (a Tune run per wave, as 500-cell waves do in a long sweep).
    done = rdsweep("launch", spec, "--storage", storage, "--address", ray_address, "--cells-per-wave", 1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(before)} skipped" in done.stdout
    relaunch = max(experiment.path.glob("launch-*.log")).stem
    waves = [d.name for d in experiment.ray_dir.iterdir() if d.name.split(".")[0] == relaunch]
    assert sorted(waves) == [relaunch, *(f"{relaunch}.{i}" for i in range(2, len(cells) - len(before) + 1))]
    after = {p.name: p.read_bytes() for p in experiment.cells_dir.glob("*.json")}
    assert {name: after[name] for name in before} == before     # not trained again, not rewritten
    assert sorted(after) == sorted(f"{c.cell_id}.json" for c in cells)

    done = rdsweep("collect", experiment.path)
    assert done.returncode == 0, done.stderr
    import pandas as pd
    table = pd.read_parquet(experiment.path / "frontier.parquet")
    assert sorted(table["cell_id"].unique()) == sorted(c.cell_id for c in cells)
    assert len(table) == 3 * len(cells)
    for cell in cells:   # those that ended after the kill (left unchanged: those before, trained in one go)
        if f"{cell.cell_id}.json" in before:
            continue
        uninterrupted = trainer.train(cell, threads=1)
        rows = table[table["cell_id"] == cell.cell_id].set_index("split")
        for split, m in uninterrupted.splits.items():
            assert (rows.loc[split, "rate"], rows.loc[split, "distortion"]) == (m.rate, m.distortion)


def test_results_and_tables_honour_the_umask(tmp_path):
    """mkstemp would make them 0600 whatever the umask; colleagues on a shared filesystem need the umask's."""
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        d = tmp_path / f"{mask:03o}"
        d.mkdir()
        write = (f"from rdsweep.sweep.ledger import Experiment; from rdsweep.training.result import cell_result; "
                 f"import json; Experiment('{d}/toy').write_result(cell_result(json.load(open('{d}/r.json'))))")
        script = (f"umask {mask:03o} && {BIN / 'rdsweep'} train --dataset toy --batch-size 500 --json {d}/r.json "
                  f"&& {BIN / 'python'} -c \"{write}\" && {BIN / 'rdsweep'} collect {d}/toy")
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        written = [d / "r.json", d / "toy" / "frontier.parquet", *(d / "toy" / "cells").iterdir()]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in written} == {f.name: mode for f in written}


def test_train_exit_status(tmp_path, rdsweep):
    done = rdsweep("train", "--dataset", "toy", "--lr", "1000", "--epochs", "3", "--batch-size", "500")
    assert done.returncode == 1 and "diverged" in done.stderr and done.stderr.count("\n") == 1
    done = rdsweep("train", "--dataset", "toy", "--epochs", "1", "--batch-size", "500")
    assert done.returncode == 0 and "unconverged" in done.stderr   # hit the cap: a warning, not a failure


def test_collect_replaces_only_its_own_tables(tmp_path, rdsweep):
    experiment = Experiment(tmp_path / "toy")
    done = rdsweep("train", "--dataset", "toy", "--batch-size", "500", "--json", tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    experiment.write_result(cell_result(result))
    spec = tmp_path / "toy.toml"
    spec.write_text(QUICK)
    for victim in (spec, experiment.result_path(result["cell_id"])):
        before = victim.read_bytes()
        done = rdsweep("collect", experiment.path, "--out", victim)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert victim.read_bytes() == before
    table = tmp_path / "table.parquet"
    for _ in range(2):                                           # its own table: replaced
        done = rdsweep("collect", experiment.path, "--out", table)
        assert done.returncode == 0, done.stderr
    done = rdsweep("collect", experiment.path, "--out", experiment.cells_dir / "new.parquet")
    assert done.returncode == 2 and "inside the ledger" in done.stderr


def test_a_damaged_result_is_named_by_its_own_path(tmp_path, rdsweep):
    """A result whose content names another cell, or has wrong types: the error names the broken file."""
    done = rdsweep("train", "--dataset", "toy", "--batch-size", "500", "--json", tmp_path / "r.json")
    result = json.loads((tmp_path / "r.json").read_text())
    experiment = Experiment(tmp_path / "toy")
    experiment.write_result(cell_result(result))
    healthy = experiment.result_path(result["cell_id"])
    broken = experiment.cells_dir / "0123456789abcdef.json"
    for content, message in (({**result}, "holds cell"), ({**result, "cell_id": "0123456789abcdef",
                                                            "epochs": "three"}, "epochs"),
                             ({**result, "cell_id": "0123456789abcdef", "cell": {**result["cell"], "seed": None}},
                              "seed")):
        broken.write_text(json.dumps(content))
        done = rdsweep("collect", experiment.path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert str(broken) in done.stderr and str(healthy) not in done.stderr and message in done.stderr


# Issue 33: small faults, each through the console script: exit status, one line on stderr, nothing on disk
# created or changed.

def _tree(root: Path) -> dict:
    """Every file under root with its bytes: what a refused command must leave as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_spec_whose_grid_is_empty_exits_2_before_anything_is_created(tmp_path, rdsweep):
    """No [[objective]] block names a family of the spec: no cell. Refused with or without --dry-run, before
    the experiment's directory and lock are made (and so before Ray: no Ray needed here)."""
    spec = tmp_path / "empty.toml"
    spec.write_text('dataset = "mnist5k"\nfamilies = ["gauss-deconv-normal"]\n'
                    '[[objective]]\nkind = "beta"\nvalues = [1.0]\nfamilies = ["gauss-pixelcnn-normal"]\n')
    storage = tmp_path / "results"
    before = _tree(tmp_path)
    for extra in (["--dry-run"], []):
        done = rdsweep("launch", spec, "--storage", storage, *extra)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "objective: the grid is empty" in done.stderr and "gauss-pixelcnn-normal" in done.stderr
        assert not storage.exists() and _tree(tmp_path) == before
    # a --families override that leaves no block a family of the spec: the same
    spec.write_text('dataset = "mnist5k"\nfamilies = ["gauss-deconv-normal", "gauss-pixelcnn-normal"]\n'
                    '[[objective]]\nkind = "beta"\nvalues = [1.0]\nfamilies = ["gauss-pixelcnn-normal"]\n')
    done = rdsweep("launch", spec, "--storage", storage, "--families", "gauss-deconv-normal")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "the grid is empty" in done.stderr
    assert not storage.exists()


def test_an_empty_experiment_name_is_refused_not_replaced_by_the_specs_stem(tmp_path, rdsweep):
    """`--name ''` used to become the spec's stem. The dataset is a folder without data: had the name passed,
    the launch would have stopped there with another message (before any lock or Ray)."""
    (tmp_path / "no-data").mkdir()
    spec = tmp_path / "named.toml"
    spec.write_text(f'dataset = "idx:{tmp_path / "no-data"}"\nfamilies = ["gauss-deconv-normal"]\n'
                    '[[objective]]\nkind = "beta"\nvalues = [1.0]\n')
    storage = tmp_path / "results"
    for extra in (["--dry-run"], []):
        for name in ("", " ", "..", "a/b"):
            done = rdsweep("launch", spec, "--storage", storage, "--name", name, *extra)
            assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
            assert f"experiment name {name!r} (--name" in done.stderr and "one path segment" in done.stderr
            assert not storage.exists()


def test_frontier_plot_reports_the_file_it_really_writes(tmp_path, rdsweep):
    """matplotlib adds .png to a name without a suffix: "wrote" names that file. A suffix it cannot write, or a
    directory, is refused before anything is computed (exit 2, nothing written)."""
    from test_frontier import POINTS, table_rows, write_table

    table = write_table(tmp_path / "frontier.parquet", table_rows(POINTS))
    done = rdsweep("frontier", table, tmp_path / "rd", "--plot")
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'rd.png'}" in done.stdout and not (tmp_path / "rd").exists()
    assert (tmp_path / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = _tree(tmp_path)
    for args, message in (([tmp_path / "rd.v2", "--plot"], "cannot write a .v2 figure"),
                          ([tmp_path, "--plot"], "is a directory"),
                          (["--grids", tmp_path / "grids.v2"], "--grids")):
        done = rdsweep("frontier", table, *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr and done.stdout == ""
        assert _tree(tmp_path) == before


def test_a_storage_error_names_the_file_not_its_temporary(tmp_path):
    """Storage that fails mid-write (here a file-size limit: the table cannot be written): exit 1, one line
    naming the table, not `.table.parquet.xxxxxxxx.tmp`, and no temporary file left behind."""
    import resource

    from test_status import finished, image_cell

    experiment = Experiment(tmp_path / "exp")
    experiment.record_protocol({"dataset": "mnist5k"}, "0.1.0")
    finished(experiment, image_cell("---", 1.0), [2.0] * 3)
    table = tmp_path / "table.parquet"
    before = _tree(tmp_path)
    done = subprocess.run([str(BIN / "rdsweep"), "collect", str(experiment.path), "--out", str(table)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024)))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("rdsweep: error:") and done.stderr.rstrip().endswith(str(table))
    assert "too large" in done.stderr and ".tmp" not in done.stderr
    assert _tree(tmp_path) == before and not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_atomic_write_names_its_target_whichever_step_fails(tmp_path):
    """Creating the temporary file (a folder that is gone) and renaming it (onto a directory) fail naming the
    temporary file; atomic_write names the target instead, keeps the error's class, and leaves nothing."""
    from rdsweep.files import atomic_write

    gone = tmp_path / "gone" / "launch.json"
    with pytest.raises(FileNotFoundError) as error:
        with atomic_write(gone) as tmp:
            tmp.write_text("{}")
    assert error.value.filename == str(gone) and ".tmp" not in str(error.value)
    (tmp_path / "launch.json").mkdir()
    with pytest.raises(IsADirectoryError) as error:
        with atomic_write(tmp_path / "launch.json") as tmp:
            tmp.write_text("{}")
    assert error.value.filename == str(tmp_path / "launch.json") and ".tmp" not in str(error.value)
    assert [p.name for p in tmp_path.iterdir()] == ["launch.json"]     # the temporary file is gone


# Issue 33, the operator's audit: each kind of fault through the console script, one line on stderr, exit 2,
# nothing on disk lost or overwritten. None of these needs Ray: each is refused before Ray would start.

ONE_TOY = ('dataset = "toy"\nfamilies = ["toy"]\nseeds = [0]\n[budget]\nepochs = 2\nbatch_size = 500\n'
           '[[objective]]\nkind = "beta"\nvalues = [1.0]\n')


def _entries(root: Path) -> dict:
    """_tree, with folders, links and their kinds too: a refused command creates and replaces nothing."""
    return {str(p.relative_to(root)): ("link", os.readlink(p)) if p.is_symlink() else
            ("dir",) if p.is_dir() else ("file", p.read_bytes()) for p in sorted(root.rglob("*"))}


def _listener(answer: bytes | None):
    """A TCP server on every interface (Ray resolves 127.0.0.1 to this node's address) that is not a Ray
    cluster: it writes `answer` and closes, or (None) accepts and says nothing. Returns its port."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    held = []

    def serve():
        while True:
            connection, _ = server.accept()
            if answer is None:
                held.append(connection)   # open and silent until the test ends
            else:
                connection.sendall(answer)
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def test_a_dead_address_exits_2_in_seconds_before_the_lock(tmp_path, rdsweep):
    """`--address 127.0.0.1:1` waited forever in ray.init (still running after 290 s, holding the lock). Every
    address where no Ray cluster answers (refused, not HOST:PORT, another protocol, a silent port, RAY_ADDRESS
    behind 'auto') is exit 2 within seconds, naming it, before the experiment's directory or lock exists."""
    spec = tmp_path / "s.toml"
    spec.write_text(ONE_TOY)
    storage = tmp_path / "results"
    before = _entries(tmp_path)
    cases = [(["--address", "127.0.0.1:1"], {}, "--address 127.0.0.1:1", "Connection refused"),
             (["--address", "auto"], {"RAY_ADDRESS": "127.0.0.1:1"}, "--address auto (RAY_ADDRESS=127.0.0.1:1)",
              "Connection refused"),
             (["--address", "nohost"], {}, "--address nohost", "not HOST:PORT"),
             (["--address", "http://127.0.0.1:1"], {}, "--address http://127.0.0.1:1", "is not a Ray cluster's"),
             (["--address", f"127.0.0.1:{_listener(b'SSH-2.0-OpenSSH_9.6')}"], {}, "--address 127.0.0.1:",
              "not a Ray cluster (it answered b'SSH-2.0-"),
             (["--address", f"127.0.0.1:{_listener(None)}"], {}, "--address 127.0.0.1:", "no answer within 5 s")]
    for args, env, named, why in cases:
        started = time.monotonic()
        done = rdsweep("launch", spec, "--storage", storage, *args, env=env, timeout=120)
        took = time.monotonic() - started
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stderr)
        assert f"cannot join the Ray cluster at {named}" in done.stderr and why in done.stderr, done.stderr
        assert took < 60, f"{args}: {took:.0f} s"          # seconds (imports, and 5 s for a silent port)
        assert not storage.exists() and _entries(tmp_path) == before


def test_the_launch_lock_is_verified_not_only_taken(tmp_path, rdsweep, monkeypatch):
    """A launch (here this test, holding Experiment.lock) whose launch.lock is deleted or replaced is not
    bypassed: the second launch exits 2 naming it and leaves its holder record alone. A lock file or holder
    record that cannot be used is exit 2 naming it; a stale record of a dead launcher is replaced. The spec's
    one cell is finished, so a launch the lock let through says "nothing to train" (exit 0): never Ray."""
    import errno

    from rdsweep.errors import UserError
    from test_status import finished

    spec = tmp_path / "s.toml"
    spec.write_text(ONE_TOY)
    storage = tmp_path / "results"
    experiment = Experiment(storage / "s")
    experiment.record_protocol(load_spec(spec).protocol, "0.5.0")
    (cell,) = load_spec(spec).cells()
    finished(experiment, cell, [1.0, 1.0])

    def refused(*needles: str) -> None:
        before = _entries(tmp_path)
        done = rdsweep("launch", spec, "--storage", storage)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stdout + done.stderr
        assert all(n in done.stderr for n in needles), done.stderr
        assert _entries(tmp_path) == before                   # nothing created, nothing replaced or removed

    with experiment.lock():
        refused(f"being launched by pid {os.getpid()}", "stop it first")          # the plain second launch
        experiment.lock_path.unlink()                                             # deleted under the holder
        refused(f"being launched by pid {os.getpid()}", f"its lock file {experiment.lock_path} was deleted or "
                "replaced", "that launch still runs")
        experiment.lock_path.write_text("")                                       # replaced: another inode
        refused("was deleted or replaced", "that launch still runs")
        assert json.loads(experiment.holder_path.read_text())["pid"] == os.getpid()   # its record is intact
    assert not experiment.holder_path.exists()        # the holder removed its own record, and only its own

    gone = subprocess.Popen(["true"])
    gone.wait()
    for name, content, needle in (("launch.lock", None, "launch.lock is a directory"),
                                  ("launch.lock.json", None, "launch.lock.json is a directory"),
                                  ("launch.lock.json", "{\"pid\": ", "is not a launch lock's holder record")):
        path = experiment.path / name
        path.unlink(missing_ok=True)
        path.mkdir() if content is None else path.write_text(content)
        refused(str(path), needle)
        path.rmdir() if content is None else path.unlink()
    if os.geteuid() != 0:                                  # root opens a 0444 file for writing all the same
        experiment.lock_path.touch()
        experiment.lock_path.chmod(0o444)
        refused(str(experiment.lock_path), "cannot open it for writing")
        experiment.lock_path.unlink()

    # the same, in process, as another user meets it
    real_open = os.open

    def denied(path, flags, *args, **kwargs):
        if os.fspath(path) == str(experiment.lock_path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "open", denied)
        with pytest.raises(UserError, match="this user cannot open it for writing"):
            with experiment.lock():
                pass

    # a launcher that died with its record left behind, its lock file deleted since: stale, replaced
    experiment.holder_path.write_text(json.dumps({"pid": gone.pid, "host": os.uname().nodename, "since": "x",
                                                  "command": "rdsweep launch s.toml", "lock": {"dev": 0, "ino": 0}}))
    experiment.lock_path.unlink(missing_ok=True)
    done = rdsweep("launch", spec, "--storage", storage)
    assert done.returncode == 0 and "nothing to train" in done.stdout, done.stdout + done.stderr
    assert not experiment.holder_path.exists() and experiment.lock_path.is_file()


def test_a_damaged_ledger_layout_exits_2_before_anything_runs(tmp_path, rdsweep):
    """cells/, locks/, progress/, checkpoints/ replaced by a file used to start Ray and fail every cell (exit 1,
    tracebacks); cells/ a link that loops gave collect a traceback. launch, status, collect and curves check
    the layout first: exit 2, one line naming the path. The launch is given a dead address, so a launch that
    got past the check would say so (no Ray)."""
    from test_status import finished

    spec = tmp_path / "s.toml"
    spec.write_text(ONE_TOY)
    storage = tmp_path / "results"
    experiment = Experiment(storage / "s")
    experiment.record_protocol(load_spec(spec).protocol, "0.5.0")
    finished(experiment, load_spec(spec).cells()[0], [1.0])

    def refused(args, path: Path, needle: str) -> None:
        before = _entries(tmp_path)
        done = rdsweep(*args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stdout + done.stderr)
        assert str(path) in done.stderr and needle in done.stderr, done.stderr
        assert _entries(tmp_path) == before

    launch = ["launch", spec, "--storage", storage, "--address", "127.0.0.1:1"]
    for name in ("locks", "progress", "checkpoints"):
        path = experiment.path / name
        path.write_text("not a folder")
        refused(launch, path, "is a file, not a directory")
        path.unlink()
    aside = experiment.path / "cells.kept"
    experiment.cells_dir.rename(aside)
    experiment.cells_dir.write_text("not a folder")
    for args in (launch, ["status", experiment.path]):
        refused(args, experiment.cells_dir, "is a file, not a directory")
    experiment.cells_dir.unlink()
    (experiment.path / "loop").symlink_to("loop2")
    (experiment.path / "loop2").symlink_to("loop")
    experiment.cells_dir.symlink_to("loop")
    for args in (["collect", experiment.path], ["curves", experiment.path],
                 ["launch", spec, "--storage", storage, "--dry-run"]):
        refused(args, experiment.cells_dir, "Too many levels of symbolic links")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the dry run's peak memory in /proc")
def test_a_dry_run_of_a_huge_grid_is_fast_and_small_and_names_every_cell_whole(tmp_path):
    """A dry run of 10^5 β values took 183 s and 550 MB (rich laid out the whole table in memory; every cell
    was hashed five times). 50,000 cells: every id whole, one line each, at an 80-column terminal, in well
    under the old time and memory (before: 36 s and 300 MB here; now 2-5 s and about 100 MB). The peak is the
    command's own (VmHWM, written at its exit): a forked child's rusage counts the forking pytest's too."""
    betas = [round(0.001 + i * 0.0005, 6) for i in range(50_000)]
    spec = tmp_path / "huge.toml"
    spec.write_text(ONE_TOY.replace("values = [1.0]", f"values = {betas}"))
    peak = tmp_path / "peak"
    run = (f"import atexit, re, sys; atexit.register(lambda: open({str(peak)!r}, 'w').write(re.search("
           "r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1))); "
           "from rdsweep.cli import main; sys.argv[0] = 'rdsweep'; main()")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", run, "launch", str(spec), "--storage", str(tmp_path / "r"),
                           "--dry-run"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert max(len(line) for line in done.stdout.splitlines()) <= 80 and not any("…" in row for row in rows)
    ids = [row.split("│")[1].strip() for row in rows]
    assert len(ids) == len(set(ids)) == len(betas) and all(len(i) == 16 for i in ids)
    assert {c.cell_id for c in load_spec(spec).cells()} == set(ids)
    assert took < 60 and int(peak.read_text()) < 200 * 1024, (took, peak.read_text())   # kB
    assert not (tmp_path / "r").exists()


def test_a_full_disk_mid_run_exits_1_with_one_line_naming_the_filesystem(tmp_path, rdsweep, ray_address):
    """Issue 33: a trial's checkpoint meets a full disk (a small tmpfs, filled to 300 kB from full: a checkpoint
    and its copy in Ray's storage do not both fit). Exit 1 and rdsweep's own lines only, one naming the full
    filesystem, none of Tune's tracebacks; the failed cell's error is in the ledger."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("a full filesystem needs root to mount a small tmpfs (mount -t tmpfs)")
    try:
        free = os.statvfs(mnt)
        (mnt / "filler").write_bytes(bytes(free.f_bavail * free.f_frsize - 300 * 1024))
        spec = tmp_path / "toy.toml"
        spec.write_text(SLOW.replace("MAX_FAILURES", "0").replace("epochs = 100", "epochs = 3"))
        done = rdsweep("launch", spec, "--storage", mnt, "--address", ray_address)
        lines = done.stderr.splitlines()
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and len(lines) <= 3, done.stderr
        assert any(f"no space left on device under {mnt} (the experiment's filesystem)" in line
                   for line in lines), done.stderr
        [result] = [json.loads(p.read_text()) for p in (mnt / "toy" / "cells").glob("*.json")]
        assert result["status"] == "failed" and "No space left on device" in result["error"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_stop_while_ray_starts_waits_for_it_and_a_second_goes_through(monkeypatch):
    """rdsweep.sweep.stops.deferred: a SIGHUP inside the block (Ray's import, ray.init) is acted on as the block
    ends, as Ctrl-C, with the signal named for the exit status; a second one inside goes through at once."""
    from rdsweep.sweep import stops

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    monkeypatch.setattr(stops, "SIGNALLED", [])
    try:
        stops.stop_like_ctrl_c()
        reached_the_end = False
        with pytest.raises(KeyboardInterrupt):
            with stops.deferred() as waiting:
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(0.1)   # Python runs a handler between bytecodes: it has run by now
                assert waiting == [signal.SIGHUP]
                reached_the_end = True
        assert reached_the_end and stops.stopped_by() == signal.SIGHUP
        assert signal.getsignal(signal.SIGHUP) is stops._like_ctrl_c   # the launcher's again

        with pytest.raises(KeyboardInterrupt):
            with stops.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)
                pytest.fail("a second stop did not go through")
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_a_lost_node_s_trial_resumes_on_the_other_from_its_checkpoint(tmp_path, ray_cluster):
    """Issue 31: the node that trains a cell dies (SIGKILL to its raylet's group, as a machine that goes
    away). Ray retries the trial on the other node from the trial's last checkpoint, not from epoch 0; the
    launch exits 0, the cell has one result, and its numbers are those of an uninterrupted in-process run."""
    spec = tmp_path / "toy.toml"
    spec.write_text(SLOW.replace("MAX_FAILURES", "2").replace("epochs = 100", "epochs = 8"))
    experiment = Experiment(tmp_path / "results" / "toy")
    (cell,) = load_spec(spec).cells()
    launch, lost = start("launch", spec, "--storage", tmp_path / "results", "--address", ray_cluster.address), None
    try:
        wait_for(lambda: experiment.progress_dir.is_dir() and any(r["epoch"] >= 2 for r in experiment.progress().values()),
                 "epoch 2", launch)
        (record,) = experiment.progress().values()
        (worker,) = trial_workers(RAY_ENV["RAY_AUTH_TOKEN"])
        lost = ray_cluster.node_of(worker)
        ray_cluster.lose_worker(lost)
        out, err = launch.communicate(timeout=240)
    finally:
        launch.kill()
        if lost:
            ray_cluster.add_worker(f"{lost}-again")   # two nodes for the tests that follow
    assert launch.returncode == 0, out + err
    assert "Traceback" not in err, err
    (result,) = experiment.results()
    assert result.node != record["node"] and result.resumed_from_epoch >= 2, \
        (result.node, record["node"], result.resumed_from_epoch, out)
    from rdsweep.training import trainer
    assert result.splits == trainer.train(cell, threads=1).splits
