"""What a latent is worth (DESIGN §6): how much it knows about x, how many of its dimensions it uses, and how
much of a label a linear classifier can read off it.

Rate and distortion say what a model pays and how well it reconstructs; two models with the same R can still
hold different information about x in z (R = I(x; z) + KL(q(z) ‖ m(z)), q the aggregate posterior). The trainer's
final evaluation fits one `LabelProbe` per model (labelled data) and calls `latent_worth` on each split:

- `mutual_info`: I(x; z) under the split's examples, estimated with the aggregate posterior of those examples;
- `active_units`: dimensions u with Var_x E[z_u | x] > 0.01 (Burda et al. 2016);
- `probe_accuracy`: a logistic-regression probe on draws z ~ e(z|x), trained on the train split's labels.

`exact_mutual_info_toy` gives the exact I(x; z) of a toy-model encoder by quadrature, to check the estimator.
Nats everywhere.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch
from scipy.integrate import trapezoid
from scipy.special import logsumexp
from scipy.stats import norm

from rdsweep.models.encoders import LOG_2PI, GaussianEncoder
from rdsweep.uncertainty import LATENT_EXAMPLES

# The metrics draw their z-samples from their own generator state, fixed once for all, so two evaluations of
# the same weights agree exactly and the caller's random stream does not move (as `evaluate.validate`).
_NOISE = 0x1A7E47
MAX_EXAMPLES = LATENT_EXAMPLES   # default cap on the examples of a split (the first ones: splits are shuffled)
MAX_TRAIN_EXAMPLES = 10_000  # cap on the probe's training examples (the first ones of train_x)
MI_SAMPLES = 4               # z-draws per example for the mutual information estimate
MEAN_SAMPLES = 32            # z-draws per example for E[z|x] of an encoder that is not Gaussian (the IAF)
PROBE_SAMPLES = 4            # z-draws per example for the probe, on train (to fit) and on the split (to score)
ACTIVE_THRESHOLD = 0.01      # Burda et al. 2016's activity threshold on Var_x E[z_u | x]
_BATCH = 500                 # examples per encoder pass
_BLOCK = 2**22               # float64 elements per (z-rows × N) block of the MI estimate: 32 MiB


def latent_worth(model, x: torch.Tensor, *, labels: torch.Tensor | None = None,
                 train_x: torch.Tensor | None = None, train_labels: torch.Tensor | None = None,
                 probe: "LabelProbe | None" = None, max_examples: int | None = MAX_EXAMPLES,
                 max_train_examples: int | None = MAX_TRAIN_EXAMPLES) -> dict:
    """`{"mutual_info", "active_units", "probe_accuracy", "latent_examples"}` for the examples x of one split
    (latent_examples: how many of them the three are over, N below).

    All three use the first `max_examples` examples of x (default 1,000; the whole split when smaller or when
    None), and `labels` is cut the same way. The model is put in eval mode (and restored after), gradients are
    off, and the z-draws come from a fixed seed inside `torch.random.fork_rng`: the result is deterministic and
    the caller's random stream does not advance.

    mutual_info (nats, float; None for encoders that are not Gaussian): with z_i ~ e(z|x_i), 4 draws per i,
        Î = mean_i [log e(z_i|x_i) − log (1/N Σ_j e(z_i|x_j))]
    over the N examples. It is the mutual information between z and an example drawn uniformly from the N (up
    to the noise of the z-draws), hence bounded above by log N (log 1000 = 6.91 nats at the default cap); as an
    estimate of I(x; z) for the population of x it is a lower bound (InfoNCE with the optimal critic) that
    saturates at log N. A model whose rate is well above log N therefore reads as ≈ log N: read such values
    as "at least". Single terms can be negative, so for I ≈ 0 the estimate can fall a hair below 0. For the
    toy dataset, whose x takes 30 values, it converges to the exact I of the empirical bin frequencies (see
    `exact_mutual_info_toy`).
    It needs e(z|x_j) at every other example's z: closed form for a Gaussian encoder. The IAF encoder can only
    score its own samples; scoring an arbitrary z needs its flow's sequential inverse, 4 steps × 64 MADE passes
    per (z, x_j) pair, conditioned on x_j, for all N² pairs. Measured for N = 500 with the `small` size on two
    CPU cores (shared with a training job): 37 s per 5,000 pairs, about 30 minutes for the 250,000 (hoisting
    the MADEs' context term out of the 64 passes would save at most a quarter) — far over a budget of a
    minute, so it is None for IAF encoders.

    active_units (int): the number of latent dimensions u with Var_x E[z_u | x] > 0.01 over the examples.
        E[z|x] is the Gaussian mean; for other encoders it is the mean of 32 draws, and the variance is
        corrected for their noise (the sample mean's spread adds Var(z_u|x)/32, which alone exceeds 0.01 for a
        unit that ignores x and has unit posterior variance): Var_x z̄_u − mean_x s²_u / 32.

    probe_accuracy (float in [0, 1], or None without labels): `LabelProbe`'s accuracy on x's labels. The
        probe is `probe` when given (the trainer fits one per model and scores every split with it), else one
        fit here on train_x and train_labels, which are then needed whenever labels is given.
    """
    if labels is not None and probe is None:
        if train_x is None or train_labels is None:
            raise ValueError("probe_accuracy needs train_x and train_labels (or a fitted probe) when labels are given")
        probe = LabelProbe(model, train_x, train_labels, max_train_examples)
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"{len(labels)} labels for {len(x)} examples")
    x = x[:max_examples]
    encoder = model.encoder
    with _fixed_noise(model, x.device):
        if isinstance(encoder, GaussianEncoder):
            mean, std = _gaussian(encoder, x)
            mutual_info = _gaussian_mutual_info(mean, std, MI_SAMPLES)
            variance = mean.var(0)
        else:
            mean, spread = _sampled_mean(encoder, x, MEAN_SAMPLES)
            mutual_info = None
            variance = mean.var(0) - spread.mean(0) / MEAN_SAMPLES
        active_units = int((variance > ACTIVE_THRESHOLD).sum().item())
    accuracy = probe.accuracy(x, labels[:len(x)]) if labels is not None else None
    return {"mutual_info": mutual_info, "active_units": active_units, "probe_accuracy": accuracy,
            "latent_examples": len(x)}


class LabelProbe:
    """How much of a label a linear reader of the code gets: a standardized multinomial logistic regression fit
    on 4 draws z ~ e(z|x) of each of the first `max_train_examples` (default 10,000) training examples, and
    scored on 4 draws of each example of a split. Fit once per model; every split is scored with it.

    Draws, not posterior means: the means are a deterministic function of x whatever the noise around them,
    and standardized they read the digit off an encoder that transmits nothing (measured: a PixelCNN-decoder
    cell of the mnist5k study at R = 0.002 nats, I ≈ 0, no active unit, gave 0.892 on its means); on draws
    the probe is bound by what z carries (Fano: 90 % on ten digits needs I(z; y) ≥ 1.8 nats). Its accuracy is
    None when the training labels hold a single class (nothing to fit). Deterministic, and the caller's random
    stream does not advance (as `latent_worth`).
    """

    def __init__(self, model, train_x: torch.Tensor, train_labels: torch.Tensor,
                 max_train_examples: int | None = MAX_TRAIN_EXAMPLES):
        if len(train_labels) != len(train_x):
            raise ValueError(f"{len(train_labels)} labels for {len(train_x)} examples")
        self.model = model
        train_x, train_labels = train_x[:max_train_examples], train_labels[:max_train_examples]
        with _fixed_noise(model, train_x.device):
            z = _draws(model.encoder, train_x, PROBE_SAMPLES)
        self.classifier = _fit_probe(z, train_labels.repeat(PROBE_SAMPLES))

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float | None:
        if self.classifier is None:
            return None
        if len(labels) != len(x):
            raise ValueError(f"{len(labels)} labels for {len(x)} examples")
        with _fixed_noise(self.model, x.device):
            z = _draws(self.model.encoder, x, PROBE_SAMPLES)
        return float(self.classifier.score(z.cpu().numpy(), labels.repeat(PROBE_SAMPLES).cpu().numpy()))


@contextlib.contextmanager
def _fixed_noise(model, device: torch.device):
    """Eval mode, no gradients, and z-draws from a fixed seed inside `torch.random.fork_rng`: the same weights
    give the same numbers, and the caller's random stream and the model's mode are left as they were."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(_NOISE)
            yield
    finally:
        model.train(was_training)


def _gaussian(encoder: GaussianEncoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior means and stds (N, d) of the examples x, in float64."""
    parts = [encoder.gaussian(batch) for batch in x.split(_BATCH)]
    return (torch.cat([m for m, _ in parts]).double().flatten(1),
            torch.cat([s for _, s in parts]).double().flatten(1))


def _sampled_mean(encoder, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """E[z|x] estimated by the mean of k draws, and the draws' unbiased variance, each (N, d) in float64.

    One call per batch draws all k samples: the IAF runs its conv net once and only the flow k times."""
    means, spreads = [], []
    for batch in x.split(_BATCH):
        z, _ = encoder(batch, k)
        z = z.double()
        means.append(z.mean(0))
        spreads.append(z.var(0))
    return torch.cat(means), torch.cat(spreads)


def _draws(encoder, x: torch.Tensor, k: int) -> torch.Tensor:
    """k draws z ~ e(z|x) of every example, (k·N, d) in float64, draw-major (row i·N + n is x_n's i-th)."""
    z = torch.cat([encoder(batch, k)[0].double().flatten(2) for batch in x.split(_BATCH)], 1)
    return z.reshape(-1, z.shape[-1])


def _gaussian_mutual_info(mean: torch.Tensor, std: torch.Tensor, samples: int) -> float:
    """The aggregate-posterior estimate of I(x; z) (see `latent_worth`) for diagonal Gaussian posteriors.

    Every z is scored under all N posteriors: Σ_u (z_u − μ_ju)²/σ_ju² = z²·w_j − 2 z·(μ_j w_j) + μ_j²·w_j with
    w = 1/σ², two matrix products per block of rows (a broadcast (rows, N, d) difference is ~10× slower on a
    CPU), in float64 and with z and μ centred first, which keeps the cancellation error far below 1e-6 nats
    even at the encoders' smallest std. Blocks bound memory to _BLOCK elements whatever N. The own
    posterior's log-density comes from the same row as the log-sum-exp, so each term is ≤ log N exactly.
    """
    n, d = mean.shape
    z = (mean + std * torch.randn((samples, n, d), dtype=mean.dtype, device=mean.device)).reshape(-1, d)
    own = torch.arange(n, device=mean.device).repeat(samples)
    centre = mean.mean(0)
    z, mean = z - centre, mean - centre
    w = std ** -2
    a, b, c = w.T, (mean * w).T, (mean**2 * w).sum(-1)
    log_norm = -std.log().sum(-1) - 0.5 * d * LOG_2PI   # (N,)
    rows = max(1, _BLOCK // n)
    total = 0.0
    for start in range(0, len(z), rows):
        zb, ob = z[start:start + rows], own[start:start + rows]
        log_e = -0.5 * ((zb**2) @ a - 2 * (zb @ b) + c) + log_norm   # (rows, N): log e(z_row | x_j)
        log_own = log_e.gather(1, ob[:, None])[:, 0]
        total += (log_own - torch.logsumexp(log_e, 1)).sum().item()
    return total / len(z) + math.log(n)


def _fit_probe(z: torch.Tensor, labels: torch.Tensor):
    """The fitted standardized logistic regression of labels on z, or None for a single class."""
    # Imported here: scikit-learn takes about a second to import, and only labelled evaluations need it.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    y = labels.cpu().numpy()
    if len(np.unique(y)) < 2:
        return None
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=0))
    # One BLAS/OpenMP thread: the fit is small (N × d with d = 64), and on a busy CPU the default thread pools
    # spin against torch's and each other (measured on 2 shared cores: 1.5–10 s instead of 0.1 s per fit).
    with warnings.catch_warnings(), threadpool_limits(1):
        # lbfgs on standardized features converges well within max_iter in practice; if it ever stops short,
        # the probe is a slightly weaker classifier, still a valid lower bound on what a linear read-out gets,
        # and a warning in every trial's log would say nothing more.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return classifier.fit(z.cpu().numpy(), y)


# Per-bin quadrature grid in standard units u = (z − μ_x)/σ_x: ±10σ leaves out 1.5e-23 of e(z|x)'s mass, and
# 4,001 points put 400 per σ, whatever σ_x is (a fixed z grid would have to resolve the narrowest posterior
# across the widest one's range).
_GRID = np.linspace(-10.0, 10.0, 4001)


@torch.no_grad()
def exact_mutual_info_toy(encoder: GaussianEncoder, p_x) -> float:
    """The exact I(x; z) in nats of a 1-D Gaussian encoder over discrete x (the toy model's `LookupEncoder`,
    one N(μ_x, σ_x²) per bin), for x ~ p_x (e.g. `rdsweep.data.loaders.toy_distribution()["p_x"]`):

        I = Σ_x p(x) ∫ e(z|x) log(e(z|x) / q(z)) dz,   q(z) = Σ_x p(x) e(z|x),

    each bin's integral by the trapezoid rule on its own grid z = μ_x + σ_x u, u ∈ [−10, 10] (4,001 points),
    in float64. Bins with p(x) = 0 take no part.
    """
    p = np.asarray(p_x, dtype=np.float64)
    device = next(encoder.parameters()).device
    mean, std = encoder.gaussian(torch.arange(len(p), device=device))
    mean, std = mean.double().cpu().numpy(), std.double().cpu().numpy()
    if mean.shape != (len(p), 1):
        raise ValueError(f"exact_mutual_info_toy needs a 1-D latent per bin; got posterior means of shape "
                         f"{mean.shape} for {len(p)} bins")
    keep = p > 0
    p, mean, std = p[keep], mean[keep, 0], std[keep, 0]
    z = mean[:, None] + std[:, None] * _GRID                                       # (bins, grid)
    log_e = norm.logpdf(_GRID) - np.log(std)[:, None]                              # log e(z|x) on x's own grid
    log_q = logsumexp(norm.logpdf((z[..., None] - mean) / std) - np.log(std) + np.log(p), axis=-1)
    per_bin = trapezoid(norm.pdf(_GRID) * (log_e - log_q), _GRID, axis=1)      # KL(e(·|x) ‖ q)
    return float(p @ per_bin)
