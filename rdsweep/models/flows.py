"""Autoregressive flows: MADE (Germain et al. 2015) and the affine autoregressive steps built on it.

The same step serves both flows of the image families:
- the IAF encoder (Kingma et al. 2016) runs it noise → sample, z ← σ ⊙ z + (1 − σ) ⊙ m, one parallel pass per
  step, so log e(z|x) of its own sample is exact and cheap;
- the MAF marginal (Papamakarios et al. 2017) runs it data → noise, u = exp(a) ⊙ z + b, one parallel pass per
  step for log m(z), and inverts it dimension by dimension to sample.
Between steps the autoregressive order is reversed, so every dimension gets to depend on every other one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Kingma et al. 2016 start the IAF gates "sufficiently positive, such as +1 or +2" so that every step starts
# close to the identity (σ = sigmoid(s + 2) ≈ 0.88) and gradients pass through the stack.
FORGET_BIAS = 2.0
# The MAF's log-scales are softly bounded to ±MAX_LOG_SCALE per step: an unbounded exp lets one bad batch
# blow the density up, and e^±5 per step and dimension is far beyond what a VAE's aggregate posterior needs.
MAX_LOG_SCALE = 5.0

# MADE sizes of the IAF encoder and the MAF marginal: `paper` follows the Echo re-implementation (4 steps of
# MADEs with three hidden layers of 640, paper-notes §3.4; the paper's own numbers are unknown), `small`
# keeps the flows a minor cost next to the conv nets on a CPU.
FLOW_SIZES = {"paper": {"hidden": 640, "n_layers": 3}, "small": {"hidden": 192, "n_layers": 2}}
FLOW_STEPS = 4


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        # Not persistent: the mask is rebuilt from the constructor arguments, so checkpoints hold weights only.
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """An MLP whose outputs for dimension i depend only on the inputs before i in the autoregressive order.

    Each unit carries a degree: input i has degree (its position in the order) 1..dim, hidden units have degrees
    1..dim−1 (assigned cyclically, so every degree is present when hidden ≥ dim − 1), and a weight is kept only
    from degree ≤ to degree (hidden) or degree < to degree (output). An optional context vector h (the
    encoder's features, for the IAF) is added unmasked to the first hidden layer: it may influence any output.

    Returns `n_params` tensors of the input's shape (e.g. shift and scale of an affine step).
    """

    def __init__(self, dim: int, hidden: int, context_dim: int = 0, n_layers: int = 2, n_params: int = 2,
                 reverse: bool = False):
        super().__init__()
        self.dim, self.n_params = dim, n_params
        order = torch.arange(1, dim + 1)
        in_degree = order.flip(0) if reverse else order
        hidden_degree = torch.arange(hidden) % max(dim - 1, 1) + 1
        layers, previous = [], in_degree
        for _ in range(n_layers):
            layers.append(MaskedLinear(len(previous), hidden, hidden_degree[:, None] >= previous[None, :]))
            previous = hidden_degree
        self.hidden_layers = nn.ModuleList(layers)
        out_mask = (in_degree[:, None] > hidden_degree[None, :]).repeat(n_params, 1)
        self.output = MaskedLinear(hidden, n_params * dim, out_mask)
        self.context = nn.Linear(context_dim, hidden, bias=False) if context_dim else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        h = self.hidden_layers[0](x)
        if self.context is not None:
            h = h + self.context(context)
        h = F.elu(h)
        for layer in self.hidden_layers[1:]:
            h = F.elu(layer(h))
        out = self.output(h)
        return out.view(*out.shape[:-1], self.n_params, self.dim).unbind(-2)


class AffineAutoregressive(nn.Module):
    """One flow step y = scale(x) ⊙ x + shift(x), with scale_i and shift_i functions of x before i (a MADE).

    `gated=True` is the IAF's parameterisation, scale = σ = sigmoid(s + FORGET_BIAS), shift = (1 − σ) ⊙ m:
    a convex mix of x and m, numerically stable. `gated=False` is the MAF's, log-scale a (softly bounded),
    shift b. `forward` is one parallel pass returning (y, log|det ∂y/∂x|); `inverse` needs one pass per
    dimension because x_i is only known once x before i is.
    """

    def __init__(self, dim: int, hidden: int, context_dim: int = 0, n_layers: int = 2, reverse: bool = False,
                 gated: bool = False):
        super().__init__()
        self.made = MADE(dim, hidden, context_dim, n_layers, n_params=2, reverse=reverse)
        self.gated = gated

    def _scale_shift(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.made(x, context)
        if self.gated:
            log_scale = F.logsigmoid(b + FORGET_BIAS)
            return log_scale, (1 - log_scale.exp()) * a
        return MAX_LOG_SCALE * torch.tanh(a / MAX_LOG_SCALE), b

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = self._scale_shift(x, context)
        return log_scale.exp() * x + shift, log_scale.sum(-1)

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # After pass k the first k dimensions in the order are exact, so dim passes recover all of x.
        x = torch.zeros_like(y)
        for _ in range(self.made.dim):
            log_scale, shift = self._scale_shift(x, context)
            x = (y - shift) * torch.exp(-log_scale)
        return x


class AutoregressiveFlow(nn.Module):
    """A stack of affine autoregressive steps, the order reversed between consecutive steps."""

    def __init__(self, dim: int, steps: int, hidden: int, n_layers: int, context_dim: int = 0,
                 gated: bool = False):
        super().__init__()
        self.steps = nn.ModuleList(
            AffineAutoregressive(dim, hidden, context_dim, n_layers, reverse=t % 2 == 1, gated=gated)
            for t in range(steps)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, log|det ∂y/∂x|) with log-det of shape x.shape[:-1]."""
        log_det = x.new_zeros(x.shape[:-1])
        for step in self.steps:
            x, step_log_det = step(x, context)
            log_det = log_det + step_log_det
        return x, log_det

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for step in reversed(self.steps):
            y = step.inverse(y, context)
        return y

