"""The training loop every method plugs into.

Run directory layout::

    RUN_DIR/config.json           resolved configuration (+ provenance, class names, networks, input specs)
    RUN_DIR/results.jsonl         one JSON line per epoch, and one per method event ({"event": ...}); appended
    RUN_DIR/metrics.csv           the epoch lines, flat (rewritten atomically each epoch)
    RUN_DIR/checkpoints/last.pt   end of the last finished epoch (resume point)
    RUN_DIR/checkpoints/best.pt   best epoch by source validation accuracy (first --val store)
    RUN_DIR/checkpoints/preempt.pt  written on SIGTERM/SIGUSR1 mid-epoch (resume point)
    RUN_DIR/done                  written last, with the final summary

Streams: the labelled source stream defines the epoch (a seeded permutation per epoch); an unlabelled
target stream (``--target``), when the method uses one, has its own infinite seeded sampler zipped with
the source (DomainBed style), positioned by the global step, so it needs no state of its own.

Determinism: the shuffling of epoch e, the per-item augmentation, the target stream's order and the
torch RNG of step s are all derived from (seed, position), so ``--resume`` from any checkpoint
reproduces the uninterrupted run, method state included.
"""

from __future__ import annotations

import csv
import dataclasses
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
from vdgtool.runtime import (all_gather_objects, autocast_for, barrier, grad_scaler_for, init_distributed, make_loader,
                             to_device, unwrap)
from vdgtool.train.checkpoint import is_vdgtool_checkpoint, load_checkpoint, network_states, save_checkpoint
from vdgtool.train.config import RECORDED_CHANGES, RESUMABLE_CHANGES, TrainConfig, transform_options
from vdgtool.utils.log import get_logger, progress
from vdgtool.utils.provenance import make_provenance
from vdgtool.utils.seed import derive_seed, seed_everything

log = get_logger("train")

#: share of a network's tensors that --init must load (below: refused unless --init-partial)
INIT_MIN_SHARE = 0.5


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


class BalancedEpochSampler(torch.utils.data.Sampler):
    """Source and pseudo-labelled pool items 1:1 in every batch (``--mix balanced``).

    Each rank's sequence alternates a source item and a pool item, so every batch of an even size holds
    half of each; the source and the pool are each walked through seeded permutations of the epoch
    (cycled when the epoch needs more of one than it has). ``length`` items per rank; a function of
    (seed, epoch, position) only, so a resumed run continues exactly.
    """

    def __init__(self, source, pool, seed: int, epoch: int, length: int, rank: int = 0, world: int = 1,
                 start: int = 0):
        self.source, self.pool = np.asarray(source, np.int64), np.asarray(pool, np.int64)
        if not self.source.size or not self.pool.size:
            raise InputError("--mix balanced needs source and pool items, but one of them is empty",
                             "check --data and --pseudo (or use --mix union)")
        self.seed, self.epoch, self.length, self.rank, self.world, self.start = seed, epoch, length, rank, world, start

    def _walk(self, items: np.ndarray, name: str, n: int, offset: int) -> np.ndarray:
        """Elements ``offset, offset + world, ...`` (n of them) of the cycled permutations of ``items``."""
        j = offset + self.world * np.arange(n)
        cycles = {c: np.random.default_rng(derive_seed(self.seed, "mix", name, self.epoch, c)).permutation(items.size)
                  for c in np.unique(j // items.size).tolist()}
        return np.array([items[cycles[int(x) // items.size][int(x) % items.size]] for x in j], dtype=np.int64)

    def indices(self) -> np.ndarray:
        n_src, n_pool = (self.length + 1) // 2, self.length // 2
        out = np.empty(self.length, np.int64)
        out[0::2] = self._walk(self.source, "source", n_src, self.rank)
        out[1::2] = self._walk(self.pool, "pool", n_pool, self.rank)
        return out[self.start:]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return len(self.indices())


class StreamSampler(torch.utils.data.Sampler):
    """An infinite stream of ``(index, cycle)`` over ``n`` items: cycle c is a seeded permutation, the
    cycles are concatenated, and rank r takes every ``world``-th element starting at ``start * world + r``.

    The position is a function of the global step (``start = global_step * batch``), so a resumed run
    continues the stream exactly, and ranks never see the same target clips at the same step.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        if n < 1:
            raise InputError("the target stream holds no videos", "check --target (and its classes / domains)")
        self.n, self.seed, self.rank, self.world, self.start = n, seed, rank, world, start

    def __iter__(self):
        j = self.start * self.world + self.rank
        cycle, perm = -1, None
        while True:
            c = j // self.n
            if c != cycle:
                cycle = c
                perm = np.random.default_rng(derive_seed(self.seed, "target", c)).permutation(self.n)
            yield int(perm[j % self.n]), int(cycle)
            j += self.world


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


_unwrap = unwrap  # older name


def store_classes(path: str) -> list[str]:
    from vdgtool.stores import open_store

    return list(open_store(path, kind=("clips", "flow")).classes)


def union_classes(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        out += [c for c in store_classes(p) if c not in out]
    return out


def init_from_checkpoint(model: nn.Module, path: str, reset_classifier: bool, network: str | None = None,
                         partial_ok: bool = False) -> dict:
    """Load a network's weights (and its classifier when shapes agree) from a vdgtool checkpoint (the
    network of that name, else its main network) or a plain state dict.

    Fewer than half of the network's tensors loaded is refused (naming the counts) unless ``partial_ok``.
    """
    ck = load_checkpoint(path)
    if is_vdgtool_checkpoint(ck):
        nets = network_states(ck)
        state = nets.get(network) if network in nets else ck["model"]
    else:
        state = {k: v for k, v in ck.items() if k != "_path"}
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
    name = getattr(model, "model_name", "?")
    countable = [k for k in own if not (reset_classifier and k in cls_keys)]
    if not keep:
        raise CheckpointError(f"no weights of {path} fit model {name}", "pass a checkpoint of the same model (--model)")
    share = len([k for k in keep if k in countable]) / max(1, len(countable))
    if share < INIT_MIN_SHARE and not partial_ok:
        raise CheckpointError(f"{path} fits only {len(keep)} of the {len(countable)} tensors of model {name} "
                              f"({share:.0%}; a random start in disguise)",
                              "pass a checkpoint of the same model, or --init-partial to accept a partial load")
    model.load_state_dict(keep, strict=False)
    missing = [k for k in own if k not in keep]
    return {"loaded": len(keep), "total": len(own), "skipped": skipped, "missing": missing,
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


def default_flow_model(model: str) -> str:
    """``MODEL_flow`` when the registry has it (``i3d`` -> ``i3d_flow``), else ``MODEL`` itself."""
    from vdgtool.models import list_models

    base, _, bb = model.partition(":")
    cand = f"{base}_flow"
    if cand in list_models():
        return cand + (f":{bb}" if bb else "")
    return model


def config_differences(saved: dict, mine: dict, allowed=RESUMABLE_CHANGES) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) of every TrainConfig option that differs (JSON-normalised)."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        k = f.name
        if k in allowed or k not in saved:
            continue
        a = json.loads(json.dumps(saved.get(k), default=str))
        b = json.loads(json.dumps(mine.get(k), default=str))
        if a != b:
            out.append((k, a, b))
    return out


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class TrainContext:
    """What a method sees of the engine (``method.setup(ctx)``): configuration, device, data, and helpers
    to build more datasets with the method's input conventions and to predict over them."""

    def __init__(self, trainer: "Trainer"):
        self._t = trainer

    @property
    def cfg(self) -> TrainConfig:
        return self._t.cfg

    @property
    def device(self) -> torch.device:
        return self._t.device

    @property
    def class_names(self) -> list[str]:
        return self._t.class_names

    @property
    def rank(self) -> int:
        return self._t.rank

    @property
    def world(self) -> int:
        return self._t.world

    @property
    def train_dataset(self):
        return self._t.train_ds

    @property
    def target_dataset(self):
        return self._t.target_ds

    @property
    def autocast(self):
        return self._t.autocast

    def build_dataset(self, stores, *, train: bool, flow_stores=None, hide_labels: bool = False, num_clips: int = 1,
                      num_crops: int = 1, sampler_options: dict | None = None, views=None, specs: dict | None = None,
                      transform_options: dict | None = None, class_names=None):
        """A dataset over ``stores`` with the method's input conventions (``specs`` overrides them)."""
        from vdgtool.data import build_for_inputs

        cfg = self.cfg
        topts = transform_options if transform_options is not None else self._t.transform_options
        sopts = sampler_options if sampler_options is not None else self._t.sampler_options
        return build_for_inputs(list(stores), specs or self._t.specs, train, flow_stores=flow_stores,
                                class_names=class_names or self.class_names, seed=cfg.seed, num_clips=num_clips,
                                num_crops=num_crops, sampler_options=sopts, hide_labels=hide_labels,
                                views=views, paired_crop=cfg.paired_crop, transform_options=topts if train else None)

    def predict(self, dataset, desc: str = "predict", batch_size: int | None = None, features: bool = False) -> dict:
        """The method's predictions over ``dataset`` (eval mode, restored afterwards), sharded across
        ranks under torchrun and gathered, in item order (see vdgtool.evaluate.predict)."""
        from vdgtool.evaluate.predict import merge_predictions, predict_dataset

        t = self._t
        idx = np.arange(len(dataset))[t.rank::t.world]
        part = predict_dataset(t.method, dataset, device=t.device, batch_size=batch_size or t.cfg.batch_size,
                               workers=t.cfg.workers, amp=t.cfg.amp, features=features, desc=desc, indices=idx)
        out = merge_predictions(all_gather_objects(part, t.world))
        t._restore_train_mode()
        return out

    def log_event(self, name: str, **data) -> None:
        self._t._event(name, data)

    def restore_train_mode(self) -> None:
        """Back to training mode after a method's own eval-mode pass (``--freeze-bn`` kept)."""
        self._t._restore_train_mode()


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, overwrite: bool = False):
        cfg.resolve_paths()
        cfg.validate()
        self.cfg = cfg
        self.resume = resume
        self.run_dir = cfg.output
        self._stop_signal: int | None = None
        if os.path.exists(os.path.join(self.run_dir, "done")) and not overwrite:
            raise InputError(f"{self.run_dir} holds a finished run", "pass --overwrite or choose another -o")
        if not resume and os.path.exists(os.path.join(self.run_dir, "checkpoints", "last.pt")) and not overwrite:
            raise InputError(f"{self.run_dir} holds an unfinished run",
                             "pass --resume to continue it, or --overwrite to start again")
        self.loggers: list = []
        self.resumed: list = []  # options changed when the run was resumed (RECORDED_CHANGES)

    # -- setup ------------------------------------------------------------------------------------
    def _check_target_classes(self, path: str) -> None:
        tc = store_classes(path)
        unknown = [c for c in tc if c not in self.class_names]
        if unknown:
            raise ConfigError(f"target store {path} has class '{unknown[0]}' that the source lacks"
                              f"{f' (and {len(unknown) - 1} more)' if len(unknown) > 1 else ''}",
                              "restrict the target to the source's classes (e.g. a class map at extract time)")
        if tc and self.cfg.target_classes == "exact":
            absent = [c for c in self.class_names if c not in tc]
            if absent:
                raise ConfigError(f"target store {path} lacks {len(absent)} of the source's classes "
                                  f"(e.g. '{absent[0]}')",
                                  "pass --target-classes subset if the target covers only part of the label space")

    def _build_network(self, name: str, role: str, num_classes: int):
        from vdgtool.models import create_model, model_info

        cfg = self.cfg
        if role == "main":
            model_name, kw = cfg.model, dict(cfg.model_kwargs)
            pre, weights, inits = cfg.pretrained, cfg.weights, [cfg.init]
        elif role == "flow":
            model_name, kw = cfg.flow_model or default_flow_model(cfg.model), dict(cfg.flow_model_kwargs)
            pre, weights, inits = cfg.flow_pretrained, cfg.flow_weights, [cfg.init, cfg.flow_init]
            if model_info(model_name)["input_spec"].get("modality") != "flow":
                kw.setdefault("in_channels", 2)
        else:
            raise ConfigError(f"network role '{role}' of '{name}' is unknown", "use main or flow (a method bug)")
        for k in ("num_frames", "size"):
            if getattr(cfg, k):
                kw[k] = getattr(cfg, k)
        model = create_model(model_name, num_classes=num_classes, pretrained=pre, weights=weights, **kw)
        info = None
        for init in inits:
            if not init:
                continue
            if role == "flow" and init == cfg.init and not cfg.flow_init:
                # --init feeds the flow network only from a checkpoint that holds one of that name
                ck = load_checkpoint(init)
                if not (is_vdgtool_checkpoint(ck) and name in network_states(ck)):
                    continue
            info = init_from_checkpoint(model, init, reset_classifier=cfg.linear_probe, network=name,
                                        partial_ok=cfg.init_partial)
            log.info("%s: initialised from %s (%d of %d tensors)", name, init, info["loaded"], info["total"])
        if cfg.linear_probe or cfg.freeze_backbone:
            for p in model.backbone_parameters():
                p.requires_grad_(False)
        if cfg.linear_probe:
            model.reset_classifier(num_classes)
        spec = model.input_spec
        if cfg.frame_interval:
            spec = dataclasses.replace(spec, frame_interval=cfg.frame_interval)
            model.input_spec = spec
        record = {"model": model.model_name or model_name, "model_kwargs": dict(getattr(model, "create_kwargs", kw)),
                  "role": role, "input_spec": spec.to_dict()}
        return model, record, info

    def setup(self):
        from vdgtool.methods import get_method, parse_hparams
        from vdgtool.video.manifest import read_class_list

        cfg = self.cfg
        seed_everything(cfg.seed)
        self.rank, self.local_rank, self.world, self.device = init_distributed(cfg.device)
        self.is_main = self.rank == 0
        self.class_names = read_class_list(cfg.classes_file) if cfg.classes_file else union_classes(cfg.data)
        if not self.class_names:
            raise ConfigError("the training stores carry no class names", "extract them with labels")
        method_cls = get_method(cfg.method)
        self.hp = parse_hparams(method_cls, cfg.hp)
        nets, self.network_records, self.init_info = {}, {}, {}
        for name, role in method_cls.NETWORKS.items():
            nets[name], self.network_records[name], self.init_info[name] = self._build_network(
                name, role, len(self.class_names))
        self.method = method_cls(nets, len(self.class_names), self.hp, device=self.device,
                                 class_names=self.class_names).to(self.device)
        self.method._event_sink = self._event
        self.specs = self.method.input_specs()
        self.spec = self.specs[self.method.INPUTS[0]]
        self.paired = "flow" in self.specs and "rgb" in self.specs
        self._check_streams()
        self.transform_options = transform_options(cfg)
        self.sampler_options = {"out_of_bound": cfg.out_of_bound}
        self.ctx = TrainContext(self)
        self.train_ds = self._source_dataset()
        if len(self.train_ds) == 0:
            raise InputError("the training stores hold no videos (after the domain filter)", "check --data/--domain")
        self.target_ds = None
        if self.method.wants_target() and cfg.target:
            for p in cfg.target:
                self._check_target_classes(p)
            views = self.method.target_views() or None
            self.target_ds = self.ctx.build_dataset(cfg.target, train=True, hide_labels=True,
                                                    flow_stores=cfg.target_flow if self.paired else None, views=views)
            self.target_batch_size = cfg.target_batch_size or cfg.batch_size
        self.val_sets = []
        for v in cfg.val:
            vclasses = union_classes([v])
            missing = [c for c in vclasses if c not in self.class_names]
            if missing:
                raise ConfigError(f"validation store {v} has classes the model does not know: {missing[:5]}",
                                  "validate on stores whose classes are a subset of the training classes")
            self.val_sets.append((os.path.splitext(os.path.basename(v))[0],
                                  self.ctx.build_dataset([v], train=False, num_clips=cfg.val_clips,
                                                         flow_stores=cfg.val_flow if self.paired else None)))
        from vdgtool.data.device_decode import setup_decode

        self.decode = setup_decode(cfg.decode, self.device, {"--data": self.train_ds, "--target": self.target_ds,
                                                             **{f"--val {n}": ds for n, ds in self.val_sets}})
        self._build_optimizers()
        if self.world > 1:
            ddp_kw = {"device_ids": [self.local_rank]} if self.device.type == "cuda" else {}
            for name in method_cls.NETWORKS:
                m = getattr(self.method, name)
                if any(p.requires_grad for p in m.parameters()):
                    setattr(self.method, name, nn.parallel.DistributedDataParallel(m, **ddp_kw))
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best = -1.0
        self.history: list[dict] = []

    def _check_streams(self) -> None:
        from vdgtool.stores import open_store

        cfg, m = self.cfg, self.method
        if m.requires_target() and not cfg.target:
            da = f" with da={self.hp['da']}" if self.hp.get("da", "none") != "none" else ""
            raise ConfigError(f"method {cfg.method}{da} trains on an unlabelled target stream, but no --target was given",
                              "pass --target TARGET.h5 (repeatable; its labels are never read)")
        if cfg.target and not m.wants_target():
            log.warning("--target is not used by method %s (as configured): it is ignored", cfg.method)
        if self.paired:
            for p in cfg.data:
                st = open_store(p, kind=("clips", "flow"))
                if st.kind == "flow" or st.conventions.get("kind") == "flow":
                    raise ConfigError(f"{p} is a flow store given as --data; {cfg.method} reads RGB clips from --data",
                                      "pass the clip store with --data and its flow store with --flow")
            for opt, have, want in (("--flow", cfg.flow, cfg.data), ("--val-flow", cfg.val_flow, cfg.val),
                                    ("--target-flow", cfg.target_flow, cfg.target if m.wants_target() else [])):
                if want and not have:
                    raise ConfigError(f"method {cfg.method} reads RGB and flow clips, but no {opt} store is paired "
                                      f"with {len(want)} store(s)", f"pass the flow store of the same videos with {opt}")
        elif cfg.flow or cfg.val_flow or cfg.target_flow:
            log.warning("--flow/--val-flow/--target-flow are not used by method %s (one RGB or flow stream)",
                        cfg.method)

    def _source_dataset(self):
        cfg = self.cfg
        from vdgtool.data import build_for_inputs

        stores, labels_from = list(cfg.data), None
        if cfg.pseudo:
            stores += list(cfg.pool)
            labels_from = [None] * len(cfg.data) + [cfg.pseudo] * len(cfg.pool)
        flow = cfg.flow if self.paired else None
        return build_for_inputs(stores, self.specs, True, flow_stores=flow, class_names=self.class_names,
                                seed=cfg.seed, domains=cfg.train_domains or None,
                                views=self.method.dataset_views() or None, transform_options=self.transform_options,
                                labels_from=labels_from, pl_weight=cfg.pl_weight, paired_crop=cfg.paired_crop,
                                sampler_options=self.sampler_options)

    def _build_optimizers(self) -> None:
        cfg = self.cfg
        self.optimizers = {}
        for name, params in self.method.parameter_groups().items():
            groups = []
            mult = float(self.hp.get(f"{name}_lr_mult", 1.0)) if name != "model" else 1.0
            for g in params:
                if isinstance(g, dict):
                    ps = [p for p in g["params"] if p.requires_grad]
                    if ps:
                        groups.append({"params": ps, "lr": cfg.lr * mult * float(g.get("lr_mult", 1.0))})
                elif g.requires_grad:
                    if not groups or "_plain" not in groups[-1]:
                        groups.append({"params": [], "lr": cfg.lr * mult, "_plain": True})
                    groups[-1]["params"].append(g)
            for g in groups:
                g.pop("_plain", None)
            if not groups:
                continue
            if cfg.optimizer == "sgd":
                opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                      nesterov=cfg.nesterov and cfg.momentum > 0)
            elif cfg.optimizer == "adam":
                opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
            else:
                opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
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
        self.scaler = grad_scaler_for(self.device, cfg.amp)
        self.autocast = autocast_for(self.device, cfg.amp)
        # parameters outside the DDP-wrapped networks (method-built modules) get their gradients averaged
        # across ranks by the Stepper
        wrapped = {id(p) for n in self.method.NETWORKS for p in getattr(self.method, n).parameters()}
        self.sync_params = [p for o in self.optimizers.values() for g in o.param_groups for p in g["params"]
                            if id(p) not in wrapped] if self.world > 1 else []

    # -- checkpoints -------------------------------------------------------------------------------
    def run_config(self) -> dict:
        return {**self.cfg.to_dict(), "class_names": self.class_names,
                "input_spec": self.spec.to_dict(), "networks": self.network_records, "hparams": self.hp,
                "world_size": self.world, "inputs": list(self.method.INPUTS), "resumed": self.resumed,
                "decoding": self.decode,
                "provenance": make_provenance(seed=self.cfg.seed, parents=self.cfg.data + self.cfg.val +
                                              self.cfg.target + self.cfg.flow + self.cfg.target_flow)}

    def state(self) -> dict[str, Any]:
        from vdgtool.methods.base import method_state

        nets = {k: unwrap(m).state_dict() for k, m in self.method.networks().items()}
        return {
            "model": nets[self.method.primary],
            "networks": nets,
            "method_state": method_state(self.method),
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
        if not is_vdgtool_checkpoint(ck):
            raise CheckpointError(f"{path} is not a vdgtool training checkpoint", "pass --overwrite to start again")
        saved = ck["config"]
        diffs = config_differences(saved, self.cfg.to_dict())
        recorded = [d for d in diffs if d[0] in RECORDED_CHANGES]
        diffs = [d for d in diffs if d[0] not in RECORDED_CHANGES]
        for key in ("class_names",):
            if saved.get(key) != self.class_names:
                diffs.append((key, saved.get(key), self.class_names))
        if diffs:
            k, a, b = diffs[0]
            more = f" (and {len(diffs) - 1} more: {', '.join(d[0] for d in diffs[1:4])})" if len(diffs) > 1 else ""
            raise ConfigError(f"--resume with {k}={b!r}, but the run was started with {a!r}{more}",
                              "resume with the same options (vdgtool train --resume -o RUN takes them from the run), "
                              "or pass --overwrite to start again")
        self.resumed = list(saved.get("resumed") or [])
        if recorded:
            self.resumed.append({"epoch": int(ck["epoch"]), "step": int(ck["global_step"]),
                                 "changed": {k: [a, b] for k, a, b in recorded}})
            log.warning("resuming with %s", ", ".join(f"{k} {a} -> {b}" for k, a, b in recorded))
        nets = network_states(ck)
        for k, m in self.method.networks().items():
            if k not in nets:
                raise CheckpointError(f"{path} holds no weights for network '{k}'", "pass --overwrite to start again")
            unwrap(m).load_state_dict(nets[k])
        self.method.set_state(ck.get("method_state") or {})
        for k, o in self.optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(ck["schedulers"][k])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.step_in_epoch = int(ck["epoch"]), int(ck["step_in_epoch"])
        self.global_step, self.best = int(ck["global_step"]), float(ck["best"])
        # keep the records written before the checkpoint only (epoch lines and method events)
        res = os.path.join(self.run_dir, "results.jsonl")
        if os.path.exists(res):
            kept = []
            with open(res) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:  # a line cut by the interruption
                        continue
                    if rec.get("step", 0) > self.global_step:
                        continue
                    if "event" not in rec and rec.get("epoch", 0) >= self.epoch:
                        continue
                    kept.append(rec)
            self.history = [r for r in kept if "event" not in r]
            if self.is_main:
                _atomic_write(res, "".join(json.dumps(r, default=str) + "\n" for r in kept))
                self._write_metrics_csv()
        log.info("resumed from %s at epoch %d step %d", path, self.epoch, self.step_in_epoch)

    # -- logging -------------------------------------------------------------------------------------
    def _append_result(self, rec: dict) -> None:
        if self.is_main:
            with open(os.path.join(self.run_dir, "results.jsonl"), "a") as f:
                f.write(json.dumps(rec, default=str) + "\n")

    def _write_metrics_csv(self) -> None:
        flat = [_flatten(h) for h in self.history]
        cols = sorted({k for r in flat for k in r}, key=lambda c: (c != "epoch", c))
        path = os.path.join(self.run_dir, "metrics.csv")
        tmp = path + ".partial"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(flat)
        os.replace(tmp, path)

    def _event(self, name: str, data: dict) -> None:
        rec = {"event": name, "epoch": self.epoch, "step": self.global_step, **data}
        self._append_result(json.loads(json.dumps(rec, default=_jsonable)))
        for lg in self.loggers:
            lg.log_event(self.global_step, name, data)

    def _build_loggers(self) -> None:
        names = [n for n in self.cfg.logger if n != "csv"]
        if not names or not self.is_main:
            return
        try:
            from vdgtool.train.loggers import build_loggers
        except ImportError as exc:
            raise ConfigError(f"loggers {names} are not available in this installation ({exc})",
                              "drop --logger or update vdgtool") from None
        self.loggers = build_loggers(names, self.run_dir, self.run_config())
        for lg in self.loggers:
            lg.log_hparams(self.run_config())

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
    def _restore_train_mode(self) -> None:
        self.method.train()
        if self.cfg.freeze_bn or self.cfg.linear_probe:
            for n in self.method.NETWORKS:
                _freeze_bn(unwrap(getattr(self.method, n)))

    def evaluate(self) -> dict:
        from vdgtool.evaluate.metrics import summarize
        from vdgtool.evaluate.predict import predict_dataset

        out = {}
        for name, ds in self.val_sets:
            p = predict_dataset(self.method, ds, device=self.device, batch_size=self.cfg.batch_size,
                                workers=self.cfg.workers, amp=self.cfg.amp, desc=f"val {name}")
            s = summarize(p["probs"], p["labels"], p["domains"], self.class_names, ds.domains)
            out[name] = {"top1": s["top1"], "mean_class": s["mean_class"], "n": s["n"]}
            for sname, probs in p["streams"].items():
                ss = summarize(probs, p["labels"], p["domains"], self.class_names, ds.domains)
                out[name].setdefault("streams", {})[sname] = {"top1": ss["top1"], "mean_class": ss["mean_class"]}
        self._restore_train_mode()
        return out

    def fit(self) -> dict:
        from vdgtool.methods import Stepper

        cfg = self.cfg
        self.setup()
        if self.is_main:
            os.makedirs(os.path.join(self.run_dir, "checkpoints"), exist_ok=True)
        else:
            import logging

            get_logger().setLevel(logging.WARNING)  # rank 0 speaks for the job
        self.method.setup(self.ctx)
        if self.resume:
            self.try_resume()
        elif self.is_main:
            res = os.path.join(self.run_dir, "results.jsonl")
            if os.path.exists(res):
                os.remove(res)
        if self.is_main:
            _atomic_write(os.path.join(self.run_dir, "config.json"),
                          json.dumps(self.run_config(), indent=2, default=str))
        self._build_loggers()
        stepper = Stepper(self.optimizers, self.scaler, cfg.clip_grad, self.autocast,
                          allow_nonfinite=cfg.allow_nonfinite)
        stepper.sync_params, stepper.world = self.sync_params, self.world
        self._install_signals()
        try:
            while self.epoch < cfg.epochs:
                self._run_epoch(stepper, make_loader)
        finally:
            self._restore_signals()
        summary = {"run_dir": self.run_dir, "epochs": cfg.epochs, "final": self.history[-1] if self.history else {},
                   "best_val_top1": self.best if self.val_sets else None, "method": cfg.method, "model": cfg.model,
                   "method_state": _summary_state(self.method)}
        if self.is_main:
            pre = os.path.join(self.run_dir, "checkpoints", "preempt.pt")
            if os.path.exists(pre):
                os.remove(pre)
            with open(os.path.join(self.run_dir, "done"), "w") as f:
                json.dump(summary, f, indent=2, default=str)
            for lg in self.loggers:
                lg.close(summary)
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        summary["rank"] = self.rank
        return summary

    def _progress(self) -> None:
        p = self.method.progress
        p.epoch, p.step_in_epoch, p.global_step = self.epoch, self.step_in_epoch, self.global_step
        p.steps_per_epoch, p.epochs = self.steps_per_epoch, self.cfg.epochs

    def _run_epoch(self, stepper, make_loader) -> None:
        cfg = self.cfg
        epoch = self.epoch
        self._restore_train_mode()
        self._progress()
        self.method.on_epoch_start(epoch)
        self.train_ds.set_epoch(epoch)
        if cfg.mix == "balanced" and getattr(self.train_ds, "has_pseudo", False):
            pool = np.asarray(self.train_ds.pseudo, dtype=bool)
            sampler = BalancedEpochSampler(np.flatnonzero(~pool), np.flatnonzero(pool), cfg.seed, epoch,
                                           self.steps_per_epoch * cfg.batch_size, self.rank, self.world,
                                           start=self.step_in_epoch * cfg.batch_size)
        else:
            sampler = EpochSampler(len(self.train_ds), cfg.seed, epoch, self.rank, self.world,
                                   start=self.step_in_epoch * cfg.batch_size)
        loader = make_loader(self.train_ds, cfg.batch_size, cfg.workers, sampler=sampler, drop_last=self.drop_last,
                             device=self.device)
        titer = None
        if self.target_ds is not None:
            tb = self.target_batch_size
            tsampler = StreamSampler(len(self.target_ds), cfg.seed, self.rank, self.world, start=self.global_step * tb)
            titer = iter(make_loader(self.target_ds, tb, cfg.workers, sampler=tsampler, device=self.device))
        t0 = time.time()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        seen = 0
        skipped0 = stepper.skipped
        remaining = self.steps_per_epoch - self.step_in_epoch
        bar = progress(total=max(0, remaining), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step")
        for batch in loader:
            if self.step_in_epoch >= self.steps_per_epoch:
                break
            batches = {"source": to_device(batch, self.device)}
            if titer is not None:
                batches["target"] = to_device(next(titer), self.device)
            torch.manual_seed(derive_seed(cfg.seed, "step", epoch, self.step_in_epoch, self.rank))
            self._progress()
            stepper.where = f"epoch {epoch + 1} step {self.step_in_epoch + 1} (global step {self.global_step + 1})"
            metrics = self.method.training_step(batches, stepper)
            stepper.end_iteration()
            for s in self.schedulers.values():
                s.step()
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and v == v:  # NaN: a metric without labelled rows
                    sums[k] = sums.get(k, 0.0) + float(v)
                    counts[k] = counts.get(k, 0) + 1
            seen += len(batch["label"])
            self.step_in_epoch += 1
            self.global_step += 1
            if self.loggers:
                for lg in self.loggers:
                    lg.log_step(self.global_step, {**{k: float(v) for k, v in metrics.items()
                                                      if isinstance(v, (int, float))},
                                                   "lr": self.optimizers["model"].param_groups[0]["lr"]})
            bar.update(1)
            if self._stop_signal is not None:
                bar.close()
                self.save("preempt.pt")
                raise Preempted(f"training stopped by signal {self._stop_signal} at epoch {epoch + 1} step "
                                f"{self.step_in_epoch}; checkpoint saved in {self.run_dir}/checkpoints/preempt.pt",
                                f"continue with: vdgtool train --resume -o {self.run_dir}")
        bar.close()
        self._progress()
        self.method.on_epoch_end(epoch)
        dt = time.time() - t0
        rec = {"epoch": epoch, "step": self.global_step,
               **{f"train_{k}": v / max(1, counts[k]) for k, v in sums.items()},
               "lr": self.optimizers["model"].param_groups[0]["lr"], "time_s": round(dt, 3),
               "clips_per_s": round(seen * self.world / max(dt, 1e-9), 2)}
        if stepper.skipped > skipped0:
            rec["skipped_nonfinite"] = stepper.skipped - skipped0
        mm = self.method.epoch_metrics()
        if mm:
            rec["method"] = json.loads(json.dumps(mm, default=_jsonable))
        val = self.evaluate() if (self.val_sets and self.is_main) else {}
        barrier(self.world)
        if val:
            rec["val"] = val
        self.epoch += 1
        self.step_in_epoch = 0
        self.history.append(rec)
        if self.is_main:
            self._append_result(rec)
            self._write_metrics_csv()
            self.save("last.pt")
            if cfg.save_every and self.epoch % cfg.save_every == 0:
                self.save(f"epoch_{self.epoch:03d}.pt")
            score = next(iter(val.values()))["top1"] if val else None
            if score is not None and score > self.best:
                self.best = score
                self.save("best.pt")
            elif not val:
                self.save("best.pt")  # no validation: best = last (documented)
            for lg in self.loggers:
                lg.log_epoch(epoch, self.global_step, rec)
        msg = ", ".join(f"{k}={v:.4g}" for k, v in rec.items() if isinstance(v, float) and k != "time_s")
        if val:
            msg += ", " + ", ".join(f"{n}: top1={m['top1']:.3f}" for n, m in val.items())
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, msg)


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return str(v)


def _summary_state(method) -> dict:
    """The method state in the ``done`` summary, when it is small (e.g. the searched augmentations)."""
    try:
        from vdgtool.methods.base import method_state

        st = method_state(method)
    except VdgError:
        return {}
    text = json.dumps(st, default=_jsonable)
    return json.loads(text) if len(text) < 20000 else {"keys": sorted(st)}


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


__all__ = ["BalancedEpochSampler", "EpochSampler", "Preempted", "StreamSampler", "TrainContext", "Trainer", "config_differences",
           "default_flow_model", "init_from_checkpoint", "train", "union_classes"]
