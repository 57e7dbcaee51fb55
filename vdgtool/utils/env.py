"""Cluster environment: SLURM arrays, torchrun ranks."""

from __future__ import annotations

import os


def shard_defaults() -> tuple[int, int]:
    """(num_shards, shard_index) from SLURM array variables, else (1, 0)."""
    count = os.environ.get("SLURM_ARRAY_TASK_COUNT")
    idx = os.environ.get("SLURM_ARRAY_TASK_ID")
    if count and idx:
        lo = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = max(1, int(os.environ.get("SLURM_ARRAY_TASK_STEP", "1")))
        return int(count), (int(idx) - lo) // step
    return 1, 0


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun or SLURM."""
    if "WORLD_SIZE" in os.environ:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                int(os.environ["WORLD_SIZE"]))
    return 0, 0, 1


def shard_items(items: list, num_shards: int, shard_index: int) -> list:
    """Strided split: item i goes to shard i % num_shards (balanced across class-sorted lists)."""
    from vdgtool.errors import InputError

    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise InputError(f"shard index {shard_index} is outside 0..{num_shards - 1}",
                         "pass --shard-index between 0 and --num-shards - 1")
    return items[shard_index::num_shards]
