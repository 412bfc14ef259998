"""The one way datagen derives a random seed from several parts: a user's seed, a purpose, a class, a repeat."""

from __future__ import annotations

import hashlib

import torch

SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes a signed 64-bit value


def derive_seed(*parts: int | str) -> int:
    """A seed in [0, 2**63) that depends on every part and on nothing else, the same on every machine.

    Arithmetic on seeds (seed * 1000 + r) overflows for large user seeds and lets (1, 1000) collide with
    (2, 0); hashing the parts does neither. Name the purpose in the parts, so two uses of one user seed differ.
    """
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") % SEED_LIMIT


def generator(*parts: int | str) -> torch.Generator:
    """A CPU random generator seeded with derive_seed(*parts)."""
    return torch.Generator().manual_seed(derive_seed(*parts))
