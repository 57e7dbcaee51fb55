"""Training methods (objectives): a registry of classes in the spirit of DomainBed's algorithms.

A method owns the objective, not the loop. The engine (``vdgtool.train.engine``) builds the model,
data, optimizers, AMP, DDP, checkpoints and logs; the method gets a batch and a :class:`Stepper` and
decides what to compute and which optimizer to step (one for ERM, two for min-max methods such as
DRL-distill). Methods declare their hyper-parameters with defaults, so ``--hp name=value`` and
``train --list-methods`` work for every method, including ones added later (flow memory bank and
pace prediction, APN video-ADA, searched augmentation, self-training).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdgtool.errors import ConfigError

METHODS: dict[str, type["Method"]] = {}


def register_method(name: str) -> Callable:
    def deco(cls):
        if name in METHODS and METHODS[name] is not cls:
            raise ConfigError(f"method '{name}' is registered twice", "rename one of them")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def list_methods(pattern: str = "*") -> list[str]:
    _load_builtin()
    return sorted(n for n in METHODS if fnmatch.fnmatch(n, pattern))


def get_method(name: str) -> type["Method"]:
    _load_builtin()
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'", f"choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def _load_builtin() -> None:
    # importing registers; kept explicit (no import-time side effects on vdgtool import)
    import importlib

    for mod in ("vdgtool.methods.erm", "vdgtool.methods.drl"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


@dataclass
class HParam:
    default: Any
    help: str = ""
    choices: tuple | None = None


def parse_hparams(method_cls: type["Method"], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults of the method updated by ``overrides`` (strings are converted to the default's type)."""
    hp = {k: v.default for k, v in method_cls.HPARAMS.items()}
    for k, v in (overrides or {}).items():
        if k not in method_cls.HPARAMS:
            raise ConfigError(f"method '{method_cls.name}' has no hyper-parameter '{k}'",
                              f"known: {', '.join(sorted(method_cls.HPARAMS)) or 'none'}")
        spec = method_cls.HPARAMS[k]
        hp[k] = _convert(v, spec.default, k)
        if spec.choices and hp[k] not in spec.choices:
            raise ConfigError(f"{k}={hp[k]!r} is not one of {spec.choices}", f"pass --hp {k}=<one of them>")
    return hp


def _convert(v, default, name):
    if not isinstance(v, str) or isinstance(default, str) or default is None:
        return v
    try:
        if isinstance(default, bool):
            if v.lower() in ("1", "true", "yes", "on"):
                return True
            if v.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(v)
        if isinstance(default, int):
            return int(v)
        if isinstance(default, float):
            return float(v)
    except ValueError:
        raise ConfigError(f"hyper-parameter {name}={v!r} is not a {type(default).__name__}",
                          f"pass --hp {name}=<{type(default).__name__}>") from None
    return v


class Stepper:
    """Backward + optimizer step for one named optimizer, with AMP loss scaling and gradient clipping."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], scaler, clip_grad: float | None,
                 autocast: Callable):
        self.optimizers = optimizers
        self.scaler = scaler
        self.clip_grad = clip_grad
        self.autocast = autocast

    def zero_grad(self, name: str = "model") -> None:
        self.optimizers[name].zero_grad(set_to_none=True)

    def step(self, loss: torch.Tensor, name: str = "model", retain_graph: bool = False) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward(retain_graph=retain_graph)
            self.scaler.unscale_(opt)
        else:
            loss.backward(retain_graph=retain_graph)
        if self.clip_grad:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()


class Method(nn.Module):
    """Base class. Subclasses set HPARAMS and implement :meth:`training_step`."""

    name = "base"
    HPARAMS: dict[str, HParam] = {}
    #: extra optimizers beyond "model": name -> lr multiplier hyper-parameter name (or None)
    description = ""

    def __init__(self, model: nn.Module, num_classes: int, hparams: dict[str, Any], *, device=None,
                 class_names: list[str] | None = None):
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.hp = dict(hparams)
        self.device = device
        self.class_names = class_names or []

    # -- hooks the engine calls -------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each optimizer; "model" is always present."""
        return {"model": [p for p in self.model.parameters() if p.requires_grad]}

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules beyond the model that are trained and checkpointed (e.g. a spatial student)."""
        return {}

    def dataset_views(self) -> dict[str, Callable]:
        """Extra per-item views for ClipDataset (``views=``), e.g. pace-resampled clips."""
        return {}

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def training_step(self, batch: dict, stepper: Stepper) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
        m = y >= 0
        if not m.any():
            return float("nan")
        return (logits[m].argmax(1) == y[m]).float().mean().item()

    @staticmethod
    def ce(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, ignore_index=-1, label_smoothing=label_smoothing)
