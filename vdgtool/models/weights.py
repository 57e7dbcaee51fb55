"""Safe loading of local weight files: never unpickles arbitrary code."""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

from vdgtool.errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module")


def torch_load_safely(path: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with one-line errors.

    A file that holds pickled Python objects (not only tensors and plain containers) is refused with
    the offending global named; a damaged or truncated file is reported as such.
    """
    _refuse_non_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "invalid load key" in str(exc):
            raise CheckpointError(f"{path} is not a torch checkpoint (unknown format)",
                                  "pass a file written by torch.save or vdgtool train") from None
        lines = [" ".join(ln.split()) for ln in str(exc).splitlines()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0] if lines else "")
        detail = detail.split(". Please use")[0].replace("WeightsUnpickler error: ", "")
        raise CheckpointError(
            f"{path} contains pickled Python objects, not only tensors ({detail[:160]}); vdgtool loads with "
            "torch.load(weights_only=True) and never unpickles arbitrary code",
            "re-save just the weights from a trusted environment: torch.save(model.state_dict(), 'weights.pt')"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        msg = " ".join(str(exc).split()).split(". ")[0]  # the first sentence names the problem
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: "
                              f"{msg[:160] if msg else 'empty'})",
                              "the file is damaged or truncated; copy it again or use another checkpoint") from None


def _refuse_non_checkpoint(path: str) -> None:
    """A text file (a config, a log, a list) or an empty file given as a checkpoint is named as such."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return  # torch.load reports it
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch zip format / legacy pickle protocol 2+
        return
    if not head:
        raise CheckpointError(f"{path} is an empty file, not a checkpoint", "copy the checkpoint again")
    if head[:8] == b"\x89HDF\r\n\x1a\n":  # a vdgtool store (clips, flow, features, predictions)
        raise CheckpointError(f"{path} is an HDF5 store, not a checkpoint",
                              "pass a .pt file or run directory written by vdgtool train (stores go to --data)")
    try:
        head.decode("utf-8")
        text = True
    except UnicodeDecodeError as exc:  # a character cut by the 4 KiB window still counts as text
        text = len(head) == 4096 and exc.start >= len(head) - 3
    text = text and all(c >= 32 or c in (9, 10, 13) for c in head)
    if text:
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:60] if head.strip() else ""
        raise CheckpointError(f"{path} is a text file, not a checkpoint (it starts with '{first}')",
                              "pass a .pt file written by torch.save or vdgtool train")


def load_state_dict_safely(path) -> dict:
    """Read a state dict from ``path`` with ``torch.load(weights_only=True)``.

    Accepts a bare state dict or a checkpoint dict wrapping it under ``"state_dict"`` / ``"model"``
    (also ``"model_state"``, ``"model_state_dict"``, ``"module"``), and strips a DDP ``module.``
    prefix. Raises :class:`CheckpointError` for a missing, damaged or unsafe file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist", "check the path given to --weights / --init")
    obj = torch_load_safely(path)
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
