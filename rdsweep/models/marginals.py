"""Marginals (priors) m(z). Interface: `log_prob(z) -> z.shape[:-1]` in nats and `sample(n) -> (n, d)`."""
from __future__ import annotations

import math

import torch
from torch import nn

from rdsweep.models.encoders import gaussian_log_prob
from rdsweep.models.flows import FLOW_SIZES, FLOW_STEPS, AutoregressiveFlow


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)


class StandardNormal(nn.Module):
    """m(z) = N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_zero", torch.zeros(()))  # follows the model's device and dtype

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self._zero.device, dtype=self._zero.dtype)


class MixtureOfGaussians(nn.Module):
    """A learned mixture of diagonal Gaussians (the toy model's marginal)."""

    def __init__(self, latent_dim: int, components: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.linspace(-2, 2, components)[:, None].repeat(1, latent_dim))
        self.log_stds = nn.Parameter(torch.zeros(components, latent_dim))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        per_component = gaussian_log_prob(z[..., None, :], self.means, self.log_stds.exp())
        return torch.logsumexp(per_component + torch.log_softmax(self.logits, 0), -1)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        k = torch.distributions.Categorical(logits=self.logits).sample((n,))
        return self.means[k] + self.log_stds.exp()[k] * torch.randn(n, self.means.shape[1], device=k.device)


class FlowMarginal(nn.Module):
    """The paper's complex marginal: a 4-step MAF of MADEs over z with base N(0, I) (Papamakarios et al. 2017).

    log m(z) = log N(u; 0, I) + log|det ∂u/∂z| with u = flow(z): exact, one parallel pass per step. Sampling
    inverts each step one dimension at a time (4 × 64 passes).
    """

    def __init__(self, latent_dim: int = 64, size: str = "paper", *, steps: int | None = None,
                 hidden: int | None = None, n_layers: int | None = None):
        super().__init__()

        made = FLOW_SIZES[size]
        self.base = StandardNormal(latent_dim)
        self.flow = AutoregressiveFlow(latent_dim, steps or FLOW_STEPS, hidden or made["hidden"],
                                       n_layers or made["n_layers"])

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        u, log_det = self.flow(z)
        return self.base.log_prob(u) + log_det

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.flow.inverse(self.base.sample(n))


# Pseudo-inputs: the VampPrior paper's 500 at `paper` size; 50 keeps their pass through the encoder (every
# batch) at half a batch's cost for `small`.
VAMP_COMPONENTS = {"paper": 500, "small": 50}
# Rows of z scored at once: bounds the (rows, K, d) intermediate when many samples are scored (IWAE).
_VAMP_CHUNK = 1024


class VampPrior(nn.Module):
    """m(z) = (1/K) Σ_k e(z|u_k): the encoder's posteriors at K learned pseudo-inputs (Tomczak & Welling 2018).

    Each component is the encoder's Gaussian, `encoder.gaussian(u_k)`. For the IAF encoder that is its base
    posterior N(μ(u_k), σ(u_k)) before the flow: scoring the full IAF posterior at an arbitrary z needs its
    sequential inverse (64 passes per step) for each of the K components, too slow to train with. m(z) is
    still an exact mixture density, so the rate log e(z|x) − log m(z) stays an unbiased estimate.

    The pseudo-inputs are images u_k = sigmoid(w_k) ∈ (0, 1)ᴰ (the encoder expects pixels in [0, 1]), w_k
    initialised N(0, 1) so that the components start distinct.
    """

    def __init__(self, encoder: nn.Module, size: str = "paper", *, components: int | None = None,
                 image_shape: tuple[int, ...] = (1, 28, 28)):
        super().__init__()
        # The encoder belongs to the VAE; holding it outside nn.Module's registry keeps its parameters out of
        # this module's state_dict and parameters(), so the VAE lists each of them once.
        object.__setattr__(self, "encoder", encoder)
        self.pseudo_logits = nn.Parameter(torch.randn(components or VAMP_COMPONENTS[size], *image_shape))

    def extra_repr(self) -> str:
        return f"components={self.pseudo_logits.shape[0]}, encoder=the VAE's (shared, not a submodule)"

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (K, d) of the K mixture components."""
        return self.encoder.gaussian(torch.sigmoid(self.pseudo_logits))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self.components()
        rows = z.reshape(-1, z.shape[-1])
        per_component = torch.cat([gaussian_log_prob(chunk[:, None, :], mean, std)
                                   for chunk in rows.split(_VAMP_CHUNK)])
        return (torch.logsumexp(per_component, -1) - math.log(mean.shape[0])).view(z.shape[:-1])

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        mean, std = self.components()
        k = torch.randint(mean.shape[0], (n,), device=mean.device)
        return mean[k] + std[k] * torch.randn_like(mean[k])
