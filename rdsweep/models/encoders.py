"""Encoders e(z|x). Every encoder draws reparameterised samples z and returns log e(z|x) at them.

Interface: `encoder(x, n_samples) -> (z, log_q)` with z of shape (S, B, d) and log_q of shape (S, B).
Gaussian encoders also expose `gaussian(x) -> (mean, std)`, used for the analytic rate against N(0, I)
and by the VampPrior.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rdsweep.models.flows import FLOW_SIZES, FLOW_STEPS, AutoregressiveFlow

LOG_2PI = math.log(2 * math.pi)
MIN_STD = 1e-4  # keeps log e(z|x) finite when an encoder becomes (nearly) deterministic


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(std²)), summed over the last dimension."""
    return (-0.5 * ((z - mean) / std) ** 2 - std.log() - 0.5 * LOG_2PI).sum(-1)


class GaussianEncoder(nn.Module):
    """A diagonal Gaussian posterior; subclasses define `gaussian(x) -> (mean, std)`."""

    latent_dim: int

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, n_samples: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.gaussian(x)
        z = mean + std * torch.randn((n_samples, *mean.shape), device=mean.device, dtype=mean.dtype)
        return z, gaussian_log_prob(z, mean, std)


def _std(raw: torch.Tensor) -> torch.Tensor:
    # Softplus(raw + softplus⁻¹(1)) starts the posterior at unit scale, as TFP's vae.py does.
    return F.softplus(raw + math.log(math.e - 1)) + MIN_STD


class GatedConv(nn.Module):
    """A convolution followed by a gated linear unit, (W₁x + b₁)·σ(W₂x + b₂): the paper's activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding="same", transpose=False):
        super().__init__()
        if transpose:
            out_pad = stride - 1 if stride > 1 else 0
            self.conv = nn.ConvTranspose2d(c_in, 2 * c_out, kernel, stride, padding, output_padding=out_pad)
        elif padding == "same" and kernel % 2 == 0:
            # An even 'same' kernel needs one more pixel of padding after than before.
            before, after = kernel // 2 - 1, kernel // 2
            self.conv = nn.Sequential(nn.ZeroPad2d((before, after, before, after)),
                                      nn.Conv2d(c_in, 2 * c_out, kernel, stride))
        else:
            self.conv = nn.Conv2d(c_in, 2 * c_out, kernel, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.conv(x), dim=1)


# Channel widths: the paper's Appendix F, and half of it for CPUs.
CONV_WIDTHS = {"paper": (32, 32, 64, 64, 256), "small": (16, 16, 32, 32, 128)}


class ConvEncoder(GaussianEncoder):
    """The paper's simple encoder: five gated convs (28→14→7→1), then Gaussian mean and Softplus std."""

    def __init__(self, latent_dim: int = 64, size: str = "paper"):
        super().__init__()
        c1, c2, c3, c4, c5 = CONV_WIDTHS[size]
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            GatedConv(1, c1, 5, 1, 2), GatedConv(c1, c2, 5, 2, 2),
            GatedConv(c2, c3, 5, 1, 2), GatedConv(c3, c4, 5, 2, 2),
            GatedConv(c4, c5, 7, 1, 0), nn.Flatten(),
        )
        self.mean = nn.Linear(c5, latent_dim)
        self.raw_std = nn.Linear(c5, latent_dim)
        self.features = c5  # the IAF encoder conditions its flow on these

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2 * x - 1)  # binary pixels rescaled to [-1, 1]

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gaussian_of(self.hidden(x))

    def gaussian_of(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and std from the conv features h (the IAF encoder also needs h itself)."""
        return self.mean(h), _std(self.raw_std(h))


class LookupEncoder(GaussianEncoder):
    """Toy data: one Gaussian per bin of x (a table), 1-D latent."""

    def __init__(self, n_bins: int, latent_dim: int = 1):
        super().__init__()
        self.latent_dim = latent_dim
        self.table = nn.Embedding(n_bins, 2 * latent_dim)
        nn.init.normal_(self.table.weight, std=0.1)

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.table(x).chunk(2, dim=-1)
        return mean, _std(raw)


class LinearEncoder(GaussianEncoder):
    """Linear Gaussian data: mean linear in x, one learned variance per latent (the pPCA posterior's form)."""

    def __init__(self, data_dim: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.mean = nn.Linear(data_dim, latent_dim)
        self.raw_std = nn.Parameter(torch.zeros(latent_dim))

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(x)
        return mean, _std(self.raw_std).expand_as(mean)


class IAFEncoder(nn.Module):
    """The paper's complex encoder: the conv Gaussian encoder followed by an inverse autoregressive flow.

    z₀ ~ N(μ(x), σ(x)), then 4 IAF steps z ← σ_t ⊙ z + (1 − σ_t) ⊙ m_t whose MADEs also see the conv features
    h(x) (Kingma et al. 2016). The density of its own sample is exact, log e(z|x) = log N(z₀; μ, σ) − Σ log-det,
    but e(z|x) at an arbitrary z would need the sequential inverse: the VAE therefore uses the Monte-Carlo rate
    (this is deliberately not a GaussianEncoder).
    """

    def __init__(self, latent_dim: int = 64, size: str = "paper", *, steps: int | None = None,
                 hidden: int | None = None, n_layers: int | None = None):
        super().__init__()

        made = FLOW_SIZES[size]
        self.latent_dim = latent_dim
        self.base = ConvEncoder(latent_dim, size)
        self.flow = AutoregressiveFlow(latent_dim, steps or FLOW_STEPS, hidden or made["hidden"],
                                       n_layers or made["n_layers"], context_dim=self.base.features, gated=True)

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The base posterior N(μ(x), σ(x)) before the flow (the VampPrior's components)."""
        return self.base.gaussian(x)

    def forward(self, x: torch.Tensor, n_samples: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.base.hidden(x)
        mean, std = self.base.gaussian_of(h)
        z0 = mean + std * torch.randn((n_samples, *mean.shape), device=mean.device, dtype=mean.dtype)
        z, log_det = self.flow(z0, h)
        return z, gaussian_log_prob(z0, mean, std) - log_det
