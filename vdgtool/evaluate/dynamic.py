"""Dynamic scores of video models and the static bias of datasets (Li & Vasconcelos, CVPR 2022).

A video model ``f`` is *static* when a purely spatial model explains its predictions. The dynamic
score measures how far ``f`` is from such an explanation, as a KL divergence in nats (>= 0, higher =
more dynamic):

* ``freeze`` / ``shuffle`` (training-free, Eq. 4): ``KL(f(x) || f(x~))`` averaged over clips, where
  ``x~`` repeats one frame of ``x`` (first / middle / random) or permutes its frames (one permutation
  per clip or one per batch). One extra forward pass per batch, on the device.
* ``distill`` (Eq. 2): a spatial student ``s`` (a 2D network applied to every frame, predictions
  averaged over frames) is distilled from ``f`` on a training split; the score is
  ``KL(f(x) || s(x))`` on a held-out split.
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
def freeze_frames(x: torch.Tensor, frame: str = "middle", generator: torch.Generator | None = None,
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
    """(B, T) frame orders: a different non-identity permutation per clip, or one shared by the batch."""
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


def perturb(x: torch.Tensor, method: str, *, frame: str = "middle", permute: str = "clip",
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


@torch.no_grad()
def perturbation_score(model: nn.Module, dataset, *, method: str = "freeze", frame: str = "middle",
                       permute: str = "clip", target: str = "model", device="cpu", batch_size: int = 16,
                       workers: int = 0, seed: int = 0, amp: str = "auto") -> dict:
    """Training-free dynamic score (Eq. 4): mean ``KL(f(x) || f(x~))`` over the clips of ``dataset``.

    ``model``: a method (its fused ``predict``: every input clip is perturbed alike) or a plain model.
    """
    from vdgtool.evaluate.predict import as_predictor, flatten_views
    from vdgtool.runtime import autocast_for, make_loader

    if method not in ("freeze", "shuffle"):
        raise ConfigError(f"perturbation_score takes freeze or shuffle, not {method!r}", "use distill_score")
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
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
        batch, b, v = flatten_views(batch, keys)  # several test views per video: score each, average per video
        pb = _perturb_inputs(batch, keys, method, frame, permute, gen)
        with ac():
            lx = pred.predict(batch)["logits"].float()
            lt = pred.predict(pb)["logits"].float()
        if target == "model":
            kl = kl_divergence(lx, lt)
        else:
            kl = label_kl(y.to(device).repeat_interleave(v), lt)
        kls.append(kl.view(b, v).mean(1).cpu())
        agree.append((lx.argmax(1) == lt.argmax(1)).float().view(b, v).mean(1).cpu())
        clean.append(lx.view(b, v, -1).mean(1).cpu())
        pert.append(lt.view(b, v, -1).mean(1).cpu())
        labels.append(y)
        domains.append(d)
    if not kls:
        raise InputError("the dataset holds no clips to score", "check --data")
    kl = torch.cat(kls).numpy()
    lab, dom = torch.cat(labels).numpy(), torch.cat(domains).numpy()
    lc, lp = torch.cat(clean).numpy(), torch.cat(pert).numpy()
    out = {"method": method, "target": target, "kl": "KL(y || f(x~))" if target == "labels" else "KL(f(x) || f(x~))",
           **({"frame": frame} if method == "freeze" else {"permute": permute}), "seed": seed,
           **_summarise(kl, torch.cat(agree).numpy(), lab, dom, dataset.class_names, dataset.domains),
           "acc_video": _acc(lc, lab), "acc_perturbed": _acc(lp, lab)}
    out["per_clip"] = {"key": [str(k) for k in dataset.keys], "kl": kl.tolist()}
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


def _first_clip(batch: dict) -> torch.Tensor:
    """The RGB (or only) clip of an item batch: what a spatial student sees."""
    return batch["video"] if "video" in batch else batch["rgb"]


@torch.no_grad()
def _teacher_logits(model, dataset, device, batch_size, workers, ac) -> torch.Tensor:
    """Per-item logits of a method/model (views averaged) on ``dataset``, in item order."""
    from vdgtool.evaluate.predict import as_predictor, flatten_views
    from vdgtool.runtime import make_loader

    pred = as_predictor(model)
    keys = tuple(pred.INPUTS)
    out = []
    for batch in progress(make_loader(dataset, batch_size, workers, device=device), desc="teacher", unit="batch"):
        batch = {k: (v.to(device) if k in keys else v) for k, v in batch.items()}
        batch, b, v = flatten_views(batch, keys)
        with ac():
            out.append(pred.predict(batch)["logits"].float().view(b, v, -1).mean(1).cpu())
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


def train_student(student: nn.Module, teacher: nn.Module | None, dataset, *, target: str = "model",
                  epochs: int = 10, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 16,
                  workers: int = 0, device="cpu", seed: int = 0, amp: str = "auto") -> dict:
    """Distil ``teacher`` into the spatial ``student`` (KL, Eq. 2), or fit the labels (Eq. 5).

    Teacher outputs are computed once (deterministic test clips); AdamW with a cosine schedule.
    """
    from vdgtool.methods.base import Stepper
    from vdgtool.runtime import autocast_for, grad_scaler_for, make_loader

    device = torch.device(device)
    ac = autocast_for(device, amp)
    soft = None
    if target == "model":
        teacher = teacher.to(device).eval()
        soft = _teacher_logits(teacher, dataset, device, batch_size, workers, ac)
    student = student.to(device).train()
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(len(dataset) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    # the training engine's Stepper: fp16 autocast gets its GradScaler, the scaler updates once per step
    stepper = Stepper({"student": opt}, grad_scaler_for(device, amp), None, ac)
    g = torch.Generator().manual_seed(int(seed))
    sub = _Indexed(dataset, np.arange(len(dataset)))
    last = float("nan")
    for ep in progress(range(epochs), desc="student", unit="epoch"):
        sampler = torch.utils.data.RandomSampler(sub, generator=g)
        tot, cnt = 0.0, 0
        for batch in make_loader(sub, batch_size, workers, sampler=sampler, device=device):
            x = _first_clip(batch).to(device)
            if x.dim() == 6:
                x = x[:, 0]
            with ac():
                s = student(x).float()
            if target == "model":
                t = soft[torch.as_tensor(batch["pos"])].to(device)
                loss = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True)
            else:
                loss = F.cross_entropy(s, torch.as_tensor(batch["label"]).to(device), ignore_index=-1)
            stepper.step(loss, "student")
            stepper.end_iteration()
            sched.step()
            tot += loss.item() * len(x)
            cnt += len(x)
        last = tot / max(1, cnt)
        log.debug("student epoch %d: loss %.4f", ep + 1, last)
    student.eval()
    return {"final_train_loss": last, "epochs": epochs, "lr": lr, "batch_size": batch_size}


@torch.no_grad()
def distill_score(model: nn.Module | None, dataset, *, heldout=None, holdout: float = 0.5, student: str | None = None,
                  student_pretrained: bool = False, epochs: int = 10, lr: float = 1e-3, weight_decay: float = 1e-4,
                  target: str = "model", device="cpu", batch_size: int = 16, workers: int = 0, seed: int = 0,
                  amp: str = "auto", spec: Any = None) -> dict:
    """Distillation dynamic score (Eq. 2), or the dataset static bias (Eq. 5) with ``target="labels"``.

    The student is trained on ``dataset`` minus a seeded, class-stratified held-out fraction
    (``holdout``), or on all of ``dataset`` when a separate ``heldout`` dataset is given, and scored on
    the held-out clips. ``model`` may be None with ``target="labels"`` (then ``spec`` is needed).
    """
    from vdgtool.runtime import autocast_for

    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
    if model is None and target == "model":
        raise ConfigError("the distillation score needs a video model", "pass a checkpoint, or --target labels")
    device = torch.device(device)
    torch.manual_seed(int(seed))
    if spec is None:
        from vdgtool.evaluate.predict import as_predictor

        specs = as_predictor(model).input_specs()
        spec = specs.get("video", specs.get("rgb"))
    n_cls = len(dataset.class_names)
    if heldout is None:
        tr, he = split_indices(len(dataset), holdout, seed, np.asarray(dataset.labels))
        train_ds, held_ds = torch.utils.data.Subset(dataset, tr), torch.utils.data.Subset(dataset, he)
        held_labels, held_domains, held_keys = dataset.labels[he], dataset.domain_ids[he], dataset.keys[he]
        held_classes, held_domain_names = dataset.class_names, dataset.domains
    else:
        train_ds, held_ds = dataset, heldout
        held_labels, held_domains, held_keys = heldout.labels, heldout.domain_ids, heldout.keys
        held_classes, held_domain_names = heldout.class_names, heldout.domains
        if list(held_classes) != list(dataset.class_names):
            raise ConfigError("the held-out data has another label space than the training data",
                              "build both with the checkpoint's class names")
    s = build_spatial_student(student, n_cls, spec, pretrained=student_pretrained)
    with torch.enable_grad():
        info = train_student(s, model, train_ds, target=target, epochs=epochs, lr=lr, weight_decay=weight_decay,
                             batch_size=batch_size, workers=workers, device=device, seed=seed, amp=amp)
    ac = autocast_for(device, amp)
    ls = _teacher_logits(_StudentPredictor(s), held_ds, device, batch_size, workers, ac)
    lab = torch.as_tensor(np.asarray(held_labels))
    if target == "model":
        lf = _teacher_logits(model.to(device).eval(), held_ds, device, batch_size, workers, ac)
        kl = kl_divergence(lf, ls).numpy()
        agree = (lf.argmax(1) == ls.argmax(1)).float().numpy()
    else:
        lf = None
        kl = label_kl(lab, ls).numpy()
        agree = (ls.argmax(1) == lab).float().numpy()
    out = {"method": "distill", "target": target,
           "kl": "KL(y || s(x))" if target == "labels" else "KL(f(x) || s(x))",
           "student": student or default_student(), "student_train": {**info, "n": len(train_ds)},
           "heldout": "separate" if heldout is not None else f"{holdout:g} of --data", "seed": seed,
           **_summarise(kl, agree, np.asarray(held_labels), np.asarray(held_domains), held_classes,
                        held_domain_names),
           "acc_video": _acc(lf.numpy(), np.asarray(held_labels)) if lf is not None else None,
           "acc_student": _acc(ls.numpy(), np.asarray(held_labels))}
    out["per_clip"] = {"key": [str(k) for k in held_keys], "kl": kl.tolist()}
    return out


def dynamic_score(checkpoint: str | None, stores: Sequence[str], *, method: str = "freeze",
                  heldout_stores: Sequence[str] = (), device="cpu", batch_size: int = 16, workers: int = 0,
                  num_clips: int = 1, seed: int = 0, student: str | None = None, spec: Any = None,
                  flow_stores: Sequence[str] = (), heldout_flow_stores: Sequence[str] = (), **kw) -> dict:
    """Library entry point of ``vdgtool score``: load the checkpoint (the whole method: a two-stream run is
    scored on its fused prediction, with ``flow_stores`` paired by key), build the data, score."""
    from vdgtool.data import build_dataset, build_for_inputs
    from vdgtool.models.registry import InputSpec

    if method not in METHODS:
        raise ConfigError(f"unknown score method {method!r}", f"use one of {', '.join(METHODS)}")
    if not stores:
        raise ConfigError("no store to score", "pass --data STORE")
    model, class_names, ck_path, specs = None, None, None, None
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

        spec = InputSpec.from_dict(model_info((student or default_student()).split(":")[0])["input_spec"]) \
            if not (student or default_student()).startswith("timm:") else None
        if spec is None:
            raise ConfigError("a timm: student without a checkpoint has no input convention",
                              "pass a checkpoint, or a registry student such as frame2d:resnet18")
    elif isinstance(spec, dict):
        spec = InputSpec.from_dict(spec)

    def data(paths, flows):
        if specs is not None:
            return build_for_inputs(list(paths), specs, False, flow_stores=list(flows) or None,
                                    class_names=class_names, seed=seed, num_clips=num_clips)
        return build_dataset(list(paths), spec, False, class_names=class_names, seed=seed, num_clips=num_clips)

    ds = data(stores, flow_stores)
    if len(ds) == 0:
        raise InputError(f"{', '.join(stores)} hold no videos", "check --data")
    if method in ("freeze", "shuffle"):
        res = perturbation_score(model, ds, method=method, device=device, batch_size=batch_size, workers=workers,
                                 seed=seed, **{k: v for k, v in kw.items() if k in ("frame", "permute", "target", "amp")})
    else:
        held = None
        if heldout_stores:
            class_names = class_names or ds.class_names
            held = data(heldout_stores, heldout_flow_stores or flow_stores)
        res = distill_score(model, ds, heldout=held, student=student, device=device, batch_size=batch_size,
                            workers=workers, seed=seed, spec=spec,
                            **{k: v for k, v in kw.items() if k in ("holdout", "student_pretrained", "epochs", "lr",
                                                                     "weight_decay", "target", "amp")})
    res = {"checkpoint": ck_path, "data": list(stores), **({"heldout_data": list(heldout_stores)} if heldout_stores
                                                          else {}), **res}
    return res


__all__ = ["METHODS", "PerFrame2D", "SpatialStudent", "build_spatial_student", "default_student", "distill_score",
           "dynamic_score", "freeze_frames", "kl_divergence", "label_kl", "perturb", "perturbation_score",
           "random_permutations", "shuffle_frames", "split_indices", "train_student"]
