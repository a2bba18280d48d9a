"""Plugins that break the contract, for tests/test_plugins.py, named by import path
("rdsweep_test_plugins:WRONG_SHAPE"): the test Ray cluster's nodes have this directory on PYTHONPATH."""
import numpy as np
from torch import nn

from rdsweep.data.datasets import DatasetEntry
from rdsweep.models.families import FAMILIES, Family
from rdsweep.models.vae import build_builtin


class WrongShape(nn.Module):
    """The linear family's VAE, whose rate comes out (B, 3) at once, or only after `after` training batches."""

    def __init__(self, model: nn.Module, after: int = 0):
        super().__init__()
        self.inner, self.latent_dim, self.after, self.batches = model, model.latent_dim, after, 0

    def forward(self, x, per_latent=False):
        rate, distortion = self.inner(x)
        self.batches += self.training
        if self.batches >= self.after:
            rate = rate[:, None].expand(-1, 3)
        return rate, distortion


def _wrong_shape(family, info, size, encoder_std=None):
    return WrongShape(build_builtin(FAMILIES["linear"], info, size))


def _late_wrong_shape(family, info, size, encoder_std=None):
    return WrongShape(build_builtin(FAMILIES["linear"], info, size), after=20)


WRONG_SHAPE = Family("wrong-shape", data_kind="lingauss", build=_wrong_shape)
LATE_WRONG_SHAPE = Family("late-wrong-shape", data_kind="lingauss", build=_late_wrong_shape)


def _ragged():
    rng = np.random.default_rng(0)
    return {"train": rng.normal(size=(50, 6)), "valid": rng.normal(size=(20, 6)), "test": rng.normal(size=(20, 5))}


RAGGED = DatasetEntry("ragged", kind="vectors", load=_ragged)
TOY_KIND = DatasetEntry("toy-kind", kind="toy", load=_ragged)   # a built-in synthetic kind: refused


class PlainForward(nn.Module):
    """The contract's minimum: forward(x) only (no per_latent keyword), and latent_dim."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner, self.latent_dim = model, model.latent_dim

    def forward(self, x):
        return self.inner(x)


PLAIN_FORWARD = Family("plain-forward", data_kind="lingauss",
                       build=lambda family, info, size, encoder_std=None: PlainForward(
                           build_builtin(FAMILIES["linear"], info, size)))
NOT_AN_ENTRY = {"name": "a dict, not an entry"}
