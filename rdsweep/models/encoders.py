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
    """A diagonal Gaussian posterior; subclasses define `gaussian(x) -> (mean, std)`.

    Its std is set one of three ways (`std`), after BILBO (seed 002: posterior variances need not be learnt):
    "learned", a function of x (a linear head on the features); "shared", one learnt value per latent, the
    same for every x; or a fixed number.
    """

    latent_dim: int

    def _init_std(self, std, features: int) -> None:
        self.std_kind = std if isinstance(std, str) else "fixed"
        if std == "learned":
            self.raw_std = nn.Linear(features, self.latent_dim)
        elif std == "shared":
            self.raw_std = nn.Parameter(torch.zeros(self.latent_dim))
        else:
            self.register_buffer("fixed_std", torch.full((self.latent_dim,), float(std)))

    def _std_of(self, h: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        if self.std_kind == "learned":
            return _std(self.raw_std(h))
        if self.std_kind == "shared":
            return _std(self.raw_std).expand_as(mean)
        return self.fixed_std.expand_as(mean)

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

    def __init__(self, latent_dim: int = 64, size: str = "paper", std="learned"):
        super().__init__()
        c1, c2, c3, c4, c5 = CONV_WIDTHS[size]
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            GatedConv(1, c1, 5, 1, 2), GatedConv(c1, c2, 5, 2, 2),
            GatedConv(c2, c3, 5, 1, 2), GatedConv(c3, c4, 5, 2, 2),
            GatedConv(c4, c5, 7, 1, 0), nn.Flatten(),
        )
        self.mean = nn.Linear(c5, latent_dim)
        self._init_std(std, c5)
        self.features = c5  # the IAF encoder conditions its flow on these

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2 * x - 1)  # binary pixels rescaled to [-1, 1]

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gaussian_of(self.hidden(x))

    def gaussian_of(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and std from the conv features h (the IAF encoder also needs h itself)."""
        mean = self.mean(h)
        return mean, self._std_of(h, mean)


class LookupEncoder(GaussianEncoder):
    """Toy data: one Gaussian per bin of x (a table), 1-D latent. A learned std is a second table column."""

    def __init__(self, n_bins: int, latent_dim: int = 1, std="learned"):
        super().__init__()
        self.latent_dim = latent_dim
        self.std_kind = "learned"
        self.table = nn.Embedding(n_bins, (2 if std == "learned" else 1) * latent_dim)
        nn.init.normal_(self.table.weight, std=0.1)
        if std != "learned":
            self._init_std(std, n_bins)

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.std_kind == "learned":
            mean, raw = self.table(x).chunk(2, dim=-1)
            return mean, _std(raw)
        mean = self.table(x)
        return mean, self._std_of(None, mean)


class LinearEncoder(GaussianEncoder):
    """Linear Gaussian data: mean linear in x; by default one learned variance per latent shared by every x
    (the pPCA posterior's form), or a learned linear function of x."""

    def __init__(self, data_dim: int, latent_dim: int, std="shared"):
        super().__init__()
        self.latent_dim = latent_dim
        self.mean = nn.Linear(data_dim, latent_dim)
        self._init_std(std, data_dim)

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(x)
        return mean, self._std_of(x, mean)


class MLPEncoder(GaussianEncoder):
    """Low-dimensional data (the curve): a two-layer tanh MLP of x to the posterior's mean (and std)."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: int = 64, std="learned"):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(nn.Linear(data_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.mean = nn.Linear(hidden, latent_dim)
        self._init_std(std, hidden)

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        mean = self.mean(h)
        return mean, self._std_of(h, mean)


class IAFEncoder(nn.Module):
    """The paper's complex encoder: the conv Gaussian encoder followed by an inverse autoregressive flow.

    z₀ ~ N(μ(x), σ(x)), then 4 IAF steps z ← σ_t ⊙ z + (1 − σ_t) ⊙ m_t whose MADEs also see the conv features
    h(x) (Kingma et al. 2016). The density of its own sample is exact, log e(z|x) = log N(z₀; μ, σ) − Σ log-det,
    but e(z|x) at an arbitrary z would need the sequential inverse: the VAE therefore uses the Monte-Carlo rate
    (this is deliberately not a GaussianEncoder).
    """

    def __init__(self, latent_dim: int = 64, size: str = "paper", std="learned", *, steps: int | None = None,
                 hidden: int | None = None, n_layers: int | None = None):
        super().__init__()

        made = FLOW_SIZES[size]
        self.latent_dim = latent_dim
        self.base = ConvEncoder(latent_dim, size, std)
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
