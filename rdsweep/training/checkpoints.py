"""What a trial writes to disk, and reads back: its training state after an epoch (a checkpoint, to resume or
continue it) and its evaluated weights (a kept model, to measure something new without training again).

A training state is a dict (the layout `snapshot` writes and `restore` reads) saved with torch.save: the
weights, Adam's moments, the batch order's and the z-samples' random streams, the history, the stopping
rule and the best state so far. Both files carry the model's structure fingerprint, so a file written for
another model structure (another family, size, or a code change) is refused rather than half-loaded.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch

from rdsweep import __version__
from rdsweep.cells import Cell
from rdsweep.errors import UserError, one_line
from rdsweep.files import atomic_write
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.training.devices import pick_device
from rdsweep.training.stopping import StoppingRule, replay


class IncompatibleCheckpoint(Exception):
    """A saved training state that cannot continue this cell: unreadable, incomplete, or for another model
    structure (e.g. after a code change). The sweep moves it aside and restarts the cell."""


def structure_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the model's parameter and buffer names, shapes and dtypes: a checkpoint of another
    structure cannot continue this cell, whatever its file says."""
    layout = [(name, list(t.shape), str(t.dtype)) for name, t in model.state_dict().items()]
    return hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:16]


def snapshot(epoch: int, history: list, model, optimizer, batch_order: torch.Generator, dev: torch.device,
             rule: StoppingRule, best: dict | None, stop_reason: str | None, stage: int | None) -> dict:
    """The training state after `epoch`: a copy, not views of the live parameters, so a kept state stays at
    this epoch. `best` is already one (replaced whole, never changed in place): shared, not copied again."""
    return {**copy.deepcopy({
        "epoch": epoch, "history": history, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "batch_order": batch_order.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
    }), "rule": rule.state(), "best": best, "stop_reason": stop_reason, "stage": stage,
        "fingerprint": structure_fingerprint(model), "rdsweep_version": __version__}


def restore(state: dict, cell: Cell, model, optimizer, batch_order: torch.Generator, dev: torch.device
            ) -> tuple[int, list, StoppingRule, dict | None, str | None]:
    """Load a snapshot into the model, optimiser and random streams; returns what the training loop carries
    on with: the next epoch, the history, the stopping rule, the best state and a stop reason (set when the
    trial stopped but died before writing its result). IncompatibleCheckpoint if it does not fit."""
    fingerprint = structure_fingerprint(model)
    recorded = state.get("fingerprint", fingerprint)  # checkpoints before 0.2 carry none
    if recorded != fingerprint:
        raise IncompatibleCheckpoint(f"saved for model structure {recorded}, this model is {fingerprint} "
                                     f"(saved by rdsweep {state.get('rdsweep_version', '?')})")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        batch_order.set_state(state["batch_order"])
        torch.set_rng_state(state["torch_rng"])
        if dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)  # z-samples on a GPU: its own RNG
        return (state["epoch"] + 1, list(state["history"]), _rule(state, cell), state["best"], state["stop_reason"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise IncompatibleCheckpoint(f"does not fit this model: {one_line(e)}") from None


def _rule(state: dict, cell: Cell) -> StoppingRule:
    """The saved stopping rule; one saved before the rule watched for blow-ups is rebuilt from
    the history of the stage under way, so that blow-ups before the checkpoint count in its stop."""
    if "blowups" in state["rule"]:
        return StoppingRule.from_state(state["rule"])
    rules = replay(cell, [h for h in state["history"] if h.get("stage") == state.get("stage")])
    return rules[-1] if rules else StoppingRule.from_state(state["rule"])


def save_state(state: dict, path: str | Path) -> None:
    """Write a training state atomically (a crash mid-write leaves the previous checkpoint intact)."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


_STATE_KEYS = {"epoch", "history", "model", "optimizer", "batch_order", "torch_rng", "rule", "best", "stop_reason"}


def load_state(path: str | Path) -> dict:
    """A saved training state; IncompatibleCheckpoint for a file that is not a whole one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file fails in pickle, zipfile or torch, with many types
        raise IncompatibleCheckpoint(f"cannot be read: {type(e).__name__}: {one_line(e)}") from None
    if not isinstance(state, dict) or not _STATE_KEYS <= set(state):
        raise IncompatibleCheckpoint("is not an rdsweep training state (keys missing)")
    return state


def save_model(path: str | Path, cell: Cell, model: torch.nn.Module, info: dict) -> None:
    """The weights with what rebuilds their model (the cell, the dataset's info), atomically."""
    with atomic_write(path) as tmp:
        torch.save({"cell": cell.to_dict(), "cell_id": cell.cell_id, "info": info,
                    "fingerprint": structure_fingerprint(model), "rdsweep_version": __version__,
                    "model": {k: v.cpu() for k, v in model.state_dict().items()}}, tmp)


def load_model(path: str | Path, device: str | None = None) -> tuple[Cell, torch.nn.Module]:
    """A cell and its trained model, as `save_model` wrote them; a UserError for a file that is not one."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        cell = Cell.from_dict(saved["cell"])
        model = build_model(get_family(cell.family), saved["info"], cell.size, cell.encoder_std)
        if structure_fingerprint(model) != saved["fingerprint"]:
            raise UserError(f"{path}: saved for model structure {saved['fingerprint']} by rdsweep "
                            f"{saved['rdsweep_version']}; this version builds {structure_fingerprint(model)}")
        model.load_state_dict(saved["model"])
    except UserError:
        raise
    except Exception as e:  # not a file, not a torch file, or a torch file of something else
        raise UserError(f"{path}: not a model kept by rdsweep ({type(e).__name__}: {one_line(e)})") from None
    return cell, model.to(pick_device(device)).eval()
