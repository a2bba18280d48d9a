"""rdsweep-digits8: one family, one dataset and one objective that rdsweep does not have, as entries of its
registries. Nothing here imports torch or scikit-learn: the build, load and loss functions are named by import
path and imported when a trial (or `rdsweep launch`'s check) first uses them, so `rdsweep families` stays fast."""
from rdsweep.data.datasets import DatasetEntry
from rdsweep.models.families import Family
from rdsweep.training.objectives import ObjectiveEntry

FAMILY = Family(
    name="mlp-bernoulli",
    data_kind="image",          # binary pixels: it trains on any image dataset, whatever its shape
    encoder="mlp", decoder="mlp-bernoulli", marginal="normal",
    about="MLP Gaussian encoder, MLP Bernoulli decoder, N(0, I) marginal; 8 latents (any image shape)",
    build="rdsweep_digits8.model:build",
)

DIGITS8 = DatasetEntry(
    name="digits8",
    kind="image",
    about="scikit-learn's 1,797 8×8 digits (UCI), statically binarized (pixel ~ Bernoulli(v/16), seed 0), "
          "1297/250/250",
    load="rdsweep_digits8.data:load",
    shape=(1, 8, 8),
    sizes=(1297, 250, 250),
    labelled=True,
)

HUBER_TARGET_RATE = ObjectiveEntry(
    name="huber-target-rate",
    knob="target_rate",         # a spec block's values are σ, in nats
    loss="rdsweep_digits8.objective:huber_target_rate",
    formula="D + Huber(σ − R): squared within 1 nat of σ, linear beyond",
    label="target rate, Huber(σ − R)",
    marker="*",
    tag="huber",
)
