"""The training loop every method plugs into.

Run directory layout::

    RUN_DIR/config.json           resolved configuration (+ provenance, class names, input spec)
    RUN_DIR/results.jsonl         one JSON line per epoch (train loss/acc, lr, validation metrics, time)
    RUN_DIR/metrics.csv           the same, flat
    RUN_DIR/checkpoints/last.pt   end of the last finished epoch (resume point)
    RUN_DIR/checkpoints/best.pt   best epoch by source validation accuracy (first --val store)
    RUN_DIR/checkpoints/preempt.pt  written on SIGTERM/SIGUSR1 mid-epoch (resume point)
    RUN_DIR/done                  written last, with the final summary

Determinism: the shuffling of epoch e, the per-item augmentation and the torch RNG of step s are all
derived from (seed, e, s), so ``--resume`` from any checkpoint reproduces the uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from vdgtool.errors import CheckpointError, ConfigError, InputError, VdgError
from vdgtool.train.checkpoint import is_vdgtool_checkpoint, load_checkpoint, save_checkpoint
from vdgtool.train.config import TrainConfig
from vdgtool.utils.env import dist_env
from vdgtool.utils.log import get_logger, progress
from vdgtool.utils.provenance import make_provenance
from vdgtool.utils.seed import derive_seed, seed_everything

log = get_logger("train")


class Preempted(VdgError):
    """Training stopped by SIGTERM/SIGUSR1 after saving a resume checkpoint."""


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch, split across ranks, that can start mid-epoch (exact resume)."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int = 0, world: int = 1, start: int = 0):
        self.n, self.seed, self.epoch, self.rank, self.world, self.start = n, seed, epoch, rank, world, start

    def indices(self) -> np.ndarray:
        perm = np.random.default_rng(derive_seed(self.seed, "perm", self.epoch)).permutation(self.n)
        per_rank = int(math.ceil(self.n / self.world))
        total = per_rank * self.world
        if total > self.n:
            perm = np.concatenate([perm, perm[: total - self.n]])
        return perm[self.rank::self.world][self.start:]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return len(self.indices())


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.schedule == "cosine":
            p = (step - warm) / max(1, total - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
        if cfg.schedule == "step":
            ep = step // max(1, steps_per_epoch)
            return cfg.gamma ** sum(ep >= m for m in cfg.milestones)
        return 1.0

    return f


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


def union_classes(paths: list[str]) -> list[str]:
    from vdgtool.stores import open_store

    out: list[str] = []
    for p in paths:
        st = open_store(p, kind=("clips", "flow"))
        out += [c for c in st.classes if c not in out]
    return out


def init_from_checkpoint(model: nn.Module, path: str, reset_classifier: bool) -> dict:
    """Load backbone (and classifier when shapes agree) from a vdgtool checkpoint or a plain state dict."""
    ck = load_checkpoint(path)
    state = ck["model"] if is_vdgtool_checkpoint(ck) else {k: v for k, v in ck.items() if k != "_path"}
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = model.state_dict()
    cls_keys = {f"{n}" for n, _ in _classifier_named_params(model)}
    keep, skipped = {}, []
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        if k in own and own[k].shape == v.shape and not (reset_classifier and k in cls_keys):
            keep[k] = v
        else:
            skipped.append(k)
    if not keep:
        raise CheckpointError(f"no weights of {path} fit model {getattr(model, 'model_name', '?')}",
                              "pass a checkpoint of the same model (--model)")
    model.load_state_dict(keep, strict=False)
    missing = [k for k in own if k not in keep]
    return {"loaded": len(keep), "skipped": skipped, "missing": missing,
            "config": ck.get("config") if is_vdgtool_checkpoint(ck) else None}


def _classifier_named_params(model):
    clf = model.get_classifier()
    ids = {id(p) for p in clf.parameters()} | {id(b) for b in clf.buffers()}
    return [(n, p) for n, p in list(model.named_parameters()) + list(model.named_buffers()) if id(p) in ids]


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, overwrite: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.resume = resume
        self.rank, self.local_rank, self.world = dist_env()
        self.is_main = self.rank == 0
        self.run_dir = cfg.output
        self._stop_signal: int | None = None
        if os.path.exists(os.path.join(self.run_dir, "done")) and not overwrite:
            raise InputError(f"{self.run_dir} holds a finished run", "pass --overwrite or choose another -o")
        if not resume and os.path.exists(os.path.join(self.run_dir, "checkpoints", "last.pt")) and not overwrite:
            raise InputError(f"{self.run_dir} holds an unfinished run",
                             "pass --resume to continue it, or --overwrite to start again")

    # -- setup ------------------------------------------------------------------------------------
    def _setup_device(self):
        from vdgtool.cli.common import resolve_device  # tiny helper, no CLI state

        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend)
            if torch.cuda.is_available():
                torch.cuda.set_device(self.local_rank)
                return torch.device("cuda", self.local_rank)
            return torch.device("cpu")
        return resolve_device(self.cfg.device)

    def setup(self):
        from vdgtool.data import build_dataset
        from vdgtool.methods import get_method, parse_hparams
        from vdgtool.models import create_model
        from vdgtool.video.manifest import read_class_list

        cfg = self.cfg
        seed_everything(cfg.seed)
        self.device = self._setup_device()
        self.class_names = read_class_list(cfg.classes_file) if cfg.classes_file else union_classes(cfg.data)
        if not self.class_names:
            raise ConfigError("the training stores carry no class names", "extract them with labels")
        method_cls = get_method(cfg.method)
        self.hp = parse_hparams(method_cls, cfg.hp)
        mk = dict(cfg.model_kwargs)
        for k in ("num_frames", "size"):
            if getattr(cfg, k):
                mk[k] = getattr(cfg, k)
        model = create_model(cfg.model, num_classes=len(self.class_names), pretrained=cfg.pretrained,
                             weights=cfg.weights, **mk)
        # everything needed to rebuild the same architecture from the checkpoint alone
        self.model_kwargs = dict(getattr(model, "create_kwargs", mk))
        self.init_info = None
        if cfg.init:
            self.init_info = init_from_checkpoint(model, cfg.init, reset_classifier=cfg.linear_probe)
            log.info("initialised from %s (%d tensors; %d not loaded)", cfg.init, self.init_info["loaded"],
                     len(self.init_info["missing"]))
        if cfg.linear_probe or cfg.freeze_backbone:
            for p in model.backbone_parameters():
                p.requires_grad_(False)
        if cfg.linear_probe:
            model.reset_classifier(len(self.class_names))
        spec = model.input_spec
        if cfg.frame_interval:
            import dataclasses

            spec = dataclasses.replace(spec, frame_interval=cfg.frame_interval)
        self.spec = spec
        self.method = method_cls(model, len(self.class_names), self.hp, device=self.device,
                                 class_names=self.class_names).to(self.device)
        self.train_ds = build_dataset(cfg.data, spec, True, class_names=self.class_names, seed=cfg.seed,
                                      domains=cfg.train_domains or None, views=self.method.dataset_views() or None,
                                      transform_options=dict(scale=(cfg.scale_min, 1.0), flip=cfg.flip,
                                                             color_jitter=cfg.color_jitter))
        if len(self.train_ds) == 0:
            raise InputError("the training stores hold no videos (after the domain filter)", "check --data/--domain")
        self.val_sets = []
        for v in cfg.val:
            vclasses = union_classes([v])
            missing = [c for c in vclasses if c not in self.class_names]
            if missing:
                raise ConfigError(f"validation store {v} has classes the model does not know: {missing[:5]}",
                                  "validate on stores whose classes are a subset of the training classes")
            self.val_sets.append((os.path.splitext(os.path.basename(v))[0],
                                  build_dataset([v], spec, False, class_names=self.class_names, seed=cfg.seed,
                                                num_clips=cfg.val_clips)))
        # optimizers: one per parameter group of the method
        self.optimizers = {}
        for name, params in self.method.parameter_groups().items():
            params = [p for p in params if p.requires_grad]
            if not params:
                continue
            lr = cfg.lr * float(self.hp.get(f"{name}_lr_mult", 1.0)) if name != "model" else cfg.lr
            if cfg.optimizer == "sgd":
                opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                      nesterov=cfg.momentum > 0)
            elif cfg.optimizer == "adam":
                opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
            else:
                opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
            self.optimizers[name] = opt
        if "model" not in self.optimizers:
            raise ConfigError("no trainable parameters in the model", "do not freeze everything")
        n_batches = len(self.train_ds) // self.world // cfg.batch_size
        self.drop_last = n_batches >= 1
        self.steps_per_epoch = max(1, n_batches if self.drop_last else 1)
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        self.schedulers = {n: torch.optim.lr_scheduler.LambdaLR(o, _lr_lambda(cfg, self.steps_per_epoch))
                           for n, o in self.optimizers.items()}
        use_amp = self.device.type == "cuda" and cfg.amp != "off"
        fp16 = use_amp and (cfg.amp == "fp16" or not torch.cuda.is_bf16_supported())
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        from vdgtool.evaluate.predict import autocast_for

        self.autocast = autocast_for(self.device, cfg.amp)
        if self.world > 1:
            ddp_kw = {"device_ids": [self.local_rank]} if self.device.type == "cuda" else {}
            self.method.model = nn.parallel.DistributedDataParallel(self.method.model, **ddp_kw)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best = -1.0
        self.history: list[dict] = []

    # -- checkpoints -------------------------------------------------------------------------------
    def run_config(self) -> dict:
        return {**self.cfg.to_dict(), "model_kwargs": self.model_kwargs, "class_names": self.class_names,
                "input_spec": self.spec.to_dict(), "hparams": self.hp, "world_size": self.world,
                "provenance": make_provenance(seed=self.cfg.seed, parents=self.cfg.data + self.cfg.val)}

    def state(self) -> dict[str, Any]:
        return {
            "model": _unwrap(self.method.model).state_dict(),
            "extra": {k: _unwrap(m).state_dict() for k, m in self.method.extra_modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "best": self.best, "config": self.run_config(),
        }

    def save(self, name: str) -> None:
        if self.is_main:
            save_checkpoint(os.path.join(self.run_dir, "checkpoints", name), self.state())

    def try_resume(self) -> None:
        ckdir = os.path.join(self.run_dir, "checkpoints")
        cands = [os.path.join(ckdir, n) for n in ("preempt.pt", "last.pt") if os.path.exists(os.path.join(ckdir, n))]
        if not cands:
            log.info("--resume: nothing to resume in %s, starting fresh", self.run_dir)
            return
        path = max(cands, key=os.path.getmtime)
        ck = load_checkpoint(path, map_location=self.device)
        saved = ck["config"]
        for key in ("model", "method", "class_names", "seed", "batch_size"):
            mine = self.run_config()[key]
            if saved.get(key) != mine:
                raise ConfigError(f"--resume with {key}={mine!r}, but the run was started with {saved.get(key)!r}",
                                  "resume with the same options, or pass --overwrite to start again")
        _unwrap(self.method.model).load_state_dict(ck["model"])
        for k, m in self.method.extra_modules().items():
            if k in ck["extra"]:
                _unwrap(m).load_state_dict(ck["extra"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(ck["schedulers"][k])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.step_in_epoch = int(ck["epoch"]), int(ck["step_in_epoch"])
        self.global_step, self.best = int(ck["global_step"]), float(ck["best"])
        # keep the log lines of finished epochs only
        res = os.path.join(self.run_dir, "results.jsonl")
        if os.path.exists(res):
            with open(res) as f:
                self.history = [json.loads(line) for line in f if line.strip()]
            self.history = [h for h in self.history if h["epoch"] < self.epoch]
            if self.is_main:
                self._rewrite_results()
        log.info("resumed from %s at epoch %d step %d", path, self.epoch, self.step_in_epoch)

    # -- logging -------------------------------------------------------------------------------------
    def _rewrite_results(self) -> None:
        with open(os.path.join(self.run_dir, "results.jsonl"), "w") as f:
            for h in self.history:
                f.write(json.dumps(h) + "\n")
        flat = [_flatten(h) for h in self.history]
        cols = sorted({k for r in flat for k in r}, key=lambda c: (c != "epoch", c))
        with open(os.path.join(self.run_dir, "metrics.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(flat)

    # -- signals ---------------------------------------------------------------------------------------
    def _install_signals(self):
        self._old = {}

        def handler(signum, frame):
            self._stop_signal = signum
            log.warning("received signal %d: checkpointing after this step", signum)

        for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if s is None:
                continue
            try:
                self._old[s] = signal.signal(s, handler)
            except ValueError:  # not in the main thread
                pass

    def _restore_signals(self):
        for s, h in getattr(self, "_old", {}).items():
            signal.signal(s, h)

    # -- loop -------------------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        from vdgtool.evaluate.metrics import summarize
        from vdgtool.evaluate.predict import predict_dataset

        out = {}
        model = _unwrap(self.method.model)
        for name, ds in self.val_sets:
            p = predict_dataset(model, ds, device=self.device, batch_size=self.cfg.batch_size,
                                workers=self.cfg.workers, amp=self.cfg.amp, desc=f"val {name}")
            s = summarize(p["probs"], p["labels"], p["domains"], self.class_names, ds.domains)
            out[name] = {"top1": s["top1"], "mean_class": s["mean_class"], "n": s["n"]}
        return out

    def fit(self) -> dict:
        from vdgtool.evaluate.predict import make_loader
        from vdgtool.methods import Stepper

        cfg = self.cfg
        if self.is_main:
            os.makedirs(os.path.join(self.run_dir, "checkpoints"), exist_ok=True)
        else:
            import logging

            get_logger().setLevel(logging.WARNING)  # rank 0 speaks for the job
        self.setup()
        if self.resume:
            self.try_resume()
        if self.is_main:
            with open(os.path.join(self.run_dir, "config.json"), "w") as f:
                json.dump(self.run_config(), f, indent=2, default=str)
        stepper = Stepper(self.optimizers, self.scaler, cfg.clip_grad, self.autocast)
        self._install_signals()
        try:
            while self.epoch < cfg.epochs:
                self._run_epoch(stepper, make_loader)
        finally:
            self._restore_signals()
        summary = {"run_dir": self.run_dir, "epochs": cfg.epochs, "final": self.history[-1] if self.history else {},
                   "best_val_top1": self.best if self.val_sets else None, "method": cfg.method, "model": cfg.model}
        if self.is_main:
            pre = os.path.join(self.run_dir, "checkpoints", "preempt.pt")
            if os.path.exists(pre):
                os.remove(pre)
            with open(os.path.join(self.run_dir, "done"), "w") as f:
                json.dump(summary, f, indent=2, default=str)
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        summary["rank"] = self.rank
        return summary

    def _run_epoch(self, stepper, make_loader) -> None:
        cfg = self.cfg
        epoch = self.epoch
        self.method.train()
        if cfg.freeze_bn or cfg.linear_probe:
            _freeze_bn(_unwrap(self.method.model))
        self.method.on_epoch_start(epoch)
        self.train_ds.set_epoch(epoch)
        sampler = EpochSampler(len(self.train_ds), cfg.seed, epoch, self.rank, self.world,
                               start=self.step_in_epoch * cfg.batch_size)
        loader = make_loader(self.train_ds, cfg.batch_size, cfg.workers, sampler=sampler, drop_last=self.drop_last,
                             device=self.device)
        t0 = time.time()
        sums: dict[str, float] = {}
        count = 0
        seen = 0
        remaining = self.steps_per_epoch - self.step_in_epoch
        bar = progress(total=max(0, remaining), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step")
        for batch in loader:
            if self.step_in_epoch >= self.steps_per_epoch:
                break
            batch = {k: (v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                     for k, v in batch.items()}
            torch.manual_seed(derive_seed(cfg.seed, "step", epoch, self.step_in_epoch, self.rank))
            metrics = self.method.training_step(batch, stepper)
            for s in self.schedulers.values():
                s.step()
            for k, v in metrics.items():
                if v == v:  # skip NaN
                    sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
            seen += len(batch["label"])
            self.step_in_epoch += 1
            self.global_step += 1
            bar.update(1)
            if self._stop_signal is not None:
                bar.close()
                self.save("preempt.pt")
                raise Preempted(f"training stopped by signal {self._stop_signal} at epoch {epoch + 1} step "
                                f"{self.step_in_epoch}; checkpoint saved in {self.run_dir}/checkpoints/preempt.pt",
                                f"continue with: vdgtool train --resume -o {self.run_dir} (same options)")
        bar.close()
        dt = time.time() - t0
        rec = {"epoch": epoch, "step": self.global_step,
               **{f"train_{k}": v / max(1, count) for k, v in sums.items()},
               "lr": self.optimizers["model"].param_groups[0]["lr"], "time_s": round(dt, 3),
               "clips_per_s": round(seen * self.world / max(dt, 1e-9), 2)}
        val = self.evaluate() if (self.val_sets and self.is_main) else {}
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        if val:
            rec["val"] = val
        self.epoch += 1
        self.step_in_epoch = 0
        self.history.append(rec)
        if self.is_main:
            self._rewrite_results()
            self.save("last.pt")
            if cfg.save_every and self.epoch % cfg.save_every == 0:
                self.save(f"epoch_{self.epoch:03d}.pt")
            score = next(iter(val.values()))["top1"] if val else None
            if score is not None and score > self.best:
                self.best = score
                self.save("best.pt")
            elif not val:
                self.save("best.pt")  # no validation: best = last (documented)
        msg = ", ".join(f"{k}={v:.4g}" for k, v in rec.items() if isinstance(v, float) and k != "time_s")
        if val:
            msg += ", " + ", ".join(f"{n}: top1={m['top1']:.3f}" for n, m in val.items())
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, msg)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Library entry point of ``vdgtool train``."""
    if overwrite and os.path.isdir(cfg.output) and not resume:
        import shutil

        for name in ("checkpoints", "done", "results.jsonl", "metrics.csv", "config.json"):
            p = os.path.join(cfg.output, name)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
    return Trainer(cfg, resume=resume, overwrite=overwrite).fit()
