"""The digits8 dataset: scikit-learn's 8×8 digits (they ship inside scikit-learn: no download), statically
binarized once with a fixed seed, shuffled and split 1297/250/250. Deterministic: the same bits every load."""
import numpy as np
from sklearn.datasets import load_digits

SEED = 0
SIZES = (1297, 250, 250)


def load() -> dict:
    """The contract's load: train, valid and test arrays (examples, 1, 8, 8) of 0/1, and their digit labels."""
    digits = load_digits()
    rng = np.random.default_rng(SEED)
    intensities = digits.images / 16.0                       # 0..16 → [0, 1]
    bits = (rng.random(intensities.shape) < intensities).astype(np.float32)[:, None]
    order = rng.permutation(len(bits))
    cut = np.cumsum(SIZES[:2])
    x = dict(zip(("train", "valid", "test"), np.split(bits[order], cut)))
    y = dict(zip(("train", "valid", "test"), np.split(digits.target[order], cut)))
    return {**x, "labels": y, "info": {"source": "sklearn.datasets.load_digits", "seed": SEED}}
