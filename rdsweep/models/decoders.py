"""Decoders d(x|z). Interface: `log_prob(x, z) -> (B,)` in nats and `sample(z) -> x`."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rdsweep.models.encoders import GatedConv, gaussian_log_prob


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Π_i Bernoulli(x_i; sigmoid(logit_i)) per image, in nats."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)


class BernoulliImageDecoder(nn.Module):
    """Factorised Bernoulli pixels from logits(z); subclasses define `logits(z)`."""

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob(x, self.logits(z))

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(self.logits(z)))


DECONV_WIDTHS = {"paper": (64, 64, 64, 32, 32, 32), "small": (32, 32, 32, 16, 16, 16)}


class DeconvDecoder(BernoulliImageDecoder):
    """The paper's simple decoder: gated deconvs 1→7→14→28 and a linear 5×5 conv to Bernoulli logits."""

    def __init__(self, latent_dim: int = 64, size: str = "paper"):
        super().__init__()
        c1, c2, c3, c4, c5, c6 = DECONV_WIDTHS[size]
        # Stride-1 'same' deconvs are convolutions; Conv2d(padding='same') also handles the even kernel 4.
        self.net = nn.Sequential(
            GatedConv(latent_dim, c1, 7, 1, 0, transpose=True),
            GatedConv(c1, c2, 5), GatedConv(c2, c3, 5, 2, 2, transpose=True),
            GatedConv(c3, c4, 5), GatedConv(c4, c5, 5, 2, 2, transpose=True),
            GatedConv(c5, c6, 4), nn.Conv2d(c6, 1, 5, padding="same"),
        )

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class CategoricalDecoder(nn.Module):
    """Toy data: a categorical over the bins from a small MLP of z. Its output bias alone can represent
    any p(x), so it is powerful enough to model the data while ignoring z (the paper's §4.1 point)."""

    def __init__(self, n_bins: int, latent_dim: int = 1, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, n_bins))

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # take_along_dim broadcasts: x (1, B) against z (K, 1, d) scores every pair (two-stage's estimator)
        return torch.take_along_dim(torch.log_softmax(self.net(z), -1), x[..., None], -1).squeeze(-1)

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Categorical(logits=self.net(z)).sample()


class LinearGaussianDecoder(nn.Module):
    """Linear Gaussian data: d(x|z) = N(Wz + b, σ²I) with σ² fixed, the setting with a closed-form optimum."""

    def __init__(self, latent_dim: int, data_dim: int, sigma2: float):
        super().__init__()
        self.linear = nn.Linear(latent_dim, data_dim)
        self.sigma2 = sigma2

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = self.linear(z)
        if x.dim() == 3 and x.shape[0] == 1 and mean.shape[1] == 1:
            # two-stage's estimator scores k means (k, 1, D) against a batch (1, B, D): as ‖x‖² − 2x·μ + ‖μ‖²,
            # one matmul instead of a (k, B, D) tensor and its gradient (~20× faster on a CPU; float32
            # cancellation costs ~1e-6 of ‖x‖², far below the estimator's noise)
            sq = (x**2).sum(-1) - 2 * mean[:, 0] @ x[0].T + (mean**2).sum(-1)
        else:
            sq = ((x - mean) ** 2).sum(-1)
        return -0.5 * x.shape[-1] * math.log(2 * math.pi * self.sigma2) - sq / (2 * self.sigma2)

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        mean = self.linear(z)
        return mean + math.sqrt(self.sigma2) * torch.randn_like(mean)


class GaussianMLPDecoder(nn.Module):
    """Low-dimensional continuous data (the curve): d(x|z) = N(μ(z), diag σ(z)²), both from a tanh MLP of z.
    A learned σ lets it explain the data with z ignored (one broad Gaussian) as well as with z used."""

    def __init__(self, latent_dim: int, data_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 2 * data_dim))

    def _mean_std(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.net(z).chunk(2, dim=-1)
        return mean, F.softplus(raw) + 1e-3   # a floor keeps the density finite

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(x, *self._mean_std(z))

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._mean_std(z)
        return mean + std * torch.randn_like(mean)


class MaskedConv2d(nn.Conv2d):
    """A 'same' convolution that sees only pixels before the centre in raster order (type 'A'), or those and
    the centre itself (type 'B'). One image channel, so no masking across channels is needed."""

    def __init__(self, c_in: int, c_out: int, kernel: int, mask_type: str):
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        mask = torch.ones(kernel, kernel)
        centre = kernel // 2
        mask[centre, centre + (mask_type == "B"):] = 0  # the centre row: right of (or at) the centre
        mask[centre + 1:] = 0                            # every row below the centre
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class GatedResidualBlock(nn.Module):
    """x + 1×1(GLU(masked conv B(x) + V z)): the paper's gated unit with z added before the gate in every
    block, y = (a + V₁ z) ⊙ σ(b + V₂ z)."""

    def __init__(self, channels: int, kernel: int, latent_dim: int):
        super().__init__()
        self.conv = MaskedConv2d(channels, 2 * channels, kernel, "B")
        self.latent = nn.Linear(latent_dim, 2 * channels)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return x + self.out(F.glu(self.conv(x) + self.latent(z)[:, :, None, None], dim=1))


# (channels, gated blocks, kernel of the blocks). The paper's PixelCNN sizes are unknown (paper-notes §3.3):
# `paper` is a PixelCNN-sized net for GPUs (64 channels as in Barkhof & Aziz's port, 6 blocks, 5×5 masks:
# receptive field 15 rows up); `small` is what two CPU cores train at a few hundred images/s.
PIXELCNN_SIZES = {"paper": (64, 6, 5), "small": (32, 4, 3)}


class PixelCNNDecoder(nn.Module):
    """The paper's complex decoder: an autoregressive Bernoulli over pixels in raster order conditioned on z,

        d(x|z) = Π_i Bernoulli(x_i; sigmoid(logit_i(x_<i, z))),

    a masked 7×7 type-A conv on the image, gated residual blocks of masked type-B convs with z in each, and a
    1×1 conv head. log_prob is one parallel pass; sampling takes one pass per pixel (784).
    """

    def __init__(self, latent_dim: int = 64, size: str = "paper", *, channels: int | None = None,
                 blocks: int | None = None, kernel: int | None = None):
        super().__init__()
        default = PIXELCNN_SIZES[size]
        channels, blocks, kernel = channels or default[0], blocks or default[1], kernel or default[2]
        self.input = MaskedConv2d(1, channels, 7, "A")
        self.blocks = nn.ModuleList(GatedResidualBlock(channels, kernel, latent_dim) for _ in range(blocks))
        self.head = nn.Sequential(nn.ELU(), nn.Conv2d(channels, channels, 1), nn.ELU(), nn.Conv2d(channels, 1, 1))
        # How many rows above it a pixel's logit can see: 3 for the 7×7 input conv, kernel // 2 per block.
        self.rows_seen = 3 + blocks * (kernel // 2)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.input(2 * x - 1)  # binary pixels rescaled to [-1, 1]
        for block in self.blocks:
            h = block(h, z)
        return self.head(h)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob(x, self.logits(x, z))

    def row_logits(self, x: torch.Tensor, z: torch.Tensor, row: int) -> torch.Tensor:
        """The logits of one row, (B, 1, 28), computed on the band of rows it can see rather than the whole
        image: the masks ignore the rows below, and the zero padding above the band is outside every visible
        pixel's receptive field, so the result equals logits(x, z)[:, :, row] at a fraction of the cost."""
        return self.logits(x[:, :, max(0, row - self.rows_seen):row + 1], z)[:, :, -1]

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        x = z.new_zeros(z.shape[0], 1, 28, 28)
        for row in range(28):
            for col in range(28):
                x[:, :, row, col] = torch.bernoulli(torch.sigmoid(self.row_logits(x, z, row)[:, :, col]))
        return x
