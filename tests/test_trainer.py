"""The one-trial trainer: the paper's toy result, the linear-Gaussian closed form, determinism, resume,
divergence. Budgets are the smallest that converge reliably; each test states why its tolerance is fair."""
import math
import shutil

import pytest

import torch

from rdsweep.analysis.collect import collect
from rdsweep.cells import Cell
from rdsweep.data.loaders import load_dataset
from rdsweep.errors import UserError
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.sweep.ledger import Experiment
from rdsweep.training.checkpoints import load_model
from rdsweep.training.evaluate import evaluate, validate
from rdsweep.training.objectives import Objective
from rdsweep.training.stopping import StoppingRule, replay
from rdsweep.training.trainer import lr_factor, train

# Toy: 20,000 examples over 30 bins; batch 500 and lr 3e-3 with the plateau schedule converge in ~20 epochs
# (about 2 s); 100 is only a cap.
TOY = dict(dataset="toy", family="toy", epochs=100, batch_size=500, lr=3e-3, min_delta=0.001, eval_samples=4)


def neg_elbo(result, split):
    return -result.splits[split].elbo


@pytest.fixture(scope="module")
def toy_elbo():
    return train(Cell(objective="beta", beta=1.0, **TOY), threads=1)


@pytest.fixture(scope="module")
def toy_target_rate():
    return train(Cell(objective="target-rate", beta=None, target_rate=0.5, **TOY), threads=1)


def test_toy_elbo_ignores_the_latent_and_reaches_the_entropy(toy_elbo):
    H = toy_elbo.truth.entropy
    assert toy_elbo.status == "converged"
    # The categorical decoder models p(x) alone, so β = 1 leaves the latent unused: R → 0. The rate is a
    # 4-sample Monte-Carlo mean whose noise is ~0.002 nats here; 0.05 is 10% of the true I(x; z*).
    assert 0 <= toy_elbo.splits["train"].rate < 0.05
    # −ELBO ≥ H for the true distribution; on 20,000 samples the empirical entropy is within ~0.015
    # (3 standard errors) of H, so a perfect density model lands within 0.03 of it on every split.
    for split in ("train", "valid", "test"):
        assert abs(neg_elbo(toy_elbo, split) - H) < 0.03


def test_toy_target_rate_uses_the_latent_at_the_same_elbo(toy_elbo, toy_target_rate):
    H = toy_target_rate.truth.entropy
    rate = toy_target_rate.splits["train"].rate
    # D + |σ − R| is flat for R ≥ σ along the line D = H − R, so R settles at or slightly above σ = 0.5.
    assert 0.45 < rate < 0.7
    assert abs(neg_elbo(toy_target_rate, "train") - H) < 0.03
    assert abs(neg_elbo(toy_target_rate, "train") - neg_elbo(toy_elbo, "train")) < 0.03


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.5])
def test_lingauss_matches_the_closed_form(beta):
    cell = Cell(dataset="lingauss", family="linear", beta=beta, epochs=200, batch_size=500, lr=1e-2,
                min_delta=0.001, eval_samples=4)
    result = train(cell, threads=1)
    assert result.status == "converged" and result.epochs < 100   # ~40 epochs
    measured, exact = result.splits["train"], result.truth
    # β = 2.5 leaves 2 of 4 latents active, β = 0.5 all 4: the optimum's structure changes across the grid.
    # R is the exact KL here, so its error is optimisation error only (≤ 0.03 nats when the rule stops);
    # D is a mean over 80,000 z-draws whose Monte-Carlo standard error is ~0.01 nats.
    assert measured.rate == pytest.approx(exact.rate, abs=0.04)
    assert measured.distortion == pytest.approx(exact.distortion, abs=0.04)
    assert -measured.elbo >= -exact.elbo - 0.03  # nothing beats the optimum (up to MC noise)


def test_the_rule_stops_a_toy_run_well_before_its_cap():
    cell = Cell(dataset="toy", family="toy", epochs=300, batch_size=500, lr=3e-3, patience=5)
    result = train(cell, threads=1)
    assert result.status == "converged" and result.stop_reason == "plateau"
    assert 1 <= result.best_epoch <= result.epochs < 100
    valid = {h["epoch"]: h["valid_objective"] for h in result.history}
    assert result.best_valid_objective == min(valid.values()) == valid[result.best_epoch]
    # converged here means near the exact entropy H = 3.018 (−ELBO ≥ H; 0.03 is the finite-sample slack)
    assert -result.splits["valid"].elbo < result.truth.entropy + 0.03


def test_one_epoch_is_unconverged():
    result = train(Cell(dataset="toy", family="toy", epochs=1, batch_size=500, lr=3e-3), threads=1)
    assert result.status == "unconverged" and result.stop_reason == "max epochs"
    assert result.splits["test"].rate is not None   # kept and evaluated, but flagged


def fresh_evaluation(cell, model_state, samples):
    """R, D per split of a model state, evaluated from scratch as a reader of a checkpoint would."""
    dataset = load_dataset(cell.dataset)
    model = build_model(get_family(cell.family), dataset.info, cell.size)
    model.load_state_dict(model_state)
    torch.manual_seed(cell.seed)
    return {s: evaluate(model, dataset.split(s), samples=samples) for s in ("train", "valid", "test")}


def test_the_reported_point_is_the_best_valid_state_not_the_last(tmp_path):
    # A constant lr of 0.05 is too high for the toy: the valid objective wanders after its best epoch.
    cell = Cell(dataset="toy", family="toy", epochs=12, batch_size=500, lr=0.05, schedule="constant",
                patience=4, min_delta=0.0, eval_samples=2)
    states = {}
    result = train(cell, threads=1, on_epoch=lambda m, s: states.update({m["epoch"]: s}),
                   keep_model=tmp_path / "kept.pt")
    best, last = result.best_epoch, result.epochs
    assert best < last, "this budget must end after its best epoch for the test to mean anything"
    at_best = fresh_evaluation(cell, states[best]["model"], samples=2)
    assert {s: (m["rate"], m["distortion"]) for s, m in at_best.items()} == \
           {s: (m.rate, m.distortion) for s, m in result.splits.items()}
    at_last = fresh_evaluation(cell, states[last]["model"], samples=2)
    assert at_last["valid"]["distortion"] != result.splits["valid"].distortion
    # The kept model is that best state, whole, with the cell that trained it.
    kept_cell, kept = load_model(tmp_path / "kept.pt")
    assert kept_cell == cell.validated()
    assert kept.state_dict().keys() == states[best]["model"].keys()
    assert all(torch.equal(t, states[best]["model"][k]) for k, t in kept.state_dict().items())


def test_a_file_that_is_not_a_kept_model_is_one_clear_error(tmp_path):
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("a user's notes")
    with pytest.raises(UserError, match="not a model kept by rdsweep"):
        load_model(not_a_model)
    state = tmp_path / "state.pt"  # a torch file, but a checkpoint of another structure
    torch.save({"cell": Cell(**TOY).to_dict(), "info": {"n_bins": 30}, "fingerprint": "0123",
                "rdsweep_version": "0.1", "model": {}}, state)
    with pytest.raises(UserError, match="saved for model structure 0123"):
        load_model(state)


def test_validation_noise_is_fixed_and_leaves_training_noise_alone():
    cell = Cell(dataset="toy", family="toy")
    dataset = load_dataset("toy")
    model = build_model(get_family("toy"), dataset.info, "small")
    torch.manual_seed(0)
    before = torch.get_rng_state()
    objective = Objective(cell, model.latent_dim)
    first, second = validate(model, dataset.valid, objective), validate(model, dataset.valid, objective)
    assert first == second                      # same weights, same z-draws: same objective
    assert torch.equal(torch.get_rng_state(), before)
    assert evaluate(model, dataset.valid)["rate"] != evaluate(model, dataset.valid)["rate"]  # MC noise exists


def test_the_evaluation_batch_does_not_change_the_numbers():
    # evaluate picks its batch by device (100 on a CPU, for speed); on the 64-dim latents of the image families
    # the z-draws are the same whatever the batching with one sample per example (not with several: the
    # samples' draws then fall on other examples; docs/benchmarks.md)
    dataset = load_dataset("mnist5k")
    model = build_model(get_family("iaf-pixelcnn-maf"), dataset.info, "small")
    x = dataset.valid[:200]
    torch.manual_seed(3)
    by_default = evaluate(model, x)
    torch.manual_seed(3)
    in_one_batch = evaluate(model, x, batch_size=200)
    examples, examples_in_one_batch = by_default.pop("examples"), in_one_batch.pop("examples")
    assert in_one_batch["rate"] > 1 and by_default == in_one_batch
    assert all((examples[k] == examples_in_one_batch[k]).all() for k in ("rate", "distortion"))


def test_a_larger_cap_continues_to_the_state_of_an_uninterrupted_run():
    short = Cell(dataset="toy", family="toy", epochs=3, batch_size=500, lr=3e-3, patience=50, eval_samples=2)
    long = Cell(**{**short.to_dict(), "epochs": 7})
    assert short.cell_id == long.cell_id        # the cap is not part of the cell's identity
    states = []
    first = train(short, threads=1, on_epoch=lambda m, s: states.append(s))
    assert first.status == "unconverged"
    continued = train(long, threads=1, resume_state=states[-1])
    whole = train(long, threads=1)
    assert continued.splits == whole.splits and continued.best_epoch == whole.best_epoch
    strip = lambda history: [{k: v for k, v in h.items() if k != "wall_s"} for h in history]
    assert strip(continued.history) == strip(whole.history)
    # the paper schedule decays to 0 at the cap, so there the cap is part of the identity
    assert Cell(schedule="paper", epochs=3).cell_id != Cell(schedule="paper", epochs=7).cell_id


def test_plateau_schedule_restores_the_best_state_and_divides_the_rate():
    cell = Cell(dataset="toy", family="toy", epochs=60, batch_size=500, lr=0.05, patience=3, min_delta=0.0,
                lr_reductions=2, lr_divisor=10.0)
    result = train(cell, threads=1)
    lrs = sorted({h["lr"] for h in result.history}, reverse=True)
    assert lrs == pytest.approx([0.05, 0.005, 0.0005])
    assert result.status == "converged"


def test_same_seed_same_result_and_resume_is_seamless():
    cell = Cell(**{**TOY, "epochs": 4})
    whole = train(cell, threads=1)
    assert train(cell, threads=1).splits == whole.splits
    assert train(Cell(**{**TOY, "epochs": 4, "seed": 1}), threads=1).splits != whole.splits

    states = []
    train(cell, threads=1, on_epoch=lambda m, s: states.append(s))
    assert [s["epoch"] for s in states] == [1, 2, 3, 4]
    resumed = train(cell, threads=1, resume_state=states[1])  # as if the trial died after epoch 2
    assert resumed.splits == whole.splits
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]


def test_the_stopping_rule_replays_from_the_history_and_an_older_checkpoint_resumes_with_it():
    # readers (collect, curves) and older checkpoints rebuild the rule from the history: it must come out
    # exactly as the trainer kept it, through a plateau's reductions to the stop
    cell = Cell(**TOY)
    states = []
    result = train(cell, threads=1, on_epoch=lambda m, s: states.append(s))
    assert result.status == "converged" and states[-1]["rule"]["reductions"] == cell.lr_reductions
    for state in states:
        assert replay(cell.to_dict(), state["history"]) == [StoppingRule.from_state(state["rule"])]
    # a checkpoint from before the rule watched for blow-ups: its rule lacks the fields, and is rebuilt
    middle = states[len(states) // 2]
    older = {**middle, "rule": {k: v for k, v in middle["rule"].items() if k not in ("blowups", "waiting_since")}}
    resumed = train(cell, threads=1, resume_state=older)
    assert resumed.splits == result.splits and resumed.best_epoch == result.best_epoch


def test_non_finite_loss_ends_as_diverged():
    cell = Cell(dataset="lingauss", family="linear", epochs=3, batch_size=500, lr=1e30)
    result = train(cell, threads=1)
    assert result.status == "diverged"
    assert all(v is None for m in result.splits.values() for v in (m.rate, m.distortion, m.elbo, m.iwae))


# Adam at lr 100 on lingauss: the valid objective goes 1.4·10⁶ → 4.1·10⁷ at epoch 2 and stays finite
# (measured), a blow-up like the mnist5k study's -++ σ=20 one.
BLOWUP = dict(dataset="lingauss", family="linear", epochs=5, batch_size=100, lr=100.0, min_delta=0.0, patience=1)


def test_a_plateau_during_a_blowup_ends_diverged_and_a_recovered_one_is_reported(tmp_path, rdsweep):
    diverged = train(Cell(**BLOWUP, schedule="constant"), threads=1)
    assert math.isfinite(diverged.history[1]["valid_objective"])
    assert diverged.history[1]["valid_objective"] > 10 * diverged.history[0]["valid_objective"]
    # before the rule watched for blow-ups this was "converged" (plateau) at epoch 1's state
    assert (diverged.status, diverged.stop_reason, diverged.epochs) == ("diverged", "blow-up", 2)
    # with the plateau schedule the same blow-up triggers a restore of epoch 1 and a lower rate: training goes on
    recovered = train(Cell(**BLOWUP, schedule="plateau", lr_reductions=1, lr_divisor=100.0), threads=1)
    assert recovered.status == "unconverged" and recovered.epochs == 5
    experiment = Experiment(tmp_path / "blowup")
    for result in (recovered, diverged):
        experiment.write_result(result)
    _, table = collect([experiment.path])
    rows = {r["schedule"]: r for r in table.to_pylist() if r["split"] == "test"}
    assert rows["plateau"]["blowups"] == 1 and math.isfinite(rows["plateau"]["rate"])
    assert rows["constant"]["blowups"] == 1 and rows["constant"]["rate"] is None

    shown = rdsweep("curves", experiment.path, "--plot", tmp_path / "curves.png")
    assert shown.returncode == 0, shown.stderr
    assert "linear β=1 seed 0: epoch 2, recovered, unconverged" in shown.stdout
    assert "linear β=1 seed 0: epoch 2, diverged" in shown.stdout

    trained = rdsweep("train", *_flags(BLOWUP), "--schedule", "plateau", "--lr-reductions", "1", "--lr-divisor", "100")
    assert trained.returncode == 0 and "blew up at epoch 2 and recovered" in trained.stderr


def _flags(settings: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]


def test_paper_schedule_is_constant_then_decays_to_zero():
    cell = Cell(epochs=200, schedule="paper")
    assert [lr_factor(cell, e) for e in (1, 100, 101)] == [1.0, 1.0, 1.0]
    assert lr_factor(cell, 150) == pytest.approx(0.51)
    assert lr_factor(cell, 200) == pytest.approx(0.01) and lr_factor(cell, 200) > 0
    assert lr_factor(Cell(epochs=200), 150) == 1.0


def test_simple_family_one_epoch_on_mnist5k_is_unconverged():
    result = train(Cell(dataset="mnist5k", family="---", epochs=1, size="small"), threads=1)
    assert result.status == "unconverged" and result.best_epoch == 1
    for split, m in result.splits.items():
        assert math.isfinite(m.rate) and m.rate >= 0
        assert math.isfinite(m.distortion) and m.distortion > 0
    # 784 Bernoulli pixels: an untrained decoder sits near 784·ln 2 ≈ 543 nats; one epoch must improve on it.
    assert result.splits["test"].distortion < 543
    # what its latent is worth: after one epoch z carries almost nothing about x (measured: I(x; z) = 0.009
    # nats of R = 0.64, the rest a mismatch with the marginal; no unit's mean varies by Burda's 0.01), so a
    # probe on draws of z is at chance (0.10 measured). Before 0.4 the probe read the posterior means, which
    # follow x whether or not z carries it, and said 0.85 here.
    test = result.splits["test"]
    assert test.probe_accuracy < 0.2 and 0 <= test.active_units <= 64
    assert 0 < test.mutual_info <= math.log(500) + 1e-9


def test_the_result_says_what_the_latent_is_worth_on_the_toy():
    result = train(Cell(dataset="toy", family="toy", objective="target-rate", beta=None, target_rate=0.5,
                        epochs=30, batch_size=500, lr=3e-3), threads=1)
    for m in result.splits.values():
        # I(x; z) ≤ R (R = I + KL(aggregate posterior ‖ m)), and a model held at R ≈ 0.5 nats uses its latent
        assert 0.4 < m.mutual_info <= m.rate + 0.03
        assert m.active_units == 1 and m.probe_accuracy is None   # the toy has no labels


def test_the_kept_best_state_does_not_drift_after_a_reduction():
    # Restoring hands Adam the best epoch's moments; Adam updates its moments in place, so without a copy
    # the kept state would follow training and a second reduction would restore the wrong moments.
    cell = Cell(dataset="toy", family="toy", epochs=60, batch_size=500, lr=0.05, patience=3, min_delta=0.0,
                lr_reductions=2)
    seen = {}  # the best state's Adam moments, as first snapshotted, by the epoch it was kept at

    def check(metrics, state):
        moments = torch.cat([s["exp_avg"].flatten() for s in state["best"]["optimizer"]["state"].values()])
        first = seen.setdefault(state["rule"]["best_epoch"], moments.clone())
        assert torch.equal(first, moments), f"the best state changed by epoch {metrics['epoch']}"

    result = train(cell, threads=1, on_epoch=check)
    assert result.status == "converged"
    assert sorted({h["lr"] for h in result.history}, reverse=True) == pytest.approx([0.05, 0.005, 0.0005])


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile on a CPU needs a C compiler")
def test_compiled_training_lands_where_eager_training_does():
    # Inductor reorders float sums, so a compiled run drifts from the eager one by rounding amplified over
    # the steps: measured 0.001 nats of R and 0.012 of D after 3 lingauss epochs; 0.1 would be a real error.
    cell = Cell(dataset="lingauss", family="linear", beta=1.0, epochs=3, batch_size=100)
    eager, compiled = (train(cell, compile=c, threads=1) for c in (False, True))
    assert (eager.compiled, compiled.compiled) == (False, True)
    for key in ("rate", "distortion"):
        assert getattr(compiled.splits["test"], key) == pytest.approx(getattr(eager.splits["test"], key), abs=0.1)
    assert compiled.epochs == eager.epochs == 3
