"""The model contract (docs/extending.md): what a family's model must do for rdsweep to train it, and what it
may do for more. Checked on a couple of real examples before a trial trains, and by `launch` before anything
starts, so a plugin that breaks it is one line naming it, not a traceback half-way through a sweep.

Must:  an nn.Module; `forward(x) -> (rate, distortion)`, each a (B,) tensor of nats per example
       (rate: log e(z|x) − log m(z) at z ~ e(z|x), or its expectation; distortion: −log d(x|z)), finite at
       initialisation; `latent_dim`, the number of latent dimensions (an int).
May:   `iwae(x, k) -> (B,)`  the k-sample importance-weighted bound (iwae_k > 0);
       `reconstruct(x)`, `sample(n)`  the data / reconstruction / sample grids (images = true);
       `encoder(x, n) -> (z (n, B, d), log e(z|x) (n, B))`  the latent diagnostics (mutual_info for a Gaussian
       encoder, active_units, probe_accuracy);
       `forward(x, per_latent=True)` giving the rate per latent, (B, d): free bits acts per latent.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from rdsweep.errors import UserError, one_line
from rdsweep.models.vae import build_model
from rdsweep.registry import PluginError

# What a model may leave out, and what it then goes without (the cell's result lists what was left out)
OPTIONAL = {"iwae": ("iwae",), "grids": ("reconstruct", "sample"), "latent": ("encoder",)}
WITHOUT = {"iwae": "the IWAE bound", "grids": "the image grids", "latent": "the latent diagnostics"}


def build(family, info: dict, size: str, encoder_std=None) -> nn.Module:
    """The family's model for a dataset (its info), a plugin's failure to build one as a PluginError naming it."""
    try:
        return build_model(family, info, size, encoder_std)
    except UserError:
        raise
    except Exception as e:
        if family.source.builtin:
            raise
        raise PluginError(f"family {family.name!r} ({family.source}): build failed: {type(e).__name__}: "
                          f"{one_line(e)}") from None


def lacks(model: nn.Module) -> list[str]:
    """The optional features the model does not provide."""
    return [feature for feature, needs in OPTIONAL.items() if not all(hasattr(model, a) for a in needs)]


def check_model(model, family, x: torch.Tensor) -> None:
    """A PluginError naming the family if its model breaks the contract on the examples x (a few of them).
    Nothing changes: the model is put back in its mode and the random stream does not move."""
    where = f"family {family.name!r} ({family.source})"
    if not isinstance(model, nn.Module):
        raise PluginError(f"{where}: build returned a {type(model).__name__}, not a torch.nn.Module")
    if not isinstance(getattr(model, "latent_dim", None), int) or model.latent_dim < 1:
        raise PluginError(f"{where}: the model needs latent_dim, a positive int (the number of latent dimensions)")
    probe = copy.deepcopy(model)   # batch norm moves its statistics even without gradients: not on the model
    for training in (False, True):   # evaluation and training mode (dropout, batch norm: both are used)
        probe.train(training)
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
                out = probe(x)
        except Exception as e:
            raise PluginError(f"{where}: forward(x) on {len(x)} examples of shape {_shape(x.shape[1:])} failed: "
                              f"{type(e).__name__}: {one_line(e)}") from None
        check_output(out, len(x), where)


def check_output(out, batch: int, where: str) -> None:
    """A PluginError unless `out` is (rate, distortion) of a batch, (B,) each, finite."""
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise PluginError(f"{where}: forward(x) must return (rate, distortion), two tensors; got {_kind(out)}")
    for name, t in zip(("rate", "distortion"), out):
        if tuple(t.shape) != (batch,):
            raise PluginError(f"{where}: forward(x) returned {name} of shape {tuple(t.shape)} for {batch} examples; "
                              f"the contract is ({batch},), nats per example")
        if not torch.isfinite(t).all():
            raise PluginError(f"{where}: forward(x) returned a non-finite {name} at initialisation")


def _shape(shape) -> str:
    return "×".join(map(str, shape))


def _kind(out) -> str:
    if isinstance(out, tuple):
        return f"a tuple of {len(out)} ({', '.join(type(t).__name__ for t in out)})"
    return f"a {type(out).__name__}"


def check_plugins(cells, dataset) -> list[str]:
    """Check that every cell's family models the loaded dataset, build and check the model of every plugin family
    among the cells on two of its examples, and call every plugin objective once: a UserError for the first that
    breaks its contract. Returns one warning per feature the cells ask for and a family leaves out (`lacks`)."""
    from rdsweep.models.families import get_family
    from rdsweep.training.objectives import get_objective

    warnings, seen = [], set()
    x = dataset.train[:2]
    for cell in cells:
        family, objective = get_family(cell.family), get_objective(cell.objective)
        if (why := family.mismatch(cell.dataset, dataset.kind, dataset.info["shape"])) is not None:
            raise UserError(why)   # a plugin dataset's shape is known once it has loaded
        if not family.source.builtin and (family.name, cell.size, cell.encoder_std) not in seen:
            seen.add((family.name, cell.size, cell.encoder_std))
            model = build(family, dataset.info, cell.size, cell.encoder_std)
            check_model(model, family, x)
            missing = lacks(model)
            asked = {"iwae": cell.iwae_k > 0, "grids": cell.images, "latent": True}
            for feature in missing:
                if asked[feature] and (family.name, feature) not in seen:
                    seen.add((family.name, feature))
                    needs = " and ".join(OPTIONAL[feature])
                    warnings.append(f"family {family.name!r} provides no {needs}: its cells go without "
                                    f"{WITHOUT[feature]} (docs/extending.md)")
        if not objective.source.builtin and objective.name not in seen:
            seen.add(objective.name)
            _check_objective(objective, cell)
    return warnings


def _check_objective(objective, cell) -> None:
    where = f"objective {objective.name!r} ({objective.source})"
    rate, distortion = torch.full((2,), 3.0), torch.full((2,), 90.0)
    try:
        value = objective.loss_function()(rate, distortion, cell, 1, 1)
    except Exception as e:
        raise PluginError(f"{where}: loss(rate, distortion, cell, epoch, latents) failed: {type(e).__name__}: "
                          f"{one_line(e)}") from None
    if not (isinstance(value, torch.Tensor) and value.dim() == 0 and torch.isfinite(value)):
        raise PluginError(f"{where}: loss must return a finite scalar tensor (the batch's objective), got "
                          f"{type(value).__name__}" + (f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""))
