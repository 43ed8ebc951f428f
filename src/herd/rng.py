"""One seed in the config; every other seed is derived from it by hashing."""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *parts) -> int:
    """A 31-bit seed for (seed, stage, shard, ...), stable across runs and machines."""
    blob = "/".join(str(p) for p in (seed, *parts)).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def rng_for(seed: int, *parts) -> random.Random:
    return random.Random(derive_seed(seed, *parts))
