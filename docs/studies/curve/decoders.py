"""The figure of docs/twostage.md: where each trained curve model puts its decoder, over the data.

    python docs/studies/curve/decoders.py OUT.png LABEL=STATE.pt [LABEL=STATE.pt ...]

STATE.pt is a trial's saved training state (rdsweep.training.checkpoints.save_state; a sweep keeps the latest one under
EXPERIMENT/checkpoints/ while a cell runs); its best state is drawn, or its current one before any
evaluation. For two-stage cells any state saved in stage 2 holds the final generative model (it is frozen).
FILE.pt#NAME draws the state NAME of warm_start.py's output.
"""
import sys

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rdsweep.data.loaders import curve_point, load_dataset  # noqa: E402
from rdsweep.models.families import get_family  # noqa: E402
from rdsweep.models.vae import build_model  # noqa: E402
from rdsweep.training.checkpoints import load_state  # noqa: E402

out, runs = sys.argv[1], [a.rsplit("=", 1) for a in sys.argv[2:]]
data = load_dataset("curve")
x = data.test.numpy()
z = torch.linspace(-3, 3, 800)[:, None]
fig, axes = plt.subplots(1, len(runs) + 1, figsize=(5 * (len(runs) + 1), 4.2), sharex=True, sharey=True)
truth = curve_point(torch.distributions.Normal(0, 1).cdf(z[:, 0]).numpy())
for ax, (label, path) in zip(axes, [("true model", None)] + runs):
    ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.25, c="grey")
    if path is None:
        mean, std = torch.from_numpy(truth), torch.full((len(z), 2), data.info["noise"])
    else:
        file, _, name = path.partition("#")
        state = torch.load(file)["states"][name] if name else load_state(file)
        state = (state.get("best") or state)["model"] if "model" in state else state
        model = build_model(get_family("curve"), data.info, "small")
        model.load_state_dict(state)
        with torch.no_grad():
            mean, std = model.decoder._mean_std(z)
    points = ax.scatter(mean[:, 0], mean[:, 1], c=z[:, 0], s=4, cmap="viridis", vmin=-3, vmax=3)
    ax.set_title(f"{label}\ndecoder mean over z ∈ [−3, 3]; mean std {std.mean():.2f}", fontsize=9)
    ax.set_xlabel("x₁")
axes[0].set_ylabel("x₂")
fig.colorbar(points, ax=axes, label="z", shrink=0.8)
fig.savefig(out, dpi=80, bbox_inches="tight")
print("wrote", out)
