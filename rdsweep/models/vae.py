"""The VAE: encoder e(z|x), decoder d(x|z), marginal m(z), and the per-example rate and distortion.

    distortion D = −log d(x|z),   rate R = log e(z|x) − log m(z),   z ~ e(z|x),   ELBO = −(R + D)

For a Gaussian encoder against N(0, I) the rate is the exact KL (same expectation, less noise).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rdsweep.models import decoders, encoders, marginals
from rdsweep.models.families import Family

LATENT_DIM = 64  # the paper's image latent size


class VAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, marginal: nn.Module):
        super().__init__()
        self.encoder, self.decoder, self.marginal = encoder, decoder, marginal
        self.analytic_rate = (isinstance(encoder, encoders.GaussianEncoder)
                              and isinstance(marginal, marginals.StandardNormal))

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    def forward(self, x: torch.Tensor, per_latent: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example (rate, distortion) in nats, one z-sample each. With `per_latent`, the rate is each
        latent's, (B, d), where it factorises over latents (the analytic rate); else it stays (B,)."""
        if self.analytic_rate:
            mean, std = self.encoder.gaussian(x)
            z = mean + std * torch.randn_like(std)
            rate = 0.5 * (mean**2 + std**2 - 1 - 2 * std.log())
            rate = rate if per_latent else rate.sum(-1)
        else:
            z, log_q = self.encoder(x, 1)
            z, log_q = z[0], log_q[0]
            rate = log_q - self.marginal.log_prob(z)
        return rate, -self.decoder.log_prob(x, z)

    def iwae(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Per-example importance-weighted bound on log p(x) with k samples (k = 1 is the ELBO)."""
        z, log_q = self.encoder(x, k)                                   # (k, B, d), (k, B)
        xs = x.expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])
        log_px_z = self.decoder.log_prob(xs, z.reshape(-1, z.shape[-1])).view(k, -1)
        log_w = log_px_z + self.marginal.log_prob(z) - log_q
        return torch.logsumexp(log_w, 0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decoder.sample(self.marginal.sample(n))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = self.encoder(x, 1)
        return self.decoder.sample(z[0])


def build_model(family: Family, info: dict, size: str, encoder_std=None) -> nn.Module:
    """The model of a family (built-in or plugin) for a dataset (its `info`: example shape, bins, dimensions) at
    a size. `encoder_std`: how a Gaussian encoder sets its posterior's std (see encoders.GaussianEncoder); None:
    the family's own way."""
    return family.builder()(family, info, size, encoder_std)


def build_builtin(family: Family, info: dict, size: str, encoder_std=None) -> VAE:
    """The built-in families' VAEs (their entries' `build`)."""
    std = {} if encoder_std is None else {"std": encoder_std}
    if family.data_kind == "toy":
        n_bins = info["n_bins"]
        return VAE(encoders.LookupEncoder(n_bins, **std), decoders.CategoricalDecoder(n_bins),
                   marginals.MixtureOfGaussians(1, components=8))
    if family.data_kind == "lingauss":
        n, k = info["n"], info["latent_dim"]
        return VAE(encoders.LinearEncoder(n, k, **std), decoders.LinearGaussianDecoder(k, n, info["sigma2"]),
                   marginals.StandardNormal(k))
    if family.data_kind == "curve":
        n, k = info["n"], info["latent_dim"]
        return VAE(encoders.MLPEncoder(n, k, **std), decoders.GaussianMLPDecoder(k, n), marginals.StandardNormal(k))
    d = LATENT_DIM
    encoder = {"gauss": encoders.ConvEncoder, "iaf": encoders.IAFEncoder}[family.encoder](d, size, **std)
    decoder = {"deconv": decoders.DeconvDecoder, "pixelcnn": decoders.PixelCNNDecoder}[family.decoder](d, size)
    marginal = {
        "normal": lambda: marginals.StandardNormal(d),
        "maf": lambda: marginals.FlowMarginal(d, size),
        "vamp": lambda: marginals.VampPrior(encoder, size),  # a mixture of this encoder's posteriors
    }[family.marginal]()
    return VAE(encoder, decoder, marginal)
