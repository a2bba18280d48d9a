"""The model families: which encoder, decoder and marginal a family is made of, and its names.

The paper names an image family by three symbols (encoder, decoder, marginal): '-' simple, '+' complex,
'v' VampPrior, e.g. '-+v'. Codes start with '-', which shells take for flags, so every family also has a
readable name made of its component names, e.g. 'gauss-pixelcnn-vamp'. Both are accepted everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

from rdsweep.errors import UserError

ENCODERS = {"-": "gauss", "+": "iaf"}
DECODERS = {"-": "deconv", "+": "pixelcnn"}
MARGINALS = {"-": "normal", "+": "maf", "v": "vamp"}


@dataclass(frozen=True)
class Family:
    name: str                 # readable, e.g. "gauss-deconv-normal"
    code: str | None          # the paper's code, e.g. "---"; None for the synthetic-data models
    encoder: str
    decoder: str
    marginal: str
    data_kind: str            # the dataset kind it models: "image", "toy", "lingauss" or "curve"
    about: str


def _image_family(code: str) -> Family:
    enc, dec, marg = ENCODERS[code[0]], DECODERS[code[1]], MARGINALS[code[2]]
    about = {
        "gauss": "conv Gaussian encoder", "iaf": "conv encoder + 4-step IAF",
        "deconv": "deconv Bernoulli decoder", "pixelcnn": "PixelCNN decoder",
        "normal": "N(0, I) marginal", "maf": "4-step MAF marginal", "vamp": "VampPrior marginal",
    }
    return Family(f"{enc}-{dec}-{marg}", code, enc, dec, marg, "image",
                  f"{about[enc]}, {about[dec]}, {about[marg]}")


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [_image_family(e + d + m) for e in ENCODERS for d in DECODERS for m in MARGINALS]
    + [
        Family("toy", None, "lookup", "categorical", "mog", "toy",
               "per-bin Gaussian encoder, categorical decoder over the 30 bins, learned mixture marginal"),
        Family("linear", None, "linear", "linear-gauss", "normal", "lingauss",
               "linear Gaussian encoder, linear Gaussian decoder (fixed variance), N(0, I) marginal"),
        Family("curve", None, "mlp", "mlp-gauss", "normal", "curve",
               "MLP Gaussian encoder, MLP Gaussian decoder (mean and std of z), N(0, 1) marginal; 1-D latent"),
    ]
}
# How each encoder sets its posterior's std unless a cell says otherwise (encoders.GaussianEncoder).
ENCODER_STD = {"gauss": "learned", "iaf": "learned", "lookup": "learned", "linear": "shared", "mlp": "learned"}
IMAGE_FAMILIES = [f for f in FAMILIES.values() if f.data_kind == "image"]
_BY_CODE = {f.code: f for f in IMAGE_FAMILIES}
DEFAULT_FAMILY = {"image": "gauss-deconv-normal", "toy": "toy", "lingauss": "linear", "curve": "curve"}


def get_family(name_or_code: str) -> Family:
    """A family by readable name or paper code; a UserError naming the valid choices otherwise."""
    family = FAMILIES.get(name_or_code) or _BY_CODE.get(name_or_code)
    if family is None:
        raise UserError(
            f"unknown family {name_or_code!r}: use a name ({', '.join(FAMILIES)}) "
            f"or a paper code ({', '.join(_BY_CODE)}; write --family=-+v)"
        )
    return family
