"""Training objectives: what a trial minimises, as a function of the batch's rate and distortion.

    beta                  D + β·R              β = 1 is the negative ELBO; β < 1 favours rate, β > 1 distortion
    target-rate           D + |σ − R|          lands the model at rate σ (the paper's fix for decoders that ignore z)
    squared-target-rate   D + (σ − R)²         the same aim with a smooth pull (the target-KL regulariser)
    free-bits             D + β·Σ_u max(λ, R_u)  rate below λ nats per latent costs nothing (Kingma et al. 2016)
    warmup                D + β_t·R            β_t ramps linearly from β/W to β over the first W epochs
    two-stage             −log p̂(x), then D + β·R   the generative model alone, then the encoder alone
                                                     (LiBI, rdsweep/twostage.py)

Free bits acts on each latent's rate R_u where the rate factorises over latents (a Gaussian encoder against
N(0, I)); for the other families it acts on the total, as max(d·λ, R) with d latents, so λ means the same
budget per latent for every family. During a warm-up the valid objective is judged at the full β, and the
stopping rule waits for the ramp to end (rdsweep/stopping.py).

`rate` is per example, (B,) or (B, d) when the model gives it per latent; the penalties act on its batch mean.
"""
from __future__ import annotations

import torch

from rdsweep import twostage
from rdsweep.cells import Cell


class Objective:
    """The cell's objective for a model with `latents` latent dimensions."""

    def __init__(self, cell: Cell, latents: int):
        self.cell, self.latents = cell, latents
        self.per_latent = cell.objective == "free-bits"   # the model then gives each latent's rate, where it can
        self.stage = 1 if cell.objective == "two-stage" else None   # two-stage: the trainer moves it on to 2

    def loss(self, model, x: torch.Tensor, epoch: int | None = None) -> tuple[torch.Tensor, ...]:
        """(objective, rate, distortion) on a batch x: the rate and distortion per example, for the epoch's means.
        Stage 1 of two-stage fits the generative model by its log-likelihood, the encoder's R and D only watched."""
        if self.stage == 1:
            with torch.no_grad():
                rate, distortion = model(x)
            return -twostage.log_likelihood(model, x).mean(), rate, distortion
        rate, distortion = model(x, per_latent=self.per_latent)
        return self(rate, distortion, epoch), rate, distortion

    def parameters(self, model) -> list[torch.nn.Parameter]:
        """The parameters the objective trains now, for the optimiser; the rest of the model is frozen."""
        model.requires_grad_(False)
        for module in twostage.trained_modules(model, self.stage):
            module.requires_grad_(True)
        return [p for p in model.parameters() if p.requires_grad]

    def __call__(self, rate: torch.Tensor, distortion: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        """The objective on a batch; `epoch` (1-based) sets a warm-up's β, None means after the ramp."""
        cell = self.cell
        per_latent = rate.mean(0)                     # (d,) or a scalar
        r, d = per_latent.sum(), distortion.mean()
        if cell.objective in ("beta", "two-stage"):       # two-stage: its second stage's objective
            return d + cell.beta * r
        if cell.objective == "target-rate":
            return d + (cell.target_rate - r).abs()
        if cell.objective == "squared-target-rate":
            return d + (cell.target_rate - r) ** 2
        if cell.objective == "free-bits":
            if rate.dim() > 1:
                return d + cell.beta * per_latent.clamp(min=cell.free_bits).sum()
            return d + cell.beta * r.clamp(min=cell.free_bits * self.latents)
        if cell.objective == "warmup":
            return d + warmup_beta(cell, epoch) * r
        raise ValueError(f"unknown objective {cell.objective!r}")


def warmup_beta(cell: Cell, epoch: int | None) -> float:
    """β in `epoch` of a warm-up: β·e/W for e < W, then β."""
    if epoch is None or epoch >= cell.warmup_epochs:
        return cell.beta
    return cell.beta * epoch / cell.warmup_epochs
