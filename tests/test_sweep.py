"""launch → collect → frontier end to end on `toy`, against a real `ray start --head` (--address), with the
launch's log and `rdsweep status`, plus skipping finished cells, training only added cells, resuming from a
checkpoint, and refusing bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from rdsweep.spec import load_spec
from rdsweep.sweep.ledger import Experiment

from conftest import RAY_ENV, trial_workers

SPEC = """
dataset = "toy"
families = ["toy"]
seeds = [0]
[budget]
epochs = 40
batch_size = 500
lr = 0.01
patience = 2
min_delta = 0.01
lr_reductions = 1
[evaluation]
eval_samples = 2
keep_model = true
[[objective]]
kind = "beta"
values = BETAS
[[objective]]
kind = "target-rate"
values = [0.5]
[resources]
cpus_per_trial = 1
gpus_per_trial = "auto"
max_failures = 1
"""


def spec_file(tmp_path, betas="[0.3, 3.0]", keep_model=True):
    path = tmp_path / "toy.toml"
    path.write_text(SPEC.replace("BETAS", betas).replace("keep_model = true", f"keep_model = {str(keep_model).lower()}"))
    return path


def launches(experiment):
    return sorted(experiment.ray_dir.glob("launch-*"))


def test_launch_collect_frontier_end_to_end(tmp_path, rdsweep, ray_address):
    storage = tmp_path / "results"
    spec = spec_file(tmp_path)
    experiment = Experiment(storage / "toy")

    done = rdsweep("launch", spec, "--storage", storage, "--address", ray_address)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 converged, 0 unconverged, 0 diverged, 0 failed" in done.stdout
    results = {r.cell_id: r for r in experiment.results()}
    assert len(results) == 3
    for r in results.values():  # the stopping rule, not the cap, ended every cell
        assert r.status == "converged" and r.stop_reason == "plateau"
        assert 1 <= r.best_epoch <= r.epochs < 40
    assert list(experiment.checkpoints_dir.iterdir()) == []  # converged cells keep no checkpoint
    assert "efficiency" in done.stdout
    # Not a terminal: one line per event. The launch leaves its log, and `rdsweep status` reads the ledger.
    assert done.stdout.count(" start toy ") == 3 and "[3/3] converged toy" in done.stdout
    (log,) = experiment.path.glob("launch-*.log")
    text = log.read_text()
    assert (experiment.ray_dir / log.stem).is_dir()  # the log is named after Ray Tune's folder of the launch
    for expected in ("command: rdsweep launch", "versions: rdsweep", "torch 2.", "ray 2.",
                     f"the cluster at {ray_address}", "per trial: 1 CPU(s), 0 GPU(s)", "2 trial(s) at once",
                     "start toy β=0.3 seed=0", "epoch 1/40 toy β=3 seed=0: R ", "converged toy β=0.3 seed=0",
                     "end after"):
        assert expected in text, expected
    assert all(line[:4].isdigit() for line in text.splitlines())  # one dated line per event
    assert len(experiment.last_launch()["cells"]) == 3
    assert all(r["finished_at"] is not None for r in experiment.progress().values())
    shown = rdsweep("status", experiment.path)
    assert shown.returncode == 0 and "3 cells: 3 converged" in shown.stdout and "nothing left" in shown.stdout
    # Workers are reused (three trials, two slots), and a reused worker leaks nothing into the next cell:
    # every cell's numbers are those of a fresh in-process run.
    pids = {json.loads(line)["pid"] for trial in launches(experiment)[0].iterdir() if trial.is_dir()
            for line in (trial / "result.json").read_text().splitlines()}
    assert len(pids) < len(results)
    from rdsweep.training import checkpoints, trainer
    for cell in load_spec(spec).cells():
        fresh = trainer.train(cell, threads=1)
        assert results[cell.cell_id].splits == fresh.splits and results[cell.cell_id].epochs == fresh.epochs
    # Each worker kept the weights of the point it reported: evaluated afresh, they give its numbers.
    from rdsweep.data.loaders import load_dataset
    from rdsweep.training.evaluate import evaluate
    import torch
    toy = load_dataset("toy")
    for cell_id, r in results.items():
        kept_cell, model = checkpoints.load_model(experiment.model_path(cell_id))
        assert kept_cell.cell_id == cell_id
        torch.manual_seed(kept_cell.seed)
        again = {s: evaluate(model, toy.split(s), samples=kept_cell.eval_samples) for s in ("train", "valid", "test")}
        assert {s: (m["rate"], m["distortion"]) for s, m in again.items()} == \
               {s: (r.splits[s].rate, r.splits[s].distortion) for s in again}

    done = rdsweep("collect", experiment.path)
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(experiment.path / "frontier.parquet", dtype_backend="numpy_nullable")
    assert len(table) == 3 * 3
    required = ["cell_id", "experiment", "dataset", "family", "paper_code", "encoder", "decoder", "marginal",
                "objective", "beta", "target_rate", "seed", "size", "split", "rate", "distortion", "elbo", "iwae",
                "epochs", "status", "wall_s", "device", "rdsweep_version", "true_entropy", "stop_reason",
                "best_epoch"]
    assert set(required) <= set(table.columns)
    # Two worker nodes of one CPU each (conftest.ray_cluster): the trials ran on both, with no accelerator.
    assert table["node"].nunique() == 2 and set(table["gpu_ids"]) == {""}
    for column in ("rate", "distortion", "elbo", "beta", "target_rate", "true_entropy", "iwae", "wall_s"):
        assert table[column].dtype == "Float64", column
    assert table["seed"].dtype == "Int64" and table["epochs"].dtype == "Int64"
    assert all(pd.api.types.is_string_dtype(table[c]) for c in ("family", "split", "status", "cell_id"))
    assert (table["elbo"] == -(table["rate"] + table["distortion"])).all()
    assert table["true_entropy"].notna().all() and table["paper_code"].isna().all()
    assert sorted(table["objective"].unique()) == ["beta", "target-rate"]
    # Every cell keeps each example's R and D: their means are its numbers, their spread its standard errors.
    from rdsweep.uncertainty import load_examples
    for cell_id, r in results.items():
        for split in ("train", "valid", "test"):
            rate, distortion = load_examples(experiment.examples_path(cell_id), split)
            assert len(rate) == r.splits[split].examples_n == len(toy.split(split))
            assert rate.mean() == pytest.approx(r.splits[split].rate, rel=1e-12)
            assert distortion.mean() == pytest.approx(r.splits[split].distortion, rel=1e-12)
    assert ((table["elbo_se"] > 0) & (table["elbo_se"] < 1)).all() and table["examples_file"].notna().all()
    done = rdsweep("compare", experiment.path / "frontier.parquet", "toy β=0.3", "toy β=3")
    assert done.returncode == 0, done.stderr
    rate = " ".join(done.stdout.split("\nR: ")[1].split("\nD: ")[0].split())   # one seed a side: examples only
    assert rate.startswith("A is higher by") and rate.endswith("resolved at the examples' noise (training noise not measured).")

    done = rdsweep("frontier", experiment.path / "frontier.parquet", "--plot")
    assert done.returncode == 0, done.stderr
    assert "exact entropy H" in done.stdout
    assert (experiment.path / "frontier-test.png").stat().st_size > 10_000

    # The same spec again trains nothing and does not even start Ray.
    before = {p.name: p.stat().st_mtime_ns for p in experiment.cells_dir.iterdir()}
    done = rdsweep("launch", spec, "--storage", storage, "--address", ray_address)
    assert done.returncode == 0 and "nothing to train" in done.stdout
    assert len(launches(experiment)) == 1

    # One extra β trains only that cell; give it a checkpoint after epoch 1, as an interrupted launch
    # leaves, so it resumes from there instead of starting over.
    bigger = spec_file(tmp_path, "[0.3, 1.0, 3.0]", keep_model=False)  # keeping weights changes no number
    new_cell = next(c for c in load_spec(bigger).cells() if c.cell_id not in results)
    write_checkpoint_after_epoch_1(new_cell, experiment)
    done = rdsweep("launch", bigger, "--storage", storage, "--dry-run")
    assert "1 to resume" in done.stdout and "3 finished" in done.stdout
    done = rdsweep("launch", bigger, "--storage", storage, "--address", ray_address)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 converged" in done.stdout and "3 skipped" in done.stdout
    trial_dirs = [p.name for p in launches(experiment)[-1].iterdir() if p.is_dir()]
    assert trial_dirs == [new_cell.cell_id]
    assert {p.name: p.stat().st_mtime_ns for p in experiment.cells_dir.iterdir() if p.name in before} == before
    result = experiment.result(new_cell.cell_id)
    assert result.status == "converged" and result.resumed_from_epoch == 1
    assert not experiment.model_path(new_cell.cell_id).exists()
    assert [h["epoch"] for h in result.history] == list(range(1, result.epochs + 1))
    # where its rounding came from survives the worker and the ledger's schema: a retrace needs it
    assert result.kernels == {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def test_raising_the_cap_continues_unconverged_cells(tmp_path, rdsweep, ray_address):
    """A cell that hits the epoch cap still improving is kept as unconverged (exit 0, a warning); a relaunch
    with a larger cap continues it from its last state and ends exactly where an uninterrupted run ends."""
    from rdsweep.training import trainer

    storage = tmp_path / "results"
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC.replace("BETAS", "[0.3]").replace("epochs = 40", "epochs = 3")
                    .replace("patience = 2", "patience = 50"))
    experiment = Experiment(storage / "toy")
    done = rdsweep("launch", spec, "--storage", storage, "--address", ray_address)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 converged, 2 unconverged" in done.stdout and "raise --epochs" in done.stderr
    assert all(r.status == "unconverged" and r.stop_reason == "max epochs" for r in experiment.results())
    assert len(list(experiment.checkpoints_dir.iterdir())) == 2   # kept, to continue from

    done = rdsweep("collect", experiment.path)
    assert done.returncode == 0 and "2 unconverged" in done.stdout
    done = rdsweep("frontier", experiment.path / "frontier.parquet")
    assert done.returncode == 2 and "--include-unconverged" in done.stderr   # left out by default
    done = rdsweep("frontier", experiment.path / "frontier.parquet", "--include-unconverged")
    assert done.returncode == 0 and "2 unconverged" in done.stdout

    done = rdsweep("launch", spec, "--storage", storage, "--epochs", "7", "--dry-run")
    assert done.returncode == 0 and "2 to continue" in done.stdout
    done = rdsweep("launch", spec, "--storage", storage, "--epochs", "7", "--address", ray_address)
    assert done.returncode == 0, done.stdout + done.stderr
    for cell in load_spec(spec, {"budget.epochs": 7}).cells():
        result = experiment.result(cell.cell_id)
        assert result.resumed_from_epoch == 3 and result.epochs == 7
        uninterrupted = trainer.train(cell, threads=1)
        assert result.splits == uninterrupted.splits
        assert result.best_epoch == uninterrupted.best_epoch
    done = rdsweep("launch", spec, "--storage", storage, "--epochs", "7", "--address", ray_address)
    assert done.returncode == 0 and "nothing to train" in done.stdout


def write_checkpoint_after_epoch_1(cell, experiment):
    from rdsweep.training import checkpoints, trainer

    states = []
    trainer.train(replace(cell, epochs=1), on_epoch=lambda metrics, state: states.append(state))
    experiment.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    checkpoints.save_state(states[-1], experiment.checkpoint_path(cell.cell_id))


@pytest.mark.parametrize("change, message", [
    (("[\"toy\"]", "[\"gauss-pixelcnn-wat\"]"), "unknown family"),
    (("dataset = \"toy\"", "dataset = \"imagenet\""), "unknown dataset 'imagenet'"),
    (("values = BETAS", "values = []"), "List should have at least 1 item"),
    (("values = BETAS", "values = [1, -0.5]"), "beta values must be finite numbers > 0"),
])
def test_bad_specs_exit_2_with_one_line(tmp_path, rdsweep, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(SPEC.replace(*change).replace("BETAS", "[1.0]"))
    done = rdsweep("launch", path, "--storage", tmp_path / "results")
    assert done.returncode == 2
    assert done.stderr.startswith("rdsweep: error:") and done.stderr.count("\n") == 1 and message in done.stderr
    assert not (tmp_path / "results").exists()


def test_changing_the_budget_of_an_experiment_is_refused(tmp_path, rdsweep):
    spec = spec_file(tmp_path)
    experiment = Experiment(tmp_path / "results" / "toy")
    experiment.record_protocol(load_spec(spec).protocol, "0.1.0")
    recorded = experiment.meta_path.read_bytes()

    done = rdsweep("launch", spec, "--storage", tmp_path / "results", "--batch-size", "250")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "budget.batch_size" in done.stderr and "--name" in done.stderr
    assert experiment.meta_path.read_bytes() == recorded and not experiment.cells_dir.exists()
    # under a new name, it is a new experiment (a dry run writes nothing)
    done = rdsweep("launch", spec, "--storage", tmp_path / "results", "--batch-size", "250", "--name", "toy-5",
                   "--dry-run")
    assert done.returncode == 0 and "3 to run" in done.stdout
    assert not (tmp_path / "results" / "toy-5").exists()
    done = rdsweep("launch", spec, "--name", "a/b", "--dry-run")
    assert done.returncode == 2 and "one path segment" in done.stderr


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the trial's worker process through /proc")
def test_a_killed_trial_is_retried_from_its_last_checkpoint(tmp_path, ray_address):
    """A worker that dies mid-trial (OOM killer, lost node) is retried by Ray's FailureConfig, and the retry
    resumes from the checkpoint of the last finished epoch instead of starting over."""
    spec = tmp_path / "toy.toml"
    spec.write_text('dataset = "toy"\nfamilies = ["toy"]\nseeds = [0]\n'
                    "[budget]\nepochs = 12\nbatch_size = 100\nlr = 0.01\npatience = 50\n"  # ~1 s per epoch
                    '[[objective]]\nkind = "beta"\nvalues = [1.0]\n'
                    "[resources]\ncpus_per_trial = 1\nmax_failures = 1\ncheckpoint_s = 0\n")  # every epoch
    storage = tmp_path / "results"
    experiment = Experiment(storage / "toy")
    (cell,) = load_spec(spec).cells()
    launch = subprocess.Popen([sys.executable, "-m", "rdsweep", "launch", spec, "--storage", storage,
                               "--address", ray_address], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, **RAY_ENV})
    try:
        deadline = time.monotonic() + 120
        while not experiment.checkpoint_path(cell.cell_id).exists():  # epoch 1 is done and checkpointed
            assert time.monotonic() < deadline and launch.poll() is None, "the trial never checkpointed"
            time.sleep(0.2)
        workers = trial_workers(RAY_ENV["RAY_AUTH_TOKEN"])
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        output, _ = launch.communicate(timeout=240)
    finally:
        launch.kill()
    assert launch.returncode == 0, output
    (result,) = experiment.results()
    assert result.status == "unconverged" and result.epochs == 12
    assert 1 <= result.resumed_from_epoch < 12
    assert [h["epoch"] for h in result.history] == list(range(1, 13))


def test_gpus_booked_through_ray_where_cuda_finds_none(tmp_path, rdsweep, ray_cluster):
    """Issue 31, without a GPU: a node advertises two GPUs it does not have. gpus_per_trial = 0.5 runs four
    trials at once on it, each with the GPU id Ray assigned it; each finds no CUDA device and trains on the
    CPU with one warning instead of failing, to the numbers of an in-process CPU run."""
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC.replace("BETAS", "[0.3, 3.0]").replace('seeds = [0]', 'seeds = [0, 1]')
                    .replace("keep_model = true", "keep_model = false").replace("[[objective]]\nkind = \"target-rate\"\n"
                    "values = [0.5]\n", "").replace("cpus_per_trial = 1\ngpus_per_trial = \"auto\"",
                                                    "cpus_per_trial = 0.25\ngpus_per_trial = 0.5"))
    experiment = Experiment(tmp_path / "results" / "toy")
    ray_cluster.add_worker("gpu-node", cpus=1, gpus=2)
    try:
        done = rdsweep("launch", spec, "--storage", tmp_path / "results", "--address", ray_cluster.address,
                       "--epochs", 2)   # short: the booking is the point, not the convergence
    finally:
        ray_cluster.lose_worker("gpu-node")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 converged, 4 unconverged" in done.stdout
    (log,) = experiment.path.glob("launch-*.log")
    assert "per trial: 0.25 CPU(s), 0.5 GPU(s)" in log.read_text() and "4 trial(s) at once" in log.read_text()
    results = experiment.results()
    assert len(results) == 4 and len({r.node for r in results}) == 1   # the one node with GPUs
    assert sorted(r.gpu_ids[0] for r in results) == ["0", "0", "1", "1"]   # two trials per GPU
    for r in results:
        assert r.device == "cpu" and len(r.gpu_ids) == 1
        (warning,) = r.warnings
        assert f"Ray booked GPU {r.gpu_ids[0]}" in warning and "finds no CUDA device" in warning
        assert warning in done.stderr
    from rdsweep.training import trainer
    cell = load_spec(spec, {"budget.epochs": 2}).cells()[0]
    (result,) = [r for r in results if r.cell_id == cell.cell_id]
    assert result.splits == trainer.train(cell, threads=1).splits
