"""What every benchmark reads off the machine: peak memory, the fp32 matmul peak, device sync, the speed settings."""

from __future__ import annotations

import resource
import sys
import time

import torch

from datagen.model import speed


GEMM_SIDE = 2048


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def gemm_peak_gflops(device: torch.device, side: int = GEMM_SIDE, repeats: int = 10) -> float:
    """fp32 matmul rate of a large square GEMM: the practical ceiling for conv nets on this device."""
    a = torch.randn(side, side, device=device)
    b = torch.randn(side, side, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * side ** 3 * repeats / (time.perf_counter() - started) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def settings(how: speed.Speed) -> dict:
    return {"channels_last": how.channels_last, "compile": how.compile, "amp": how.amp}
