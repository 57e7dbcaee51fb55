"""Run loggers that people watch while a run trains: TensorBoard and Weights & Biases.

``vdgtool train --logger csv,tensorboard,wandb``. ``csv`` is the default and adds nothing here: the
engine always writes ``results.jsonl`` and ``metrics.csv`` itself. The engine calls the loggers on
rank 0 only, in this order::

    log_hparams(config)                 once, the resolved configuration (config.json)
    log_step(step, metrics)             per optimisation step: loss, lr, method terms
    log_epoch(epoch, step, record)      per epoch: the results.jsonl record ("val": {store: {...}})
    log_event(step, name, data)         method events (augsearch additions, bank fill, ADA norms)
    close(summary)                      at the end (summary = the ``done`` record, or None)

Tags: ``train/<metric>`` per step, ``epoch/<key>`` and ``val/<store>/<metric>`` per epoch,
``event/<name>/<key>`` for events, all on the global-step axis. TensorBoard writes under
``RUN_DIR/tb`` (extra ``vdgtool[tensorboard]``); W&B writes under ``RUN_DIR/wandb`` (extra
``vdgtool[wandb]``) and runs offline unless the user configured W&B (``WANDB_MODE``,
``WANDB_API_KEY`` or ``wandb login``); an offline run is uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from vdgtool.errors import ConfigError, require
from vdgtool.utils.log import get_logger

log = get_logger("train")

LOGGERS = ("csv", "tensorboard", "wandb")


class RunLogger:
    """Base class: every method is a no-op, so a logger implements only what it shows."""

    name = "none"

    def log_hparams(self, config: dict) -> None:
        pass

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def log_epoch(self, epoch: int, step: int, record: dict) -> None:
        pass

    def log_event(self, step: int, name: str, data: dict) -> None:
        pass

    def close(self, summary: dict | None = None) -> None:
        pass


def _number(v: Any) -> float | None:
    """A plain float for numbers (bools and numpy/torch scalars included), None for anything else."""
    if isinstance(v, bool):
        return float(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if isinstance(v, (int, float)) or hasattr(v, "item") else None


def flatten(d: dict, prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """{"val": {"a": {"top1": 0.5}}} -> {"val/a/top1": 0.5}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + sep, sep))
        else:
            out[key] = v
    return out


def epoch_scalars(record: dict) -> dict[str, float]:
    """The numbers of a results.jsonl epoch record under their tags (epoch/<key>, val/<store>/<metric>)."""
    out = {}
    for k, v in record.items():
        if k in ("epoch", "step", "event"):
            continue
        if isinstance(v, dict):
            for kk, vv in flatten(v, f"{k}/").items():
                f = _number(vv)
                if f is not None:
                    out[kk] = f
        else:
            f = _number(v)
            if f is not None:
                out[f"epoch/{k}"] = f
    return out


def event_scalars(name: str, data: dict) -> dict[str, float]:
    """Numbers of an event under event/<name>/<key>; a list counts as its length (``<key>_count``)."""
    out = {}
    for k, v in flatten(data).items():
        f = _number(v)
        if f is not None:
            out[f"event/{name}/{k}"] = f
        elif isinstance(v, (list, tuple)):
            out[f"event/{name}/{k}_count"] = float(len(v))
    return out


def hparam_values(config: dict) -> dict[str, Any]:
    """A flat dict of scalars for hyper-parameter tables: lists and None become strings, provenance dropped."""
    cfg = {k: v for k, v in config.items() if k not in ("provenance", "class_names", "input_spec")}
    out = {}
    for k, v in flatten(cfg, sep=".").items():
        if isinstance(v, (bool, int, float, str)):
            out[k] = v
        else:
            out[k] = json.dumps(v, default=str)
    return out


def summary_metrics(summary: dict | None) -> dict[str, float]:
    """Final numbers of a run for the hyper-parameter view: final val top-1 per store and best.pt's."""
    if not summary:
        return {}
    out = {}
    for store, m in ((summary.get("final") or {}).get("val") or {}).items():
        if isinstance(m, dict) and _number(m.get("top1")) is not None:
            out[f"hparam/final_top1/{store}"] = float(m["top1"])
    if _number(summary.get("best_val_top1")) is not None:
        out["hparam/best_val_top1"] = float(summary["best_val_top1"])
    return out


class TensorBoardLogger(RunLogger):
    """Scalars, the configuration (as text and in the HParams view) and events in ``RUN_DIR/tb``."""

    name = "tensorboard"

    def __init__(self, run_dir: str, config: dict | None = None):
        require("tensorboard", "tensorboard", "train --logger tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = os.path.join(run_dir, "tb")
        self.writer = SummaryWriter(log_dir=self.log_dir)
        self._hparams: dict[str, Any] = hparam_values(config or {})

    def log_hparams(self, config: dict) -> None:
        self._hparams = hparam_values(config)
        rows = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in sorted(self._hparams.items()))
        self.writer.add_text("config", "| option | value |\n|---|---|\n" + rows, 0)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            f = _number(v)
            if f is not None:
                self.writer.add_scalar(f"train/{k}", f, step)

    def log_epoch(self, epoch: int, step: int, record: dict) -> None:
        self.writer.add_scalar("epoch/epoch", epoch, step)
        for k, v in epoch_scalars(record).items():
            self.writer.add_scalar(k, v, step)

    def log_event(self, step: int, name: str, data: dict) -> None:
        for k, v in event_scalars(name, data).items():
            self.writer.add_scalar(k, v, step)
        self.writer.add_text(f"event/{name}", json.dumps(data, default=str), step)

    def close(self, summary: dict | None = None) -> None:
        from torch.utils.tensorboard.summary import hparams

        metrics = summary_metrics(summary)
        if self._hparams and metrics:  # the HParams view: this run's options beside its final numbers
            exp, ssi, sei = hparams(self._hparams, metrics)
            fw = self.writer._get_file_writer()
            for s in (exp, ssi, sei):
                fw.add_summary(s)
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, 0)
        self.writer.flush()
        self.writer.close()


def wandb_mode() -> str | None:
    """None when the user configured W&B (WANDB_MODE, WANDB_API_KEY or `wandb login`), else "offline"."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return None
    try:
        import netrc

        if netrc.netrc().authenticators("api.wandb.ai"):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


class WandbLogger(RunLogger):
    """A W&B run in ``RUN_DIR/wandb``; ``--resume`` continues the same W&B run (its id is kept in RUN_DIR)."""

    name = "wandb"

    def __init__(self, run_dir: str, config: dict | None = None):
        wandb = require("wandb", "wandb", "train --logger wandb")
        self._wandb = wandb
        id_file = os.path.join(run_dir, "wandb_id.txt")
        if os.path.exists(id_file):
            with open(id_file) as f:
                run_id = f.read().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            os.makedirs(run_dir, exist_ok=True)
            with open(id_file, "w") as f:
                f.write(run_id + "\n")
        mode = wandb_mode()
        kw = {"mode": mode} if mode else {}
        self.mode = mode or os.environ.get("WANDB_MODE", "online")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "vdgtool"), dir=run_dir, id=run_id,
                              resume="allow", name=os.path.basename(os.path.normpath(run_dir)),
                              config=hparam_values(config or {}), **kw)
        self.run.define_metric("global_step")
        self.run.define_metric("*", step_metric="global_step")
        if self.mode == "offline":
            log.info("wandb: offline run in %s/wandb (upload with: wandb sync %s/wandb/offline-run-*)",
                     run_dir, run_dir)

    def log_hparams(self, config: dict) -> None:
        self.run.config.update(hparam_values(config), allow_val_change=True)

    def _log(self, step: int, values: dict) -> None:
        if values:
            self.run.log({"global_step": step, **values})

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self._log(step, {f"train/{k}": f for k, v in metrics.items() if (f := _number(v)) is not None})

    def log_epoch(self, epoch: int, step: int, record: dict) -> None:
        self._log(step, {"epoch/epoch": epoch, **epoch_scalars(record)})

    def log_event(self, step: int, name: str, data: dict) -> None:
        self._log(step, event_scalars(name, data))

    def close(self, summary: dict | None = None) -> None:
        for k, v in summary_metrics(summary).items():
            self.run.summary[k] = v
        self.run.finish(exit_code=0 if summary is not None else 1)


_CLASSES = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def parse_logger_names(names) -> list[str]:
    """["csv,tensorboard", "wandb"] -> ["csv", "tensorboard", "wandb"] (checked, duplicates dropped)."""
    out: list[str] = []
    for n in names or ():
        for part in str(n).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part not in LOGGERS:
                raise ConfigError(f"unknown logger '{part}'", f"use any of {', '.join(LOGGERS)} (comma-separated)")
            if part not in out:
                out.append(part)
    return out


def build_loggers(names: list[str], run_dir: str, config: dict) -> list[RunLogger]:
    """The loggers named (``csv`` needs none: the engine writes results.jsonl / metrics.csv itself).

    A logger whose extra is missing raises a one-line error naming the extra to install.
    """
    return [_CLASSES[n](run_dir, config) for n in parse_logger_names(names) if n in _CLASSES]


__all__ = ["RunLogger", "TensorBoardLogger", "WandbLogger", "build_loggers", "parse_logger_names", "LOGGERS"]
