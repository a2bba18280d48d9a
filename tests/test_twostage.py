"""Two-stage inference after LiBI (rdsweep/training/twostage.py) and the curve dataset it is meant for (docs/twostage.md).

lingauss is the check with a closed form: a linear Gaussian model's log p(x) is exact (x ~ N(b, WWᵀ + σ²I)),
and its maximum-likelihood fit is reached by joint β = 1 training too (pPCA), so both generative models can be
scored exactly, independently of either training objective.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from rdsweep.cells import Cell
from rdsweep.data.loaders import curve_log_density, curve_point, load_dataset
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.training import twostage
from rdsweep.training.trainer import train

LINGAUSS = dict(dataset="lingauss", family="linear", beta=1.0, epochs=200, lr=0.01, batch_size=500, min_delta=0.001)


def exact_nll(model, x: torch.Tensor) -> float:
    """Mean −log p(x) of a linear Gaussian model in closed form."""
    w, b = model.decoder.linear.weight.detach().double(), model.decoder.linear.bias.detach().double()
    cov = w @ w.T + model.decoder.sigma2 * torch.eye(len(b), dtype=torch.double)
    return -torch.distributions.MultivariateNormal(b, cov).log_prob(x.double()).mean().item()


def linear_model(state: dict | None = None):
    data = load_dataset("lingauss")
    model = build_model(get_family("linear"), data.info, "small")
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def two_stage_run():
    """A two-stage lingauss run with every epoch's saved state."""
    states = []
    result = train(Cell(**LINGAUSS, objective="two-stage"), threads=1, on_epoch=lambda m, s: states.append(s))
    return result, states


def test_the_curve_density_agrees_with_monte_carlo_and_its_crossing_has_two_explanations():
    x = np.array([[0.0, 0.0], [1.2, 0.4], [-1.9, 0.05], [0.5, -0.6], [3.0, 3.0]])
    rng = np.random.default_rng(0)
    centres = curve_point(norm.cdf(rng.standard_normal(2_000_000)))
    sq = ((x[:, None, :] - centres) ** 2).sum(-1)
    s = load_dataset("curve").info["noise"]
    monte_carlo = np.log(np.exp(-sq / (2 * s**2)).mean(1)) - np.log(2 * np.pi * s**2)
    quadrature = curve_log_density(x)
    assert np.abs(quadrature[:4] - monte_carlo[:4]).max() < 0.01, (quadrature, monte_carlo)
    assert quadrature[4] < -100          # far from the curve: no density to speak of
    # The origin lies on both branches: its posterior over u = Φ(z*) has two separate modes of similar mass.
    u = (np.arange(20_000) + 0.5) / 20_000
    weight = np.exp(-(curve_point(u) ** 2).sum(-1) / (2 * s**2))
    weight /= weight.sum()
    low, high = weight[u < 0.5].sum(), weight[u > 0.5].sum()
    assert 0.4 < low < 0.6 and 0.4 < high < 0.6
    assert weight[(u > 0.35) & (u < 0.65)].sum() < 1e-6   # nothing between them: bimodal, not one broad mode


def test_importance_sampled_log_likelihood_is_a_bound_that_tightens_to_the_exact_value():
    torch.manual_seed(0)
    model, x = linear_model(), load_dataset("lingauss").valid
    exact = -exact_nll(model, x)
    with torch.no_grad():
        wide = twostage.log_likelihood(model, x, 4096).mean().item()
        narrow = twostage.log_likelihood(model, x, 4).mean().item()
    assert abs(wide - exact) < 0.02, (wide, exact)
    assert narrow < wide - 0.05          # few samples: well below (a lower bound in expectation)
    # Only the generative model is in it: the encoder gets no gradient.
    twostage.log_likelihood(model, x[:100]).mean().backward()
    assert model.decoder.linear.weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())


def test_the_linear_decoders_pairwise_scores_are_the_direct_ones():
    # two-stage's (k, 1, d) latents against a (1, B, D) batch take a matmul path: it must score every pair
    model, x = linear_model(), load_dataset("lingauss").valid[:300]
    torch.manual_seed(0)
    z = 2 * torch.randn(64, 1, model.latent_dim)
    mean = model.decoder.linear(z)
    direct = -0.5 * x.shape[-1] * math.log(2 * math.pi * model.decoder.sigma2) \
        - ((x[None] - mean) ** 2).sum(-1) / (2 * model.decoder.sigma2)
    pairwise = model.decoder.log_prob(x[None], z)
    assert pairwise.shape == (64, 300) and torch.allclose(pairwise, direct, rtol=0, atol=1e-4)
    assert direct.std() > 1                  # the pairs differ: a shape mix-up would not pass unnoticed


def test_two_stage_fits_the_generative_model_then_only_the_encoder(two_stage_run):
    result, states = two_stage_run
    assert result.status == "converged" and result.stop_reason == "plateau"
    stages = [h["stage"] for h in result.history]
    switch = stages.index(2)
    assert stages == [1] * switch + [2] * (len(stages) - switch) and switch >= 5
    first, last_of_1, last = states[0]["model"], states[switch - 1]["model"], states[-1]["model"]
    torch.manual_seed(0)
    initial = linear_model().state_dict()    # the trial's initialisation: seed 0, then the model
    for name, value in last.items():
        if name.startswith("encoder."):      # untouched in stage 1, trained in stage 2
            assert torch.equal(first[name], initial[name]) and torch.equal(last_of_1[name], initial[name])
            assert not torch.equal(value, initial[name])
    # stage 2 starts from stage 1's best state (restored at the switch) and never moves the generative model
    assert states[switch - 1]["stage"] == 2 and states[switch - 1]["best"] is None
    stage1_best = states[switch - 1]["model"]
    for name, value in states[-1]["best"]["model"].items():
        if not name.startswith("encoder."):
            assert torch.equal(value, stage1_best[name]), name


def test_two_stage_reaches_the_maximum_likelihood_model_whose_posterior_a_diagonal_encoder_cannot_fit(two_stage_run):
    """LiBI's unidentifiability point, in closed form: every rotation of pPCA's W explains the data equally well;
    joint training picks the one whose posterior is diagonal, two-stage any of them, so its ELBO is worse."""
    result, states = two_stage_run
    joint_states = []
    joint = train(Cell(**LINGAUSS), threads=1, on_epoch=lambda m, s: joint_states.append(s))
    valid = load_dataset("lingauss").valid
    two_stage_nll = exact_nll(linear_model(states[-1]["best"]["model"]), valid)
    joint_nll = exact_nll(linear_model(joint_states[-1]["best"]["model"]), valid)
    # measured: 9.796 (two-stage) and 9.804 (joint) nats
    assert abs(two_stage_nll - joint_nll) < 0.02, (two_stage_nll, joint_nll)
    # measured: the joint −ELBO is 0.035 nats above its log p(x); two-stage's 0.25 above its own
    assert -joint.splits["valid"].elbo < joint_nll + 0.06
    assert -result.splits["valid"].elbo > two_stage_nll + 0.2


def test_a_resumed_two_stage_run_continues_in_its_stage(two_stage_run):
    result, states = two_stage_run
    switch = [h["stage"] for h in result.history].index(2)
    for state in (states[switch - 3], states[switch + 2]):   # saved in stage 1, and in stage 2
        resumed = train(Cell(**LINGAUSS, objective="two-stage"), threads=1, resume_state=state)
        assert resumed.splits == result.splits
        assert [h["stage"] for h in resumed.history] == [h["stage"] for h in result.history]


def test_two_stage_refuses_an_image_family(rdsweep):
    proc = rdsweep("train", "--objective", "two-stage", "--family=---", "--epochs", "1")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "low-dimensional latent" in proc.stderr
