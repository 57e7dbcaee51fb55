"""Cluster environment: SLURM arrays, torchrun ranks."""

from __future__ import annotations

import os


def _int_env(name: str, default: int | None = None, remedy: str = "") -> int | None:
    """An integer environment variable; ConfigError naming it when it is set but not an integer."""
    from vdgtool.errors import ConfigError

    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"the environment variable {name}={raw!r} is not an integer",
                          remedy or f"unset {name} or set it to an integer") from None


def shard_defaults() -> tuple[int, int]:
    """(num_shards, shard_index) from SLURM array variables, else (1, 0)."""
    from vdgtool.errors import ConfigError

    remedy = "unset it, or pass --num-shards / --shard-index explicitly"
    count = _int_env("SLURM_ARRAY_TASK_COUNT", None, remedy)
    idx = _int_env("SLURM_ARRAY_TASK_ID", None, remedy)
    if count is not None and idx is not None:
        lo = _int_env("SLURM_ARRAY_TASK_MIN", 0, remedy)
        step = max(1, _int_env("SLURM_ARRAY_TASK_STEP", 1, remedy))
        shard = (idx - lo) // step
        if count < 1 or not 0 <= shard < count:
            raise ConfigError(f"SLURM_ARRAY_TASK_ID={idx} (min {lo}, step {step}) is not one of the "
                              f"{count} array tasks of SLURM_ARRAY_TASK_COUNT", remedy)
        return count, shard
    return 1, 0


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun or SLURM.

    A WORLD_SIZE > 1 without the rendezvous variables torchrun sets (MASTER_ADDR, MASTER_PORT) is a stray
    variable, not a distributed launch: refused with a ConfigError instead of hanging in the rendezvous.
    """
    from vdgtool.errors import ConfigError

    if "WORLD_SIZE" not in os.environ:
        return 0, 0, 1
    remedy = "launch with torchrun (which sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or unset WORLD_SIZE"
    world = _int_env("WORLD_SIZE", 1, remedy)
    rank = _int_env("RANK", 0, remedy)
    local = _int_env("LOCAL_RANK", 0, remedy)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"RANK={rank}, LOCAL_RANK={local}, WORLD_SIZE={world} are not a valid rank layout", remedy)
    if world > 1:
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise ConfigError(f"WORLD_SIZE={world} is set but {' and '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not, so this is not a torchrun launch", remedy)
        _int_env("MASTER_PORT", None, remedy)
    return rank, local, world


def shard_items(items: list, num_shards: int, shard_index: int) -> list:
    """Strided split: item i goes to shard i % num_shards (balanced across class-sorted lists)."""
    from vdgtool.errors import InputError

    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise InputError(f"shard index {shard_index} is outside 0..{num_shards - 1}",
                         "pass --shard-index between 0 and --num-shards - 1")
    return items[shard_index::num_shards]
