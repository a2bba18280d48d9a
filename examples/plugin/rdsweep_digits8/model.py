"""The mlp-bernoulli family: a VAE assembled from rdsweep's parts. The encoder is a GaussianEncoder (so the
latent diagnostics, mutual_info included, come for free), the decoder a BernoulliImageDecoder (log_prob and
sample from its logits), and rdsweep's VAE gives the rate, distortion, IWAE bound, reconstructions and samples."""
from math import prod

from torch import nn

from rdsweep.models.decoders import BernoulliImageDecoder
from rdsweep.models.encoders import GaussianEncoder
from rdsweep.models.marginals import StandardNormal
from rdsweep.models.vae import VAE

LATENTS = 8
HIDDEN = {"small": 128, "paper": 512}


class MLPEncoder(GaussianEncoder):
    def __init__(self, shape, latent_dim: int, hidden: int, std="learned"):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(prod(shape), hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.mean = nn.Linear(hidden, latent_dim)
        self._init_std(std, hidden)

    def gaussian(self, x):
        h = self.net(x)
        mean = self.mean(h)
        return mean, self._std_of(h, mean)


class MLPDecoder(BernoulliImageDecoder):
    def __init__(self, shape, latent_dim: int, hidden: int):
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, prod(shape)))

    def logits(self, z):
        return self.net(z).view(-1, *self.shape)


def build(family, info: dict, size: str, encoder_std=None) -> VAE:
    """The contract's build: `info["shape"]` is one example's shape, read from the dataset."""
    shape = info["shape"]
    hidden = HIDDEN[size]
    encoder = MLPEncoder(shape, LATENTS, hidden)
    return VAE(encoder, MLPDecoder(shape, LATENTS, hidden), StandardNormal(LATENTS))
