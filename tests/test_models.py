"""The complex model components: MADE/IAF/MAF flows, the PixelCNN decoder and the VampPrior.

Autoregressive structure is checked through autograd Jacobians (what the network computes), never by reading
the masks; densities are checked against brute-force change of variables, a grid integral and an explicit
mixture. Small random-weight instances in float64 keep the file fast and the tolerances tight.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from rdsweep.models.decoders import PixelCNNDecoder
from rdsweep.models.encoders import ConvEncoder, IAFEncoder, gaussian_log_prob
from rdsweep.models.families import get_family
from rdsweep.models.flows import MADE, AffineAutoregressive
from rdsweep.models.marginals import FlowMarginal, VampPrior
from rdsweep.models.vae import build_model


@pytest.fixture(autouse=True)
def _float64_and_seed():
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def position(dim: int, reverse: bool) -> torch.Tensor:
    """Position of each dimension in the autoregressive order."""
    order = torch.arange(dim)
    return order.flip(0) if reverse else order


def binary_images(n: int) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3))


# ---- MADE and the flow steps -------------------------------------------------------------------------------

@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("context_dim", [0, 4])
def test_made_output_i_depends_only_on_inputs_before_i(reverse, context_dim):
    dim = 5
    made = MADE(dim, hidden=12, context_dim=context_dim, n_layers=2, n_params=2, reverse=reverse)
    context = torch.randn(context_dim) if context_dim else None
    x = torch.randn(dim)
    pos = position(dim, reverse)
    allowed = pos[None, :] < pos[:, None]  # [output j, input i]: i comes before j
    for jac in jacobian(lambda v: torch.stack(made(v, context)), x):  # one (dim, dim) block per output set
        assert (jac[~allowed] == 0).all()
        assert (jac[allowed] != 0).all()  # and every allowed dependence is actually used
    if context_dim:
        # The context reaches every output but the first in the order (which only sees biases).
        jac_h = jacobian(lambda h: torch.stack(made(x, h)), context)  # (n_params, dim, context_dim)
        first = int(pos.argmin())
        assert (jac_h[:, first] == 0).all()
        assert (jac_h.abs().sum(-1)[:, pos != 0] > 0).all()


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_flow_step_is_triangular_with_exact_log_det_and_inverse(gated, reverse):
    dim = 4
    context = torch.randn(3) if gated else None  # the IAF's steps are conditioned on the encoder features
    step = AffineAutoregressive(dim, hidden=10, context_dim=3 if gated else 0, n_layers=2, reverse=reverse,
                                gated=gated)
    x = torch.randn(dim)
    y, log_det = step(x, context)
    jac = jacobian(lambda v: step(v, context)[0], x)
    pos = position(dim, reverse)
    later = pos[None, :] > pos[:, None]  # [output j, input i]: i comes after j
    assert (jac[later] == 0).all()
    assert (jac[pos[None, :] < pos[:, None]] != 0).any()
    assert torch.allclose(log_det, torch.linalg.slogdet(jac).logabsdet)
    assert torch.allclose(step.inverse(y, context), x)


# ---- IAF encoder ----------------------------------------------------------------------------------------------

def test_iaf_log_q_is_exact_change_of_variables():
    encoder = IAFEncoder(latent_dim=3, size="small", hidden=12)
    x = binary_images(2)
    z, log_q = encoder(x, 3)
    assert z.shape == (3, 2, 3) and log_q.shape == (3, 2)
    with torch.no_grad():
        h = encoder.base.hidden(x)
        mean, std = encoder.gaussian(x)
        z0 = encoder.flow.inverse(z, h)  # recover the base sample that produced z
        assert torch.allclose(encoder.flow(z0, h)[0], z)
    for s in range(3):
        for b in range(2):
            jac = jacobian(lambda v: encoder.flow(v, h[b])[0], z0[s, b])
            brute = gaussian_log_prob(z0[s, b], mean[b], std[b]) - torch.linalg.slogdet(jac).logabsdet
            assert torch.allclose(log_q[s, b], brute)


def test_iaf_flow_is_not_just_the_gaussian():
    encoder = IAFEncoder(latent_dim=3, size="small", hidden=12)
    x = binary_images(1)
    z, log_q = encoder(x, 5)
    mean, std = encoder.gaussian(x)
    assert not torch.allclose(log_q, gaussian_log_prob(z, mean, std))


# ---- MAF marginal -----------------------------------------------------------------------------------------------

def test_maf_density_integrates_to_one_and_is_not_the_base():
    torch.manual_seed(1)
    marginal = FlowMarginal(2, "small", hidden=16)
    grid = torch.linspace(-12, 12, 801)
    cell = (grid[1] - grid[0]) ** 2
    z = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1)  # (801, 801, 2): any leading shape works
    with torch.no_grad():
        log_m = marginal.log_prob(z)
    assert log_m.shape == (801, 801)
    assert abs(log_m.exp().sum() * cell - 1) < 1e-4
    log_base = -0.5 * (z**2).sum(-1) - math.log(2 * math.pi)
    assert (log_m.exp() * (log_m - log_base)).sum() * cell > 0.1  # KL to N(0, I): a non-trivial flow


def test_maf_log_prob_is_exact_change_of_variables():
    marginal = FlowMarginal(3, "small", hidden=12)
    z = torch.randn(4, 3)
    log_m = marginal.log_prob(z)
    for b in range(4):
        u = marginal.flow(z[b])[0]
        jac = jacobian(lambda v: marginal.flow(v)[0], z[b])
        assert (jac != 0).all()  # the order reversed between steps: every dimension depends on every other
        brute = -0.5 * (u**2).sum() - 1.5 * math.log(2 * math.pi) + torch.linalg.slogdet(jac).logabsdet
        assert torch.allclose(log_m[b], brute)


def test_maf_sample_round_trips_and_scores_finite():
    marginal = FlowMarginal(4, "small", hidden=12)
    u = torch.randn(6, 4)
    assert torch.allclose(marginal.flow(marginal.flow.inverse(u))[0], u)
    z = marginal.sample(50)
    assert z.shape == (50, 4)
    assert torch.isfinite(marginal.log_prob(z)).all()


# ---- VampPrior --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder_class", [ConvEncoder, IAFEncoder])
def test_vamp_prior_is_the_explicit_mixture_of_encoder_gaussians(encoder_class):
    encoder = encoder_class(3, "small")
    prior = VampPrior(encoder, "small", components=4)
    z = torch.randn(2, 5, 3)
    log_m = prior.log_prob(z)
    assert log_m.shape == (2, 5)
    per_component = []
    for u in torch.sigmoid(prior.pseudo_logits):
        mean, std = encoder.gaussian(u[None])  # the IAF encoder's base posterior (see VampPrior)
        per_component.append(torch.distributions.Normal(mean[0], std[0]).log_prob(z).sum(-1))
    by_hand = torch.log(torch.stack(per_component).exp().mean(0))
    assert torch.allclose(log_m, by_hand)
    assert prior.sample(7).shape == (7, 3)


def test_vamp_family_lists_each_parameter_once_and_state_dict_round_trips():
    family = get_family("+-v")
    model = build_model(family, {}, "small")
    params = list(model.parameters())
    assert len(params) == len({id(p) for p in params})
    keys = model.state_dict().keys()
    assert "marginal.pseudo_logits" in keys and not any(k.startswith("marginal.encoder") for k in keys)
    assert sum(p.numel() for p in params) == sum(v.numel() for v in model.state_dict().values())

    torch.manual_seed(1)
    fresh = build_model(family, {}, "small")
    fresh.load_state_dict(model.state_dict())
    z = torch.randn(3, 64)
    assert torch.equal(fresh.marginal.log_prob(z), model.marginal.log_prob(z))


# ---- PixelCNN decoder -------------------------------------------------------------------------------------------

def tiny_pixelcnn() -> PixelCNNDecoder:
    return PixelCNNDecoder(latent_dim=3, size="small", channels=8, blocks=2, kernel=3)


def test_pixelcnn_logit_i_depends_only_on_pixels_before_i():
    decoder = tiny_pixelcnn()
    x, z = binary_images(1), torch.randn(1, 3)
    jac = jacobian(lambda v: decoder.logits(v.view(1, 1, 28, 28), z).flatten(), x.flatten(), vectorize=True)
    assert jac.shape == (784, 784)
    assert (jac.triu() == 0).all()  # pixel j ≥ i never reaches logit i (the diagonal included)
    i = torch.arange(784)
    left, above = i[i % 28 > 0], i[i >= 28]
    assert (jac[left, left - 1] != 0).all() and (jac[above, above - 28] != 0).all()
    grad_z = torch.autograd.grad(decoder.logits(x, z.requires_grad_()).sum(), z)[0]
    assert (grad_z != 0).all()


@pytest.mark.parametrize("size_kwargs", [{}, {"channels": 8, "blocks": 2, "kernel": 5}])
def test_pixelcnn_row_band_equals_the_full_pass(size_kwargs):
    decoder = PixelCNNDecoder(latent_dim=3, size="small", **size_kwargs)
    x, z = binary_images(2), torch.randn(2, 3)
    with torch.no_grad():
        full = decoder.logits(x, z)
        for row in range(28):
            assert torch.allclose(decoder.row_logits(x, z, row), full[:, :, row])


def test_pixelcnn_samples_binary_images_it_can_score():
    decoder = tiny_pixelcnn()
    z = torch.randn(2, 3)
    x = decoder.sample(z)
    assert x.shape == (2, 1, 28, 28)
    assert ((x == 0) | (x == 1)).all()
    log_p = decoder.log_prob(x, z)
    assert log_p.shape == (2,) and torch.isfinite(log_p).all() and (log_p < 0).all()
