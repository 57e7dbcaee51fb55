"""Training methods (objectives): a registry of classes in the spirit of DomainBed's algorithms.

A method owns the objective, its networks and its state, not the loop. The engine
(``vdgtool.train.engine``) builds the networks a method declares, the data streams (labelled source,
unlabelled target, paired RGB + flow), optimizers, AMP, DDP, checkpoints and logs; each iteration the
method gets a dict of named batches and a :class:`Stepper` and decides what to compute and which
optimizer to step. The contract (see docs/train.md, "Writing a method"):

* ``NETWORKS``: name -> role of the networks the engine builds (``"main"``: ``--model`` with
  ``--weights/--init/--pretrained``; ``"flow"``: ``--flow-model`` with ``--flow-*``). They become
  attributes of the method (``self.model``, or ``self.rgb`` / ``self.flow``). Modules the method builds
  itself (a spatial student, a domain classifier, a pace head) are added to :meth:`networks` so they are
  checkpointed, wrapped in DDP and optimised.
* ``INPUTS``: batch keys holding clips, one per network that reads one (``("video",)``, or
  ``("rgb", "flow")`` for paired items).
* ``training_step(batches, stepper)``: ``batches["source"]`` (labelled), ``batches["target"]``
  (unlabelled, labels -1) when the method asks for a target stream (:meth:`wants_target`).
* ``predict(batch) -> {"logits", "probs"?, "streams"?}``: what validation, ``eval``, ``score``,
  ``features`` and prediction stores use; ``features(batch)`` the pooled features.
* ``get_state()`` / ``set_state()``: non-parameter state (tensors, lists, numbers, strings) saved in every
  checkpoint and restored exactly by ``--resume``.
* hooks: ``setup(ctx)`` (once, with the engine's :class:`~vdgtool.train.engine.TrainContext`),
  ``on_epoch_start(epoch)``, ``on_epoch_end(epoch)``; ``self.progress`` (epoch, step, totals) and
  ``self.log_event(name, **data)`` (a line in results.jsonl and in every logger).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdgtool.errors import ConfigError, VdgError

METHODS: dict[str, type["Method"]] = {}
BUILTIN_MODULES = ("vdgtool.methods.erm", "vdgtool.methods.drl", "vdgtool.methods.da",
                   "vdgtool.methods.two_stream", "vdgtool.methods.ada",
                   "vdgtool.methods.cfb", "vdgtool.methods.augsearch")


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
    """Import the built-in method modules, and the user's modules named in ``VDGTOOL_METHOD_MODULES``
    (comma-separated import paths, e.g. ``mylab.methods``: their ``@register_method`` classes join the
    registry in every verb and in every torchrun / SLURM process)."""
    import importlib
    import os

    extra = [m.strip() for m in os.environ.get("VDGTOOL_METHOD_MODULES", "").split(",") if m.strip()]
    for mod in extra:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"VDGTOOL_METHOD_MODULES names {mod!r}, which cannot be imported ({exc})",
                              "fix the module path (it must be importable, e.g. on PYTHONPATH)") from None
    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


@dataclass
class HParam:
    """A method hyper-parameter: default, help, and optionally its choices, range and unit."""

    default: Any
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    unit: str = ""


def parse_hparams(method_cls: type["Method"], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults of the method updated by ``overrides`` (strings are converted to the default's type;
    ``a/b`` fractions are accepted for numbers), with choices and ranges checked."""
    hp = {k: v.default for k, v in method_cls.HPARAMS.items()}
    for k, v in (overrides or {}).items():
        if k not in method_cls.HPARAMS:
            raise ConfigError(f"method '{method_cls.name}' has no hyper-parameter '{k}'",
                              f"known: {', '.join(sorted(method_cls.HPARAMS)) or 'none'}")
        hp[k] = _convert(v, method_cls.HPARAMS[k].default, k)
    for k, spec in method_cls.HPARAMS.items():
        v = hp[k]
        if spec.choices and v not in spec.choices:
            raise ConfigError(f"{k}={v!r} is not one of {spec.choices}", f"pass --hp {k}=<one of them>")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise ConfigError(f"hyper-parameter {k}={v} is not finite", f"pass a finite --hp {k}")
            if spec.min is not None and v < spec.min:
                raise ConfigError(f"hyper-parameter {k}={v} is below its minimum {spec.min:g}",
                                  f"pass --hp {k}=<value >= {spec.min:g}>")
            if spec.max is not None and v > spec.max:
                raise ConfigError(f"hyper-parameter {k}={v} is above its maximum {spec.max:g}",
                                  f"pass --hp {k}=<value <= {spec.max:g}>")
    return hp


def _number(v: str) -> float:
    if "/" in v:
        a, b = v.split("/", 1)
        return float(a) / float(b)
    return float(v)


def _convert(v, default, name):
    if isinstance(default, bool):
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(v, str) and v.lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(v, (int, float)) and v in (0, 1):
            return bool(v)
        raise ConfigError(f"hyper-parameter {name}={v!r} is not true/false", f"pass --hp {name}=true|false")
    if isinstance(default, (int, float)) and default is not None:
        try:
            x = _number(v) if isinstance(v, str) else float(v)
        except (TypeError, ValueError, ZeroDivisionError):
            raise ConfigError(f"hyper-parameter {name}={v!r} is not a number",
                              f"pass --hp {name}=<{type(default).__name__}>") from None
        if isinstance(default, int):
            if not math.isfinite(x) or not float(x).is_integer():
                raise ConfigError(f"hyper-parameter {name}={v!r} is not an integer", f"pass --hp {name}=<int>")
            return int(x)
        return float(x)
    if isinstance(default, str):
        return str(v)
    if isinstance(default, (list, tuple)) and isinstance(v, str):
        return [_auto(x.strip()) for x in v.split(",") if x.strip()]
    return v


def _auto(s: str):
    for conv in (int, _number):
        try:
            return conv(s)
        except (ValueError, ZeroDivisionError):
            pass
    return s


class NonFiniteLoss(VdgError):
    """A training loss became NaN or infinite."""


class Stepper:
    """Backward + optimizer steps with AMP loss scaling, gradient clipping and a non-finite guard.

    ``step(loss, names)`` zeroes, back-propagates once and steps one or several named optimizers;
    ``end_iteration()`` (called by the engine after every training step) updates the AMP scaler once
    per iteration, however many optimizers stepped.
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], scaler, clip_grad: float | None,
                 autocast: Callable, allow_nonfinite: bool = False):
        self.optimizers = optimizers
        self.scaler = scaler
        self.clip_grad = clip_grad
        self.autocast = autocast
        self.allow_nonfinite = allow_nonfinite
        self.skipped = 0
        self._stepped = False
        #: under DDP, parameters outside the wrapped networks (method-built modules): averaged here
        self.sync_params: list[torch.nn.Parameter] = []
        self.world = 1
        self.where = ""  # "epoch E step S", set by the engine for error messages

    def zero_grad(self, name: str | tuple = "model") -> None:
        for n in self._names(name):
            self.optimizers[n].zero_grad(set_to_none=True)

    def _names(self, name) -> tuple[str, ...]:
        names = (name,) if isinstance(name, str) else tuple(name)
        missing = [n for n in names if n not in self.optimizers]
        if missing:
            raise ConfigError(f"no optimizer '{missing[0]}' (the method declares {', '.join(self.optimizers)})",
                              "this is a bug in the method: step a declared parameter group")
        return names

    def step(self, loss: torch.Tensor, name: str | tuple = "model", retain_graph: bool = False,
             clip_value: float | None = None) -> bool:
        """One update of the named optimizer(s) on ``loss``; False if the step was skipped (non-finite).

        ``clip_value`` clamps every gradient element to [-v, v] (the CFB release's clamp), after
        unscaling and before the norm clipping of ``--clip-grad``.
        """
        names = self._names(name)
        opts = [self.optimizers[n] for n in names]
        for o in opts:
            o.zero_grad(set_to_none=True)
        if not torch.isfinite(loss.detach()).all():
            if not self.allow_nonfinite:
                raise NonFiniteLoss(f"the training loss became {loss.detach().float().item()} at {self.where or 'a step'}",
                                    "lower --lr, enable --clip-grad, check the data, or pass --allow-nonfinite to "
                                    "skip such steps")
            self.skipped += 1
            return False
        if self.scaler is not None:
            self.scaler.scale(loss).backward(retain_graph=retain_graph)
            for o in opts:
                self.scaler.unscale_(o)
        else:
            loss.backward(retain_graph=retain_graph)
        if self.world > 1 and self.sync_params:
            self._average_gradients(opts)
        params = [p for o in opts for g in o.param_groups for p in g["params"] if p.grad is not None]
        if clip_value:
            torch.nn.utils.clip_grad_value_(params, float(clip_value))
        if self.clip_grad:
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
        for o in opts:
            if self.scaler is not None:
                self.scaler.step(o)
            else:
                o.step()
        self._stepped = True
        return True

    def _average_gradients(self, opts) -> None:
        import torch.distributed as dist

        mine = {id(p) for o in opts for g in o.param_groups for p in g["params"]}
        ps = [p for p in self.sync_params if id(p) in mine]
        if not ps:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in ps]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        off = 0
        for p, g in zip(ps, grads):
            n = g.numel()
            p.grad = flat[off:off + n].view_as(p).clone()
            off += n

    def end_iteration(self) -> None:
        if self.scaler is not None and self._stepped:
            self.scaler.update()
        self._stepped = False


@dataclass
class Progress:
    """Where training is: what a method sees as ``self.progress`` (set by the engine before each step)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    steps_per_epoch: int = 1
    epochs: int = 1

    @property
    def total_steps(self) -> int:
        return max(1, self.steps_per_epoch * self.epochs)

    @property
    def fraction(self) -> float:
        """Share of training done, in [0, 1] (Ganin's p)."""
        return min(1.0, self.global_step / self.total_steps)


def _state_ok(obj, path="state") -> None:
    """Method state must load with weights_only=True: tensors, numbers, strings, lists, dicts."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _state_ok(v, f"{path}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise ConfigError(f"method {path} has a key of type {type(k).__name__}", "use str or int keys")
            _state_ok(v, f"{path}.{k}")
        return
    raise ConfigError(f"method {path} holds a {type(obj).__name__}, which a weights_only checkpoint cannot hold",
                      "return tensors, numbers, strings, lists and dicts from get_state()")


class Method(nn.Module):
    """Base class. Subclasses set HPARAMS (and NETWORKS/INPUTS when they are not one ``model`` on
    ``video``) and implement :meth:`training_step`."""

    name = "base"
    description = ""
    HPARAMS: dict[str, HParam] = {}
    #: networks the engine builds: attribute name -> role ("main": --model; "flow": --flow-model)
    NETWORKS: dict[str, str] = {"model": "main"}
    #: batch keys holding the clips of each network (in the order of NETWORKS)
    INPUTS: tuple[str, ...] = ("video",)

    def __init__(self, networks: dict[str, nn.Module] | nn.Module, num_classes: int, hparams: dict[str, Any], *,
                 device=None, class_names: list[str] | None = None, inference: bool = False):
        super().__init__()
        if isinstance(networks, nn.Module):
            networks = {next(iter(self.NETWORKS)): networks}
        missing = [n for n in self.NETWORKS if n not in networks]
        if missing:
            raise ConfigError(f"method {self.name} needs network(s) {missing}", "this is a bug in the caller")
        for n in self.NETWORKS:
            setattr(self, n, networks[n])
        self.num_classes = num_classes
        self.hp = dict(hparams)
        self.device = device
        self.class_names = class_names or []
        self.inference = bool(inference)  # built to predict from a checkpoint: nothing may be downloaded
        self.progress = Progress()
        self._event_sink: Callable[[str, dict], None] | None = None
        self.ctx = None

    # -- networks ---------------------------------------------------------------------------------
    @property
    def primary(self) -> str:
        """Name of the main network (its weights are also the checkpoint's ``model`` entry)."""
        return next(iter(self.NETWORKS))

    def networks(self) -> dict[str, nn.Module]:
        """Every trained module, by attribute name: the engine-built networks and the method's own modules
        (checkpointed, DDP-wrapped when they have trainable parameters)."""
        out = {n: getattr(self, n) for n in self.NETWORKS}
        out.update(self.extra_modules())
        return out

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules the method builds itself (a spatial student, a domain classifier, a head)."""
        return {}

    def net(self, name: str | None = None) -> nn.Module:
        """A network without its DDP wrapper: use it for passes that do not back-propagate into its
        parameters (attacks, no-grad passes), and for attributes such as ``input_spec``."""
        from vdgtool.runtime import unwrap

        return unwrap(getattr(self, name or self.primary))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each optimizer (one optimizer per name); ``model`` is always present. Default:
        one group over every network."""
        seen, params = set(), []
        for m in self.networks().values():
            for p in m.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return {"model": params}

    def input_specs(self) -> dict[str, Any]:
        """Input key -> the input spec of the network reading it."""
        return {k: self.net(n).input_spec for k, n in zip(self.INPUTS, self.NETWORKS)}

    # -- data -------------------------------------------------------------------------------------
    def wants_target(self) -> bool:
        """Does this configuration use an unlabelled target stream? (``--target`` is then passed on)."""
        return False

    def requires_target(self) -> bool:
        """Is a target stream mandatory? (a run without ``--target`` is refused)."""
        return False

    def dataset_views(self) -> dict[str, Callable]:
        """Extra per-item views of the source stream (``ClipDataset(views=)``)."""
        return {}

    def target_views(self) -> dict[str, Callable]:
        """Extra per-item views of the target stream (e.g. a pace-resampled clip)."""
        return {}

    # -- hooks the engine calls -------------------------------------------------------------------
    def setup(self, ctx) -> None:
        """Once, after data and optimizers exist (``ctx``: the engine's TrainContext)."""
        self.ctx = ctx

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def on_epoch_end(self, epoch: int) -> None:
        """After the epoch's last step, before validation and the epoch's checkpoint."""

    def epoch_metrics(self) -> dict[str, Any]:
        """Numbers for this epoch's results.jsonl record (under ``method``), e.g. a bank's fill."""
        return {}

    def training_step(self, batches: dict[str, dict], stepper: Stepper) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def get_state(self) -> dict[str, Any]:
        """Non-parameter state for the checkpoint (tensors, numbers, strings, lists, dicts)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""

    def log_event(self, name: str, **data) -> None:
        """A method event (augmentation added, bank rebuilt, ...): one line in results.jsonl and the loggers."""
        if self._event_sink is not None:
            self._event_sink(name, data)

    # -- prediction -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """``{"logits": (B, C)}`` (plus ``"probs"`` when the method fuses probabilities, and
        ``"streams": {name: logits}`` for multi-stream methods) on clips ``batch[k]`` (B, C, T, H, W)."""
        return {"logits": self.net()(batch[self.INPUTS[0]])}

    @torch.no_grad()
    def features(self, batch: dict) -> torch.Tensor:
        """Pooled features (B, D); multi-stream methods concatenate their streams' features."""
        return torch.cat([self.net(n).forward_features(batch[k]).flatten(1)
                          for k, n in zip(self.INPUTS, self.NETWORKS)], 1)

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
        m = y >= 0
        if not m.any():
            return float("nan")
        return (logits[m].argmax(1) == y[m]).float().mean().item()

    @staticmethod
    def ce(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0,
           weight: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over labelled rows (y >= 0), optionally weighted per row (pseudo-labels)."""
        if weight is None:
            return F.cross_entropy(logits.float(), y, ignore_index=-1, label_smoothing=label_smoothing)
        rows = F.cross_entropy(logits.float(), y, ignore_index=-1, label_smoothing=label_smoothing,
                               reduction="none")
        w = weight.float() * (y >= 0).float()
        return (rows * w).sum() / w.sum().clamp_min(1e-12)


def method_state(method: Method) -> dict:
    st = method.get_state() or {}
    _state_ok(st)
    return st


__all__ = ["METHODS", "HParam", "Method", "NonFiniteLoss", "Progress", "Stepper", "get_method", "list_methods",
           "method_state", "parse_hparams", "register_method"]
