"""`datagen bench read`: random-access images/s of SyntheticDataset through a DataLoader, per worker count."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from datagen.bench.measure import peak_rss_mb
from datagen.common.errors import DatagenError
from datagen.store.dataset import SyntheticDataset


H5PY_DEFAULT_CACHE = 1 << 20  # what h5py gives a file without rdcc_nbytes: the comparison row for HDF5


def bench_read(path: Path, workers: tuple[int, ...] = (0, 2), batch_size: int = 64, limit: int | None = None,
               seed: int = 0) -> dict:
    """Images/s of one shuffled pass (random access) over the output, or its first `limit` batches' worth, for each
    worker count: lazily read with datagen's chunk cache, with h5py's default cache and with none (HDF5 only), and
    in memory.
    Worker start-up is included: it is what a training loop pays every epoch without persistent workers."""
    if any(w < 0 for w in workers):
        raise DatagenError(f"--workers {','.join(map(str, workers))}: worker counts must be 0 or more")
    dataset = SyntheticDataset(path)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise DatagenError(f"{path} holds no images: nothing to read")
    h5_only = {"lazy, h5py's 1 MiB cache": {"cache_bytes": H5PY_DEFAULT_CACHE},
               "lazy, no chunk cache": {"cache_bytes": 0}}
    ways = {"lazy": {}, **(h5_only if dataset.format == "hdf5" else {}), "in memory": {"in_memory": True}}
    rows = []
    for way, kwargs in ways.items():
        started = time.perf_counter()
        ds = SyntheticDataset(path, **kwargs)
        opened = time.perf_counter() - started
        for w in workers:
            rows.append({"way": way, "workers": w, "images": n, "open_seconds": opened,
                         **_one_pass(ds, w, batch_size, n, seed)})
    return {"path": str(path), "format": dataset.format, "image_shape": list(dataset.image_shape),
            "dataset_images": len(dataset), "batch_size": batch_size, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def _one_pass(ds: SyntheticDataset, workers: int, batch_size: int, n: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ds), generator=gen)[:n].tolist()
    loader = DataLoader(ds, batch_size=batch_size, sampler=order, num_workers=workers)
    started = time.perf_counter()
    seen = sum(len(y) for _, y in loader)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "images_per_s": seen / seconds}
