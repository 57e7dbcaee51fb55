"""The runtime every device-using verb shares (train, eval, score, features): device choice, mixed
precision, data loaders, distributed set-up.

One home, so `train` and `eval` can never disagree on what ``--device auto`` or ``--amp auto`` means,
and so DataLoader workers are started the same way everywhere (they ignore the SLURM pre-emption
signals, which the main process handles).
"""

from __future__ import annotations

import contextlib
import signal
from typing import Callable

import torch
import torch.nn as nn

from vdgtool.errors import ConfigError, InputError

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


# -- device ------------------------------------------------------------------------------------------
def resolve_device(name) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` -> a torch.device."""
    if isinstance(name, torch.device):
        return name
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device '{name}'", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name} requested but CUDA is not available", "use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {name} does not exist ({torch.cuda.device_count()} CUDA device(s))",
                         "use --device cuda:0 .. cuda:N-1")
    return dev


# -- mixed precision ---------------------------------------------------------------------------------
def _check_amp(amp: str) -> str:
    if amp not in AMP_CHOICES:
        raise ConfigError(f"unknown --amp '{amp}'", f"use one of {', '.join(AMP_CHOICES)}")
    return amp


def autocast_for(device, amp: str = "auto") -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument factory of the autocast context for ``device``: bf16 on CUDA when supported
    (``auto``/``bf16``), fp16 otherwise or when asked; a no-op on the CPU or with ``off``."""
    dev = torch.device(device)
    if dev.type != "cuda" or _check_amp(amp) == "off":
        return contextlib.nullcontext
    if amp in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return lambda: torch.autocast("cuda", dtype=torch.float16)


def grad_scaler_for(device, amp: str = "auto"):
    """A GradScaler when training runs in fp16 autocast on CUDA (bf16 needs none), else None."""
    dev = torch.device(device)
    if dev.type != "cuda" or _check_amp(amp) == "off":
        return None
    fp16 = amp == "fp16" or not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda") if fp16 else None


# -- data loaders ------------------------------------------------------------------------------------
def _worker_init(_worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGUSR1: SLURM signals the whole process group on pre-emption,
    and the main process must be the one that checkpoints (a dead worker would end the run first)."""
    for name in ("SIGTERM", "SIGUSR1"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    torch.set_num_threads(1)  # each worker decodes one item; N workers x N threads oversubscribes


def make_loader(dataset, batch_size: int, workers: int = 0, sampler=None, shuffle: bool = False,
                drop_last: bool = False, device=None, collate_fn=None) -> torch.utils.data.DataLoader:
    """A DataLoader with vdgtool's item collation, pinned memory on CUDA and signal-safe workers; over a dataset
    with device decoding on (vdgtool.data.device_decode) its batches are decoded on ``device``."""
    from vdgtool.data import collate_views
    from vdgtool.data.device_decode import DecodingLoader, base_dataset

    if int(batch_size) < 1:
        raise ConfigError(f"batch size {batch_size} must be at least 1", "pass --batch-size 1 or more")
    if int(workers) < 0:
        raise ConfigError(f"--workers {workers} must be 0 or more", "pass --workers 0 (main process) or more")
    kw = {}
    if int(workers) > 0:
        kw["worker_init_fn"] = _worker_init
        kw["prefetch_factor"] = 2
    loader = torch.utils.data.DataLoader(dataset, batch_size=int(batch_size), sampler=sampler, shuffle=shuffle,
                                         num_workers=int(workers), collate_fn=collate_fn or collate_views,
                                         drop_last=drop_last,
                                         pin_memory=bool(device is not None and torch.device(device).type == "cuda"),
                                         persistent_workers=False, **kw)
    base = base_dataset(dataset)
    if getattr(base, "device_decode", False):  # JPEG clips arrive encoded: decode each batch on the device
        return DecodingLoader(loader, base, device if device is not None else "cpu")
    return loader


def to_device(batch, device, non_blocking: bool = True):
    """Move every tensor of a (nested) batch dict to ``device``; other values are kept."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


# -- distributed -------------------------------------------------------------------------------------
def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment, else (0, 0, 1); a stray WORLD_SIZE is
    refused (see vdgtool.utils.env.dist_env)."""
    from vdgtool.utils.env import dist_env as env

    return env()


def init_distributed(device_name: str = "auto") -> tuple[int, int, int, torch.device]:
    """Join the torchrun process group when there is one; (rank, local_rank, world, device)."""
    rank, local, world = dist_env()
    if world == 1:
        return rank, local, world, resolve_device(device_name)
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and device_name not in ("cpu",)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return rank, local, world, torch.device("cuda", local)
    return rank, local, world, torch.device("cpu")


def unwrap(m: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or DataParallel) wrapper."""
    while isinstance(m, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        m = m.module
    return m


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def all_gather_objects(obj, world: int) -> list:
    """Every rank's ``obj`` (a list of ``world`` items; ``[obj]`` without distribution)."""
    if world <= 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


__all__ = ["AMP_CHOICES", "resolve_device", "autocast_for", "grad_scaler_for", "make_loader", "to_device",
           "dist_env", "init_distributed", "unwrap", "barrier", "all_gather_objects"]
