"""Two-stage inference after LiBI (seed 004), for models with a low-dimensional latent.

The VAE objective fits the generative model (decoder and marginal) and the encoder together, so an encoder
that cannot represent the true posterior biases the generative model towards one whose posteriors it can
represent, even when that model explains the data worse. Two stages take the encoder out of the first fit:

    stage 1   decoder and marginal maximise an importance-sampled log-likelihood, encoder untouched:
              log p(x) ≈ log (1/K) Σ_k d(x|z_k) m(z_k) / r(z_k),   z_k ~ r = N(0, I)
    stage 2   the generative model is frozen; the encoder minimises D + βR (β = 1: the ELBO, whose gap to the
              fixed log p(x) is then KL(e(z|x) ‖ p(z|x)), and nothing else moves to shrink it)

Each stage trains until its own stopping rule fires; the cell's point is stage 2's best state. The proposal r
is N(0, I), the marginal itself where the marginal is N(0, I): K = 4,096 samples reach the posterior of a
latent of a few dimensions, not of a 64-D image latent, so cells refuse image families.

From the abstract: the two failure modes, their cause (the objective's bias towards posteriors that are easy
to approximate) and the idea of a separate inference for the generative model. The rest (this estimator and
proposal, freezing, one stopping rule per stage) is rdsweep's design, not the paper's.
"""
from __future__ import annotations

import math

import torch

from rdsweep.models.marginals import standard_normal_log_prob

IMPORTANCE_SAMPLES = 4096  # K of stage 1's log-likelihood


def log_likelihood(model, x: torch.Tensor, k: int = IMPORTANCE_SAMPLES) -> torch.Tensor:
    """Per-example importance-sampled estimate of log p(x) = log E_m[d(x|z)] with proposal N(0, I), (B,):
    a stochastic lower bound (in expectation) that tightens as k grows, through decoder and marginal only.

    The k samples are shared by the batch: the decoder runs on k latents once and scores them against every
    example by broadcasting (x as (1, B, …) against z as (k, 1, d)), so k can be large. Too few samples would
    reward a broad decoder, whose likelihood is easy to estimate, exactly the bias the two stages are for:
    the curve's posteriors cover about 2 % of the proposal's mass, so 4,096 samples give ~80 effective ones.
    """
    z = torch.randn(k, 1, model.latent_dim, device=x.device, dtype=torch.get_default_dtype())
    log_px_z = model.decoder.log_prob(x[None], z)                                   # (k, B)
    log_w = log_px_z + model.marginal.log_prob(z) - standard_normal_log_prob(z)
    return torch.logsumexp(log_w, 0) - math.log(k)


def trained_modules(model, stage: int | None) -> list[torch.nn.Module]:
    """What a stage trains: the generative model (1), the encoder (2), or everything (None, one stage)."""
    if stage is None:   # any model: a plugin's need not have the parts two-stage names
        return [model]
    return [model.decoder, model.marginal] if stage == 1 else [model.encoder]
