"""The CUDA paths (selected by device, never required): they run where a GPU is present and skip elsewhere.

What a GPU user relies on (docs/benchmarks.md, "what a GPU user should set"): the data sits on the device, a
training step never waits for the host, a reused Ray worker gets its GPU memory back after each trial, and a
GPU trial lands where the CPU one does.
"""
from __future__ import annotations

import gc

import pytest
import torch

from rdsweep.cells import Cell
from rdsweep.data.loaders import load_dataset
from rdsweep.models.families import get_family
from rdsweep.models.vae import build_model
from rdsweep.training.objectives import Objective
from rdsweep.training.trainer import train, train_epoch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TOY = Cell(dataset="toy", family="toy", objective="target-rate", beta=None, target_rate=0.5, epochs=8,
           batch_size=500, lr=3e-3, patience=50)


def test_a_gpu_trial_lands_where_the_cpu_trial_does():
    gpu, cpu = train(TOY, device="cuda"), train(TOY, device="cpu")
    assert gpu.device == torch.cuda.get_device_name(0) and cpu.device == "cpu"
    assert gpu.kernels["cuda"] == torch.version.cuda and "cuda" not in cpu.kernels
    # different kernels and random streams: the same point up to training noise, not the same bits
    for split in ("valid", "test"):
        assert gpu.splits[split].rate == pytest.approx(cpu.splits[split].rate, abs=0.05)
        assert gpu.splits[split].distortion == pytest.approx(cpu.splits[split].distortion, abs=0.05)


# Each encoder, decoder and marginal kind, and each objective a sweep can train (two-stage is for the 2-D curve).
SYNC_FREE = [
    dict(family="---"), dict(family="-+-"), dict(family="+--"), dict(family="--+"), dict(family="--v"),
    dict(family="---", encoder_std="shared"),
    dict(family="-+-", objective="free-bits", free_bits=0.1),
    dict(family="-+-", objective="warmup", warmup_epochs=5),
    dict(family="-+-", objective="target-rate", beta=None, target_rate=5.0),
    dict(family="-+-", objective="squared-target-rate", beta=None, target_rate=5.0),
]


@pytest.mark.parametrize("knobs", SYNC_FREE, ids=lambda k: " ".join(str(v) for v in k.values() if v is not None))
def test_a_training_epoch_never_synchronises_with_the_host(knobs):
    data = load_dataset("mnist5k").to("cuda")
    cell = Cell(batch_size=100, **knobs).validated()
    model = build_model(get_family(cell.family), data.info, "small", encoder_std=cell.encoder_std).to("cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=cell.lr)
    objective = Objective(cell, model.latent_dim)
    x = data.train[:1000]
    train_epoch(model, optimizer, objective, 1, x, torch.Generator().manual_seed(0))  # warm
    torch.cuda.synchronize()
    steps = []

    def after_step(step: int, total: int) -> None:
        steps.append(step)
        if step == total:   # the epoch's means are read once, after its last step: that wait is allowed
            torch.cuda.set_sync_debug_mode("default")

    torch.cuda.set_sync_debug_mode("error")   # any implicit device-to-host wait inside the epoch raises
    try:
        metrics = train_epoch(model, optimizer, objective, 2, x, torch.Generator().manual_seed(1),
                              on_step=after_step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert steps == list(range(1, 11)) and metrics is not None


def test_the_data_sits_on_the_device():
    data = load_dataset("mnist5k").to("cuda")
    assert all(data.split(s).is_cuda for s in ("train", "valid", "test"))
    assert all(y.is_cuda for y in data.labels.values())


def test_a_finished_trial_gives_its_gpu_memory_back():
    # A reused Ray worker runs trial after trial in one process: what one trial allocates must be freed.
    train(TOY, device="cuda")
    gc.collect()
    before = torch.cuda.memory_allocated()
    train(Cell(**{**TOY.to_dict(), "seed": 1}), device="cuda")
    gc.collect()
    assert torch.cuda.memory_allocated() <= before + 1024
