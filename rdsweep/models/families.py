"""The model families: the registry of what can be trained (rdsweep.registry), and the built-in entries.

A family is one `Family` entry: its name, the data it models (a kind, and an example shape where it needs one),
and `build`, which makes the model for a dataset (docs/extending.md: the model contract). The built-ins are
added below exactly as a plugin's entry is; their models are built by rdsweep.models.vae.build_builtin.

The paper names an image family by three symbols (encoder, decoder, marginal): '-' simple, '+' complex,
'v' VampPrior, e.g. '-+v'. Codes start with '-', which shells take for flags, so every family also has a
readable name made of its component names, e.g. 'gauss-pixelcnn-vamp'. Both are accepted everywhere.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rdsweep.errors import UserError
from rdsweep.registry import BUILTIN, Registry, Source, function, require_function, require_shape, require_text

ENCODERS = {"-": "gauss", "+": "iaf"}
DECODERS = {"-": "deconv", "+": "pixelcnn"}
MARGINALS = {"-": "normal", "+": "maf", "v": "vamp"}


@dataclass(frozen=True)
class Family:
    name: str                 # readable, e.g. "gauss-deconv-normal"
    code: str | None = None   # the paper's code, e.g. "---"; None for the synthetic-data models and plugins
    encoder: str = "custom"   # component names, for the table's encoder/decoder/marginal columns
    decoder: str = "custom"
    marginal: str = "custom"
    data_kind: str = "image"  # the dataset kind it models: "image", "toy", "lingauss", "curve" or a plugin's own
    about: str = ""
    # build(family, info, size, encoder_std) -> the model (an nn.Module with the contract's methods; family: this
    # entry, info: the dataset's, with its example "shape"). A "module:attribute" string is imported when used.
    build: Callable | str = "rdsweep.models.vae:build_builtin"
    shape: tuple[int, ...] | None = None   # the example shape it needs (None: any shape of its data kind)
    source: Source = field(default=BUILTIN, compare=False)

    def check(self, where: str) -> None:
        require_text(where, "name", self.name)
        require_text(where, "data_kind", self.data_kind)
        require_function(where, "build", self.build, "(family, info, size, encoder_std) -> model")
        require_shape(where, "shape", self.shape)

    def builder(self) -> Callable:
        """The build function (imported now when given as a path)."""
        return function(self.build, f"family {self.name!r}")

    def mismatch(self, dataset: str, kind: str, shape) -> str | None:
        """Why this family cannot model `dataset` (of this kind and example shape), or None when it can."""
        if kind != self.data_kind:
            return f"family {self.name!r} models {self.data_kind} data, but dataset {dataset!r} is {kind} data"
        if self.shape is not None and shape is not None and tuple(shape) != self.shape:
            return (f"family {self.name!r} models examples of shape {_shape(self.shape)}, but dataset {dataset!r} "
                    f"has examples of shape {_shape(shape)}")
        return None


def _shape(shape) -> str:
    return "×".join(map(str, shape))


def _image_family(code: str) -> Family:
    enc, dec, marg = ENCODERS[code[0]], DECODERS[code[1]], MARGINALS[code[2]]
    about = {
        "gauss": "conv Gaussian encoder", "iaf": "conv encoder + 4-step IAF",
        "deconv": "deconv Bernoulli decoder", "pixelcnn": "PixelCNN decoder",
        "normal": "N(0, I) marginal", "maf": "4-step MAF marginal", "vamp": "VampPrior marginal",
    }
    return Family(f"{enc}-{dec}-{marg}", code, enc, dec, marg, "image",
                  f"{about[enc]}, {about[dec]}, {about[marg]}", shape=(1, 28, 28))


FAMILIES: Registry[Family] = Registry("family", "rdsweep.families", Family)
for _family in [_image_family(e + d + m) for e in ENCODERS for d in DECODERS for m in MARGINALS] + [
    Family("toy", None, "lookup", "categorical", "mog", "toy",
           "per-bin Gaussian encoder, categorical decoder over the 30 bins, learned mixture marginal"),
    Family("linear", None, "linear", "linear-gauss", "normal", "lingauss",
           "linear Gaussian encoder, linear Gaussian decoder (fixed variance), N(0, I) marginal"),
    Family("curve", None, "mlp", "mlp-gauss", "normal", "curve",
           "MLP Gaussian encoder, MLP Gaussian decoder (mean and std of z), N(0, 1) marginal; 1-D latent"),
]:
    FAMILIES.add(_family)
# How each built-in encoder sets its posterior's std unless a cell says otherwise (encoders.GaussianEncoder).
ENCODER_STD = {"gauss": "learned", "iaf": "learned", "lookup": "learned", "linear": "shared", "mlp": "learned"}
IMAGE_FAMILIES = [f for f in FAMILIES.builtins() if f.data_kind == "image"]
_BY_CODE = {f.code: f for f in IMAGE_FAMILIES}
DEFAULT_FAMILY = {"image": "gauss-deconv-normal", "toy": "toy", "lingauss": "linear", "curve": "curve"}


def get_family(name_or_code: str) -> Family:
    """A family by readable name, paper code or import path; a UserError naming the valid choices otherwise."""
    family = _BY_CODE.get(name_or_code) or FAMILIES.get(name_or_code)
    if family is None:
        raise UserError(
            f"unknown family {name_or_code!r}: use a name ({', '.join(FAMILIES)}), "
            f"a paper code ({', '.join(_BY_CODE)}; write --family=-+v) or an import path package.module:FAMILY"
        )
    return family
