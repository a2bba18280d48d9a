"""Training objectives: what a trial minimises, as a function of the batch's rate and distortion.

    beta          D + β·R          β = 1 is the negative ELBO; β < 1 favours rate, β > 1 favours distortion
    target-rate   D + |σ − R|      lands the model at rate σ (the paper's fix for decoders that ignore z)

R and D are batch means in nats per example; the target-rate penalty acts on the batch-mean rate.
"""
from __future__ import annotations

import torch

from rdsweep.cells import Cell


def loss(cell: Cell, rate: torch.Tensor, distortion: torch.Tensor) -> torch.Tensor:
    r, d = rate.mean(), distortion.mean()
    if cell.objective == "beta":
        return d + cell.beta * r
    if cell.objective == "target-rate":
        return d + (cell.target_rate - r).abs()
    raise ValueError(f"unknown objective {cell.objective!r}")
