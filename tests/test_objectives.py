"""Each remedy for a broken ELBO does what it claims, on problems small enough for a CPU (docs/objectives.md).

lingauss has a closed-form β-optimum (rdsweep.data.loaders.lingauss_optimum): at β = 20 every latent is inactive
(its eigenvalues are all below βσ² = 20), so any rate a model keeps there is the remedy's doing.
"""
from __future__ import annotations

import pytest
import torch

from rdsweep.cells import Cell
from rdsweep.data.loaders import load_dataset
from rdsweep.errors import UserError
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.training.trainer import train

FAST = dict(dataset="lingauss", family="linear", epochs=80, lr=0.01, batch_size=500)
PRECISE = {**FAST, "epochs": 200, "min_delta": 0.001}   # for comparisons with the closed form


def trained(cell: Cell) -> tuple[dict, torch.nn.Module]:
    """The result and the model at its reported (best-valid) state."""
    states = {}
    result = train(cell, threads=1, on_epoch=lambda m, s: states.update(last=s))
    data = load_dataset(cell.dataset)
    model = build_model(get_family(cell.family), data.info, cell.size, cell.encoder_std)
    model.load_state_dict(states["last"]["best"]["model"])
    return result, model.eval()


def rate_per_latent(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(x, per_latent=True)[0].mean(0)


@pytest.mark.parametrize("free_bits", [0.5, 1.0])
def test_free_bits_keeps_each_latents_rate_near_lambda_where_beta_alone_collapses_it(free_bits):
    valid = load_dataset("lingauss").valid
    _, collapsed = trained(Cell(**FAST, beta=20.0))
    assert rate_per_latent(collapsed, valid).max() < 0.01          # β = 20: no latent is worth its rate
    result, model = trained(Cell(**FAST, objective="free-bits", beta=20.0, free_bits=free_bits))
    assert result.status == "converged"
    rates = rate_per_latent(model, valid)
    # Below λ a latent's rate costs nothing, so the distortion pulls it up to λ; above, β = 20 pushes it back.
    # It settles just under λ (the penalty acts on each batch's mean, which scatters around it): measured
    # 0.478–0.489 for λ = 0.5 and 0.92–0.97 for λ = 1.
    assert ((rates > 0.9 * free_bits) & (rates < free_bits + 0.05)).all(), rates


def test_free_bits_acts_on_the_total_rate_where_it_does_not_factorise():
    # toy: a per-bin encoder against a mixture marginal; λ per latent times its one latent is the floor
    result = train(Cell(dataset="toy", family="toy", objective="free-bits", beta=10.0, free_bits=0.3,
                        epochs=40, lr=1e-2, batch_size=500), threads=1)
    plain = train(Cell(dataset="toy", family="toy", beta=10.0, epochs=40, lr=1e-2, batch_size=500), threads=1)
    assert plain.splits["valid"].rate < 0.05
    assert 0.25 < result.splits["valid"].rate < 0.35


def test_warmup_ramps_beta_and_the_stopping_rule_waits_for_the_ramp():
    cell = Cell(dataset="toy", family="toy", objective="warmup", beta=1.0, warmup_epochs=6, epochs=30,
                patience=1, min_delta=10.0, lr_reductions=0, lr=1e-2, batch_size=500)
    result = train(cell, threads=1)
    betas = [h["beta"] for h in result.history]
    assert betas[:7] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0, 1.0])
    # min_delta = 10 nats: no evaluation ever improves, so patience 1 stops at the first one the rule watches
    assert result.best_epoch == 7 and result.epochs == 8 and result.stop_reason == "plateau"


def test_target_rates_pull_a_model_above_its_elbo_optimum_rate():
    elbo_optimum = load_dataset("lingauss").truth(1.0)["rate"]          # 1.79 nats
    absolute = train(Cell(**PRECISE, objective="target-rate", beta=None, target_rate=3.0), threads=1)
    squared = train(Cell(**PRECISE, objective="squared-target-rate", beta=None, target_rate=3.0), threads=1)
    # Above the ELBO optimum the distortion gains less than a nat per nat of rate, and |σ − R| costs a nat per
    # nat on either side: it holds the model at σ.
    assert absolute.splits["valid"].rate == pytest.approx(3.0, abs=0.05)
    # (σ − R)² costs 2(R − σ) per nat, which vanishes at σ: the distortion's gain carries the model a little
    # past σ (measured 3.25), still far above where the ELBO alone puts it.
    assert 3.05 < squared.splits["valid"].rate < 3.5 and elbo_optimum < 2.0


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_shared_posterior_std_reaches_the_lingauss_optimum(beta):
    # The optimal posterior of a linear Gaussian model has one variance per latent for every x (BILBO's point):
    # an encoder that only learns means and one shared std per latent loses nothing.
    result = train(Cell(**PRECISE, beta=beta, encoder_std="shared", eval_samples=8), threads=1)
    truth, point = result.truth, result.splits["train"]     # the optimum is the train split's
    # measured: R 0.8 % and 0.5 % above the optimum, D within 0.02 %
    assert point.rate == pytest.approx(truth.rate, rel=0.01)
    assert point.distortion == pytest.approx(truth.distortion, rel=0.001)


def test_a_fixed_posterior_std_away_from_the_optimum_costs_elbo():
    shared = train(Cell(**FAST, encoder_std="shared", eval_samples=8), threads=1)
    fixed = train(Cell(**FAST, encoder_std=0.2, eval_samples=8), threads=1)
    # The optimal stds at β = 1 are sqrt(σ²/λᵢ) ≈ 0.45–0.9: 0.2 carries more rate than the optimum wants.
    assert fixed.splits["train"].rate > shared.splits["train"].rate + 1.0
    assert -fixed.splits["train"].elbo > -shared.splits["train"].elbo + 0.3


def test_an_x_dependent_std_is_its_own_cell_and_the_familys_default_is_not():
    default = Cell(dataset="lingauss", family="linear").validated()
    assert Cell(dataset="lingauss", family="linear", encoder_std="shared").validated().cell_id == default.cell_id
    assert Cell(dataset="lingauss", family="linear", encoder_std="learned").validated().cell_id != default.cell_id
    with pytest.raises(UserError, match="IAF encoder"):
        Cell(family="iaf-deconv-normal", encoder_std="shared").validated()
    with pytest.raises(UserError, match="warmup_epochs"):
        Cell(dataset="toy", family="toy", objective="warmup", warmup_epochs=10, epochs=10).validated()
    with pytest.raises(UserError, match="free_bits"):
        Cell(dataset="toy", family="toy", free_bits=1.0).validated()
