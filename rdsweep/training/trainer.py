"""One trial: train one cell's model until its stopping rule fires (rdsweep/training/stopping.py) or its epoch budget
runs out, then evaluate R, D, ELBO of its best-valid state on every split, and what its latent is worth
(rdsweep/training/latent.py).

Pure PyTorch (no Ray): the sweep calls `train` inside a Ray worker, `rdsweep train` calls it directly.
A trial is deterministic for its seed on CPU: the seed fixes the initialisation, the batch order and the
z-samples; validation draws its own fixed noise without touching the training stream, and the final
evaluation reseeds, so a resumed or continued trial ends exactly like an uninterrupted one.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable

import torch

from rdsweep import __version__

from rdsweep.cells import SPLITS, Cell
from rdsweep.data.loaders import Dataset, load_dataset
from rdsweep.errors import UserError
from rdsweep.models.families import get_family
from rdsweep.training import contract
from rdsweep.training.checkpoints import restore, save_model, snapshot
from rdsweep.training.devices import device_name, kernels, pick_device
from rdsweep.training.evaluate import evaluate, save_image_grids, validate
from rdsweep.training.latent import LabelProbe, latent_worth
from rdsweep.training.objectives import Objective, warmup_beta
from rdsweep.training.result import CellResult, cell_result
from rdsweep.training.stopping import CONTINUE, REDUCE, STOP, StoppingRule
from rdsweep.uncertainty import save_examples


def lr_factor(cell: Cell, epoch: int, reductions: int = 0) -> float:
    """'paper': constant for the first half of the epochs, then linear decay to 0 at the last
    (the paper's 100 + 100 of 200 epochs, scaled to the budget); 'plateau': divided by lr_divisor for
    each plateau so far; 'constant': always 1."""
    if cell.schedule == "paper":
        return min(1.0, 2 * (cell.epochs - epoch + 1) / cell.epochs)
    if cell.schedule == "plateau":
        return cell.lr_divisor ** -reductions
    return 1.0


def train(
    cell: Cell,
    *,
    on_epoch: Callable[[dict, dict], None] | None = None,
    resume_state: dict | None = None,
    device: str | None = None,
    threads: int | None = None,
    images: str | Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
    keep_model: str | Path | None = None,
    examples: str | Path | None = None,
    compile: bool = False,
) -> CellResult:
    """Train `cell` until its stopping rule fires or its epoch budget runs out, then evaluate the best-valid
    state on every split. Returns its CellResult: status, stop_reason, best_epoch, epochs, wall time, R, D,
    ELBO per split, and the history.

    on_epoch(metrics, state) is called after each epoch; `state` can be saved (`checkpoints.save_state`) and passed
    back as `resume_state` to continue after that epoch, also with a larger `epochs` than it was saved with.
    A non-finite loss ends the trial as 'diverged', and so does a plateau reached while the valid objective
    had blown up (stopping.py).
    `images`: a PNG path for data / reconstruction / sample grids of the trained model (image data only).
    on_step(step, steps) is called after each optimiser step of an epoch: progress inside long epochs.
    keep_model: a path for the evaluated weights, the reported point's (`checkpoints.load_model` reads them back).
    examples: a path for each example's R and D on every split (`uncertainty.save_examples`): what a paired
    comparison of two cells reads (`rdsweep compare`).
    compile: torch.compile the model's forward (rate and distortion) first; it pays only for long trials
    (docs/benchmarks.md), and its numbers agree with eager ones to float rounding, not bit for bit.
    """
    cell = cell.validated()
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    torch.manual_seed(cell.seed)

    if cell.plugins != (installed := cell.installed_plugins()):
        raise UserError(f"the cell was planned with plugins {cell.plugins}, and this environment has "
                        f"{installed or 'none of them'}: install the versions it was planned with")
    dataset = load_dataset(cell.dataset)
    family = get_family(cell.family)
    if (why := family.mismatch(cell.dataset, dataset.kind, dataset.info["shape"])) is not None:
        raise UserError(why)
    if images and dataset.kind != "image":
        raise UserError(f"image grids need image data; {cell.dataset!r} is {dataset.kind} data")
    dataset = dataset.to(dev)
    model = contract.build(family, dataset.info, cell.size, cell.encoder_std).to(dev)
    contract.check_model(model, family, dataset.train[:2])
    lacks = contract.lacks(model)   # optional features the family leaves out: so does the result
    if compile:
        model.compile()  # in place: the state dict, checkpoints and fingerprint keep their names
    objective = Objective(cell, model.latent_dim)
    if resume_state is not None:   # two-stage: the stage decides which parameters the optimiser holds
        objective.stage = resume_state.get("stage", objective.stage)
    optimizer = torch.optim.Adam(objective.parameters(model), lr=cell.lr)
    batch_order = torch.Generator().manual_seed(cell.seed)
    rule = StoppingRule.for_cell(cell)
    best = None                                  # {"model", "optimizer"} at rule.best_epoch
    first_epoch, history, stop_reason = 1, [], None
    if resume_state is not None:
        first_epoch, history, rule, best, stop_reason = restore(resume_state, cell, model, optimizer, batch_order, dev)

    for epoch in range(first_epoch, cell.epochs + 1):
        if stop_reason is not None:
            break
        epoch_start = time.perf_counter()
        lr = cell.lr * lr_factor(cell, epoch, rule.reductions)
        for group in optimizer.param_groups:
            group["lr"] = lr
        metrics = train_epoch(model, optimizer, objective, epoch, dataset.train, batch_order, on_step)
        if metrics is None:
            stop_reason = "non-finite loss"
            break
        metrics = {"epoch": epoch, **metrics, "lr": lr}
        if objective.stage is not None:   # two-stage: the stage this epoch trained
            metrics["stage"] = objective.stage
        if cell.warmup_epochs is not None:
            metrics["beta"] = warmup_beta(cell, epoch)
        action = CONTINUE
        if epoch % cell.eval_every == 0:
            valid = validate(model, dataset.valid, objective)
            metrics.update({f"valid_{k}": v for k, v in valid.items()})
            if not math.isfinite(valid["objective"]):
                stop_reason = "non-finite loss"
                break
            action = rule.update(epoch, valid["objective"])
            if rule.best_epoch == epoch:
                best = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
            if action == REDUCE:  # back to the best state, then on at the lower rate
                model.load_state_dict(best["model"])
                # Adam adopts the given moment tensors and updates them in place: hand it a copy, so the
                # kept best state stays the best epoch's for a later reduction and for the checkpoints
                optimizer.load_state_dict(copy.deepcopy(best["optimizer"]))
            elif action == STOP and objective.stage == 1:
                # two-stage: the generative model has converged; from its best state, fit the encoder to it
                # (a restore, like a reduction's: a blow-up in stage 1 is recovered from, not a stop)
                model.load_state_dict(best["model"])
                objective.stage = 2
                optimizer = torch.optim.Adam(objective.parameters(model), lr=cell.lr)
                rule, best = StoppingRule.for_cell(cell), None
            elif action == STOP:
                stop_reason = "plateau" if rule.calm else "blow-up"
        metrics["wall_s"] = time.perf_counter() - epoch_start
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, snapshot(epoch, history, model, optimizer, batch_order, dev, rule, best, stop_reason,
                                       objective.stage))

    evaluation_start = time.perf_counter()
    status = {None: "unconverged", "plateau": "converged", "non-finite loss": "diverged", "blow-up": "diverged"}[stop_reason]
    splits = {s: {"rate": None, "distortion": None, "elbo": None, "iwae": None} for s in SPLITS}
    if status != "diverged":
        if best is not None:  # None only when the cap came right after two-stage's switch to its encoder
            model.load_state_dict(best["model"])   # the reported point is the best-valid state, not the last
        splits, finite = final_evaluation(cell, model, dataset, lacks)
        per_example = {s: splits[s].pop("examples") for s in SPLITS}
        if not finite:
            status, stop_reason = "diverged", "non-finite evaluation"
    # a warm-up ends at the full β, so it aims at the same optimum; free bits changes the objective itself
    truth = dataset.truth(cell.beta if objective.entry.aims_at_beta_optimum else None)
    result = cell_result({
        "cell": cell.to_dict(), "cell_id": cell.cell_id, "status": status,
        "stop_reason": stop_reason or "max epochs", "best_epoch": rule.best_epoch or None,
        "best_valid_objective": rule.best if math.isfinite(rule.best) else None, "epochs": len(history),
        # training time over every run of this trial (resumed ones included), plus this final evaluation
        "wall_s": sum(h["wall_s"] for h in history) + time.perf_counter() - evaluation_start, "device": device_name(dev),
        "kernels": kernels(dev), "compiled": compile, "rdsweep_version": __version__, "splits": splits, "truth": truth, "history": history,
        **({"lacks": lacks} if lacks else {}),
    })   # checked before anything is written beside it: a result no trial can produce leaves no files
    if status != "diverged":
        if examples:
            save_examples(examples, cell.cell_id, per_example)
        if images and "grids" not in lacks:
            save_image_grids(model, dataset.test, Path(images))
        if keep_model:
            save_model(keep_model, cell, model, dataset.info)
    return result


def final_evaluation(cell: Cell, model, dataset: Dataset, lacks: list[str] = ()) -> tuple[dict, bool]:
    """R, D, ELBO (and IWAE) of the model on every split, from the cell's own seed, and whether they are
    finite; when they are, what the latent is worth: I(x; z), active units, a label probe where the data
    has labels. `lacks`: the optional features the model leaves out (contract.lacks), then not measured."""
    torch.manual_seed(cell.seed)
    iwae_k = 0 if "iwae" in lacks else cell.iwae_k
    splits = {s: evaluate(model, dataset.split(s), samples=cell.eval_samples, iwae_k=iwae_k) for s in SPLITS}
    if not all(math.isfinite(v) for m in splits.values() for v in (m["rate"], m["distortion"])):
        return splits, False
    if "latent" in lacks:
        return splits, True
    labels = dataset.labels or {}
    probe = LabelProbe(model, dataset.train, labels["train"]) if labels else None
    for s in SPLITS:
        splits[s].update(latent_worth(model, dataset.split(s), labels=labels.get(s), probe=probe))
    return splits, True


def train_epoch(model, optimizer, objective: Objective, epoch: int, x: torch.Tensor, batch_order: torch.Generator,
                on_step: Callable[[int, int], None] | None = None) -> dict | None:
    """One pass over x in the generator's shuffled order: mean loss, R and D, or None on a non-finite loss.
    Nothing waits for the device inside the epoch: the order is queued to it once (from pinned memory), the
    running sums stay on it, and a non-finite loss is seen in those sums when the epoch ends (the trial then
    ends as diverged)."""
    model.train()
    sums, n = torch.zeros(3, dtype=torch.float64, device=x.device), 0
    order = torch.randperm(x.shape[0], generator=batch_order)   # on the host: one stream on every device
    if x.is_cuda:   # a copy from pageable memory waits for the GPU; from pinned memory it is queued like a kernel
        order = order.pin_memory()
    order = order.to(x.device, non_blocking=True)
    batches = order.split(objective.cell.batch_size)
    for step, idx in enumerate(batches, 1):
        batch_loss, rate, distortion = objective.loss(model, x[idx], epoch)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        sums += torch.stack([batch_loss.detach() * len(idx), rate.detach().sum(), distortion.detach().sum()])
        n += len(idx)
        if on_step is not None:
            on_step(step, len(batches))
    mean_loss, mean_rate, mean_distortion = (sums / n).tolist()
    if not math.isfinite(mean_loss):
        return None
    return {"loss": mean_loss, "rate": mean_rate, "distortion": mean_distortion,
            "elbo": -(mean_rate + mean_distortion)}

