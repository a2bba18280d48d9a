"""Evaluation of a trained model: mean rate, distortion, ELBO (and optionally IWAE) over a split, the
valid objective the stopping rule watches, plus sample and reconstruction grids."""
from __future__ import annotations

from pathlib import Path

import torch

from rdsweep.training import twostage
from rdsweep.training.objectives import rate_and_distortion
from rdsweep.uncertainty import mean_se


# Validation draws its z-samples from its own generator state, fixed per cell, so two evaluations of the
# same weights give the same objective: noise alone neither triggers nor prevents a stop.
_VALID_NOISE = 0x5EED


def batch_size_for(x: torch.Tensor) -> int:
    """Examples per forward pass when nothing is trained: 100 on a CPU, where a batch of 500 spills the
    caches (measured 1.7× slower for the deconv decoder, 2.4× for PixelCNN; docs/benchmarks.md), 500 on a GPU."""
    return 500 if x.device.type == "cuda" else 100


@torch.no_grad()
def evaluate(model, x: torch.Tensor, batch_size: int | None = None, samples: int = 1, iwae_k: int = 0) -> dict:
    """Mean R, D and ELBO = −(R + D) over the examples of x, averaged over `samples` z-draws per example, each
    with its standard error (`rate_se`, …); `iwae` is the mean K-sample importance-weighted bound on log p(x)
    when iwae_k > 0, else None. `examples` holds each example's R and D (float64 arrays, mean of its draws)
    for paired comparisons of two models on the same examples (rdsweep/uncertainty.py)."""
    model.eval()
    rates, distortions, iwae = [], [], 0.0
    for batch in x.split(batch_size or batch_size_for(x)):
        r_sum = d_sum = 0.0
        for _ in range(samples):
            r, d = model(batch)
            r_sum, d_sum = r_sum + r.double(), d_sum + d.double()
        rates.append(r_sum / samples)
        distortions.append(d_sum / samples)
        if iwae_k:
            # k samples of a batch go through the decoder at once: keep k × batch bounded.
            for part in batch.split(max(1, 2000 // iwae_k)):
                iwae += model.iwae(part, iwae_k).double().sum().item()
    rate, distortion = torch.cat(rates).cpu().numpy(), torch.cat(distortions).cpu().numpy()
    return {**split_summary(rate, distortion), "iwae": iwae / x.shape[0] if iwae_k else None,
            "examples": {"rate": rate, "distortion": distortion}}


def split_summary(rate, distortion) -> dict:
    """Means of per-example R and D (each already the mean of its z-draws) and their standard errors: the
    spread of the per-example values over √N, which counts the examples' differences and the draws' noise
    together (an example's mean of S draws varies by both)."""
    mean_rate, mean_distortion = float(rate.mean()), float(distortion.mean())
    return {"rate": mean_rate, "distortion": mean_distortion, "elbo": -(mean_rate + mean_distortion),
            "rate_se": mean_se(rate), "distortion_se": mean_se(distortion), "elbo_se": mean_se(rate + distortion),
            "examples_n": len(rate)}


@torch.no_grad()
def validate(model, x: torch.Tensor, objective, batch_size: int = 500) -> dict:
    """The cell's objective (an objectives.Objective, after any warm-up), R and D on x (the valid split),
    with the same z-draws every time, without advancing the training run's random stream. The objective
    acts on the split's mean rate (per latent where free bits needs it), as training does on a batch's;
    in stage 1 of two-stage it is the mean importance-sampled −log p(x). The batch stays 500 whatever the
    device: another batching draws other noise for small latents (the toy's), and so moves earlier runs'
    stopping decisions."""
    model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    rate = distortion = nll = 0.0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(objective.cell.seed + _VALID_NOISE)
        for batch in x.split(batch_size):
            r, d = rate_and_distortion(model, batch, objective.per_latent)
            rate, distortion = rate + r.double().sum(0), distortion + d.double().sum()
            if objective.stage == 1:
                nll -= twostage.log_likelihood(model, batch).double().sum()
    rate, distortion, nll = rate / x.shape[0], distortion / x.shape[0], nll / x.shape[0]
    value = nll if objective.stage == 1 else objective(rate[None], distortion[None])
    return {"objective": float(value), "rate": rate.sum().item(), "distortion": distortion.item()}


@torch.no_grad()
def save_image_grids(model, x: torch.Tensor, path: Path, n: int = 8) -> Path:
    """A PNG with three rows of n images: data, reconstructions, samples from m(z)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model.eval()
    data = x[:n]
    rows = {"data": data, "reconstruction": model.reconstruct(data), "sample": model.sample(n)}
    fig, axes = plt.subplots(3, n, figsize=(n, 3.3))
    for i, (label, images) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(images[j, 0].cpu(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
