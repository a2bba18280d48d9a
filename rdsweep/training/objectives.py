"""Training objectives: what a trial minimises, as a function of the batch's rate and distortion; the registry
of them (rdsweep.registry), and the built-in entries.

    beta                  D + β·R              β = 1 is the negative ELBO; β < 1 favours rate, β > 1 distortion
    target-rate           D + |σ − R|          lands the model at rate σ (the paper's fix for decoders that ignore z)
    squared-target-rate   D + (σ − R)²         the same aim with a smooth pull (the target-KL regulariser)
    free-bits             D + β·Σ_u max(λ, R_u)  rate below λ nats per latent costs nothing (Kingma et al. 2016)
    warmup                D + β_t·R            β_t ramps linearly from β/W to β over the first W epochs
    two-stage             −log p̂(x), then D + β·R   the generative model alone, then the encoder alone
                                                     (LiBI, rdsweep/training/twostage.py)

Free bits acts on each latent's rate R_u where the rate factorises over latents (a Gaussian encoder against
N(0, I)); for the other families it acts on the total, as max(d·λ, R) with d latents, so λ means the same
budget per latent for every family. During a warm-up the valid objective is judged at the full β, and the
stopping rule waits for the ramp to end (rdsweep/training/stopping.py).

An entry's `loss(rate, distortion, cell, epoch, latents)` gets the rate per example, (B,) or (B, d) when the
entry asks for it per latent and the model gives it, and the distortion (B,); it returns the batch's objective
(a scalar tensor). The penalties act on batch means. This module imports no torch (cells and specs read the
registry); the losses use tensor methods only.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from rdsweep.errors import UserError
from rdsweep.registry import BUILTIN, PluginError, Registry, Source, function, require_function, require_text

if TYPE_CHECKING:
    import torch

    from rdsweep.cells import Cell

KNOBS = {"beta": "β", "target_rate": "σ"}


@dataclass(frozen=True)
class ObjectiveEntry:
    name: str
    knob: str = "beta"          # the cell field of its main parameter: "beta" (β > 0) or "target_rate" (σ ≥ 0, nats)
    loss: Callable | str | None = None   # loss(rate, distortion, cell, epoch, latents) -> scalar tensor
    formula: str = ""           # what it minimises, for --help and `rdsweep objectives`
    label: str = ""             # its legend entry in frontier plots
    marker: str = "X"           # its matplotlib marker in frontier plots
    tag: str | None = None      # added to a point's setting label ("σ=5 sq"); None: the name ("" for none)
    # Built-in only: the cell field of a second parameter, what a spec block's `values` set, per-latent rates,
    # stages (two-stage), and whether it aims at the β-VAE optimum at its β (a dataset's exact truth applies).
    extra: str | None = None
    values: str | None = None   # None: the knob
    per_latent: bool = False
    stages: int = 1
    aims_at_beta_optimum: bool = False
    source: Source = field(default=BUILTIN, compare=False)

    @property
    def setting_tag(self) -> str:
        return self.name if self.tag is None else self.tag

    @property
    def values_field(self) -> str:
        return self.values or self.knob

    def check(self, where: str) -> None:
        require_text(where, "name", self.name)
        if self.knob not in KNOBS:
            raise PluginError(f"{where}: knob must be 'beta' or 'target_rate', got {self.knob!r}")
        require_function(where, "loss", self.loss, "(rate, distortion, cell, epoch, latents) -> tensor")
        if not self.source.builtin and (self.extra or self.values or self.per_latent or self.stages != 1
                                        or self.aims_at_beta_optimum):
            raise PluginError(f"{where}: extra, values, per_latent, stages and aims_at_beta_optimum are for built-in "
                              f"objectives only")
        if not self.source.builtin:
            from matplotlib.markers import MarkerStyle   # only a plugin's: the built-ins' are known good
            try:
                MarkerStyle(self.marker)
            except (TypeError, ValueError):
                raise PluginError(f"{where}: marker {self.marker!r} is not a matplotlib marker") from None

    def loss_function(self) -> Callable:
        return function(self.loss, f"objective {self.name!r}")


def _beta(rate, distortion, cell, epoch, latents):
    return distortion.mean() + cell.beta * rate.mean(0).sum()


def _target_rate(rate, distortion, cell, epoch, latents):
    return distortion.mean() + (cell.target_rate - rate.mean(0).sum()).abs()


def _squared_target_rate(rate, distortion, cell, epoch, latents):
    return distortion.mean() + (cell.target_rate - rate.mean(0).sum()) ** 2


def _free_bits(rate, distortion, cell, epoch, latents):
    per_latent = rate.mean(0)
    if rate.dim() > 1:
        return distortion.mean() + cell.beta * per_latent.clamp(min=cell.free_bits).sum()
    return distortion.mean() + cell.beta * per_latent.clamp(min=cell.free_bits * latents)


def _warmup(rate, distortion, cell, epoch, latents):
    return distortion.mean() + warmup_beta(cell, epoch) * rate.mean(0).sum()


OBJECTIVES: Registry[ObjectiveEntry] = Registry("objective", "rdsweep.objectives", ObjectiveEntry)
for _entry in [
    ObjectiveEntry("beta", "beta", _beta, "D + βR", "β-VAE", "o", tag="", aims_at_beta_optimum=True),
    ObjectiveEntry("target-rate", "target_rate", _target_rate, "D + |σ − R|", "target rate |σ − R|", "^", tag=""),
    ObjectiveEntry("squared-target-rate", "target_rate", _squared_target_rate, "D + (σ − R)²",
                   "target rate (σ − R)²", "v", tag="sq"),
    ObjectiveEntry("free-bits", "beta", _free_bits, "D + β Σ max(λ, R per latent)", "free bits λ", "s", tag="",
                   extra="free_bits", values="free_bits", per_latent=True),
    ObjectiveEntry("warmup", "beta", _warmup, "D + βR, β ramped up over --warmup-epochs", "KL warm-up (W epochs)", "D",
                   tag="", extra="warmup_epochs", aims_at_beta_optimum=True),
    ObjectiveEntry("two-stage", "beta", _beta, "decoder and marginal by log p(x), then the encoder by D + βR "
                   "(low-dimensional latents)", "two-stage (LiBI)", "P", tag="2-stage", stages=2),
]:
    OBJECTIVES.add(_entry)


def get_objective(name: str) -> ObjectiveEntry:
    """An objective by name or import path; a UserError naming the valid choices otherwise."""
    entry = OBJECTIVES.get(name) if isinstance(name, str) else None
    if entry is None:
        raise UserError(f"unknown objective {name!r}: use one of {', '.join(OBJECTIVES)} "
                        f"or an import path package.module:OBJECTIVE")
    return entry


class Objective:
    """The cell's objective for a model with `latents` latent dimensions."""

    def __init__(self, cell: Cell, latents: int):
        self.cell, self.latents = cell, latents
        self.entry = get_objective(cell.objective)
        self._loss = self.entry.loss_function()
        self.per_latent = self.entry.per_latent   # the model then gives each latent's rate, where it can
        self.stage = 1 if self.entry.stages == 2 else None   # two-stage: the trainer moves it on to 2

    def loss(self, model, x: torch.Tensor, epoch: int | None = None) -> tuple[torch.Tensor, ...]:
        """(objective, rate, distortion) on a batch x: the rate and distortion per example, for the epoch's means.
        Stage 1 of two-stage fits the generative model by its log-likelihood, the encoder's R and D only watched."""
        if self.stage == 1:
            import torch

            from rdsweep.training import twostage
            with torch.no_grad():
                rate, distortion = model(x)
            return -twostage.log_likelihood(model, x).mean(), rate, distortion
        # only free bits asks a model for each latent's rate (a plugin's forward need not take the keyword)
        rate, distortion = rate_and_distortion(model, x, self.per_latent)
        if rate.shape[:1] != distortion.shape or distortion.shape != x.shape[:1] or rate.dim() > 1 + self.per_latent:
            # the model contract (rdsweep/training/contract.py), checked on every batch: shapes only, nothing waits
            raise PluginError(f"family {self.cell.family!r}: forward(x) returned rate of shape {tuple(rate.shape)} "
                              f"and distortion of shape {tuple(distortion.shape)} for a batch of {len(x)}; the "
                              f"contract is ({len(x)},) each, nats per example")
        return self(rate, distortion, epoch), rate, distortion

    def parameters(self, model) -> list[torch.nn.Parameter]:
        """The parameters the objective trains now, for the optimiser; the rest of the model is frozen."""
        from rdsweep.training import twostage
        model.requires_grad_(False)
        for module in twostage.trained_modules(model, self.stage):
            module.requires_grad_(True)
        return [p for p in model.parameters() if p.requires_grad]

    def __call__(self, rate: torch.Tensor, distortion: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        """The objective on a batch; `epoch` (1-based) sets a warm-up's β, None means after the ramp."""
        return self._loss(rate, distortion, self.cell, epoch, self.latents)


def rate_and_distortion(model, x, per_latent: bool = False):
    """model(x), asking for each latent's rate when `per_latent` and the model's forward takes the keyword (the
    contract requires only forward(x); free bits then acts on the total rate)."""
    if per_latent and _takes_per_latent(type(model)):
        return model(x, per_latent=True)
    return model(x)


@cache
def _takes_per_latent(model_type: type) -> bool:
    parameters = inspect.signature(model_type.forward).parameters.values()
    return any(p.name == "per_latent" or p.kind is p.VAR_KEYWORD for p in parameters)


def warmup_beta(cell: Cell, epoch: int | None) -> float:
    """β in `epoch` of a warm-up: β·e/W for e < W, then β."""
    if epoch is None or epoch >= cell.warmup_epochs:
        return cell.beta
    return cell.beta * epoch / cell.warmup_epochs
