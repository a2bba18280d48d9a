"""`rdsweep bench`: how fast the models train, and what the trainer and the sweep machinery add.

- family_throughput: training images/s (forward, backward, Adam step) of every image family at each size.
- compile_payoff: eager against torch.compile'd training steps of each image family, timed step by step in
  turn (so a busy machine slows both alike), with the compile's own seconds and the images that repay it.
- trainer_overhead: one epoch of the simple family by a bare reference loop vs by `trainer.train`.
- ray_overhead: the same tiny toy cells trained by the bare trainer in this process, then as Ray Tune
  trials one at a time (a fresh local Ray instance); the difference per trial is Ray's price (worker start,
  imports in the worker, reporting and checkpointing every epoch, the ledger).
- sweep_efficiency: a spec's cells trained by an in-process loop (the limit: no worker starts, no Ray), then
  launched into a temporary experiment on the same cores; the launch's wall against the loop's time spread
  over the trial slots is the sweep's efficiency, and every cell must give the same numbers both ways.
- collect_scale: `collect` over an experiment of N synthetic cell results (written by write_fake_experiment),
  i.e. the cost of reading the ledger and writing the table at the scale of a large study.
"""
from __future__ import annotations

import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rdsweep.cells import Cell
from rdsweep.models.families import IMAGE_FAMILIES
from rdsweep.spec import Spec
from rdsweep.sweep.ledger import Experiment, plan
from rdsweep.training.result import cell_result


def family_throughput(sizes=("small", "paper"), batch_size: int = 100, steps: int = 4) -> list[dict]:
    """Training images/s of every image family at each size, on a batch of real digits."""
    import torch

    from rdsweep.data.loaders import load_dataset
    from rdsweep.models.vae import build_model
    from rdsweep.training.devices import pick_device
    from rdsweep.training.objectives import Objective

    device = pick_device()
    x = load_dataset("mnist5k").train[:batch_size].to(device)
    rows = []
    for size in sizes:
        for family in IMAGE_FAMILIES:
            torch.manual_seed(0)
            model = build_model(family, {}, size).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
            objective = Objective(Cell(family=family.name, size=size), model.latent_dim)

            def step():
                rate, distortion = model(x)
                optimizer.zero_grad(set_to_none=True)
                objective(rate, distortion).backward()
                optimizer.step()

            step()  # warm-up: first-call allocations and kernel selection
            _sync(device)
            started = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            seconds = time.perf_counter() - started
            rows.append({"family": family.name, "code": family.code, "size": size, "device": str(device),
                         "images_per_s": steps * batch_size / seconds,
                         "parameters": sum(p.numel() for p in model.parameters())})
    return rows


def compile_payoff(size: str = "small", families: list[str] | None = None, batch_size: int = 50,
                   steps: int = 20) -> list[dict]:
    """Per image family: training images/s eager and compiled (`model.compile()`, as `resources.compile`
    does), the first compiled step's extra seconds (the compile), and how many images a trial must train
    before the faster steps have paid for it. The two models start from the same weights and take their
    timed steps alternately. A trial's evaluations compile again for their own batch shapes, so the
    break-even of a real trial is later than this one."""
    import torch

    from rdsweep.data.loaders import load_dataset
    from rdsweep.models.families import get_family
    from rdsweep.models.vae import build_model
    from rdsweep.training.devices import pick_device
    from rdsweep.training.objectives import Objective

    device = pick_device()
    x = load_dataset("mnist5k").train[:batch_size].to(device)
    rows = []
    for family in [get_family(f) for f in families] if families else IMAGE_FAMILIES:
        runs = {}
        for compiled in (False, True):
            torch.manual_seed(0)
            model = build_model(family, {}, size).to(device)
            if compiled:
                model.compile()
            optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
            objective = Objective(Cell(family=family.name, size=size), model.latent_dim)
            runs[compiled] = (model, optimizer, objective)

        def step(compiled: bool) -> float:
            model, optimizer, objective = runs[compiled]
            started = time.perf_counter()
            rate, distortion = model(x)
            optimizer.zero_grad(set_to_none=True)
            objective(rate, distortion).backward()
            optimizer.step()
            _sync(device)
            return time.perf_counter() - started

        first = {c: step(c) for c in (False, True)}   # eager: allocations; compiled: the compile itself
        seconds = {False: 0.0, True: 0.0}
        for _ in range(steps):
            for c in (False, True):
                seconds[c] += step(c)
        eager, compiled = (steps * batch_size / seconds[c] for c in (False, True))
        compile_s = first[True] - first[False]
        saved_per_image = 1 / eager - 1 / compiled
        rows.append({"family": family.name, "code": family.code, "size": size, "device": str(device),
                     "eager_images_per_s": eager, "compiled_images_per_s": compiled, "compile_s": compile_s,
                     "break_even_images": compile_s / saved_per_image if saved_per_image > 0 else None})
    return rows


def trainer_overhead(family: str = "---", size: str = "small") -> dict:
    """One epoch on mnist5k by a bare loop (model, Adam, shuffled batches) and by the trainer, same cell."""
    import torch

    from rdsweep.data.loaders import load_dataset
    from rdsweep.models.families import get_family
    from rdsweep.models.vae import build_model
    from rdsweep.training import trainer
    from rdsweep.training.devices import pick_device
    from rdsweep.training.objectives import Objective

    cell = Cell(family=family, size=size, epochs=1).validated()
    device = pick_device()
    data = load_dataset(cell.dataset).to(device)
    torch.manual_seed(0)
    model = build_model(get_family(cell.family), data.info, size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cell.lr)
    objective = Objective(cell, model.latent_dim)
    started = time.perf_counter()
    for idx in torch.randperm(len(data.train), device=device).split(cell.batch_size):
        rate, distortion = model(data.train[idx])
        optimizer.zero_grad(set_to_none=True)
        objective(rate, distortion).backward()
        optimizer.step()
    _sync(device)
    bare = time.perf_counter() - started
    result = trainer.train(cell, on_epoch=lambda metrics, state: None)  # with the per-epoch state snapshot
    return {"family": cell.family, "size": size, "images": len(data.train), "bare_epoch_s": bare,
            "trainer_epoch_s": result.history[0]["wall_s"], "trainer_total_s": result.wall_s}


def _sync(device) -> None:
    """GPU work is asynchronous: wait for it before reading the clock."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ray_overhead(n_trials: int = 4, epochs: int = 1) -> dict:
    from rich.console import Console

    from rdsweep.sweep import launch as sweep

    from rdsweep.spec import Resources
    from rdsweep.training import trainer

    base = Cell(dataset="toy", family="toy", epochs=epochs, batch_size=500, lr=1e-2).validated()
    cells = [replace(base, beta=0.1 * 2 ** i) for i in range(n_trials)]
    trainer.train(cells[0], threads=1)  # warm up: imports and the dataset, which Ray workers pay per trial
    started = time.perf_counter()
    for cell in cells:
        trainer.train(cell, threads=1)
    bare = time.perf_counter() - started

    spec = Spec(path=Path("bench"), dataset="toy", data_kind="toy", families=("toy",),
                objectives=((tuple({"objective": "beta", "beta": c.beta} for c in cells), ("toy",)),), seeds=(0,), base=base,
                resources=Resources(cpus_per_trial=1, gpus_per_trial=0, max_failures=0, max_concurrent=1))
    with tempfile.TemporaryDirectory() as tmp:
        experiment = Experiment(Path(tmp) / "bench")
        started = time.perf_counter()
        summary = sweep.launch(spec, experiment, plan(experiment, spec.cells()), console=Console(quiet=True))
        ray_s = time.perf_counter() - started
    return {"trials": n_trials, "epochs": epochs, "converged": summary.converged, "bare_s": bare,
            "ray_s": ray_s, "bare_per_trial_s": bare / n_trials, "ray_per_trial_s": ray_s / n_trials,
            "overhead_per_trial_s": (ray_s - bare) / n_trials}


def sweep_efficiency(spec: Spec, keep: Path | None = None, progress=lambda line: None) -> dict:
    """`keep`: launch into this new experiment directory and leave it there (for collect, frontier, curves)
    instead of a temporary one. `progress` hears the loop's time as soon as it is known: the two halves
    of this benchmark take an hour each on quick.toml, and the first is worth keeping if the second dies."""
    import contextlib

    from rich.console import Console

    from rdsweep.sweep import launch as sweep

    from rdsweep.errors import UserError
    from rdsweep.training import trainer

    if keep is not None and keep.exists():
        raise UserError(f"--keep {keep} exists: name a new directory (nothing in it was touched)")
    cells = spec.cells()
    threads = max(1, int(spec.resources.cpus_per_trial))
    trainer.train(replace(cells[0], epochs=1), threads=threads)  # warm: imports and the dataset, paid once
    started = time.perf_counter()
    loop = {c.cell_id: trainer.train(c, threads=threads) for c in cells}
    loop_s = time.perf_counter() - started
    progress(f"in-process loop: {len(cells)} cells in {loop_s:.1f} s on one slot; launching the same cells")

    with tempfile.TemporaryDirectory() if keep is None else contextlib.nullcontext(keep) as where:
        experiment = Experiment(Path(where) / "bench" if keep is None else keep)
        started = time.perf_counter()
        summary = sweep.launch(spec, experiment, plan(experiment, cells), console=Console(quiet=True))
        launch_s = time.perf_counter() - started
        same = all((r := experiment.result(c.cell_id)) is not None and r.splits == loop[c.cell_id].splits
                   for c in cells)
    ideal = loop_s / summary.slots
    return {"spec": str(spec.path), "cells": len(cells), "slots": summary.slots, "loop_s": loop_s,
            "ideal_s": ideal, "launch_s": launch_s, "efficiency": ideal / launch_s, "same_numbers": same,
            "launch_cell_s": summary.cell_s, "launch_reported_efficiency": summary.efficiency}


def write_fake_experiment(path: str | Path, n_cells: int, seed: int = 0) -> Experiment:
    """An experiment of n_cells plausible results (12 families × β grid × seeds), for timing collect."""
    rng = random.Random(seed)
    experiment = Experiment(path)
    for i in range(n_cells):
        family = IMAGE_FAMILIES[i % len(IMAGE_FAMILIES)]
        cell = Cell(family=family.name, beta=round(0.01 * 1.01 ** (i // 12 % 700), 6), seed=i // (12 * 700),
                    epochs=200, schedule="paper", size="paper").validated()
        rate = rng.uniform(0, 100)   # R and D stay ≥ 0, or the result would be refused (training/result.py)
        splits = {s: {"rate": abs(rate + rng.gauss(0, 1)), "distortion": 80 - 0.7 * rate + rng.uniform(0, 20),
                      "elbo": None, "iwae": None} for s in ("train", "valid", "test")}
        for m in splits.values():
            m["elbo"] = -(m["rate"] + m["distortion"])
        history = [{"epoch": e, "loss": 100.0, "rate": rate, "distortion": 80.0, "elbo": -100.0, "lr": 3e-4,
                    "wall_s": 30.0} for e in range(1, 201)]
        experiment.write_result(cell_result({
            "cell": cell.to_dict(), "cell_id": cell.cell_id, "status": "converged", "epochs": 200, "wall_s": 6000.0,
            "device": "NVIDIA H100", "rdsweep_version": "0.1.0", "splits": splits, "truth": {}, "history": history,
            "experiment": experiment.name}))
    return experiment


def collect_scale(n_cells: int = 10_000) -> dict:
    from rdsweep.analysis.collect import collect

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        experiment = write_fake_experiment(Path(tmp) / "fake", n_cells)
        generate_s = time.perf_counter() - started
        times = []
        for _ in range(2):  # the second run shows the steady state (page cache warm)
            started = time.perf_counter()
            out, table = collect([experiment.path])
            times.append(time.perf_counter() - started)
        size = out.stat().st_size
    return {"cells": n_cells, "rows": table.num_rows, "generate_s": generate_s, "collect_first_s": times[0],
            "collect_second_s": times[1], "table_bytes": size}
