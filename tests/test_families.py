"""Every one of the 12 image families trains one small epoch on real digits through the same trainer."""
import math

import pytest
from conftest import idx_bytes, idx_label_bytes

from rdsweep.cells import Cell
from rdsweep.data.loaders import load_dataset
from rdsweep.models.families import FAMILIES, IMAGE_FAMILIES, get_family
from rdsweep.training.trainer import train


def test_registry_has_the_papers_twelve_codes_and_readable_names():
    codes = sorted(f.code for f in IMAGE_FAMILIES)
    assert codes == sorted(e + d + m for e in "-+" for d in "-+" for m in "-+v")
    for family in IMAGE_FAMILIES:
        assert get_family(family.code) is get_family(family.name) is FAMILIES[family.name]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The first 1,200 train and 200 test digits of mnist5k, with their labels, as IDX files: real digits
    at a quarter of a mnist5k epoch's cost (idx:DIR keeps the last sixth of train, 200, as valid)."""
    root = tmp_path_factory.mktemp("digits")
    mnist = load_dataset("mnist5k")
    for part, split, n in (("train", "train", 1200), ("t10k", "test", 200)):
        images = mnist.split(split)[:n].reshape(n, 784).numpy() * 255   # binary: intensity 255 stays 1
        (root / f"{part}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (root / f"{part}-labels-idx1-ubyte").write_bytes(idx_label_bytes(mnist.labels[split][:n].numpy()))
    return f"idx:{root}"


@pytest.mark.parametrize("family", [f.code for f in IMAGE_FAMILIES])
def test_family_trains_one_small_epoch_on_real_digits(family, digits, tmp_path, monkeypatch):
    monkeypatch.setenv("RDSWEEP_CACHE", str(tmp_path))
    # 40 Adam steps of 25 digits, as many steps as a mnist5k epoch of batch 100
    result = train(Cell(dataset=digits, family=family, epochs=1, size="small", lr=1e-3, batch_size=25), threads=1)
    assert result.status == "unconverged"   # one epoch is the cap: evaluated and kept, but flagged
    for split, m in result.splits.items():
        # R is a single-sample Monte-Carlo mean for flows and VampPriors: non-negative up to its noise.
        assert math.isfinite(m.rate) and m.rate >= -0.05, (split, m)
        assert math.isfinite(m.distortion) and m.distortion > 0, (split, m)
        assert m.probe_accuracy is not None          # the labels came along
    # An untrained decoder sits near 784·ln 2 ≈ 543 nats; every family must have learned something.
    assert result.splits["test"].distortion < 400
