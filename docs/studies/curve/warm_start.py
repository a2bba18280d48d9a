"""Is the ELBO's optimum biased on the curve? Start at the true generative model and see whether training moves it.

From a random start both joint and two-stage training end in the same local optimum (docs/twostage.md), so
the sweep cannot tell the objective's preference from the optimiser's. This study removes the optimiser's
part: the decoder starts as the true model (fit by regression on the generator's own (z*, x) pairs, which only
a synthetic dataset offers), then
    1. stage 2 of two-stage: the encoder alone learns the frozen true model's posteriors;
    2. joint: from there, encoder, decoder and marginal all train on the ELBO (β = 1).
If the ELBO prefers a worse generative model whose posteriors are easier (LiBI), step 2 raises the ELBO while
the generative model's log p(x) falls. log p(x) is estimated by importance sampling from the prior with
16,384 samples (rdsweep.training.twostage.log_likelihood), independent of any encoder.

    python docs/studies/curve/warm_start.py OUT.pt     # about 10 minutes on one core
"""
import json
import sys

import numpy as np
import torch
from scipy.stats import norm

from rdsweep.data.loaders import curve_point, load_dataset
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.training import twostage

torch.manual_seed(0)
torch.set_num_threads(1)
data = load_dataset("curve")
model = build_model(get_family("curve"), data.info, "small")
log = []


def measure(phase: str, epoch: int) -> None:
    model.eval()
    with torch.no_grad():
        rate, distortion = model(data.valid)
        log_px = torch.cat([twostage.log_likelihood(model, b, 16_384) for b in data.valid.split(500)])
    row = {"phase": phase, "epoch": epoch, "valid_rate": rate.mean().item(), "valid_distortion": distortion.mean().item(),
           "valid_elbo": -(rate + distortion).mean().item(), "valid_log_px": log_px.mean().item()}
    log.append(row)
    print(json.dumps(row), flush=True)


def epochs(parameters, n: int, phase: str, loss_of) -> None:
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    order = torch.Generator().manual_seed(1)
    for epoch in range(1, n + 1):
        model.train()
        for idx in torch.randperm(len(data.train), generator=order).split(100):
            loss = loss_of(data.train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 5 == 0:
            measure(phase, epoch)


# 0. The decoder learns the true p(x | z*) from the generator's pairs (z*, x): the generative model starts true.
rng = np.random.default_rng(7)
z_true = rng.standard_normal(200_000)
x_true = curve_point(norm.cdf(z_true)) + data.info["noise"] * rng.standard_normal((len(z_true), 2))
pairs = torch.from_numpy(z_true[:, None]).float(), torch.from_numpy(x_true).float()
decoder_opt = torch.optim.Adam(model.decoder.parameters(), lr=3e-3)
for step in range(6_000):
    idx = torch.randint(len(z_true), (500,))
    loss = -model.decoder.log_prob(pairs[1][idx], pairs[0][idx]).mean()
    decoder_opt.zero_grad()
    loss.backward()
    decoder_opt.step()
    if step == 4_000:
        decoder_opt.param_groups[0]["lr"] = 3e-4
measure("true decoder", 0)
# 1. Stage 2 of two-stage: the encoder alone, against the frozen (true) generative model.
epochs(model.encoder.parameters(), 30, "encoder only", lambda x: sum(t.mean() for t in model(x)))
states = {"encoder only": {k: v.clone() for k, v in model.state_dict().items()}}
# 2. Joint ELBO training from there.
epochs(model.parameters(), 60, "joint", lambda x: sum(t.mean() for t in model(x)))
states["joint"] = model.state_dict()
torch.save({"log": log, "states": states}, sys.argv[1])
