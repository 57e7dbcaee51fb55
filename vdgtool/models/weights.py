"""Safe loading of local weight files: never unpickles arbitrary code."""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

from vdgtool.errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module")


def load_state_dict_safely(path) -> dict:
    """Read a state dict from ``path`` with ``torch.load(weights_only=True)``.

    Accepts a bare state dict or a checkpoint dict wrapping it under ``"state_dict"`` / ``"model"``
    (also ``"model_state"``, ``"model_state_dict"``, ``"module"``), and strips a DDP ``module.``
    prefix. Raises :class:`CheckpointError` for a missing, damaged or unsafe file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist", "check the path given to --weights / --init")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise CheckpointError(
            f"{path} contains pickled Python objects, not only tensors ({detail.strip()[:200]}); "
            "vdgtool never unpickles arbitrary code (torch.load weights_only=True)",
            "re-save just the weights from a trusted environment: "
            "torch.save(model.state_dict(), 'weights.pt')") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else 'empty'})",
                              "the file is damaged or truncated; copy or download it again") from exc
    return unwrap_state_dict(obj, source=path)


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict:
    """Find the tensor mapping inside a checkpoint object (see :func:`load_state_dict_safely`)."""
    for _ in range(3):
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not any(torch.is_tensor(v) for v in obj.values()):
                obj = inner
                continue
        break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict",
                              "save model.state_dict() (or a dict with it under 'model' / 'state_dict')")
    sd = {str(k): v for k, v in obj.items() if torch.is_tensor(v)}
    if not sd:
        raise CheckpointError(f"{source} contains no tensors (keys: {', '.join(map(str, list(obj)[:5]))})",
                              "save model.state_dict() (or a dict with it under 'model' / 'state_dict')")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd
