"""Every derived seed comes from one hash of its parts: any user seed works, and no two purposes collide."""

import h5py
import numpy as np

from datagen.common.seeds import SEED_LIMIT, derive_seed, generator
from datagen.data.imageset import draw_per_class


def test_derived_seeds_fit_a_generator_and_depend_on_every_part():
    seeds = {derive_seed("augment-batch", s, c, k, 0) for s in (0, 2**32 - 1, 10**30) for c in range(3) for k in (0, 7)}
    assert len(seeds) == 18 and all(0 <= s < SEED_LIMIT for s in seeds)
    assert derive_seed("evaluate-repeat", 1, 1000) != derive_seed("evaluate-repeat", 2, 0)  # seed*1000+r collided
    assert derive_seed("a", 1) == derive_seed("a", 1) != derive_seed("b", 1)
    generator("x", 2**64)  # never overflows torch's signed 64-bit seed


def test_draws_are_fixed_by_the_seed_and_k_draws_are_a_prefix_of_all():
    labels = np.repeat(np.arange(3), 20)
    import torch

    labels = torch.as_tensor(labels)
    a, b = draw_per_class(labels, 3, 5, seed=7), draw_per_class(labels, 3, 5, seed=7)
    full = draw_per_class(labels, 3, None, seed=7)
    assert all(torch.equal(x, y) and torch.equal(x, f[:5]) for x, y, f in zip(a, b, full))
    assert all(sorted(f.tolist()) == list(range(20 * c, 20 * c + 20)) for c, f in enumerate(full))
    assert not all(torch.equal(x, y) for x, y in zip(a, draw_per_class(labels, 3, 5, seed=8)))


def test_augment_takes_the_largest_seed(cli, run, tmp_path):
    """`--seed 20000` and above overflowed the batch seed (seed * 1_000_003 * ...) with 'Overflow when unpacking'."""
    done = cli("augment", str(run), "--per-class", "5", "--seed", "4294967295", "--no-filter", "--out", "big.h5")
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "big.h5") as f:
        assert np.bincount(f["labels"][:]).tolist() == [5] * 10


def test_evaluate_takes_a_large_seed(cli, run):
    """`evaluate --seed 19` reached the same overflow through seed * 1000 + r."""
    done = cli("evaluate", "--run", str(run), "--labels-per-class", "5", "--repeats", "1", "--arms", "real,real+gan",
               "--gan-per-class", "5", "--steps", "2", "--no-quality", "--no-filter", "--seed", "4294967295")
    assert done.returncode == 0, done.stderr
