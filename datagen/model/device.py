"""Which device runs the nets, and a one-line description of it for reports."""

from __future__ import annotations

import platform

import torch

from datagen.common.errors import DatagenError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise DatagenError(f"--device {name}: use auto, cpu, cuda or mps")
    if name == "cuda" and not torch.cuda.is_available():
        raise DatagenError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DatagenError("--device mps: MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
