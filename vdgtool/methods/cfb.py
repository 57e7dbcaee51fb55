"""MM 2024 image-to-video adaptation (Huang et al.): the category-aware flow bank (CFB) and video pace.

Two networks (``rgb``, ``flow``; the ST-I2V I3D of :mod:`vdgtool.models.i3d` is the intended model)
on paired items. Each iteration one source batch (synthesised videos of labelled stills with their
flow) and one target batch (unlabelled real videos with their flow) pass through **both** networks in
train mode, separately, so BatchNorm normalises each domain with its own batch statistics and both
update the running statistics (spec §2.6).

* **Bank** (:class:`vdgtool.adapt.bank.FlowBank`): at the end of every epoch from ``warmup`` on
  (epochs are 0-based: the bank is first built at the end of epoch ``warmup - 1`` and used from epoch
  ``warmup``, i.e. ``warmup`` epochs on source flows as the paper says; ``warmup_release=true`` adds
  the release's extra epoch), the current model scores every target pool video on the evaluation view
  (``eval_frames`` uniformly sampled frames, centre crop): ``P = mean_t(softmax_rgb + softmax_flow)``,
  pseudo-label ``argmax P``, confidence ``max P``; each class keeps its ``bank_size`` most confident
  videos, as (video key, view) references. In the next epoch every source sample's flow is replaced
  by the flow of a bank entry of its (true source) class (``retrieval``: random 1 of N, the paper's;
  ``top-k``; ``mean`` of all N); a class with an empty bank keeps its own flow. The entry's flow is
  read from the target flow store on the bank view: the ``eval_frames`` uniform fields, every
  ``eval_frames // num_frames``-th kept (the release: ``flow_32`` fields 0, 2, ..., 30), centre crop,
  no augmentation. The bank is method state (checkpointed, exact on ``--resume``); per-class fill,
  purity (when the target store has labels: a diagnostic, never used) and the pool accuracies of the
  scoring pass are logged as a ``cfb_bank`` event per epoch.
* **Pace**: target RGB clips resampled at pace r in {1..pace_classes} from a start uniform over the
  video (the ``pace`` view, ``start="any"``), a 1x1x1 convolution on the pooled per-time RGB features,
  time-averaged, cross-entropy weighted by ``lambda_pace``.
* **Losses**: ``L = L_c + lambda_local * L_loc + lambda_pace * L_vc (+ da term)``. ``L_c``: the
  time-mean logits of each stream against the source label (softmax CE, the paper; ``loss=bce`` the
  release's one-hot sigmoid BCE averaged over classes); ``L_loc``: the same per time step, averaged
  over time (the release's reduction, to which the per-benchmark lambda_local values belong; the
  paper's Eq. 2 sums over frames: ``local_reduction=sum``), on RGB (paper) or both streams
  (``local_streams=both``, release); ``--hp da=dan|mcc|bnm|fbnm`` adds a term per stream on the
  time-averaged source/target features or logits (Table 4; not in the release).
* Controls: ``bank=shuffled`` (the bank's classes permuted by a seeded derangement after each build:
  the same target flows, category matching broken), ``bank=oracle`` (entries chosen by the true target
  labels: the ceiling; needs a labelled target store), ``bank=off`` (source flows only: SO(RGB+flow)).
* Prediction: the time-mean of the fused per-time-step softmax (``probs``), each stream's time-mean
  softmax under ``streams``. A checkpoint rebuilt for ``eval`` reads ``eval_frames`` uniformly sampled
  frames (the release's 32-frame protocol; its ``int8`` frame-index overflow is not reproduced).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vdgtool.adapt.bank import RETRIEVAL_MODES, FlowBank
from vdgtool.errors import ConfigError
from vdgtool.methods.base import HParam, Method, register_method
from vdgtool.methods.da import DA_HPARAMS
from vdgtool.methods.erm import DAMixin
from vdgtool.utils.seed import derive_seed

BANK_MODES = ("pseudo", "shuffled", "oracle", "off")


def derangement(n: int, rng: np.random.Generator) -> list[int]:
    """A uniformly drawn permutation of ``range(n)`` without fixed points (identity when n == 1)."""
    if n < 2:
        return list(range(n))
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return [int(x) for x in p]


def _per_time(net, x):
    """(logits (B, C, T), features (B, D, T')) of a network; models without per-time outputs give T = 1."""
    from vdgtool.runtime import unwrap

    if hasattr(unwrap(net), "forward_per_time"):
        out = net(x, per_time=True)
        return out.logits, out.features
    logits, feats = net(x, with_features=True)
    return logits[:, :, None], feats[:, :, None]


@register_method("cfb")
class CFB(DAMixin, Method):
    description = ("MM 2024 image-to-video: RGB + flow networks on paired items, source flows replaced by the "
                   "flows of pseudo-labelled target videos of the same class (category-aware flow bank), video "
                   "pace prediction on target RGB; needs --target/--target-flow.")
    NETWORKS = {"rgb": "main", "flow": "flow"}
    INPUTS = ("rgb", "flow")
    HPARAMS = {
        "bank": HParam("pseudo", "flow bank: pseudo-labels (the method), shuffled classes or true labels "
                       "(controls), off (source flows only)", choices=BANK_MODES),
        "bank_size": HParam(60, "N: entries per class", min=1),
        "warmup": HParam(10, "epochs on source flows before the bank is used (0-based: first build at the end "
                         "of epoch warmup-1)", min=1),
        "warmup_release": HParam(False, "the release's warm-up: one more epoch on source flows"),
        "retrieval": HParam("random", "per source sample: one random entry of its class, one of the top-k, or "
                            "the mean of all", choices=RETRIEVAL_MODES),
        "top_k": HParam(5, "k of top-k retrieval", min=1),
        "eval_frames": HParam(32, "frames uniformly sampled for the bank's scoring pass and eval (centre crop)",
                              min=1),
        "loss": HParam("ce", "classification loss: softmax cross-entropy (paper) or one-hot sigmoid BCE "
                       "averaged over classes (release)", choices=("ce", "bce")),
        "lambda_local": HParam(1.0, "lambda1: weight of the per-time-step (frame-level) loss", min=0.0),
        "local_streams": HParam("rgb", "frame-level loss on RGB (paper Eq. 2) or both streams (release)",
                                choices=("rgb", "both")),
        "local_reduction": HParam("mean", "frame-level loss over time: mean (release, the scale of the "
                                  "benchmark lambda1) or sum (paper Eq. 2)", choices=("mean", "sum")),
        "lambda_pace": HParam(0.2, "lambda2: weight of the pace cross-entropy (0: off; the head still "
                              "runs, as in the release)", min=0.0),
        "pace_classes": HParam(5, "paces 1..K (every r-th frame)", min=2),
        "pace_wrap": HParam("modulo", "pace clips past the video's end: continue modulo n (paper) or restart "
                            "at frame 0 (release)", choices=("modulo", "restart")),
        "grad_clamp": HParam(0.0, "clamp every gradient element to [-v, v] (release: 1; 0 = off)", min=0.0),
        **DA_HPARAMS,
    }

    def __init__(self, networks, num_classes, hparams, **kw):
        super().__init__(networks, num_classes, hparams, **kw)
        self._build_da()
        self.pace_head = nn.Conv3d(int(self.net("rgb").num_features), int(self.hp["pace_classes"]), 1)
        self.bank = FlowBank(num_classes, int(self.hp["bank_size"]), view_spec=self._view_spec())
        self.perm: list[int] | None = None  # the shuffled control's class permutation of the last build
        self._mean_cache: dict[int, torch.Tensor] = {}
        self._pool_ds = self._flow_ds = None
        self._flow_pos: dict[str, int] = {}

    # -- configuration ------------------------------------------------------------------------------
    def wants_target(self) -> bool:
        return True

    def requires_target(self) -> bool:
        return True

    def target_views(self):
        from vdgtool.data.views import pace_view

        paces = list(range(1, int(self.hp["pace_classes"]) + 1))
        return {"pace": pace_view(paces, start="any", wrap=self.hp["pace_wrap"])}

    def extra_modules(self):
        return {"pace_head": self.pace_head, **super().extra_modules()}

    def _every(self) -> int:
        t = int(self.net("flow").input_spec.num_frames)
        e = int(self.hp["eval_frames"])
        if e % t:
            raise ConfigError(f"eval_frames={e} is not a multiple of the clip length {t}: the bank keeps every "
                              f"(eval_frames / clip length)-th field of the evaluation view",
                              f"pass --hp eval_frames={2 * t} (the release: 32 for 16-frame clips)")
        return e // t

    def _view_spec(self) -> dict:
        return {"source_frames": int(self.hp["eval_frames"]), "every": self._every(), "crop": "centre",
                "sampler": "uniform"}

    def _eval_spec(self, name: str):
        spec = self.net(name).input_spec
        return dataclasses.replace(spec, num_frames=int(self.hp["eval_frames"]), sampler="uniform")

    def eval_specs(self) -> dict:
        """Input specs of the scoring pass and of ``eval``: ``eval_frames`` uniform frames, centre crop."""
        return {k: self._eval_spec(n) for k, n in zip(self.INPUTS, self.NETWORKS)}

    def input_specs(self):
        # a checkpoint rebuilt for eval/score reads the evaluation protocol; training reads clips
        return self.eval_specs() if self.inference else super().input_specs()

    def _first_build(self) -> int:
        return int(self.hp["warmup"]) - 1 + int(bool(self.hp["warmup_release"]))

    # -- setup: the pool's scoring dataset and the flow reader of the bank ----------------------------
    def setup(self, ctx) -> None:
        super().setup(ctx)
        if self.hp["bank"] == "off":
            return
        from vdgtool.data import build_dataset

        cfg = ctx.cfg
        specs = self.eval_specs()
        try:  # true labels, when the store has them, feed the purity diagnostic (and the oracle control) only
            self._pool_ds = ctx.build_dataset(cfg.target, train=False, flow_stores=cfg.target_flow, specs=specs)
        except ConfigError:
            self._pool_ds = ctx.build_dataset(cfg.target, train=False, flow_stores=cfg.target_flow, specs=specs,
                                              hide_labels=True)
        if self.hp["bank"] == "oracle" and (self._pool_ds.labels < 0).any():
            raise ConfigError("--hp bank=oracle needs the true labels of every target video, and the target store "
                              "has unlabelled ones", "use a labelled target store for the oracle control")
        self._flow_ds = build_dataset(list(cfg.target_flow), specs["flow"], False, class_names=ctx.class_names,
                                      hide_labels=True, seed=cfg.seed)
        self._flow_pos = {str(k): i for i, k in enumerate(self._flow_ds.keys.tolist())}

    # -- the bank -----------------------------------------------------------------------------------
    def _entry_flow(self, entry) -> torch.Tensor:
        i = self._flow_pos.get(entry.key)
        if i is None:
            raise ConfigError(f"bank entry '{entry.key}' is not in the target flow store",
                              "resume with the same --target-flow stores")
        return self._flow_ds[i]["video"][:, ::int(self.bank.view_spec.get("every", 1))]

    def _class_flow(self, refs: tuple) -> torch.Tensor:
        if len(refs) == 1:
            return self._entry_flow(refs[0])
        c = refs[0].label
        if c not in self._mean_cache:  # mean retrieval: the class mean, read once per build
            self._mean_cache[c] = torch.stack([self._entry_flow(e) for e in refs]).mean(0)
        return self._mean_cache[c]

    def _compose(self, flow: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Source flows with each sample's flow replaced from the bank of its class (empty class: kept)."""
        if not len(self.bank):
            return flow, 0
        p = self.progress
        gen = torch.Generator().manual_seed(derive_seed(int(self.ctx.cfg.seed), "cfb-bank", p.global_step,
                                                        int(self.ctx.rank)))
        refs = self.bank.retrieve(labels.cpu(), gen, mode=self.hp["retrieval"], k=int(self.hp["top_k"]))
        out, n = flow.clone(), 0
        for i, r in enumerate(refs):
            if r:
                f = self._class_flow(r)
                if f.shape != flow.shape[1:]:
                    raise ConfigError(f"bank flow has shape {tuple(f.shape)}, the training flow clips "
                                      f"{tuple(flow.shape[1:])}", "train and score at the same size (--size)")
                out[i] = f.to(out.device, out.dtype)
                n += 1
        return out, n

    def on_epoch_end(self, epoch: int) -> None:
        if self.hp["bank"] == "off" or epoch < self._first_build():
            return
        t0 = time.time()
        p = self.ctx.predict(self._pool_ds, desc="cfb bank")
        scores = 2.0 * p["probs"]  # mean_t(softmax_rgb + softmax_flow), in (0, 2]
        truth = np.asarray(p["labels"])
        built = FlowBank(self.num_classes, int(self.hp["bank_size"]), view_spec=self._view_spec())
        built.builds = self.bank.builds
        built.rebuild(scores, p["keys"], indices=p["index"], true_labels=truth,
                      labels=truth if self.hp["bank"] == "oracle" else None)
        self.perm = None
        if self.hp["bank"] == "shuffled":
            rng = np.random.default_rng(derive_seed(int(self.ctx.cfg.seed), "cfb-shuffle", epoch))
            self.perm = derangement(self.num_classes, rng)
            built = built.permuted(self.perm)
        self.bank, self._mean_cache = built, {}
        st = built.stats()
        known = truth >= 0
        acc = {}
        if known.any():
            acc = {"pool_fused": float((p["probs"].argmax(1)[known] == truth[known]).mean())}
            for name, pr in p["streams"].items():
                acc[f"pool_{name}"] = float((pr.argmax(1)[known] == truth[known]).mean())
        self.log_event("cfb_bank", build=built.builds, mode=self.hp["bank"], fill=st["fill"],
                       empty_classes=st["empty_classes"], purity=st["purity"], overall_purity=st["overall_purity"],
                       matched_purity=self._matched_purity(), pseudo_label_accuracy=st["pseudo_label_accuracy"],
                       perm=self.perm, seconds=round(time.time() - t0, 3), **acc)

    def _matched_purity(self) -> float | None:
        """Share of entries whose true label is the class they are retrieved for (the shuffled bank: ~0)."""
        ents = [e for c in range(self.num_classes) for e in self.bank.entries(c) if e.true_label >= 0]
        return sum(e.true_label == e.label for e in ents) / len(ents) if ents else None

    def epoch_metrics(self):
        if self.hp["bank"] == "off":
            return {}
        return {"bank_entries": len(self.bank), "bank_builds": self.bank.builds,
                "bank_in_use": bool(len(self.bank)), "bank_matched_purity": self._matched_purity()}

    def get_state(self):
        return {"bank": self.bank.state_dict(), "perm": self.perm}

    def set_state(self, state):
        if state.get("bank"):
            self.bank.load_state_dict(state["bank"])
        self.perm = state.get("perm")
        self._mean_cache = {}

    # -- training -----------------------------------------------------------------------------------
    def _cls(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Classification loss of (B, C) or per-time (B, C, T) logits against y (B,)."""
        if logits.dim() == 3:
            t = logits.shape[2]
            flat = logits.permute(0, 2, 1).reshape(-1, logits.shape[1])
            loss = self._cls(flat, y.repeat_interleave(t))
            return loss * t if self.hp["local_reduction"] == "sum" else loss
        if self.hp["loss"] == "bce":
            return F.binary_cross_entropy_with_logits(logits.float(), F.one_hot(y, self.num_classes).float())
        return F.cross_entropy(logits.float(), y)

    def training_step(self, batches, stepper):
        src, tgt = batches["source"], batches["target"]
        y = src["label"]
        flow, replaced = self._compose(src["flow"], y)
        da = self._da_kind() != "none"
        lam_local, lam_pace = float(self.hp["lambda_local"]), float(self.hp["lambda_pace"])
        metrics = {}
        with stepper.autocast():
            zr, fr = _per_time(self.rgb, src["rgb"])
            zf, ff = _per_time(self.flow, flow)
            lr, lf = zr.mean(2), zf.mean(2)
            l_cls = self._cls(lr, y) + self._cls(lf, y)
            l_loc = self._cls(zr, y)
            if self.hp["local_streams"] == "both":
                l_loc = l_loc + self._cls(zf, y)
            # the target batch through both networks in train mode, on its own (per-domain BN statistics);
            # method-side passes use the unwrapped networks (one DDP forward per network and step)
            pace = tgt["pace"]
            zt, ft = _per_time(self.net("rgb"), pace["video"])
            pl = self.pace_head(ft[..., None, None]).flatten(2).mean(2)
            l_pace = F.cross_entropy(pl.float(), pace["label"])
            loss = l_cls + lam_local * l_loc + lam_pace * l_pace
            if da:
                zrt, frt = _per_time(self.net("rgb"), tgt["rgb"])
                zft, fft = _per_time(self.net("flow"), tgt["flow"])
                for net, fs, ftt, ls, lt in (("rgb", fr, frt, lr, zrt.mean(2)), ("flow", ff, fft, lf, zft.mean(2))):
                    term, m = self.da_loss(net, fs.mean(2), ftt.mean(2), ls, lt)
                    loss = loss + term
                    metrics.update({f"{net}_{k}": v for k, v in m.items()})
            else:
                with torch.no_grad():
                    _per_time(self.net("flow"), tgt["flow"])
        clamp = float(self.hp["grad_clamp"])
        stepper.step(loss, "model", clip_value=clamp or None)
        with torch.no_grad():
            fused = (lr.float().softmax(1) + lf.float().softmax(1)) / 2
        return {"loss": loss.item(), "cls": l_cls.item(), "local": l_loc.item(), "pace": l_pace.item(),
                "pace_acc": self.accuracy(pl.detach(), pace["label"]), "acc": self.accuracy(fused, y),
                "acc_rgb": self.accuracy(lr.detach(), y), "acc_flow": self.accuracy(lf.detach(), y),
                "bank_replaced": replaced / max(1, len(y)), **metrics}

    # -- prediction ---------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch):
        zr, _ = _per_time(self.net("rgb"), batch["rgb"])
        zf, _ = _per_time(self.net("flow"), batch["flow"])
        pr, pf = zr.float().softmax(1).mean(2), zf.float().softmax(1).mean(2)
        probs = (pr + pf) / 2
        return {"logits": probs.clamp_min(1e-12).log(), "probs": probs,
                "streams": {"rgb": pr.clamp_min(1e-12).log(), "flow": pf.clamp_min(1e-12).log()}}


__all__ = ["BANK_MODES", "CFB", "derangement"]
