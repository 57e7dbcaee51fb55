"""Checkpoints: plain tensors + JSON-able config, always loaded with ``weights_only=True``.

A checkpoint holds everything needed to rebuild the model for inference (model name and kwargs, class
names, input convention) and, for ``--resume``, the optimizer/scheduler/scaler states and the position
(epoch, step) in training.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from vdgtool.errors import CheckpointError

FORMAT = "vdgtool-checkpoint-1"


def save_checkpoint(path: str, state: dict[str, Any]) -> str:
    """Atomic save (write to .partial, then rename)."""
    state = dict(state)
    state["format"] = FORMAT
    if "config" in state:
        # keep the config JSON-clean so weights_only loading never meets an arbitrary object
        state["config"] = json.loads(json.dumps(state["config"], default=str))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".partial"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str, map_location="cpu") -> dict[str, Any]:
    """Load safely. Unsafe (pickled code) or damaged files give a one-line CheckpointError."""
    if os.path.isdir(path):
        cand = [os.path.join(path, "checkpoints", n) for n in ("best.pt", "last.pt")]
        found = [c for c in cand if os.path.exists(c)]
        if not found:
            raise CheckpointError(f"{path} holds no checkpoints/best.pt or checkpoints/last.pt",
                                  "pass a checkpoint file or a finished run directory")
        path = found[0]
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist", "check the path")
    from vdgtool.models.weights import torch_load_safely

    obj = torch_load_safely(path, map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict",
                              "save a state_dict or a vdgtool checkpoint")
    obj["_path"] = path
    return obj


def is_vdgtool_checkpoint(obj: dict) -> bool:
    return obj.get("format") == FORMAT and "config" in obj and "model" in obj


def checked_config(ck: dict) -> dict:
    """The config of a vdgtool checkpoint, refused (CheckpointError) unless it can rebuild the model:
    a dict with a model name, a list of class names and (optional) model kwargs as a dict."""
    where = ck.get("_path", "checkpoint")
    cfg = ck.get("config")
    remedy = "the checkpoint is damaged or was not written by vdgtool train; use another checkpoint"
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where} has a config of type {type(cfg).__name__}, not a dict", remedy)
    if not isinstance(cfg.get("model"), str) or not cfg["model"]:
        raise CheckpointError(f"{where} names no model in its config", remedy)
    names = cfg.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
        raise CheckpointError(f"{where} has no class names in its config (class_names: "
                              f"{type(names).__name__})", remedy)
    if not isinstance(cfg.get("model_kwargs", {}), dict):
        raise CheckpointError(f"{where} has model_kwargs that are not a dict", remedy)
    if not isinstance(ck.get("model"), dict):
        raise CheckpointError(f"{where} holds no model weights (a {type(ck.get('model')).__name__})", remedy)
    return cfg


def build_from_checkpoint(path_or_obj, device="cpu", num_classes: int | None = None):
    """(model, config) from a vdgtool checkpoint; the model is in eval mode on ``device``."""
    from vdgtool.models import create_model

    ck = load_checkpoint(path_or_obj) if isinstance(path_or_obj, str) else path_or_obj
    if not is_vdgtool_checkpoint(ck):
        raise CheckpointError(f"{ck.get('_path', 'checkpoint')} is not a vdgtool training checkpoint "
                              "(no model config inside)",
                              "pass a checkpoint written by vdgtool train, or use --model NAME --weights FILE")
    cfg = checked_config(ck)
    model = create_model(cfg["model"], num_classes=len(cfg["class_names"]), **cfg.get("model_kwargs", {}))
    try:
        model.load_state_dict(ck["model"])
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"the weights in {ck.get('_path')} do not fit model {cfg['model']} "
                              f"({' '.join(str(exc).split())[:160]})", "check the model kwargs") from None
    model.to(device).eval()
    return model, cfg
