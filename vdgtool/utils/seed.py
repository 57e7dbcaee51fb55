"""One ``--seed`` drives every random generator."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def derive_seed(seed: int, *parts) -> int:
    """A stable per-item seed from the run seed and an identity (video key, epoch, ...)."""
    h = hashlib.blake2b(repr((seed,) + tuple(parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") % (2**31 - 1)
