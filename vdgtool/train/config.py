"""The resolved training configuration (what ``RUN_DIR/config.json`` holds)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from vdgtool.errors import ConfigError, InputError


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)          # training clip/flow stores
    val: list[str] = field(default_factory=list)           # validation stores (first = source validation)
    output: str = "run"
    train_domains: list[str] = field(default_factory=list)  # keep only these domains of the training stores
    classes_file: str | None = None
    model: str = "test_c3d"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    weights: str | None = None          # local weights for the model (state dict)
    init: str | None = None             # fine-tune from a vdgtool checkpoint
    freeze_backbone: bool = False
    freeze_bn: bool = False
    linear_probe: bool = False          # freeze backbone, re-initialise and train the classifier only
    method: str = "erm"
    hp: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"            # cosine | step | constant
    warmup_epochs: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    clip_grad: float | None = None
    num_frames: int | None = None       # override the model's input convention
    size: int | None = None
    frame_interval: int | None = None
    scale_min: float = 0.25             # random resized crop scale range lower bound
    flip: bool = True
    color_jitter: float = 0.0
    val_clips: int = 1
    workers: int = 0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                   # auto (on CUDA) | off | bf16 | fp16
    max_steps_per_epoch: int | None = None
    save_every: int = 0                 # also keep checkpoints/epoch_NNN.pt every N epochs
    select: str = "val"                 # checkpoint kept as best.pt: by source validation accuracy

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {unknown}", f"valid keys: {', '.join(sorted(names))}")
        return cls(**d)

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("no training store given", "pass --data STORE (repeatable)")
        for p in self.data + self.val:
            if not os.path.exists(p):
                raise InputError(f"store {p} does not exist", "check the --data/--val paths")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("--epochs and --batch-size must be at least 1", "fix the values")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"unknown schedule '{self.schedule}'", "use cosine, step or constant")
        if self.optimizer not in ("sgd", "adamw", "adam"):
            raise ConfigError(f"unknown optimizer '{self.optimizer}'", "use sgd, adamw or adam")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ConfigError(f"unknown --amp '{self.amp}'", "use auto, off, bf16 or fp16")


def load_config_file(path: str) -> dict:
    """Read a JSON or TOML recipe file (keys as in TrainConfig; CLI flags override it)."""
    if not os.path.exists(path):
        raise InputError(f"config file {path} does not exist", "check the --config path")
    try:
        if path.endswith(".toml"):
            import tomllib

            with open(path, "rb") as f:
                return tomllib.load(f)
        with open(path) as f:
            return json.load(f)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"cannot read config {path} ({exc})", "use valid JSON (or TOML on Python 3.11+)") from None
