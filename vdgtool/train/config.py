"""The resolved training configuration (what ``RUN_DIR/config.json`` holds).

:class:`TrainConfig` is the one source of truth for ``vdgtool train``'s options: every field carries
its help text, choices and numeric range in its metadata; the CLI builds its options from them
(``vdgtool/cli/train.py``) and :meth:`TrainConfig.validate` checks the same ranges, so a value the CLI
would refuse is refused from a ``--config`` file or the Python API too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from vdgtool.errors import ConfigError, InputError


def opt(default: Any = None, help: str = "", *, choices: tuple | None = None, min: float | None = None,
        max: float | None = None, min_open: bool = False, cli: str | None = None, flag: str | None = None,
        path: bool = False, hidden: bool = False, group: str = "", factory=None):
    """A TrainConfig field with CLI metadata.

    ``cli``: the flag name (default ``--field-name``); ``flag``: for booleans, the CLI spelling of the
    non-default value (e.g. ``--no-flip``); ``path``: a file path, resolved to an absolute path when the
    run starts; ``min_open``: the minimum itself is excluded; ``hidden``: not a CLI option.
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max, "min_open": min_open, "cli": cli,
            "flag": flag, "path": path, "hidden": hidden, "group": group}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


#: options that may change when a run is resumed (they do not change what is computed)
RESUMABLE_CHANGES = ("workers", "device", "decode", "logger", "allow_nonfinite", "output")
#: options that may change on resume and are recorded in config.json ("resumed"): extending a run
RECORDED_CHANGES = ("epochs",)


@dataclass
class TrainConfig:
    # -- data ----------------------------------------------------------------------------------------
    data: list[str] = opt(help="Labelled training (source) clip store (repeatable; classes aligned by name).",
                          path=True, factory=list, group="data")
    val: list[str] = opt(help="Validation store (repeatable). The first is the source validation set used to pick "
                              "best.pt; the others are only reported.", path=True, factory=list, group="data")
    target: list[str] = opt(help="Unlabelled target store (repeatable): its labels are never read in training.",
                            path=True, factory=list, group="data")
    flow: list[str] = opt(help="Flow store(s) paired by video key with --data (methods on RGB + flow).",
                          path=True, factory=list, group="data")
    target_flow: list[str] = opt(help="Flow store(s) paired by video key with --target.", path=True, factory=list,
                                 group="data")
    val_flow: list[str] = opt(help="Flow store(s) paired by video key with --val.", path=True, factory=list,
                              group="data")
    pool: list[str] = opt(help="Pseudo-labelled pool store (repeatable) whose rows take labels from --pseudo; "
                               "rows not in --pseudo are dropped and the pool's own labels are never read.",
                          path=True, factory=list, group="data")
    pseudo: str | None = opt(None, "Predictions store of selected pool rows (vdgtool pseudolabel select): "
                                   "train on --data + those rows, with their predicted labels.", path=True,
                             group="data")
    pl_weight: float = opt(1.0, "Weight of the loss of pseudo-labelled rows (methods that weight per sample).",
                           min=0.0, group="data")
    mix: str = opt("union", "How pseudo-labelled pool rows join the source: union = one stream over source + pool "
                            "rows; balanced = every batch draws source and pool clips 1:1.",
                   choices=("union", "balanced"), group="data")
    output: str = opt("run", "Run directory.", cli="-o/--output", group="data")
    train_domains: list[str] = opt(help="Train only on videos of this domain (repeatable).", cli="--domain",
                                   factory=list, group="data")
    classes_file: str | None = opt(None, "Class list file fixing the label space.", cli="--classes", path=True,
                                   group="data")
    target_classes: str = opt("exact", "exact: the target stores' classes must be the source's; subset: the "
                                       "target may cover only part of the source's label space.",
                              choices=("exact", "subset"), group="data")
    target_batch_size: int | None = opt(None, "Target clips per step (default: --batch-size).", min=1, group="data")
    out_of_bound: str = opt("loop", "Dense clips of videos shorter than the clip span (short GIFs): loop = wrap "
                                    "around to the first frame (mmaction2's default), repeat_last = repeat the last "
                                    "frame. Used for training and validation clips.",
                            choices=("loop", "repeat_last"), group="data")
    paired_crop: str = opt("shared", "RGB + flow items: one crop/flip for both clips, or independent draws "
                                     "(as the CFB release).", choices=("shared", "independent"), group="data")
    # -- model ---------------------------------------------------------------------------------------
    model: str = opt("test_c3d", "Model name (see --list-models).", group="model")
    model_kwargs: dict[str, Any] = opt(help="Model keyword NAME=VALUE, e.g. backbone=resnet50 (repeatable).",
                                       cli="--model-arg", factory=dict, group="model")
    pretrained: bool = opt(False, "Start from the model's published weights (needs internet).", group="model")
    weights: str | None = opt(None, "Local weights file for the model (loaded weights_only).", path=True,
                              group="model")
    init: str | None = opt(None, "Fine-tune from this checkpoint (every network of the method whose name it "
                                 "holds; classifier kept when the classes match).", path=True, group="model")
    init_partial: bool = opt(False, "Allow --init / --flow-init to load fewer than half of a network's tensors.",
                             group="model")
    flow_model: str | None = opt(None, "Flow network of RGB + flow methods (default: MODEL_flow when registered, "
                                       "else --model with 2 input channels).", group="model")
    flow_model_kwargs: dict[str, Any] = opt(help="Flow network keyword NAME=VALUE (repeatable).",
                                            cli="--flow-model-arg", factory=dict, group="model")
    flow_pretrained: bool = opt(False, "Flow network from its published weights.", group="model")
    flow_weights: str | None = opt(None, "Local weights file for the flow network.", path=True, group="model")
    flow_init: str | None = opt(None, "Fine-tune the flow network from this checkpoint.", path=True, group="model")
    freeze_backbone: bool = opt(False, "Train only the classifiers (and method heads).", group="model")
    freeze_bn: bool = opt(False, "Keep BatchNorm statistics and affine parameters fixed.", group="model")
    linear_probe: bool = opt(False, "Linear probe: frozen backbone and BN, re-initialised classifier.",
                             group="model")
    num_frames: int | None = opt(None, "Override the model's clip length / number of segments.", min=1,
                                 group="model")
    size: int | None = opt(None, "Override the model's crop size.", min=1, group="model")
    frame_interval: int | None = opt(None, "Override the dense sampler's frame interval.", min=1, group="model")
    # -- method --------------------------------------------------------------------------------------
    method: str = opt("erm", "Training method (see --list-methods).", group="method")
    hp: dict[str, Any] = opt(help="Method hyper-parameter NAME=VALUE (repeatable), e.g. --hp lam=0.5.",
                             factory=dict, group="method")
    # -- optimisation ----------------------------------------------------------------------------------
    epochs: int = opt(10, "Training epochs (an epoch is one pass over the source stream).", min=1, group="optim")
    batch_size: int = opt(16, "Source clips per step (per process under torchrun).", min=1, group="optim")
    lr: float = opt(0.01, "Learning rate.", min=0.0, group="optim")
    optimizer: str = opt("sgd", "Optimizer.", choices=("sgd", "adamw", "adam"), group="optim")
    momentum: float = opt(0.9, "SGD momentum (Nesterov unless --no-nesterov).", min=0.0, max=1.0, group="optim")
    nesterov: bool = opt(True, "Nesterov momentum for SGD (--no-nesterov: plain momentum, as most papers' "
                               "releases, e.g. the DRL code).", flag="--no-nesterov", group="optim")
    weight_decay: float = opt(5e-4, "Weight decay.", min=0.0, group="optim")
    schedule: str = opt("cosine", "Learning-rate schedule (per iteration).", choices=("cosine", "step", "constant"),
                        group="optim")
    warmup_epochs: float = opt(0.0, "Linear warm-up length in epochs.", min=0.0, group="optim")
    milestones: list[int] = opt(help="Epochs where the step schedule multiplies lr by --gamma, e.g. 20,40.",
                                factory=list, group="optim")
    gamma: float = opt(0.1, "Step schedule factor.", min=0.0, min_open=True, group="optim")
    clip_grad: float | None = opt(None, "Clip the gradient norm to this value.", min=0.0, min_open=True,
                                  group="optim")
    allow_nonfinite: bool = opt(False, "Skip steps whose loss is NaN/inf instead of stopping the run.",
                                group="optim")
    scale_min: float = opt(0.25, "Lower bound of the random-resized-crop scale.", min=0.0, max=1.0, min_open=True,
                           group="optim")
    flip: bool = opt(True, "Horizontal flips in training.", flag="--no-flip", group="optim")
    color_jitter: float = opt(0.0, "Colour jitter strength (brightness, contrast, saturation).", min=0.0,
                              group="optim")
    hue_jitter: float = opt(0.0, "Hue jitter, in turns of the colour wheel (e.g. 0.2 with --color-jitter 0.2: "
                                 "torchvision's ColorJitter(0.2, 0.2, 0.2, 0.2)).", min=0.0, max=0.5, group="optim")
    val_clips: int = opt(1, "Test clips per validation video.", min=1, group="optim")
    max_steps_per_epoch: int | None = opt(None, "Cap steps per epoch (quick experiments).", min=1, group="optim")
    save_every: int = opt(0, "Also keep a checkpoint every N epochs.", min=0, group="optim")
    select: str = opt("val", "best.pt: by source validation accuracy (the first --val store).", choices=("val",),
                      hidden=True, group="optim")
    # -- runtime -------------------------------------------------------------------------------------
    workers: int = opt(0, "DataLoader worker processes (per stream).", min=0, cli="-j/--workers", group="runtime")
    seed: int = opt(0, "Random seed (recorded in the run).", group="runtime")
    device: str = opt("auto", "torch device: auto (CUDA when available), cpu, cuda, cuda:1 ...", group="runtime")
    amp: str = opt("auto", "Mixed precision on CUDA.", choices=("auto", "off", "bf16", "fp16"), group="runtime")
    decode: str = opt("auto", "Where JPEG clips are decoded: auto (on the GPU with nvJPEG when the run uses CUDA, "
                              "for every stream that allows it; else in the loader workers), cpu (the loader "
                              "workers), cuda (the GPU; refused for a stream that cannot).",
                      choices=("auto", "cpu", "cuda"), group="runtime")
    logger: list[str] = opt(help="Loggers besides results.jsonl / metrics.csv: tensorboard, wandb (repeatable or "
                                 "comma-separated).", factory=list, group="runtime")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a training configuration must be a mapping of options, got {type(d).__name__}",
                              "write the config file as a JSON object / TOML table of TrainConfig keys")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {unknown}", f"valid keys: {', '.join(sorted(names))}")
        cfg = cls(**{k: _coerce(f, d[f.name]) for f in dataclasses.fields(cls) if (k := f.name) in d})
        return cfg

    def resolve_paths(self) -> "TrainConfig":
        """Absolute paths for every path option (so a run's record stays usable from another directory)."""
        for f in dataclasses.fields(self):
            if not f.metadata.get("path"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, [os.path.abspath(p) for p in v])
            elif v:
                setattr(self, f.name, os.path.abspath(v))
        return self

    def validate(self) -> None:
        """Types, choices and ranges of every field (the CLI's own checks, for config files and the API)."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            setattr(self, f.name, _coerce(f, v))
            v = getattr(self, f.name)
            m = f.metadata
            if v is None:
                continue
            if m.get("choices") and v not in m["choices"]:
                raise ConfigError(f"{_flag(f)} {v!r} is not one of {', '.join(map(str, m['choices']))}",
                                  f"pass {_flag(f)} " + "|".join(map(str, m["choices"])))
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{_flag(f)} {v} is not a finite number", f"pass a finite {_flag(f)}")
                lo, hi = m.get("min"), m.get("max")
                if lo is not None and (v < lo or (m.get("min_open") and v == lo)):
                    rel = ">" if m.get("min_open") else ">="
                    raise ConfigError(f"{_flag(f)} {v} is out of range (must be {rel} {lo:g})",
                                      f"pass {_flag(f)} {rel} {lo:g}")
                if hi is not None and v > hi:
                    raise ConfigError(f"{_flag(f)} {v} is out of range (must be <= {hi:g})", f"pass {_flag(f)} <= {hi:g}")
        if any(int(x) < 0 for x in self.milestones):
            raise ConfigError(f"--milestones {self.milestones} must be epoch numbers >= 0", "e.g. --milestones 20,40")
        if self.schedule == "step" and not self.milestones:
            raise ConfigError("--schedule step needs --milestones", "pass e.g. --milestones 20,40")
        if not self.data:
            raise ConfigError("no training store given", "pass --data STORE (repeatable)")
        for name in ("data", "val", "target", "flow", "target_flow", "val_flow", "pool"):
            for p in getattr(self, name):
                if not os.path.exists(p):
                    raise InputError(f"store {p} (--{name.replace('_', '-')}) does not exist",
                                     f"check the --{name.replace('_', '-')} paths")
        for name in ("pseudo", "classes_file", "weights", "init", "flow_weights", "flow_init"):
            p = getattr(self, name)
            if p and not os.path.exists(p):
                raise InputError(f"{p} (given as {_flag(_field(name))}) does not exist", "check the path")
        if self.pseudo and not self.pool:
            raise ConfigError("--pseudo needs the pool store its rows come from", "pass --pool POOL.h5")
        if self.pool and not self.pseudo:
            raise ConfigError("--pool without --pseudo: the pool's labels would never be set",
                              "pass --pseudo SELECTED.h5 (vdgtool pseudolabel select)")
        if self.mix == "balanced" and not self.pseudo:
            raise ConfigError("--mix balanced draws source and pseudo-labelled pool clips 1:1, but no --pool/--pseudo "
                              "was given", "pass --pool POOL.h5 --pseudo SELECTED.h5, or drop --mix")
        if self.target_flow and not self.target:
            raise ConfigError("--target-flow without --target", "pass the target clip store with --target")
        if self.pretrained and self.weights:
            raise ConfigError("both --pretrained and --weights were given",
                              "use one: --pretrained downloads upstream weights, --weights loads a local file")


def transform_options(cfg) -> dict:
    """Training-transform options (crop scale, flip, colour and hue jitter) of a TrainConfig or of a run's
    recorded config mapping (what the engine trains with, and what ``score --protocol paper`` augments
    the student's clips with)."""
    d = cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg or {})
    cj, hue = float(d.get("color_jitter") or 0.0), float(d.get("hue_jitter") or 0.0)
    return {"scale": (float(d.get("scale_min", 0.25)), 1.0), "flip": bool(d.get("flip", True)),
            "color_jitter": (cj, cj, cj, hue) if hue else cj}


def _field(name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}[name]


def _flag(f: dataclasses.Field) -> str:
    cli = f.metadata.get("cli") or f"--{f.name.replace('_', '-')}"
    return cli.split("/")[-1]


def _coerce(f: dataclasses.Field, v):
    """Check (and gently convert) a value against the field's declared type."""
    t = str(f.type)
    if v is None:
        if "None" in t:
            return None
        raise ConfigError(f"{_flag(f)} must not be empty", f"give {_flag(f)} a value")

    def bad(want):
        return ConfigError(f"{_flag(f)} = {v!r} is not {want}", f"give {_flag(f)} {want} (config key '{f.name}')")

    if t.startswith("list"):
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            v = [v] if not isinstance(v, str) or f.name != "milestones" else [x for x in v.split(",") if x.strip()]
        if not isinstance(v, (list, tuple)):
            raise bad("a list")
        if "int" in t:
            try:
                return [int(x) for x in v]
            except (TypeError, ValueError):
                raise bad("a list of integers") from None
        if f.name == "logger":
            return [x.strip() for item in v for x in str(item).split(",") if x.strip()]
        if not all(isinstance(x, str) for x in v):
            raise bad("a list of paths/names")
        return list(v)
    if t.startswith("dict"):
        if not isinstance(v, dict):
            raise bad("a mapping NAME=VALUE")
        return dict(v)
    if t.startswith("bool"):
        if not isinstance(v, bool):
            raise bad("true or false")
        return v
    if t.startswith("int"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise bad("an integer")
        return int(v)
    if t.startswith("float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad("a number")
        return float(v)
    if t.startswith("str"):
        if not isinstance(v, str):
            raise bad("a string")
        return v
    return v


def load_config_file(path: str) -> dict:
    """Read a JSON or TOML recipe file (keys as in TrainConfig; CLI flags override it)."""
    if not os.path.exists(path):
        raise InputError(f"config file {path} does not exist", "check the --config path")
    try:
        if path.endswith(".toml"):
            import tomllib

            with open(path, "rb") as f:
                d = tomllib.load(f)
        else:
            with open(path) as f:
                d = json.load(f)
    except (ValueError, ImportError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path} ({' '.join(str(exc).split())[:120]})",
                          "use valid JSON (or TOML on Python 3.11+)") from None
    if not isinstance(d, dict):
        raise ConfigError(f"config {path} holds a {type(d).__name__}, not a mapping of options",
                          "write a JSON object (or a TOML table) of TrainConfig keys")
    return d


__all__ = ["TrainConfig", "RECORDED_CHANGES", "RESUMABLE_CHANGES", "load_config_file", "opt", "transform_options"]
