"""`datagen bench write`: how an output format's write cost grows with its size (the writer alone, no G)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from datagen.common.errors import DatagenError
from datagen.store import writers


def bench_write(fmt: str, per_class: int, classes: int = 10, side: int = 32, channels: int = 1, latent_dim: int = 16,
                batch_size: int = 256, report_every: int = 10_000) -> dict:
    """Write per_class × classes random images in augment's batches; seconds per `report_every` images as the output
    grows (flat for a writer whose cost is O(N); rising for one that rewrites what it already wrote) and finish()."""
    if per_class < 1 or classes < 1:
        raise DatagenError("--per-class and --classes must be at least 1")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, side, side, channels), dtype=np.uint8)
    total, written, marks = per_class * classes, 0, []
    with tempfile.TemporaryDirectory(prefix="datagen-bench-write-") as tmp:
        path = Path(tmp) / ("out.h5" if fmt == "hdf5" else "out")
        writer = writers.open_writer(path, fmt, image_shape=(side, side, channels),
                                     class_names=[str(k) for k in range(classes)], provenance={"bench": "write"},
                                     overwrite=True, latent_dim=latent_dim)
        started = last = time.perf_counter()
        while written < total:
            m = min(batch_size, total - written)
            labels = np.arange(written, written + m) % classes
            writer.write(images[:m], labels, np.zeros(m, np.int64), np.zeros(m, bool),
                         {"label_confidence": np.ones(m), "noise": np.full(m, 0.5),
                          "latent": rng.standard_normal((m, latent_dim))})
            written += m
            if written // report_every > (written - m) // report_every or written == total:
                now = time.perf_counter()
                marks.append({"images": written, "seconds": now - started, "since_last": now - last})
                last = now
        finish_started = time.perf_counter()
        writer.finish()
        finish = time.perf_counter() - finish_started
        seconds = time.perf_counter() - started  # before the temporary output is deleted
    return {"format": fmt, "images": total, "seconds": seconds, "finish_seconds": finish,
            "images_per_s": total / seconds, "marks": marks}
