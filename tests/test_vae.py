"""The VAE's estimators: rate and distortion per example, and the IWAE bound, checked against exact
quantities on the toy model, whose 1-D latent lets us integrate log p(x) = log ∫ d(x|z) m(z) dz by quadrature."""
import math

import pytest
import torch

from rdsweep.cells import Cell
from rdsweep.data.loaders import load_dataset
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.training.objectives import Objective


@pytest.fixture(scope="module")
def toy_model():
    """A toy model trained briefly towards R = 1 nat: its posterior is far from the prior and not yet exact, so
    the ELBO is visibly below log p(x) and the IWAE bound has room to climb."""
    torch.manual_seed(0)
    data = load_dataset("toy")
    model = build_model(get_family("toy"), data.info, "small")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    cell = Cell(dataset="toy", family="toy", objective="target-rate", beta=None, target_rate=1.0)
    for idx in torch.randperm(len(data.train)).split(500)[:30]:
        rate, distortion = model(data.train[idx])
        opt.zero_grad()
        Objective(cell, model.latent_dim)(rate, distortion).backward()
        opt.step()
    return model.eval(), data


def exact_log_px(model, x):
    """log ∫ d(x|z) m(z) dz on a fine grid over z (the latent is 1-D)."""
    z = torch.linspace(-12, 12, 20001)[:, None]
    dz = z[1, 0] - z[0, 0]
    log_joint = model.marginal.log_prob(z)[:, None] + torch.log_softmax(model.decoder.net(z), -1)  # (Z, bins)
    return (torch.logsumexp(log_joint, 0) + dz.log())[x]


@torch.no_grad()
def test_iwae_with_one_sample_is_the_elbo_sample(toy_model):
    model, data = toy_model
    x = data.test[:2000]
    torch.manual_seed(1)
    rate, distortion = model(x)
    torch.manual_seed(1)
    assert torch.allclose(model.iwae(x, 1), -(rate + distortion), atol=1e-5)


@torch.no_grad()
def test_iwae_climbs_with_k_towards_the_exact_likelihood(toy_model):
    model, data = toy_model
    x = data.test
    torch.manual_seed(2)
    log_px = exact_log_px(model, x).mean().item()
    bounds = {k: model.iwae(x, k).mean().item() for k in (1, 10, 100)}
    # Means over 5,000 examples: their Monte-Carlo noise is ~0.005 nats, far below the gaps asserted here.
    assert bounds[1] < bounds[10] < bounds[100] <= log_px + 0.01
    assert log_px - bounds[1] > 0.02           # the ELBO is a strict bound for this model...
    assert log_px - bounds[100] < 0.25 * (log_px - bounds[1])  # ...and K = 100 closes most of the gap


@torch.no_grad()
def test_rate_and_distortion_are_the_monte_carlo_terms(toy_model):
    """R = log e(z|x) − log m(z) and D = −log d(x|z) at the same z; their sum matches −ELBO by quadrature."""
    model, data = toy_model
    x = data.test
    mean, std = model.encoder.gaussian(x)
    z = torch.linspace(-12, 12, 20001)
    dz = (z[1] - z[0]).item()
    q = torch.distributions.Normal(mean, std)                               # (B, 1) broadcast over grid
    log_q = q.log_prob(z[None, :])                                          # (B, Z)
    weights = log_q.exp() * dz
    log_m = model.marginal.log_prob(z[:, None])[None, :]
    log_d = torch.log_softmax(model.decoder.net(z[:, None]), -1).T[x]      # (B, Z)
    exact_rate = (weights * (log_q - log_m)).sum(1).mean().item()
    exact_distortion = -(weights * log_d).sum(1).mean().item()
    torch.manual_seed(3)
    draws = [model(x) for _ in range(20)]
    rate = torch.stack([r for r, _ in draws]).mean().item()
    distortion = torch.stack([d for _, d in draws]).mean().item()
    assert rate == pytest.approx(exact_rate, abs=0.01)
    assert distortion == pytest.approx(exact_distortion, abs=0.01)
    assert exact_rate > 0.2 and math.isfinite(exact_distortion)  # the latent is in use: a real test of R


def test_analytic_rate_is_the_expected_monte_carlo_rate():
    """For a Gaussian encoder with N(0, I) the VAE uses the exact KL; it must equal E[log e − log m]."""
    torch.manual_seed(0)
    data = load_dataset("lingauss")
    model = build_model(get_family("linear"), data.info, "small")
    x = data.train[:500]
    assert model.analytic_rate
    analytic, _ = model(x)
    z, log_q = model.encoder(x, 4000)
    monte_carlo = (log_q - model.marginal.log_prob(z)).mean(0)
    # 4,000 draws per example give a per-example standard error of ~0.03 nats; the mean over 500 examples ~0.002.
    assert torch.allclose(analytic, monte_carlo, atol=0.15)
    assert analytic.mean().item() == pytest.approx(monte_carlo.mean().item(), abs=0.01)
