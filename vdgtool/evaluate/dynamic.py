"""Dynamic scores of video models and the static bias of datasets (Li & Vasconcelos, CVPR 2022).

A video model ``f`` is *static* when a purely spatial model explains its predictions. The dynamic
score measures how far ``f`` is from such an explanation, as a KL divergence in nats (>= 0, higher =
more dynamic):

* ``freeze`` / ``shuffle`` (training-free, Eq. 4): ``KL(f(x) || f(x~))`` averaged over clips, where
  ``x~`` repeats one frame of ``x`` (first, as the release and ``drl-freeze``; middle / random) or
  permutes its frames (one permutation per batch, as the release; or one per clip). One extra forward
  pass per batch, on the device.
* ``distill`` (Eq. 2): a spatial student ``s`` (a 2D network applied to every frame, features averaged
  over frames; by default the release's ImageNet ResNet-18) is distilled from ``f`` on a training
  split; the score is ``KL(f(x) || s(x))`` on a separate split. Protocol ``paper`` (the release's
  ``configs/scoring/res2d18.yaml``): 25 epochs of SGD (lr 0.01, momentum 0.9, weight decay 1e-4,
  lr x0.1 every 10 epochs) on augmented training clips with the teacher's outputs computed live;
  protocol ``fast``: 10 epochs of AdamW (1e-3, cosine) against teacher outputs cached once on test clips.
* Several test views per video: the KL of the view-averaged logits (the release's clip consensus),
  or with ``views="kl"`` the mean of the per-view KLs.
* ``target="labels"`` (Eq. 5, the static bias of a dataset): the ground-truth label ``y`` (one-hot)
  replaces ``f(x)``, i.e. ``KL(y || f(x~))`` or, with ``distill``, ``KL(y || s(x))`` with the student
  trained by cross-entropy on the labels. A low value means frames alone predict the labels
  (strong static bias).

Every result also carries the per-class and per-domain breakdown and the agreement rate (how often
the perturbed / student prediction has the same arg-max as the video model).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vdgtool.errors import ConfigError, InputError
from vdgtool.utils.log import get_logger, progress

log = get_logger("score")

METHODS = ("freeze", "shuffle", "distill")
FRAME_CHOICES = ("first", "middle", "random")
PERMUTE_CHOICES = ("clip", "batch")
TARGETS = ("model", "labels")
VIEW_MODES = ("logits", "kl")
PROTOCOLS = {
    # the release: configs/scoring/res2d18.yaml (SGD, StepLR) and main-drl.py (live teacher, training split)
    "paper": {"epochs": 25, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
              "schedule": "step", "step_size": 10, "gamma": 0.1, "teacher": "live", "augment": True},
    # quick and deterministic: teacher outputs cached once on test clips
    "fast": {"epochs": 10, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine",
             "teacher": "cached", "augment": False},
}


# -- divergences -------------------------------------------------------------------------------------
def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-row ``KL(softmax(p) || softmax(q))`` in nats, computed in float64 and clamped at 0
    (rounding can otherwise give -1e-17 for identical rows)."""
    lp = F.log_softmax(p_logits.double(), dim=-1)
    lq = F.log_softmax(q_logits.double(), dim=-1)
    return (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0)


def label_kl(labels: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """``KL(onehot(y) || softmax(q)) = -log q_y`` per row (rows with y < 0 give NaN)."""
    lq = F.log_softmax(q_logits.double(), dim=-1)
    y = labels.clamp_min(0).long()
    out = -lq.gather(1, y[:, None])[:, 0]
    return torch.where(labels >= 0, out.clamp_min(0.0), torch.full_like(out, float("nan")))


# -- perturbations (batched, on the device) ---------------------------------------------------------
def freeze_frames(x: torch.Tensor, frame: str = "first", generator: torch.Generator | None = None,
                  index: torch.Tensor | None = None) -> torch.Tensor:
    """Repeat one frame of each clip ``x`` (B, C, T, H, W) over time: ``first``, ``middle`` or ``random``
    (a frame drawn per clip from ``generator``). ``index`` (B,) gives the frames explicitly."""
    if x.dim() != 5:
        raise InputError(f"expected clips (B, C, T, H, W), got shape {tuple(x.shape)}", "pass 5-D video batches")
    b, _, t = x.shape[:3]
    if index is None:
        if frame == "first":
            index = torch.zeros(b, dtype=torch.long)
        elif frame == "middle":
            index = torch.full((b,), t // 2, dtype=torch.long)
        elif frame == "random":
            index = torch.randint(0, t, (b,), generator=generator)
        else:
            raise ConfigError(f"unknown frame choice {frame!r}", f"use one of {', '.join(FRAME_CHOICES)}")
    index = index.to(x.device).long()
    sel = x[torch.arange(b, device=x.device), :, index]  # (B, C, H, W)
    return sel.unsqueeze(2).expand_as(x).contiguous()


def random_permutations(b: int, t: int, per: str = "clip", generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, T) frame orders: a different non-identity permutation per clip, or one shared by the batch.

    The identity is re-drawn (the release's ``torch.randperm`` keeps it, with probability 1/T!: 1/40320
    at 8 frames), so a "shuffled" clip always differs from the clip.
    """
    if per not in PERMUTE_CHOICES:
        raise ConfigError(f"unknown permutation mode {per!r}", f"use one of {', '.join(PERMUTE_CHOICES)}")
    n = b if per == "clip" else 1
    perms = torch.argsort(torch.rand(n, t, generator=generator), dim=1)
    if t > 1:
        ident = torch.arange(t)
        for i in range(n):  # re-draw identities (probability 1/T!)
            while torch.equal(perms[i], ident):
                perms[i] = torch.randperm(t, generator=generator)
    return perms if per == "clip" else perms.expand(b, t)


def shuffle_frames(x: torch.Tensor, per: str = "clip", generator: torch.Generator | None = None,
                   order: torch.Tensor | None = None) -> torch.Tensor:
    """Permute the frames of ``x`` (B, C, T, H, W): per clip or one permutation per batch."""
    if x.dim() != 5:
        raise InputError(f"expected clips (B, C, T, H, W), got shape {tuple(x.shape)}", "pass 5-D video batches")
    b, c, t, h, w = x.shape
    if order is None:
        order = random_permutations(b, t, per, generator)
    idx = order.to(x.device).long().view(b, 1, t, 1, 1).expand(b, c, t, h, w)
    return torch.gather(x, 2, idx)


def perturb(x: torch.Tensor, method: str, *, frame: str = "first", permute: str = "batch",
            generator: torch.Generator | None = None) -> torch.Tensor:
    if method == "freeze":
        return freeze_frames(x, frame, generator)
    if method == "shuffle":
        return shuffle_frames(x, permute, generator)
    raise ConfigError(f"unknown perturbation {method!r}", "use freeze or shuffle")


# -- the spatial student (vdgtool.models.students; re-exported here) -----------------------------------
from vdgtool.models.students import PerFrame2D, SpatialStudent, build_spatial_student, default_student  # noqa: E402


# -- scoring ------------------------------------------------------------------------------------------
def _summarise(kl: np.ndarray, agree: np.ndarray, labels: np.ndarray, domains: np.ndarray,
               class_names: Sequence[str], domain_names: Sequence[str]) -> dict:
    ok = ~np.isnan(kl)
    n = int(ok.sum())
    out = {"n": n, "score": float(kl[ok].mean()) if n else float("nan"),
           "score_se": float(kl[ok].std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
           "score_median": float(np.median(kl[ok])) if n else float("nan"),
           "agreement": float(agree[ok].mean()) if n else float("nan")}
    per_class = {}
    for i, c in enumerate(class_names):
        m = ok & (labels == i)
        if m.any():
            per_class[c] = {"n": int(m.sum()), "score": float(kl[m].mean()), "agreement": float(agree[m].mean())}
    out["per_class"] = per_class
    per_dom = {}
    for i, d in enumerate(domain_names):
        m = ok & (domains == i)
        if m.any():
            per_dom[d] = {"n": int(m.sum()), "score": float(kl[m].mean()), "agreement": float(agree[m].mean())}
    out["per_domain"] = per_dom
    return out


def _acc(logits: np.ndarray, labels: np.ndarray) -> float:
    m = labels >= 0
    return float((logits[m].argmax(1) == labels[m]).mean()) if m.any() else float("nan")


def _perturb_inputs(batch: dict, keys, method: str, frame: str, permute: str, generator) -> dict:
    """The same perturbation (one frame index / one order per clip) applied to every input clip of a
    batch, so an RGB clip and its flow are frozen / shuffled alike."""
    first = batch[keys[0]]
    b, t = first.shape[0], first.shape[2]
    out = dict(batch)
    if method == "freeze":
        if frame == "random":
            index = torch.randint(0, t, (b,), generator=generator)
        else:
            index = torch.full((b,), 0 if frame == "first" else t // 2, dtype=torch.long)
            if frame not in FRAME_CHOICES:
                raise ConfigError(f"unknown frame choice {frame!r}", f"use one of {', '.join(FRAME_CHOICES)}")
        for k in keys:
            out[k] = freeze_frames(batch[k], index=index)
    elif method == "shuffle":
        order = random_permutations(b, t, permute, generator)
        for k in keys:
            out[k] = shuffle_frames(batch[k], order=order)
    else:
        raise ConfigError(f"unknown perturbation {method!r}", "use freeze or shuffle")
    return out


def _view_kl(lx: torch.Tensor, lt: torch.Tensor, b: int, v: int, views: str, labels=None) -> tuple:
    """Per-video divergence and agreement of (B*V, C) logits: KL of the view-averaged logits
    (``views="logits"``) or the mean of the per-view KLs (``"kl"``); ``labels``: KL(y || .) instead."""
    if views not in VIEW_MODES:
        raise ConfigError(f"unknown view mode {views!r}", f"use one of {', '.join(VIEW_MODES)}")
    if views == "logits":
        mx, mt = lx.view(b, v, -1).mean(1), lt.view(b, v, -1).mean(1)
        kl = kl_divergence(mx, mt) if labels is None else label_kl(labels, mt)
        ref = mx.argmax(1) if labels is None else labels
        return kl, (ref == mt.argmax(1)).float()
    kl = kl_divergence(lx, lt) if labels is None else label_kl(labels.repeat_interleave(v), lt)
    ref = lx.argmax(1) if labels is None else labels.repeat_interleave(v)
    return kl.view(b, v).mean(1), (ref == lt.argmax(1)).float().view(b, v).mean(1)


@torch.no_grad()
def perturbation_score(model: nn.Module, dataset, *, method: str = "freeze", frame: str = "first",
                       permute: str = "batch", target: str = "model", views: str = "logits", device="cpu",
                       batch_size: int = 16, workers: int = 0, seed: int = 0, amp: str = "auto") -> dict:
    """Training-free dynamic score (Eq. 4): mean ``KL(f(x) || f(x~))`` over the videos of ``dataset``.

    ``model``: a method (its fused ``predict``: every input clip is perturbed alike) or a plain model.
    Defaults are the release's: the first frame frozen, one permutation per batch, the KL of the
    view-averaged logits.
    """
    from vdgtool.evaluate.predict import as_predictor, flatten_views
    from vdgtool.runtime import autocast_for, make_loader

    if method not in ("freeze", "shuffle"):
        raise ConfigError(f"perturbation_score takes freeze or shuffle, not {method!r}", "use distill_score")
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
    if views not in VIEW_MODES:
        raise ConfigError(f"unknown view mode {views!r}", f"use one of {', '.join(VIEW_MODES)}")
    device = torch.device(device)
    pred = as_predictor(model).to(device).eval()
    keys = tuple(pred.INPUTS)
    gen = torch.Generator().manual_seed(int(seed))
    ac = autocast_for(device, amp)
    kls, agree, labels, domains, clean, pert = [], [], [], [], [], []
    for batch in progress(make_loader(dataset, batch_size, workers, device=device), desc=f"score {method}",
                          unit="batch"):
        batch = {k: (v.to(device, non_blocking=True) if k in keys else v) for k, v in batch.items()}
        y = torch.as_tensor(batch["label"])
        d = torch.as_tensor(batch["domain"])
        batch, b, v = flatten_views(batch, keys)  # several test views per video
        pb = _perturb_inputs(batch, keys, method, frame, permute, gen)
        with ac():
            lx = pred.predict(batch)["logits"].float()
            lt = pred.predict(pb)["logits"].float()
        kl, ag = _view_kl(lx, lt, b, v, views, None if target == "model" else y.to(device))
        kls.append(kl.cpu())
        agree.append(ag.cpu())
        clean.append(lx.view(b, v, -1).mean(1).cpu())
        pert.append(lt.view(b, v, -1).mean(1).cpu())
        labels.append(y)
        domains.append(d)
    if not kls:
        raise InputError("the dataset holds no clips to score", "check --data")
    kl = torch.cat(kls).numpy()
    lab, dom = torch.cat(labels).numpy(), torch.cat(domains).numpy()
    lc, lp = torch.cat(clean).numpy(), torch.cat(pert).numpy()
    meta = dataset_meta(dataset)
    out = {"method": method, "target": target, "kl": "KL(y || f(x~))" if target == "labels" else "KL(f(x) || f(x~))",
           **({"frame": frame} if method == "freeze" else {"permute": permute}), "views": views, "seed": seed,
           **_summarise(kl, torch.cat(agree).numpy(), lab, dom, meta["class_names"], meta["domains"]),
           "acc_video": _acc(lc, lab), "acc_perturbed": _acc(lp, lab)}
    out["per_clip"] = {"key": [str(k) for k in meta["keys"]], "kl": kl.tolist()}
    return out


def split_indices(n: int, holdout: float, seed: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) split, stratified by label when labels are given."""
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"--holdout {holdout} is not in (0, 1)", "use a fraction such as 0.5")
    rng = np.random.default_rng(seed)
    if labels is None:
        labels = np.zeros(n, dtype=np.int64)
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * holdout))
        if len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        held.append(idx[:k])
        train.append(idx[k:])
    tr, he = np.sort(np.concatenate(train)), np.sort(np.concatenate(held))
    if len(tr) == 0 or len(he) == 0:
        raise InputError(f"{n} clips are too few for a train / held-out split", "score more clips or pass --heldout")
    return tr, he


def dataset_meta(ds) -> dict:
    """Labels, domain ids, keys, class and domain names of a ClipDataset or a Subset of one."""
    if isinstance(ds, torch.utils.data.Subset):
        inner, idx = dataset_meta(ds.dataset), np.asarray(ds.indices, dtype=np.int64)
        return {**inner, "labels": np.asarray(inner["labels"])[idx], "domain_ids": np.asarray(inner["domain_ids"])[idx],
                "keys": np.asarray(inner["keys"])[idx]}
    return {"labels": np.asarray(ds.labels), "domain_ids": np.asarray(ds.domain_ids), "keys": np.asarray(ds.keys),
            "class_names": list(ds.class_names), "domains": list(ds.domains)}


def _first_clip(batch: dict) -> torch.Tensor:
    """The RGB (or only) clip of an item batch: what a spatial student sees."""
    return batch["video"] if "video" in batch else batch["rgb"]


@torch.no_grad()
def _view_logits(model, dataset, device, batch_size, workers, ac) -> torch.Tensor:
    """Per-view logits (N, V, C) of a method/model on ``dataset``, in item order."""
    from vdgtool.evaluate.predict import as_predictor, flatten_views
    from vdgtool.runtime import make_loader

    pred = as_predictor(model)
    keys = tuple(pred.INPUTS)
    out = []
    for batch in progress(make_loader(dataset, batch_size, workers, device=device), desc="predict", unit="batch"):
        batch = {k: (v.to(device) if k in keys else v) for k, v in batch.items()}
        batch, b, v = flatten_views(batch, keys)
        with ac():
            out.append(pred.predict(batch)["logits"].float().view(b, v, -1).cpu())
    return torch.cat(out)


class _StudentPredictor(nn.Module):
    """A spatial student seen as a predictor of the RGB clip of an item."""

    INPUTS = ("video",)

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def predict(self, batch):
        return {"logits": self.student(_first_clip(batch))}


class _Indexed(torch.utils.data.Dataset):
    """Subset that also returns the position within the subset (to look cached teacher outputs up)."""

    def __init__(self, ds, indices):
        self.ds, self.indices = ds, np.asarray(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        item = self.ds[int(self.indices[i])]
        item["pos"] = i
        return item


def protocol_settings(protocol: str = "paper", *, epochs: int | None = None, lr: float | None = None,
                      weight_decay: float | None = None) -> dict:
    """The student schedule of a distillation protocol (:data:`PROTOCOLS`), with explicit overrides."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown distillation protocol {protocol!r}", f"use one of {', '.join(PROTOCOLS)}")
    st = dict(PROTOCOLS[protocol], protocol=protocol)
    for k, v in (("epochs", epochs), ("lr", lr), ("weight_decay", weight_decay)):
        if v is not None:
            st[k] = v
    if int(st["epochs"]) < 1:
        raise ConfigError(f"student epochs {st['epochs']} must be at least 1", "pass --student-epochs >= 1")
    if not (float(st["lr"]) > 0 and math.isfinite(float(st["lr"]))):
        raise ConfigError(f"student learning rate {st['lr']} must be a positive number", "pass --student-lr > 0")
    if not (float(st["weight_decay"]) >= 0 and math.isfinite(float(st["weight_decay"]))):
        raise ConfigError(f"student weight decay {st['weight_decay']} must be >= 0", "pass --student-wd >= 0")
    st["epochs"] = int(st["epochs"])
    return st


def train_student(student: nn.Module, teacher: nn.Module | None, dataset, *, target: str = "model",
                  settings: dict | None = None, batch_size: int = 16, workers: int = 0, device="cpu", seed: int = 0,
                  amp: str = "auto") -> dict:
    """Distil ``teacher`` into the spatial ``student`` (KL, Eq. 2), or fit the labels (Eq. 5).

    ``settings`` (:func:`protocol_settings`): the optimizer and schedule, and where the teacher's targets
    come from: ``live`` (the teacher, in eval mode, on every training batch: the same augmented clips
    the student sees) or ``cached`` (once, on ``dataset``'s clips). Every view of a multi-view item is
    its own example, against its own teacher output.
    """
    from vdgtool.evaluate.predict import as_predictor, flatten_views
    from vdgtool.methods.base import Stepper
    from vdgtool.runtime import autocast_for, grad_scaler_for, make_loader

    st = dict(settings or protocol_settings("paper"))
    device = torch.device(device)
    ac = autocast_for(device, amp)
    pred, keys, soft = None, ("video",), None
    if target == "model":
        pred = as_predictor(teacher).to(device).eval()
        keys = tuple(pred.INPUTS)
        if st["teacher"] == "cached":
            soft = _view_logits(pred, dataset, device, batch_size, workers, ac)
    student = student.to(device).train()
    params = [p for p in student.parameters() if p.requires_grad]
    if st["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=st["lr"], momentum=st.get("momentum", 0.9), weight_decay=st["weight_decay"])
    else:
        opt = torch.optim.AdamW(params, lr=st["lr"], weight_decay=st["weight_decay"])
    steps_per_epoch = max(1, math.ceil(len(dataset) / batch_size))
    if st["schedule"] == "step":  # per epoch, as torch's StepLR in the release
        sched = torch.optim.lr_scheduler.StepLR(opt, st["step_size"], st["gamma"])
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, st["epochs"] * steps_per_epoch)
    # the training engine's Stepper: fp16 autocast gets its GradScaler, the scaler updates once per step
    stepper = Stepper({"student": opt}, grad_scaler_for(device, amp), None, ac)
    g = torch.Generator().manual_seed(int(seed))
    sub = _Indexed(dataset, np.arange(len(dataset)))
    last = float("nan")
    for ep in progress(range(st["epochs"]), desc="student", unit="epoch"):
        sampler = torch.utils.data.RandomSampler(sub, generator=g)
        tot, cnt = 0.0, 0
        for batch in make_loader(sub, batch_size, workers, sampler=sampler, device=device):
            batch = {k: (v.to(device, non_blocking=True) if k in keys or k in ("video", "rgb") else v)
                     for k, v in batch.items()}
            batch, b, v = flatten_views(batch, keys)
            x = _first_clip(batch)
            with ac():
                s = student(x).float()
            if target == "model":
                if soft is not None:
                    t = soft[torch.as_tensor(batch["pos"])].to(device).flatten(0, 1)
                else:
                    with torch.no_grad(), ac():
                        t = pred.predict(batch)["logits"].float()
                loss = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True)
            else:
                y = torch.as_tensor(batch["label"]).to(device).repeat_interleave(v)
                loss = F.cross_entropy(s, y, ignore_index=-1)
            stepper.step(loss, "student")
            stepper.end_iteration()
            if st["schedule"] != "step":
                sched.step()
            tot += loss.item() * len(x)
            cnt += len(x)
        if st["schedule"] == "step":
            sched.step()
        last = tot / max(1, cnt)
        log.debug("student epoch %d: loss %.4f", ep + 1, last)
    student.eval()
    return {"final_train_loss": last, "batch_size": batch_size,
            **{k: st[k] for k in ("protocol", "epochs", "optimizer", "lr", "weight_decay", "schedule", "teacher",
                                  "augment") if k in st},
            **({"step_size": st["step_size"], "gamma": st["gamma"]} if st["schedule"] == "step" else {})}


@torch.no_grad()
def distill_score(model: nn.Module | None, dataset, *, train_dataset=None, heldout=None, holdout: float = 0.5,
                  protocol: str = "paper", student: str | None = None, student_pretrained: bool = True,
                  student_weights: str | None = None, epochs: int | None = None, lr: float | None = None,
                  weight_decay: float | None = None, target: str = "model", views: str = "logits", device="cpu",
                  batch_size: int = 16, workers: int = 0, seed: int = 0, amp: str = "auto", spec: Any = None,
                  student_data: str | None = None) -> dict:
    """Distillation dynamic score (Eq. 2), or the dataset static bias (Eq. 5) with ``target="labels"``.

    The student trains on ``train_dataset`` (for the paper protocol, a training-mode dataset: augmented
    random clips) and is scored on ``dataset``. Without ``train_dataset``: ``heldout`` given, the
    student trains on ``dataset`` and is scored on ``heldout`` (the older spelling); neither, a seeded
    class-stratified ``holdout`` fraction of ``dataset`` is scored and the rest trains the student
    (test-mode clips, no augmentation). ``model`` may be None with ``target="labels"`` (then ``spec``).
    ``student_data`` names the student's training data in the record.
    """
    from vdgtool.models.students import student_init
    from vdgtool.runtime import autocast_for

    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
    if views not in VIEW_MODES:
        raise ConfigError(f"unknown view mode {views!r}", f"use one of {', '.join(VIEW_MODES)}")
    if model is None and target == "model":
        raise ConfigError("the distillation score needs a video model", "pass a checkpoint, or --target labels")
    settings = protocol_settings(protocol, epochs=epochs, lr=lr, weight_decay=weight_decay)
    device = torch.device(device)
    torch.manual_seed(int(seed))
    if spec is None:
        from vdgtool.evaluate.predict import as_predictor

        specs = as_predictor(model).input_specs()
        spec = specs.get("video", specs.get("rgb"))
    if train_dataset is not None:
        train_ds, held_ds = train_dataset, dataset
        where = student_data or "a separate training dataset"
    elif heldout is not None:
        train_ds, held_ds = dataset, heldout
        where = student_data or "the training dataset (scored on a separate held-out dataset)"
        settings["augment"] = False
    else:
        meta = dataset_meta(dataset)
        tr, he = split_indices(len(dataset), holdout, seed, meta["labels"])
        train_ds, held_ds = torch.utils.data.Subset(dataset, tr), torch.utils.data.Subset(dataset, he)
        where = f"{1 - holdout:.2g} of the scored data (the other {holdout:.2g} is scored)"
        settings["augment"] = False
    held = dataset_meta(held_ds)
    if list(held["class_names"]) != list(dataset_meta(train_ds)["class_names"]):
        raise ConfigError("the scored data has another label space than the student's training data",
                          "build both with the checkpoint's class names")
    n_cls = len(held["class_names"])
    s = build_spatial_student(student, n_cls, spec, pretrained=student_pretrained, weights=student_weights)
    with torch.enable_grad():
        info = train_student(s, model, train_ds, target=target, settings=settings, batch_size=batch_size,
                             workers=workers, device=device, seed=seed, amp=amp)
    ac = autocast_for(device, amp)
    ls = _view_logits(_StudentPredictor(s), held_ds, device, batch_size, workers, ac)
    b, v = ls.shape[:2]
    lab = torch.as_tensor(np.asarray(held["labels"]))
    if target == "model":
        lf = _view_logits(model.to(device).eval(), held_ds, device, batch_size, workers, ac)
        kl, agree = _view_kl(lf.flatten(0, 1), ls.flatten(0, 1), b, v, views)
    else:
        lf = None
        kl, agree = _view_kl(ls.flatten(0, 1), ls.flatten(0, 1), b, v, views, labels=lab)
    kl, agree = kl.numpy(), agree.numpy()
    out = {"method": "distill", "target": target, "protocol": protocol,
           "kl": "KL(y || s(x))" if target == "labels" else "KL(f(x) || s(x))",
           "student": student or default_student(), "student_init": student_init(student_pretrained, student_weights),
           "student_train": {**info, "n": len(train_ds), "data": where}, "views": views, "seed": seed,
           **_summarise(kl, agree, held["labels"], held["domain_ids"], held["class_names"], held["domains"]),
           "acc_video": _acc(lf.mean(1).numpy(), held["labels"]) if lf is not None else None,
           "acc_student": _acc(ls.mean(1).numpy(), held["labels"])}
    out["per_clip"] = {"key": [str(k) for k in held["keys"]], "kl": kl.tolist()}
    return out


def _same_stores(a: Sequence[str], b: Sequence[str]) -> bool:
    import os

    return sorted(os.path.realpath(p) for p in a) == sorted(os.path.realpath(p) for p in b)


def dynamic_score(checkpoint: str | None, stores: Sequence[str] = (), *, method: str = "freeze",
                  student_stores: Sequence[str] = (), heldout_stores: Sequence[str] = (), protocol: str = "paper",
                  device="cpu", batch_size: int = 16, workers: int = 0, num_clips: int = 1, seed: int = 0,
                  student: str | None = None, spec: Any = None, flow_stores: Sequence[str] = (),
                  student_flow_stores: Sequence[str] = (), heldout_flow_stores: Sequence[str] = (), **kw) -> dict:
    """Library entry point of ``vdgtool score``: load the checkpoint (the whole method: a two-stream run is
    scored on its fused prediction, with ``flow_stores`` paired by key), build the data, score.

    No ``stores``: the run's recorded stores (its first validation store, else its training store;
    :func:`vdgtool.evaluate.run.recorded_stores`). ``distill``: the student trains on ``student_stores``;
    by default (protocol ``paper``) on the run's recorded training stores, with the run's training
    augmentation; where those are missing or are the scored stores, on a ``holdout`` split of the scored
    stores. ``heldout_stores`` (older spelling): the student trains on ``stores``, ``heldout_stores`` are
    scored.
    """
    from vdgtool.data import build_dataset, build_for_inputs
    from vdgtool.evaluate.run import recorded_stores
    from vdgtool.models.registry import InputSpec

    if method not in METHODS:
        raise ConfigError(f"unknown score method {method!r}", f"use one of {', '.join(METHODS)}")
    if heldout_stores and student_stores:
        raise ConfigError("both --heldout and --student-data were given",
                          "use --student-data TRAIN --data SCORED (--data TRAIN --heldout SCORED is the older spelling)")
    model, class_names, ck_path, specs, cfg = None, None, None, None, {}
    if checkpoint:
        from vdgtool.train.checkpoint import build_method_from_checkpoint, load_checkpoint

        ck = load_checkpoint(checkpoint)
        ck_path = ck.get("_path", checkpoint)
        model, cfg = build_method_from_checkpoint(ck, device=device)
        class_names = list(cfg["class_names"])
        specs = model.input_specs()
        spec = specs.get("video", specs.get("rgb"))
    elif spec is None:
        if not (method == "distill" and kw.get("target") == "labels"):
            raise ConfigError("no checkpoint given", "pass CKPT (only --method distill --target labels works without one)")
        from vdgtool.models import model_info

        name = student or default_student()
        spec = InputSpec.from_dict(model_info(name.split(":")[0])["input_spec"]) if not name.startswith("timm:") else None
        if spec is None:
            raise ConfigError("a timm: student without a checkpoint has no input convention",
                              "pass a checkpoint, or a registry student such as frame2d:resnet18")
    elif isinstance(spec, dict):
        spec = InputSpec.from_dict(spec)
    if heldout_stores:  # older spelling: --data TRAIN --heldout SCORED
        if not stores:
            raise ConfigError("--heldout needs --data (the student's training store)",
                              "pass --student-data TRAIN --data SCORED")
        student_stores, stores = list(stores), list(heldout_stores)
        student_flow_stores, flow_stores = list(flow_stores), list(heldout_flow_stores or flow_stores)
    source = "given"
    if not stores:
        if not checkpoint:
            raise ConfigError("no store to score", "pass --data STORE")
        stores, flow_stores, source = recorded_stores(cfg, ck_path)
    opts = {}
    if cfg:
        from vdgtool.train.config import transform_options

        opts = transform_options(cfg)

    def data(paths, flows, train=False):
        extra = {"transform_options": opts} if train else {}
        if specs is not None:
            return build_for_inputs(list(paths), specs, train, flow_stores=list(flows) or None,
                                    class_names=class_names, seed=seed, num_clips=1 if train else num_clips, **extra)
        return build_dataset(list(paths), spec, train, class_names=class_names, seed=seed,
                             num_clips=1 if train else num_clips, **extra)

    ds = data(stores, flow_stores)
    if len(ds) == 0:
        raise InputError(f"{', '.join(stores)} hold no videos", "check --data")
    rec = {"checkpoint": ck_path, "data": list(stores), "data_source": source}
    if method in ("freeze", "shuffle"):
        res = perturbation_score(model, ds, method=method, device=device, batch_size=batch_size, workers=workers,
                                 seed=seed, **{k: v for k, v in kw.items()
                                               if k in ("frame", "permute", "target", "amp", "views")})
        return {**rec, **res}
    dkw = {k: v for k, v in kw.items() if k in ("holdout", "student_pretrained", "student_weights", "epochs", "lr",
                                                 "weight_decay", "target", "amp", "views")}
    augment = PROTOCOLS.get(protocol, {}).get("augment", False)
    if not student_stores and protocol == "paper" and cfg.get("data"):
        import os

        recorded = [p for p in cfg["data"] if os.path.exists(p)]
        if recorded and len(recorded) == len(cfg["data"]) and not _same_stores(recorded, stores):
            student_stores, student_flow_stores = recorded, list(cfg.get("flow") or [])
            log.info("distill: the student trains on the run's training store(s) %s", ", ".join(recorded))
    if student_stores and _same_stores(student_stores, stores):
        log.warning("distill: the student's training store is the scored store: splitting it (--holdout %g)",
                    kw.get("holdout", 0.5))
        student_stores = []
    if student_stores:
        class_names = class_names or ds.class_names
        train_ds = data(student_stores, student_flow_stores or (), train=augment)
        res = distill_score(model, ds, train_dataset=train_ds, protocol=protocol, student=student, device=device,
                            batch_size=batch_size, workers=workers, seed=seed, spec=spec,
                            student_data=", ".join(student_stores), **dkw)
        res["student_train"]["augment"] = augment
        return {**rec, "student_data": list(student_stores), **res}
    # a seeded, class-stratified split of the scored stores (the training part augmented under "paper")
    holdout = float(kw.get("holdout", 0.5))
    tr, he = split_indices(len(ds), holdout, seed, np.asarray(ds.labels))
    train_ds = torch.utils.data.Subset(data(stores, flow_stores, train=augment), tr)
    res = distill_score(model, torch.utils.data.Subset(ds, he), train_dataset=train_ds, protocol=protocol,
                        student=student, device=device, batch_size=batch_size, workers=workers, seed=seed, spec=spec,
                        student_data=f"{1 - holdout:.2g} of the scored store(s) (the other {holdout:.2g} is scored)",
                        **{k: v for k, v in dkw.items() if k != "holdout"})
    res["student_train"]["augment"] = augment
    return {**rec, "student_data": "split", "holdout": holdout, **res}


__all__ = ["METHODS", "PROTOCOLS", "PerFrame2D", "SpatialStudent", "VIEW_MODES", "build_spatial_student",
           "dataset_meta", "default_student", "distill_score", "dynamic_score", "freeze_frames", "kl_divergence",
           "label_kl", "perturb", "perturbation_score", "protocol_settings", "random_permutations", "shuffle_frames",
           "split_indices", "train_student"]
