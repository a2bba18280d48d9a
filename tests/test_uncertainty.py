"""Errors of the numbers rdsweep prints (docs/uncertainty.md): the standard error of a split mean, the paired
error of two models on the same examples, and `compare` and `select` reading them off a table."""
import copy
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rdsweep.analysis.collect import SCHEMA
from rdsweep.data.loaders import load_dataset
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.training.evaluate import evaluate
from rdsweep.uncertainty import mean_se, save_examples


@pytest.fixture(scope="module")
def lingauss():
    """The linear-Gaussian VAE, untrained, and its data: per-example R and D with a spread of known kind."""
    torch.manual_seed(0)
    dataset = load_dataset("lingauss")
    return build_model(get_family("linear"), dataset.info, "small"), dataset.train


def test_the_error_of_a_split_mean_shrinks_as_one_over_root_n_and_matches_fresh_draws(lingauss):
    model, x = lingauss
    torch.manual_seed(1)
    errors = {n: evaluate(model, x[:n], samples=2)["elbo_se"] for n in (500, 2000, 8000)}
    assert 1.7 < errors[500] / errors[2000] < 2.3 and 1.7 < errors[2000] / errors[8000] < 2.3
    # Twenty evaluations on fresh examples and fresh z-draws: their means scatter as the standard error says.
    means, stated = [], []
    for i, chunk in enumerate(x[:20_000].split(1000)):
        torch.manual_seed(100 + i)
        e = evaluate(model, chunk, samples=2)
        means.append(e["elbo"])
        stated.append(e["elbo_se"])
    spread = np.std(means, ddof=1)
    # the sample std of 20 means is itself uncertain by about 1/√(2·19) ≈ 16 %: allow 40 %
    assert 0.6 < spread / np.mean(stated) < 1.4, (spread, np.mean(stated))


def test_the_paired_error_of_two_close_models_is_far_below_the_unpaired_one(lingauss):
    model, x = lingauss
    close = copy.deepcopy(model)
    with torch.no_grad():
        for p in close.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = x[:4000]
    torch.manual_seed(2)
    a = evaluate(model, x, samples=4)
    torch.manual_seed(3)   # other z-draws, as two cells of other seeds get
    b = evaluate(close, x, samples=4)
    paired = mean_se(-(a["examples"]["rate"] + a["examples"]["distortion"])
                     + (b["examples"]["rate"] + b["examples"]["distortion"]))
    unpaired = math.hypot(a["elbo_se"], b["elbo_se"])
    assert paired < unpaired / 2, (paired, unpaired)


# ---- compare and select on a table whose per-example values are known --------------------------------------

N = 500
THREE_SEED_SETTINGS = 14  # settings of docs/studies/mnist5k with seeds 0, 1 and 2 (examples/mnist5k-seeds.toml)


def _row(cell_id, family, code, objective, value, seed, split, rate, distortion, examples_file, experiment="e"):
    row = dict.fromkeys(SCHEMA.names)
    row.update(cell_id=cell_id, experiment=experiment, active_units=7, dataset="mnist5k", family=family, paper_code=code, objective=objective,
               beta=value if objective == "beta" else None, target_rate=value if objective == "target-rate" else None,
               seed=seed, size="small", split=split, rate=float(rate.mean()), distortion=float(distortion.mean()),
               elbo=-float(rate.mean() + distortion.mean()), rate_se=mean_se(rate), distortion_se=mean_se(distortion),
               elbo_se=mean_se(rate + distortion), examples_n=len(rate), status="converged",
               examples_file=examples_file, probe_accuracy=0.5, probe_accuracy_se=0.02, latent_examples=N)
    return row


def study(tmp_path, cells, experiments=("e",)):
    """A table and its per-example files: cells are (cell_id, family, code, objective, value, seed, rate, D)
    with rate and D per-example arrays (the same on every split), in each of the experiments."""
    (tmp_path / "examples").mkdir()
    rows = []
    for cell_id, family, code, objective, value, seed, rate, distortion in cells:
        save_examples(tmp_path / "examples" / f"{cell_id}.npz", cell_id,
                      {s: {"rate": rate, "distortion": distortion} for s in ("train", "valid", "test")})
        for experiment in experiments:
            for split in ("train", "valid", "test"):
                rows.append(_row(cell_id, family, code, objective, value, seed, split, rate, distortion,
                                 f"examples/{cell_id}.npz", experiment))
    path = tmp_path / "frontier.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


@pytest.fixture
def close_cells(tmp_path):
    """Two settings of one family whose ELBOs differ by 0.3 nats on digits whose own spread is 25 nats: the
    difference is far inside the unpaired error (~1.6) and far outside the paired one (~0.05). A third setting
    differs from the first by the same mean, in noise of its own (unpaired, per example)."""
    rng = np.random.default_rng(0)
    hardness = rng.normal(90, 25, N)            # each digit's own −ELBO: shared by every model
    rate = np.full(N, 5.0)
    a = hardness + rng.normal(0, 0.5, N)
    b = a + 0.3 + rng.normal(0, 0.5, N)         # B: 0.3 nats worse on every digit, give or take
    noise = rng.normal(0, 40, N)
    c = a + 0.3 + noise - noise.mean()          # C: 0.3 worse on average, with its own noise per digit
    return study(tmp_path, [
        ("aaaa000000000001", "gauss-pixelcnn-normal", "-+-", "target-rate", 5.0, 0, rate, a - rate),
        ("bbbb000000000001", "gauss-pixelcnn-normal", "-+-", "beta", 1.0, 0, rate, b - rate),
        ("cccc000000000001", "gauss-pixelcnn-normal", "-+-", "beta", 0.3, 0, rate, c - rate),
    ])


def test_compare_pairs_examples_and_says_whether_a_difference_is_resolved(close_cells, rdsweep):
    done = rdsweep("compare", close_cells, "--", "-+- σ=5", "gauss-pixelcnn-normal beta=1", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    elbo = " ".join(done.stdout.split("ELBO:")[-1].split())
    # 0.33 nats on every digit: far beyond the paired error (~0.02), far inside the unpaired one (~1.6)
    assert elbo.startswith("A is higher by 0.3") and "± 0.02: resolved at the examples' noise" in elbo
    assert "Training noise not measured" in done.stdout    # one seed a side
    done = rdsweep("compare", close_cells, "aaaa", "cccc", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert "not resolved" in done.stdout.split("ELBO:")[-1]
    assert max(len(line) for line in done.stdout.splitlines()) <= 80


def test_compare_without_the_per_example_files_falls_back_to_unpaired_errors(close_cells, rdsweep):
    """A table copied without its examples/ folder: the cells' own standard errors, marked u, and the same
    0.33 nats is then not resolved (the digits' spread is no longer cancelled)."""
    moved = close_cells.parent / "moved"
    moved.mkdir()
    (moved / "frontier.parquet").write_bytes(close_cells.read_bytes())
    done = rdsweep("compare", moved / "frontier.parquet", "aaaa", "bbbb", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert " u " in done.stdout + " " and "unpaired" in done.stdout
    assert "not resolved" in done.stdout.split("ELBO:")[-1]


def test_compare_over_seeds_judges_against_student_t(tmp_path, rdsweep):
    """Three seeds a side whose training noise (1 nat) dwarfs the examples' once paired: the seeds' error
    carries the verdict, at Student's t for few degrees of freedom. A 2.0-nat difference 2.2 standard errors
    out would pass a rule of 2; at t(0.975, ~4 df) ≈ 2.8 it is not resolved."""
    rng = np.random.default_rng(3)
    hardness = rng.normal(90, 25, N)
    rate = np.full(N, 5.0)
    cells = []
    for value, shifts in ((1.0, (0.0, 1.0, -1.0)), (0.3, (2.0, 3.2, 0.8))):
        for seed, shift in enumerate(shifts):
            cells.append((f"{int(value * 10):02d}{seed:014d}", "gauss-deconv-normal", "---", "beta", value, seed,
                          rate, hardness + shift + rng.normal(0, 0.3, N) - rate))
    table = study(tmp_path, cells)
    done = rdsweep("compare", table, "--", "--- β=1", "--- β=0.3", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    line = " ".join(done.stdout.split("ELBO:")[-1].split())
    t = float(line.split("t = ")[1].split()[0])
    total = float(line.split("± ")[1].split(":")[0])
    assert 2.5 < t < 5 and line.startswith("A − B = +1.99") and 2 * total < 1.99 < t * total
    assert ": not resolved (t = " in line


def test_compare_refuses_a_side_that_spans_experiments(tmp_path, rdsweep):
    rate = np.full(N, 5.0)
    distortion = np.random.default_rng(4).normal(85, 20, N)
    table = study(tmp_path, [("aaaa000000000001", "gauss-deconv-normal", "---", "beta", 1.0, 0, rate, distortion),
                             ("bbbb000000000001", "gauss-deconv-normal", "---", "beta", 0.3, 0, rate, distortion + 1)],
                  experiments=("first", "second"))
    done = rdsweep("compare", table, "--", "--- β=1", "--- β=0.3")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "several experiments" in done.stderr
    assert "exp=" in done.stderr
    done = rdsweep("compare", table, "--", "--- β=1 exp=first", "--- β=0.3 exp=first")
    assert done.returncode == 0, done.stderr
    done = rdsweep("compare", table, "aaaa", "bbbb")
    assert done.returncode == 2 and "matches 2 experiments" in done.stderr


@pytest.mark.parametrize("args, message", [
    (("ffff", "aaaa"), "A: no converged cell 'ffff'"),
    (("-+- β=7", "aaaa"), "A: no converged cell of gauss-pixelcnn-normal β=7"),
    (("aaaa", "-+- σ=5"), "share cells"),
    (("nosuch β=1", "aaaa"), "unknown family 'nosuch'"),
])
def test_compare_mistakes_exit_2_with_one_line(close_cells, rdsweep, args, message):
    done = rdsweep("compare", close_cells, "--", *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_select_lists_the_candidates_tied_with_its_pick(close_cells, rdsweep):
    done = rdsweep("select", close_cells, "--by", "valid-elbo", "--json")
    assert done.returncode == 0, done.stderr
    (overall, *_) = [p for p in json.loads(done.stdout) if p["scope"] == "overall"]
    # σ = 5 wins; β = 1 is 0.3 behind on every digit (resolved, paired); β = 0.3 is as far behind on
    # average but in noise 80 times larger: tied.
    assert overall["setting"] == "σ=5" and overall["tied"] == ["-+- β=0.3 seed 0"]
    assert 1.0 < overall["elbo_error"] < 1.3   # 25 nats of spread over √500 examples
    text = rdsweep("select", close_cells, "--by", "valid-elbo", env={"COLUMNS": "80"})
    assert text.returncode == 0, text.stderr
    words = " ".join(text.stdout.split())
    assert "tied with its pick at this noise" in words and "-+- β=0.3 seed 0" in words
    assert "±" in text.stdout.splitlines()[text.stdout.splitlines().index(next(
        line for line in text.stdout.splitlines() if line.startswith("criterion")))]


def test_select_by_setting_judges_seed_means_with_the_seeds_spread(tmp_path, rdsweep):
    """β = 1 has the best single cell (a lucky seed), but β = 0.3 the best mean over three seeds. By cell the
    lucky seed wins; by setting β = 0.3 wins, and its error is the seeds' spread, not the examples'."""
    rng = np.random.default_rng(1)
    hardness = rng.normal(90, 5, N)
    rate = np.full(N, 5.0)
    cells = []
    for value, shifts in ((1.0, (-3.0, 4.0, 4.0)), (0.3, (-1.0, -2.0, 0.0))):
        for seed, shift in enumerate(shifts):
            elbo_loss = hardness + shift + rng.normal(0, 0.2, N)
            cells.append((f"{int(value * 10):02d}{seed:014d}", "gauss-deconv-normal", "---", "beta", value, seed,
                          rate, elbo_loss - rate))
    table = study(tmp_path, cells)
    by_cell = rdsweep("select", table, "--by", "valid-elbo", "--json")
    by_setting = rdsweep("select", table, "--by", "valid-elbo", "--by-setting", "--json")
    assert by_cell.returncode == 0 and by_setting.returncode == 0, by_cell.stderr + by_setting.stderr
    cell_pick = next(p for p in json.loads(by_cell.stdout) if p["scope"] == "overall")
    setting_pick = next(p for p in json.loads(by_setting.stdout) if p["scope"] == "overall")
    assert (cell_pick["setting"], cell_pick["seed"]) == ("β=1", 0)
    assert setting_pick["setting"] == "β=0.3" and setting_pick["seeds"] == 3
    assert setting_pick["elbo"] == pytest.approx(-90 - float(hardness.mean() - 90) + 1.0, abs=0.05)
    # the seeds' spread (1/√3 nats) and the examples' (5/√500) add in quadrature
    assert setting_pick["seeds_se"] == pytest.approx(1 / math.sqrt(3), rel=0.05)
    assert setting_pick["elbo_error"] == pytest.approx(math.hypot(setting_pick["seeds_se"], setting_pick["elbo_se"]))
    text = rdsweep("select", table, "--by-setting", "--by", "valid-elbo", env={"COLUMNS": "80"})
    assert text.returncode == 0, text.stderr
    rows = [line.split() for line in text.stdout.splitlines() if line.startswith("valid-elbo ") and "β=" in line]
    assert rows[0][1:4] == ["---", "β=0.3", "3"]   # model, setting, n = 3 seeds


def test_the_committed_mnist5k_table_carries_its_errors(rdsweep):
    """The study's table: every converged row of a cell evaluated since 0.5 has a positive, finite elbo_se and
    its per-example file; the settings of the seeds study have three seeds; `select --by-setting` on it prints
    each pick's ± and lists the settings tied with its picks."""
    import pandas as pd
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "docs" / "studies" / "mnist5k"
    table = pd.read_parquet(root / "frontier.parquet")
    new = table[table["examples_file"].notna()]
    assert len(new) >= 3 * THREE_SEED_SETTINGS * 2
    assert ((new["elbo_se"] > 0) & np.isfinite(new["elbo_se"])).all()
    assert all((root / f).is_file() for f in new["examples_file"].unique())
    seeds = table[table["split"] == "test"].groupby(["family", "objective", "beta", "target_rate"], dropna=False)["seed"]
    assert (seeds.nunique() == 3).sum() >= THREE_SEED_SETTINGS
    done = rdsweep("select", root / "frontier.parquet", "--by-setting", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("criterion") and "model" in line)
    assert "±" in header and "tied with its pick at this noise" in done.stdout
