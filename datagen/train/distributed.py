"""Training in several processes under torchrun: each process's place, the process group, agreeing across ranks.

torchrun (python -m torch.distributed.run) starts one process per device and tells each its place through the
environment (WORLD_SIZE, RANK, LOCAL_RANK). Outside torchrun, or in a world of one, a `Group` does nothing at
all, so one process trains exactly, bit for bit, as it did before this module existed.

Every rank runs the same steps on its own slice of each global batch; after every backward pass the ranks
average their gradients, and the loss terms they log, in one all-reduce (an explicit one rather than DDP's
wrappers: a step's first E/G update reuses the D update's forward pass, which DDP's per-forward bookkeeping
does not allow). Every optimiser then steps with the same numbers, so the weights stay identical on every rank.
Rank 0 alone writes files.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from datagen.common.errors import DatagenError
from datagen.model.latent import Model

# How long a collective waits for a peer that is alive but silent. A dead peer is noticed at once (its sockets
# close, and torchrun stops the other workers when one dies); this bounds the rest, while leaving rank 0 time to
# fit the monitor's classifier and write grids and checkpoints as the other ranks wait for it.
TIMEOUT = timedelta(minutes=30)

TRAINED_NETS = ("encoder", "generator", "d1", "d2", "dz")  # not generator_ema: an average, only ever in eval mode


@dataclass(frozen=True)
class Ranks:
    """This process's place among those torchrun started; outside torchrun, a world of one."""

    world: int = 1
    rank: int = 0
    local: int = 0  # the rank on this node: which of its GPUs this process uses
    launched: bool = False  # started by torchrun, even as a world of one

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """Read torchrun's environment variables."""
    env = os.environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return Ranks()
    return Ranks(world=int(env["WORLD_SIZE"]), rank=int(env["RANK"]), local=int(env.get("LOCAL_RANK", "0")),
                 launched=True)


def local_device(device: torch.device, r: Ranks) -> torch.device:
    """The device of this rank: on CUDA, GPU number LOCAL_RANK of its node."""
    if not r.launched:
        return device
    if device.type == "mps" and r.distributed:
        raise DatagenError("torchrun with an MPS device: training in several processes needs CUDA (nccl) or the "
                           "CPU (gloo); pass --device cpu")
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if r.local >= count:
        raise DatagenError(f"this is process {r.local} on its node but the node has {count} CUDA device(s): start at "
                           f"most one process per GPU (torchrun --nproc_per_node {count})")
    return torch.device("cuda", r.local)


def check_batch(batch_size: int, r: Ranks) -> None:
    """The batch size is the global one: each of the W ranks takes B/W images of every batch."""
    if batch_size % r.world:
        raise DatagenError(f"batch size {batch_size} does not split evenly over {r.world} processes: give --batch-size "
                           f"a multiple of {r.world} (the batch of all processes together), or start a number of "
                           f"processes that divides {batch_size}")


def check_sync_bn(asked: bool | None, wanted: bool, device: torch.device, r: Ranks) -> None:
    """--sync-bn needs several processes, and torch's SyncBatchNorm needs CUDA.

    `wanted` is the run's setting (a resumed run keeps its own); in one process there is nothing to share, and
    BatchNorm over the whole batch computes what SyncBatchNorm did, so only an explicit request is refused there.
    """
    if asked and not r.distributed:
        raise DatagenError("--sync-bn shares BatchNorm statistics between processes, and this is one process: "
                           "launch with torchrun --nproc_per_node N (N >= 2), or leave out --sync-bn")
    if wanted and r.distributed and device.type != "cuda":
        raise DatagenError(f"--sync-bn: torch's SyncBatchNorm runs on CUDA devices only, and this run trains on "
                           f"{device.type}; leave out --sync-bn (a run trained with it resumes on CPU in one process)")


def sync_batchnorm(model: Model) -> None:
    """Swap each trained net's BatchNorm layers for SyncBatchNorm (same parameters and buffers, same state_dict
    keys: the checkpoint loads into plain BatchNorm nets in one process)."""
    for name in TRAINED_NETS:
        net = getattr(model.nets, name)
        if net is not None:
            setattr(model.nets, name, nn.SyncBatchNorm.convert_sync_batchnorm(net))


class Group:
    """The ranks of one run, as seen from one of them. In a world of one, every method returns what it was given."""

    def __init__(self, r: Ranks, device: torch.device):
        self.ranks = r
        self.device = device

    @property
    def world(self) -> int:
        return self.ranks.world

    @property
    def is_main(self) -> bool:
        return self.ranks.is_main

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch: rank r of W takes rows [r*n, (r+1)*n), n = len/W."""
        n = batch.shape[0] // self.world
        return batch[self.ranks.rank * n:(self.ranks.rank + 1) * n]

    def average_step(self, optimizer: torch.optim.Optimizer, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Average the gradients of the optimiser's parameters in place, and the loss terms, in one all-reduce.

        Each rank's loss is a mean over its B/W images, so the average of the ranks' gradients is the gradient of
        the mean over the global batch (exactly, but for terms that use batch statistics: BatchNorm, the KL term).
        """
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        values = torch.stack([v.detach().reshape(()).to(grads[0].dtype if grads else torch.float32) for v in terms.values()])
        return dict(zip(terms, self._average_in_place(grads, values.to(self.device))))

    def average_buffers(self, model: Model) -> None:
        """Average BatchNorm's running statistics across ranks (each rank's follow its own slice of the data), so the
        nets rank 0 measures and saves describe all of it. Training never reads them: losses are unchanged."""
        if self.world == 1:
            return
        buffers = [b for _, net in model.nets.items() for b in net.buffers() if b.is_floating_point()]
        if not buffers:
            return
        self._average_in_place(buffers)

    def _average_in_place(self, tensors: list[torch.Tensor], extra: torch.Tensor | None = None) -> torch.Tensor:
        """The mean across ranks of `tensors` (written back into them) and of `extra` (returned), in one all-reduce."""
        flat = torch.cat([*(t.reshape(-1) for t in tensors), *([] if extra is None else [extra])])
        self._all_reduce_mean(flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view(t.shape))
            offset += t.numel()
        return flat[offset:]

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a stop asked for on one rank stops them all at one step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    @contextmanager
    def first_on_each_node(self) -> Iterator[None]:
        """Run the block in each node's first process, then in the others: a dataset that must be downloaded
        is fetched once per node into its cache, not by every process at once into the same files."""
        if self.world > 1 and self.ranks.local != 0:
            dist.barrier()
        yield
        if self.world > 1 and self.ranks.local == 0:
            dist.barrier()

    def _all_reduce_mean(self, flat: torch.Tensor) -> None:
        dist.all_reduce(flat)
        flat /= self.world


@contextmanager
def join(r: Ranks, device: torch.device) -> Iterator[Group]:
    """The process group for the run's lifetime (none in a world of one): nccl on CUDA, gloo on CPU."""
    if not r.distributed:
        yield Group(r, device)
        return
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT, device_id=device if cuda else None)
    try:
        yield Group(r, device)
    finally:
        dist.destroy_process_group()
