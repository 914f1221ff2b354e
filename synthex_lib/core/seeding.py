"""Seeding: every random draw of the project comes from a generator seeded by its keys.

The keys are (experiment seed, specimen, index, purpose ...): the same keys give the same draws
whatever the number or order of workers, so results do not depend on how work is split.
"""

from __future__ import annotations

import hashlib

import numpy as np


def seed_ints(*keys: int | str) -> list[int]:
    """The integer entropy of a key tuple: integers modulo 2**63, strings by the first 8 bytes of their sha256."""
    return [int(k) % 2**63 if isinstance(k, int | np.integer)
            else int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "little")
            for k in keys]


def seeded_rng(*keys: int | str) -> np.random.Generator:
    """A numpy generator seeded from ``keys`` (``SeedSequence`` of :func:`seed_ints`)."""
    return np.random.default_rng(np.random.SeedSequence(seed_ints(*keys)))
