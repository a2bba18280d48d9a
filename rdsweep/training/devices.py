"""Which torch device a trial runs on: CUDA when present, the CPU otherwise; never required."""
from __future__ import annotations

import torch

from rdsweep.errors import UserError


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, or CUDA when present; a UserError for a device this machine does not have."""
    try:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise UserError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"device {device!r} is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {device!r}: use cpu, cuda or cuda:N")
    return dev


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def kernels(dev: torch.device) -> dict[str, str]:
    """What decides a trial's float rounding besides its code: the torch build and the CPU kernels it
    dispatched to (or the GPU). The same cell trained on another processor drifts apart from epoch 1
    (docs/mnist5k-study.md), so a result says where it was made."""
    where = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if dev.type == "cuda":
        where["cuda"] = str(torch.version.cuda)
    return where
