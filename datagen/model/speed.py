"""How the nets execute: memory format, compilation, mixed precision. The maths stays the recipe's.

Every setting here was measured (docs/performance-notes.md), and the defaults are what measured
faster on each device type. None of them changes what is saved: checkpoints hold the same state
dict whatever the layout, and a net compiled in place keeps its parameter names.

- channels_last: NHWC tensors let oneDNN's convolutions skip layout reorders (faster on CPU, for
  training and for inference). Not bit-exact (other kernels sum in another
  order); tests/test_step_exactness.py states and checks the tolerance.
- compile: torch.compile of each net in place. Off by default (see the notes for what it measured);
  where compilation is unavailable (no C compiler, an unsupported Python), the nets run eagerly
  after one warning line instead of failing.
- amp: bf16 autocast on CUDA devices that support it (no loss scaling needed for bf16). Never on CPU.
- inference batch: forward passes that only predict (encode, generate, classify) run in chunks of
  64 images on CPU, where a chunk's activations stay in cache; the outputs are those of one big batch
  (eval mode uses no batch statistics; the test allows 1e-6 for kernels that block by batch size).
  Training batches are the recipe's, untouched.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from datagen.common.console import console


@dataclass(frozen=True)
class Speed:
    channels_last: bool = False
    compile: bool = False
    amp: bool = False


def choose(device: torch.device, channels_last: bool | None = None, compile: bool = False,
           amp: bool | None = None) -> Speed:
    """Settings for a device; None means the measured default for that device type."""
    if channels_last is None:
        channels_last = device.type == "cpu"  # measured there; on CUDA/MPS it is yours to try
    amp_possible = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if amp is None:
        amp = amp_possible
    return Speed(channels_last=channels_last, compile=compile, amp=amp and amp_possible)


def inference_batch(device: torch.device) -> int:
    """Images per forward pass when only predicting: cache-sized on CPU, large where memory is wide."""
    return 64 if device.type == "cpu" else 512


def chunked(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            device: torch.device | None = None) -> torch.Tensor:
    """forward over the rows of x, inference_batch(device) rows per call (default: x's device), concatenated."""
    step = inference_batch(device or x.device)
    return torch.cat([forward(x[i:i + step]) for i in range(0, len(x), step)])


def prepare(nets: Iterable[nn.Module], speed: Speed) -> None:
    """Put each net into the layout the settings ask for, and compile it in place if asked."""
    for net in nets:
        if speed.channels_last:
            net.to(memory_format=torch.channels_last)
        if speed.compile:
            compile_in_place(net)


def as_input(x: torch.Tensor, speed: Speed) -> torch.Tensor:
    """An image batch in the layout the nets were put in."""
    if speed.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def precision(device: torch.device, speed: Speed) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory for the forward passes: bf16 autocast when amp is on, else nothing."""
    if speed.amp:
        return functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


_warned = False


def compile_in_place(net: nn.Module) -> None:
    """torch.compile the module's calls, or leave it eager (one warning) where compiling cannot work.

    Compilation is lazy, so failures can surface on the first call; dynamo's suppress_errors makes
    those fall back to eager too, rather than stopping a training run.
    """
    global _warned
    try:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        net.compile()
    except Exception as error:  # noqa: BLE001 - any failure to compile means: run eagerly
        if not _warned:
            console.print(f"[yellow]--compile: torch.compile is unavailable here ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); running eagerly")
            _warned = True
