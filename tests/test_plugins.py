"""Plugins: the example plugin (examples/plugin) installed where the command and every Ray node see it, and
plugins that break the contract (tests/plugins), through the console script as a user runs it."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, plugin_env

EXAMPLE = ROOT / "examples" / "plugin" / "digits8.toml"


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_the_installed_plugin_is_listed_beside_the_builtins_with_where_it_comes_from(rdsweep):
    families = rdsweep("families", env=plugin_env())
    datasets = rdsweep("datasets", env=plugin_env())
    objectives = rdsweep("objectives", env=plugin_env())
    assert families.returncode == datasets.returncode == objectives.returncode == 0
    plugin_row = next(line for line in families.stdout.splitlines() if "mlp-bernoulli" in line)
    assert "rdsweep-digits8 0.1.0" in plugin_row
    assert "gauss-deconv-normal" in families.stdout and "built-in" in families.stdout
    assert "1×8×8" in next(line for line in datasets.stdout.splitlines() if "digits8" in line)
    assert "rdsweep-digits8 0.1.0" in next(line for line in objectives.stdout.splitlines() if "huber-target-rate" in line)
    without = rdsweep("families")   # where it is not installed, only the built-ins
    assert without.returncode == 0 and "mlp-bernoulli" not in without.stdout


def _spec(tmp_path: Path, dataset="lingauss", family="linear", kind="beta") -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(f'dataset = "{dataset}"\nfamilies = ["{family}"]\n[budget]\nepochs = 2\n'
                    f'[[objective]]\nkind = "{kind}"\nvalues = [1.0]\n[resources]\nmax_failures = 0\n')
    return path


@pytest.mark.parametrize("where, value, message", [
    ("family", "no_such_module:build", "family 'no_such_module:build': no module named 'no_such_module'"),
    ("family", "rdsweep_test_plugins:NOPE", "module 'rdsweep_test_plugins' has no attribute 'NOPE'"),
    ("family", "rdsweep_test_plugins:NOT_AN_ENTRY", "is a dict, not an rdsweep.Family"),
    ("dataset", "no_such_module:DATA", "dataset 'no_such_module:DATA': no module named 'no_such_module'"),
    ("kind", "no_such_module:LOSS", "objective 'no_such_module:LOSS': no module named 'no_such_module'"),
])
def test_a_plugin_that_does_not_import_exits_2_with_one_line_naming_it(rdsweep, tmp_path, where, value, message):
    spec = _spec(tmp_path, **{where: value})
    result = rdsweep("launch", spec, "--storage", tmp_path / "runs", env=plugin_env())
    assert result.returncode == 2
    assert message in one_line(result.stderr)
    assert not (tmp_path / "runs").exists()   # nothing on disk


@pytest.mark.parametrize("args, message", [
    (("--dataset", "lingauss", "--family", "rdsweep_test_plugins:WRONG_SHAPE"),
     "forward(x) returned rate of shape (2, 3) for 2 examples; the contract is (2,)"),
    (("--dataset", "rdsweep_test_plugins:RAGGED", "--family", "linear"),
     "the splits disagree in example shape: train 6, valid 6, test 5"),
    (("--dataset", "mnist5k", "--family", "rdsweep_test_plugins:WRONG_SHAPE"),
     "family 'rdsweep_test_plugins:WRONG_SHAPE' models lingauss data, but dataset 'mnist5k' is image data"),
    (("--dataset", "rdsweep_test_plugins:TOY_KIND", "--family", "toy"),
     "kind 'toy' is the built-in toy dataset's own"),
    (("--dataset", "digits8", "--family", "mlp-bernoulli", "--encoder-std", "0.5"),
     "encoder_std: family 'mlp-bernoulli' (rdsweep-digits8 0.1.0) sets its own posterior std"),
    (("--dataset", "digits8", "--family", "gauss-deconv-normal"),
     "family 'gauss-deconv-normal' models examples of shape 1×28×28, but dataset 'digits8' has examples of shape 1×8×8"),
])
def test_a_plugin_that_breaks_the_contract_exits_2_before_training(rdsweep, tmp_path, args, message):
    result = rdsweep("train", *args, "--json", tmp_path / "out.json", env=plugin_env())
    assert result.returncode == 2
    assert message in one_line(result.stderr)
    assert not (tmp_path / "out.json").exists()


def test_a_family_with_the_bare_contract_trains_and_free_bits_falls_back_to_the_total_rate(rdsweep, tmp_path):
    """forward(x) alone (no per_latent keyword): validation and free bits work, on the total rate."""
    result = rdsweep("train", "--dataset", "lingauss", "--family", "rdsweep_test_plugins:PLAIN_FORWARD",
                     "--free-bits", "0.5", "--epochs", "2", "--json", tmp_path / "out.json", env=plugin_env())
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["cell"]["plugins"] == "rdsweep_test_plugins"   # an import path outside any distribution: no version
    assert all(h["valid_objective"] > 0 for h in out["history"])


def test_launch_checks_a_plugin_family_before_ray_starts(rdsweep, tmp_path):
    spec = _spec(tmp_path, family="rdsweep_test_plugins:WRONG_SHAPE")
    result = rdsweep("launch", spec, "--storage", tmp_path / "runs", env=plugin_env())
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "family 'rdsweep_test_plugins:WRONG_SHAPE'" in line and "the contract is (2,)" in line
    assert not (tmp_path / "runs").exists()


def test_the_example_plugin_end_to_end_through_ray(rdsweep, tmp_path, ray_address):
    """launch (across the test cluster's nodes), collect, frontier --plot and select on the plugin's family,
    dataset and objective; the table records the plugin and its version."""
    env = plugin_env()
    spec = tmp_path / "digits8.toml"
    text = EXAMPLE.read_text().replace("values = [0.3, 1.0, 3.0]", "values = [0.3, 3.0]")
    spec.write_text(text.replace("epochs = 200", "epochs = 60"))
    launch = rdsweep("launch", spec, "--storage", tmp_path, "--address", ray_address, timeout=600, env=env)
    assert launch.returncode == 0, launch.stderr
    assert "0 diverged, 0 failed" in launch.stdout, launch.stdout
    experiment = tmp_path / "digits8"
    assert rdsweep("collect", experiment, env=env).returncode == 0
    table = pd.read_parquet(experiment / "frontier.parquet")
    assert set(table["family"]) == {"mlp-bernoulli"} and set(table["dataset"]) == {"digits8"}
    assert set(table["objective"]) == {"beta", "target-rate", "huber-target-rate"}
    assert set(table["plugins"]) == {"rdsweep-digits8==0.1.0"}
    test = table[table["split"] == "test"]
    assert (test["examples_n"] == 250).all() and test["iwae"].notna().all() and test["probe_accuracy"].notna().all()
    # β = 3 gives up more of its rate than β = 0.3 (by more than their errors): the plugin trains for real
    low, high = (test[test["beta"] == b].iloc[0] for b in (0.3, 3.0))
    assert low["rate"] - high["rate"] > 3 * (low["rate_se"] + high["rate_se"])
    plot = rdsweep("frontier", experiment / "frontier.parquet", "--plot", tmp_path / "rd.png",
                   "--include-unconverged", env=env)
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "rd.png").stat().st_size > 10_000
    select = rdsweep("select", experiment / "frontier.parquet", "--include-unconverged", "--json", env=env)
    assert select.returncode == 0, select.stderr
    assert {pick["family"] for pick in json.loads(select.stdout)} == {"mlp-bernoulli"}


def test_a_contract_violation_in_a_running_trial_fails_its_cell_naming_the_family(rdsweep, tmp_path, ray_address):
    """The family passes the checks on two examples, then returns a wrong shape after 20 training batches."""
    spec = _spec(tmp_path, family="rdsweep_test_plugins:LATE_WRONG_SHAPE")
    launch = rdsweep("launch", spec, "--storage", tmp_path, "--address", ray_address, timeout=300, env=plugin_env())
    assert launch.returncode == 1
    (result_file,) = (tmp_path / "spec" / "cells").glob("*.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "failed"
    assert "family 'rdsweep_test_plugins:LATE_WRONG_SHAPE': forward(x) returned rate of shape (100, 3)" in result["error"]


def test_a_new_plugin_version_is_a_new_cell_and_a_cell_is_not_trained_with_another(tmp_path):
    """A cell records the plugins it was planned with; the same setting under another version has another id,
    and the trainer refuses a cell whose plugin version is not the installed one (a node left behind)."""
    import subprocess
    import sys

    script = """
from rdsweep.cells import Cell
from rdsweep.errors import UserError
from rdsweep.training.trainer import train
now = Cell(dataset="digits8", family="mlp-bernoulli").validated()
old = Cell(dataset="digits8", family="mlp-bernoulli", plugins="rdsweep-digits8==0.0.9").validated()
print(now.plugins, now.cell_id != old.cell_id)
try:
    train(old)
except UserError as e:
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=plugin_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    assert first == "rdsweep-digits8==0.1.0 True"
    assert second == ("the cell was planned with plugins rdsweep-digits8==0.0.9, and this environment has "
                      "rdsweep-digits8==0.1.0: install the versions it was planned with")


def test_the_committed_mnist5k_ledger_still_plans_as_complete(rdsweep):
    """Registries changed where families, datasets and objectives are defined, not a single cell id; and an
    installed plugin family does not join a spec's "all" (the built-ins)."""
    result = rdsweep("launch", ROOT / "examples" / "mnist5k.toml", "--storage", ROOT / "docs" / "studies",
                     "--name", "mnist5k", "--dry-run", env=plugin_env())
    assert result.returncode == 0, result.stderr
    assert "66 cells, 66 finished, 0 to run, 0 to resume, 0 to continue" in " ".join(result.stdout.split())


def test_an_objective_named_by_import_path_trains_collects_and_plots(rdsweep, tmp_path, ray_address):
    env = plugin_env()
    spec = _spec(tmp_path, kind="rdsweep_digits8:HUBER_TARGET_RATE")
    launch = rdsweep("launch", spec, "--storage", tmp_path, "--address", ray_address, timeout=300, env=env)
    assert launch.returncode == 0, launch.stderr
    experiment = tmp_path / "spec"
    assert rdsweep("collect", experiment, env=env).returncode == 0
    table = pd.read_parquet(experiment / "frontier.parquet")
    assert set(table["objective"]) == {"rdsweep_digits8:HUBER_TARGET_RATE"}
    assert table["beta"].isna().all() and (table["target_rate"] == 1.0).all()
    plot = rdsweep("frontier", experiment / "frontier.parquet", "--include-unconverged", "--plot", tmp_path / "rd.png",
                   env=env)
    assert plot.returncode == 0, plot.stderr
    assert "σ=1 huber" in plot.stdout
