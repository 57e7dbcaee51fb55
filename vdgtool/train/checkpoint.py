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


def network_states(ck: dict) -> dict[str, dict]:
    """Network name -> state dict of a vdgtool checkpoint (older single-network checkpoints: ``model``
    and the ``extra`` modules)."""
    nets = ck.get("networks")
    if isinstance(nets, dict) and nets:
        return nets
    out = {"model": ck["model"]}
    out.update(ck.get("extra") or {})
    return out


def checked_config(ck: dict) -> dict:
    """The config of a vdgtool checkpoint, refused (CheckpointError) unless it can rebuild the model:
    a dict with a model name, a list of class names and (optional) model kwargs / networks as dicts."""
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
    for key in ("model_kwargs", "networks", "hparams"):
        if not isinstance(cfg.get(key) or {}, dict):
            raise CheckpointError(f"{where} has {key} that are not a dict", remedy)
    if not isinstance(ck.get("model"), dict):
        raise CheckpointError(f"{where} holds no model weights (a {type(ck.get('model')).__name__})", remedy)
    return cfg


_checked_config = checked_config


def _network_records(cfg: dict, primary: str = "model") -> dict:
    """name -> {model, model_kwargs (as created), role, input_spec} of a run config (older configs: one)."""
    recs = cfg.get("networks")
    if isinstance(recs, dict) and recs:
        return recs
    return {primary: {"model": cfg["model"], "model_kwargs": cfg.get("model_kwargs") or {}, "role": "main",
                      "input_spec": cfg.get("input_spec")}}


def _load_network(model, state, where: str, what: str) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} holds no weights for {what}", "pass a checkpoint written by vdgtool train")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"the weights of {what} in {where} do not fit "
                              f"({' '.join(str(exc).split())[:160]})", "check the model kwargs") from None


def _training_checkpoint(path_or_obj) -> tuple[dict, dict]:
    """(checkpoint, checked config) of a vdgtool training checkpoint (path, run dir or loaded dict)."""
    ck = load_checkpoint(path_or_obj) if isinstance(path_or_obj, str) else path_or_obj
    if not is_vdgtool_checkpoint(ck):
        raise CheckpointError(f"{ck.get('_path', 'checkpoint')} is not a vdgtool training checkpoint "
                              "(no model config inside)",
                              "pass a checkpoint written by vdgtool train, or use --model NAME --weights FILE")
    return ck, _checked_config(ck)


def _create(rec: dict, num_classes: int, where: str, name: str):
    """A network from its record in a run config (model name, kwargs as created, input spec)."""
    from vdgtool.models import create_model
    from vdgtool.models.registry import InputSpec

    if not isinstance(rec, dict) or not isinstance(rec.get("model"), str):
        raise CheckpointError(f"{where} records no network '{name}'", "pass a checkpoint written by vdgtool train")
    net = create_model(rec["model"], num_classes=num_classes, **dict(rec.get("model_kwargs") or {}))
    if rec.get("input_spec"):
        net.input_spec = InputSpec.from_dict(rec["input_spec"])
    return net


def build_method_from_checkpoint(path_or_obj, device="cpu"):
    """(method, config) from a vdgtool checkpoint: the recorded method with all its networks, weights and
    state, in eval mode on ``device`` (what ``eval``, ``score`` and ``features`` predict with)."""
    from vdgtool.methods import get_method, parse_hparams

    ck, cfg = _training_checkpoint(path_or_obj)
    where = ck.get("_path", "checkpoint")
    method_cls = get_method(cfg.get("method", "erm"))
    hp = parse_hparams(method_cls, cfg.get("hparams") or {})
    records = _network_records(cfg, next(iter(method_cls.NETWORKS)))
    n = len(cfg["class_names"])
    nets = {name: _create(records.get(name), n, where, name) for name in method_cls.NETWORKS}
    method = method_cls(nets, n, hp, device=device, class_names=list(cfg["class_names"]), inference=True)
    states = network_states(ck)
    for name, module in method.networks().items():
        _load_network(module, states.get(name), where, f"network '{name}'")
    method.set_state(ck.get("method_state") or {})
    method.to(device).eval()
    return method, cfg


def build_from_checkpoint(path_or_obj, device="cpu", num_classes: int | None = None):
    """(model, config) from a vdgtool checkpoint: its main network, in eval mode on ``device``."""
    ck, cfg = _training_checkpoint(path_or_obj)
    rec = _network_records(cfg)
    name = "model" if "model" in rec else next(iter(rec))
    if len(rec) > 1:  # a multi-network method: its primary network
        from vdgtool.methods import get_method

        name = next(iter(get_method(cfg.get("method", "erm")).NETWORKS))
    where = ck.get("_path", "checkpoint")
    model = _create(rec.get(name), len(cfg["class_names"]), where, name)
    _load_network(model, ck["model"], where, f"model {rec[name]['model']}")
    if not rec[name].get("input_spec") and cfg.get("input_spec"):
        from vdgtool.models.registry import InputSpec

        model.input_spec = InputSpec.from_dict(cfg["input_spec"])
    model.to(device).eval()
    return model, cfg
