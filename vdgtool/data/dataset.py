"""ClipDataset: clips from one or more clip/flow stores, classes aligned by name."""

from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vdgtool.errors import ConfigError, ConventionMismatch, InputError, StoreError
from vdgtool.stores import TableStore, VideoStore
from vdgtool.utils.log import get_logger
from vdgtool.utils.seed import derive_seed

log = get_logger("data")

RGB_NAMES = ("rgb", "srgb")


def align_classes(class_names: Sequence[str] | None, store_classes: Sequence[Sequence[str]],
                  store_names: Sequence[str] | None = None) -> tuple[list[str], list[np.ndarray]]:
    """Map each store's class indices into one label space, by class name.

    ``class_names=None`` -> the union of the stores' classes in first-seen order. Returns
    ``(class_names, maps)`` where ``maps[s][store_label] = label``. A store class missing from
    ``class_names`` raises :class:`ConfigError` naming the class and the store.
    """
    names = store_names or [f"store {i}" for i in range(len(store_classes))]
    if class_names is None:
        out: list[str] = []
        seen = set()
        for cl in store_classes:
            for c in cl:
                if c not in seen:
                    seen.add(c)
                    out.append(c)
    else:
        out = [str(c) for c in class_names]
        dup = sorted({c for c in out if out.count(c) > 1})
        if dup:
            raise ConfigError(f"class names given twice: {', '.join(dup)}", "pass each class once")
    pos = {c: i for i, c in enumerate(out)}
    maps = []
    for cl, name in zip(store_classes, names):
        missing = [c for c in cl if c not in pos]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ConfigError(
                f"class '{missing[0]}'{more} of {name} is not in the model's {len(out)} classes",
                "train on stores whose classes the model knows, pass the class list that includes it, "
                "or restrict the store to shared classes (no silent remap is done)")
        maps.append(np.array([pos[c] for c in cl], dtype=np.int64))
    return out, maps


def _map_labels(labels: np.ndarray, mapping: np.ndarray, path: str) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(labels.shape, -1, dtype=np.int64)
    ok = labels >= 0
    if ok.any() and labels[ok].max() >= len(mapping):
        raise StoreError(f"{path} has label {labels[ok].max()} but only {len(mapping)} class names",
                         "the store is damaged; re-create it")
    out[ok] = mapping[labels[ok]]
    return out


def read_pseudo_labels(path: str, class_names: Sequence[str]) -> dict[str, tuple[int, float]]:
    """key -> (label in class_names space, confidence) from a predictions store.

    Uses the ``probs`` array (or the softmax of ``logits``); several rows of one key (multi-clip
    predictions) are averaged before the argmax.
    """
    with TableStore(path, kind="predictions") as ts:
        if "probs" in ts.array_names:
            probs = np.asarray(ts.array("probs"), dtype=np.float64)
        elif "logits" in ts.array_names:
            logits = np.asarray(ts.array("logits"), dtype=np.float64)
            logits = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
        else:
            raise StoreError(f"{path} has neither 'probs' nor 'logits' (it has: {', '.join(ts.array_names)})",
                             "pass a predictions store written by vdgtool eval")
        classes = list(ts.classes)
        keys = ts.meta["key"]
    if probs.ndim != 2:
        raise StoreError(f"{path}: predictions must be (rows, classes), got shape {probs.shape}", "re-create it")
    if not classes:
        raise StoreError(f"{path} records no class names, so its labels cannot be aligned by name",
                         "re-create it with vdgtool eval")
    if probs.shape[1] != len(classes):
        raise StoreError(f"{path} has {probs.shape[1]} prediction columns but {len(classes)} class names",
                         "the store is damaged; re-create it")
    _, (mapping,) = align_classes(class_names, [classes], [path])
    uniq, inv = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    sums = np.zeros((len(uniq), probs.shape[1]))
    np.add.at(sums, inv, probs)
    mean = sums / np.bincount(inv, minlength=len(uniq))[:, None]
    arg = mean.argmax(axis=1)
    conf = mean[np.arange(len(uniq)), arg]
    return {str(k): (int(mapping[a]), float(c)) for k, a, c in zip(uniq, arg, conf)}


@dataclasses.dataclass
class ViewContext:
    """What a view function sees for one item (``views={"name": fn}``, ``fn(ctx) -> dict``).

    ``rng`` is the view's own generator (derived from seed, epoch, item and view name), so adding a
    view never changes the main clip. ``read(indices)`` returns frames (t, H, W, C), reusing the
    frames the main clip already read; ``frames``/``indices`` are the main clip's raw frames
    ((num_clips, T, H, W, C)) and indices ((num_clips, T)); ``video`` is the main clip after the
    transform (so a view can reuse its augmentation, e.g. shuffle its frames).
    """

    dataset: "ClipDataset"
    store: VideoStore
    store_index: int
    row: int
    index: int
    key: str
    num_frames: int
    label: int
    rng: np.random.Generator
    sampler: Any
    transform: Any
    train: bool
    epoch: int
    indices: np.ndarray
    frames: np.ndarray
    conventions: dict
    video: torch.Tensor | None = None
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def read(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        missing = np.unique([i for i in idx.tolist() if i not in self._cache])
        if missing.size:
            got = self.store.read(self.row, missing)
            for i, fr in zip(missing.tolist(), got):
                self._cache[i] = fr
        return np.stack([self._cache[i] for i in idx.tolist()])

    def transform_clip(self, frames: np.ndarray, transform: Any = None, rng: np.random.Generator | None = None):
        """Apply ``transform`` (default: the dataset's) with the store's conventions."""
        tf = transform or self.transform
        return _apply(tf, frames, rng if rng is not None else self.rng, self.conventions)


PAIRED_CROPS = ("shared", "independent")


def _computed_from(flow_store: VideoStore, clip_path: str, by: str) -> bool:
    """Does ``flow_store``'s provenance name ``clip_path`` as a parent (``by`` its real path or its file name)?"""
    parents = flow_store.provenance.get("parents") or []
    if by == "path":
        return any(os.path.realpath(p) == os.path.realpath(clip_path) for p in parents)
    return any(os.path.basename(p) == os.path.basename(clip_path) for p in parents)


def _frame_size(store: VideoStore, row: int) -> tuple[int, int] | None:
    h, w = store.meta.get("height"), store.meta.get("width")
    if h is None or w is None or row >= len(h):
        return None
    return int(h[row]), int(w[row])


def _clips(transform, frames: np.ndarray, rng: np.random.Generator, conventions: dict) -> torch.Tensor:
    """frames (num_clips, T, H, W, C) -> one clip tensor, or (views, C, T, h, w) for several clips/crops."""
    if frames.shape[0] == 1:
        return _apply(transform, frames[0], rng, conventions)
    if hasattr(transform, "many"):  # multi-clip views written once into one tensor
        return transform.many(frames, rng, conventions=conventions)
    clips = [_apply(transform, frames[c], rng, conventions) for c in range(frames.shape[0])]
    return torch.cat([c if c.ndim == 5 else c[None] for c in clips])


def _takes_conventions(transform) -> bool:
    """Does ``transform`` accept ``conventions=``? (inspect.signature costs ~0.2 ms: asked once per transform)"""
    try:
        return _TAKES[transform]
    except (KeyError, TypeError):
        pass
    got = _signature_takes_conventions(transform)
    try:
        if len(_TAKES) < 1024:
            _TAKES[transform] = got
    except TypeError:  # unhashable
        pass
    return got


_TAKES: dict = {}


def _signature_takes_conventions(transform) -> bool:
    try:
        params = inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return False
    return "conventions" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _apply(transform, frames, rng, conventions):
    """Call a transform; plain ``fn(frames, rng)`` callables work too (they do not get conventions)."""
    if _takes_conventions(transform):
        return transform(frames, rng, conventions=conventions)
    return transform(frames, rng)


class ClipDataset(torch.utils.data.Dataset):
    """Videos of one or more clip/flow stores as training or test items.

    ``__getitem__(i)`` -> dict: ``video`` (C, T, H, W) float tensor, or (num_views, C, T, H, W) when
    the sampler gives several clips or the transform several crops (clip-major order); ``label``
    (index in ``class_names``, -1 if unlabelled), ``domain`` (index in ``domains``), ``index``,
    ``store``, ``row``, ``key``, plus ``name: fn(ctx)`` for each view. Randomness comes from
    ``derive_seed(seed, epoch, i)`` only, so batches do not depend on the number of workers.
    ``i`` may also be an ``(i, epoch)`` pair (for persistent workers that never see set_epoch).
    """

    def __init__(self, stores: Sequence[str] | str, *, class_names: Sequence[str] | None = None,
                 sampler: Callable, transform: Callable, train: bool, seed: int = 0,
                 domains: Sequence[str] | None = None, views: dict[str, Callable] | None = None,
                 labels_from: str | Sequence[str | None] | None = None, min_confidence: float = 0.0,
                 hide_labels: bool = False, pl_weight: float = 1.0, flow_stores: Sequence[str] | None = None,
                 flow_transform: Callable | None = None, paired_crop: str = "shared"):
        if isinstance(stores, (str, os.PathLike, VideoStore)):
            stores = [stores]
        if not stores:
            raise ConfigError("no stores given", "pass at least one clip or flow store")
        self.stores: list[VideoStore] = [s if isinstance(s, VideoStore) else VideoStore(os.fspath(s))
                                         for s in stores]
        for s in self.stores:
            s.close()  # never carry an open handle into DataLoader workers
        self.paths = [s.path for s in self.stores]
        self.sampler = sampler
        self.transform = transform
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0
        self.views = dict(views or {})
        self.hide_labels = bool(hide_labels)
        self.pl_weight = float(pl_weight)
        if paired_crop not in PAIRED_CROPS:
            raise ConfigError(f"unknown paired crop '{paired_crop}'", f"use one of {', '.join(PAIRED_CROPS)}")
        self.paired_crop = paired_crop
        #: JPEG clips left encoded for the main process to decode on the device (vdgtool.data.device_decode)
        self.device_decode = False
        self.flow_transform = flow_transform
        self.paired = bool(flow_stores)
        if self.paired and flow_transform is None:
            raise ConfigError("paired flow stores need a flow transform", "pass flow_transform=")
        for name in self.views:
            if name in ("video", "rgb", "flow", "label", "domain", "index", "store", "row", "key", "pseudo",
                        "weight"):
                raise ConfigError(f"view name '{name}' clashes with an item field", "rename the view")
        self._check_modality()
        if min_confidence and not labels_from:
            raise ConfigError(f"min_confidence={min_confidence} without labels_from has no effect",
                              "pass the predictions store to take pseudo-labels from")

        # classes by name (the pseudo-label store's classes join the union when class_names is None)
        pl_paths = self._labels_from_per_store(labels_from)
        extra = []
        if class_names is None:
            for p in dict.fromkeys(p for p in pl_paths if p):
                with TableStore(p, kind="predictions") as ts:
                    extra.append(list(ts.classes))
        self.class_names, maps = align_classes(class_names, [s.classes for s in self.stores] + extra,
                                               self.paths + [p for p in dict.fromkeys(pl_paths) if p])
        maps = maps[:len(self.stores)]

        # domains by name
        united: list[str] = []
        for s in self.stores:
            united += [d for d in s.domains if d not in united]
        if domains is not None:
            domains = [str(d) for d in domains]
            unknown = [d for d in domains if d not in united]
            if unknown:
                raise ConfigError(f"domain '{unknown[0]}' is in none of the stores (they have: "
                                  f"{', '.join(united) or 'no domain names'})", "check --domains")
            self.domains = list(domains)
        else:
            self.domains = united
        dpos = {d: i for i, d in enumerate(self.domains)}

        pseudo_cache: dict[str, dict] = {}
        store_idx, rows, labels, doms, nframes, keys, pseudo = [], [], [], [], [], [], []
        self.num_dropped = 0
        for si, (s, mp, pl) in enumerate(zip(self.stores, maps, pl_paths)):
            n = len(s)
            # the labels of a hidden (target) store or of a pseudo-labelled pool are never read
            lab = (np.full(n, -1, dtype=np.int64) if (self.hide_labels or pl)
                   else _map_labels(s.meta["label"], mp, s.path))
            dom = np.array([dpos.get(s.domains[d], -1) if 0 <= d < len(s.domains) else -1
                            for d in s.meta["domain"].tolist()], dtype=np.int64)
            keep = np.ones(n, dtype=bool)
            if domains is not None:
                keep &= dom >= 0
            is_pseudo = np.zeros(n, dtype=bool)
            if pl:
                if pl not in pseudo_cache:
                    pseudo_cache[pl] = read_pseudo_labels(pl, self.class_names)
                table = pseudo_cache[pl]
                for r, k in enumerate(s.meta["key"].tolist()):
                    if k in table:
                        lab[r], conf = table[k]
                        is_pseudo[r] = True
                        if conf < min_confidence:
                            keep[r] = False
                            self.num_dropped += 1
                    else:  # not selected: dropped, never trained on with its own (ground-truth) label
                        keep[r] = False
                        self.num_dropped += 1
            sel = np.flatnonzero(keep)
            store_idx.append(np.full(len(sel), si, dtype=np.int64))
            rows.append(sel)
            labels.append(lab[sel])
            doms.append(dom[sel])
            nframes.append(np.asarray(s.meta["num_frames"], dtype=np.int64)[sel])
            keys.append(np.asarray(s.meta["key"], dtype=object)[sel])
            pseudo.append(is_pseudo[sel])
        self.store_index = np.concatenate(store_idx)
        self.rows = np.concatenate(rows)
        self.labels = np.concatenate(labels)
        self.domain_ids = np.concatenate(doms)
        self.num_frames = np.concatenate(nframes)
        self.keys = np.concatenate(keys)
        self.pseudo = np.concatenate(pseudo)
        self.has_pseudo = any(bool(p) for p in pl_paths)
        if self.hide_labels:
            self.labels[:] = -1
        self.flow_index = self._pair_flow(list(flow_stores)) if self.paired else None

    # -- checks ------------------------------------------------------------------------------------
    def _labels_from_per_store(self, labels_from) -> list[str | None]:
        if labels_from is None or isinstance(labels_from, (str, os.PathLike)):
            return [os.fspath(labels_from) if labels_from else None] * len(self.stores)
        lf = [os.fspath(p) if p else None for p in labels_from]
        if len(lf) != len(self.stores):
            raise ConfigError(f"labels_from has {len(lf)} entries for {len(self.stores)} stores",
                              "give one predictions store (or None) per store, or a single one for all")
        return lf

    def _pair_flow(self, flow_stores: list) -> np.ndarray:
        """(store, row, fields) in the flow stores of every item, by video key; a missing key is refused."""
        self.flow_stores = [s if isinstance(s, VideoStore) else VideoStore(os.fspath(s)) for s in flow_stores]
        where: dict[str, list[tuple[int, int, int]]] = {}
        for fi, fs in enumerate(self.flow_stores):
            fs.close()
            if not (fs.kind == "flow" or fs.conventions.get("kind") == "flow"):
                raise ConventionMismatch(f"{fs.path} is a {fs.kind} store, not a flow store",
                                         "pair clips with the flow store written by vdgtool flow")
            nf = np.asarray(fs.meta["num_frames"], dtype=np.int64)
            for r, k in enumerate(fs.meta["key"].tolist()):
                where.setdefault(k, []).append((fi, r, int(nf[r])))
        missing = [k for k in self.keys.tolist() if k not in where]
        if missing:
            raise InputError(f"{len(missing)} of {len(self.keys)} videos have no flow in "
                             f"{', '.join(s.path for s in self.flow_stores)}; the first is '{missing[0]}'",
                             "compute their flow (vdgtool flow CLIPS -o FLOW.h5) or pass the flow store of "
                             "these videos")
        idx = np.array([self._flow_of(k, int(si), where[k]) for k, si in zip(self.keys.tolist(), self.store_index)],
                       dtype=np.int64).reshape(-1, 3)
        self._warn_foreign_flow(idx)
        if self.paired_crop == "shared":  # one crop for both clips needs frames of one size
            for i in range(len(idx)):
                a = _frame_size(self.stores[int(self.store_index[i])], int(self.rows[i]))
                b = _frame_size(self.flow_stores[int(idx[i, 0])], int(idx[i, 1]))
                if a and b and a != b:
                    raise ConventionMismatch(
                        f"video '{self.keys[i]}' has frames of {a[0]}x{a[1]} but its flow {b[0]}x{b[1]}: one "
                        "shared crop cannot cover both", "compute the flow from the same clip store, or pass "
                        "--paired-crop independent")
        return idx

    def _flow_of(self, key: str, si: int, cands: list[tuple[int, int, int]]) -> tuple[int, int, int]:
        """The flow of clip store ``si``'s video ``key`` among the flow stores holding that key: the only one,
        else the one whose provenance names this clip store as its parent (by path, then by file name),
        so stores whose videos share names (two domains with one layout) pair with their own flow."""
        if len(cands) == 1:
            return cands[0]
        clip = self.paths[si]
        for by in ("path", "name"):
            mine = [c for c in cands if _computed_from(self.flow_stores[c[0]], clip, by)]
            if len(mine) == 1:
                return mine[0]
        paths = ", ".join(self.flow_stores[c[0]].path for c in cands)
        raise StoreError(f"video '{key}' is in {len(cands)} flow stores ({paths}) and none of them records "
                         f"{clip} as the clips its flow was computed from",
                         "pass only the flow store of these videos, or compute it from this clip store (vdgtool flow)")

    def _warn_foreign_flow(self, idx: np.ndarray) -> None:
        """Warn once per (clip store, flow store) pair whose flow records another clip store as its parent:
        the videos match by name only (e.g. two toy datasets of different seeds name their clips alike)."""
        for si, fi in sorted({(int(a), int(b)) for a, b in zip(self.store_index, idx[:, 0])}):
            fs, clip = self.flow_stores[fi], self.paths[si]
            parents = fs.provenance.get("parents") or []
            if parents and not (_computed_from(fs, clip, "path") or _computed_from(fs, clip, "name")):
                log.warning("flow store %s was computed from %s, not from %s: their videos are paired by name "
                            "only (check --flow / --val-flow / --target-flow)", fs.path, parents[0], clip)

    def _check_modality(self) -> None:
        want = getattr(self.transform, "modality", None)
        if want is None:
            return
        for s in self.stores:
            have = "flow" if (s.kind == "flow" or s.conventions.get("kind") == "flow") else "rgb"
            if have != want:
                maker = "vdgtool flow" if want == "flow" else "vdgtool extract"
                raise ConventionMismatch(f"{s.path} holds {have} frames but the model expects {want} input",
                                         f"pass a {want} store ({maker}) or a model for {have} input")
            cs = s.conventions.get("colour_space", s.conventions.get("color_space"))
            if want == "rgb" and cs is not None and str(cs).lower() not in RGB_NAMES:
                raise ConventionMismatch(f"{s.path} records colour_space={cs!r} but the model expects 'RGB'",
                                         "re-extract the store in RGB")

    # -- sampling ----------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Draw new random clips/augmentations for this epoch (call before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def item_rng(self, i: int, epoch: int | None = None, *parts) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, self.epoch if epoch is None else epoch, int(i), *parts))

    def __getitem__(self, i):
        epoch = self.epoch
        if isinstance(i, (tuple, list)):
            i, epoch = i
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range 0..{len(self) - 1}")
        si, row = int(self.store_index[i]), int(self.rows[i])
        store = self.stores[si]
        rng = self.item_rng(i, epoch)
        n = int(self.num_frames[i])
        if self.paired:  # flow field j is the motion from frame j to j+1: sample where both exist
            fsi, frow, nflow = (int(v) for v in self.flow_index[i])
            n = min(n, nflow)
        idx = np.asarray(self.sampler(n, rng, self.train), dtype=np.int64)
        if idx.ndim == 1:
            idx = idx[None]
        base = {"label": int(self.labels[i]), "domain": int(self.domain_ids[i]), "index": i, "store": si,
                "row": row, "key": str(self.keys[i])}
        if self.device_decode and store.encoding == "jpeg" and not self.paired and not self.views:
            from vdgtool.data.device_decode import EncodedClip

            # the transform runs in the main process after decoding, continuing from this generator state
            item = {"video": EncodedClip(store.read_jpeg(row, idx.reshape(-1)), tuple(idx.shape),
                                         rng.bit_generator.state, si), **base}
            return self._with_pseudo(item, i)
        raw = store.read(row, idx.reshape(-1))
        frames = raw.reshape(idx.shape + raw.shape[1:])
        if not self.paired:
            video = _clips(self.transform, frames, rng, store.conventions)
            item = {"video": video, **base}
        else:
            fstore = self.flow_stores[fsi]
            fraw = fstore.read(frow, idx.reshape(-1))
            fframes = fraw.reshape(idx.shape + fraw.shape[1:])
            s_rgb = int(rng.integers(2**63))
            s_flow = s_rgb if self.paired_crop == "shared" else int(rng.integers(2**63))
            video = _clips(self.transform, frames, np.random.default_rng(s_rgb), store.conventions)
            flow = _clips(self.flow_transform, fframes, np.random.default_rng(s_flow), fstore.conventions)
            item = {"rgb": video, "flow": flow, **base}
        self._with_pseudo(item, i)
        if self.views:
            cache = dict(zip(idx.reshape(-1).tolist(), raw))
            for name, fn in self.views.items():
                ctx = ViewContext(self, store, si, row, i, item["key"], n, item["label"],
                                  self.item_rng(i, epoch, name), self.sampler, self.transform, self.train, epoch,
                                  idx, frames, store.conventions, video, cache)  # video: the RGB clip
                item[name] = fn(ctx)
        return item

    def _with_pseudo(self, item: dict, i: int) -> dict:
        if self.has_pseudo:
            p = bool(self.pseudo[i])
            item["pseudo"] = int(p)
            item["weight"] = self.pl_weight if p else 1.0
        return item

    def __repr__(self) -> str:
        return (f"ClipDataset({len(self)} videos from {len(self.stores)} store(s), {len(self.class_names)} classes, "
                f"domains={self.domains}, train={self.train})")


def build_dataset(stores, spec: Any, train: bool, *, class_names: Sequence[str] | None = None, num_clips: int = 1,
                  num_crops: int = 1, sampler_options: dict | None = None, transform_options: dict | None = None,
                  flow_stores: Sequence[str] | None = None, flow_spec: Any = None, **kw) -> ClipDataset:
    """ClipDataset with the sampler and transform a model's input spec asks for.

    ``transform_options`` go to :func:`vdgtool.augment.build_transform` (scale, flip, color_jitter,
    policy); ``sampler_options`` to the sampler factory (e.g. out_of_bound); ``kw`` to
    :class:`ClipDataset`. ``views`` may also name built-in views: ``["pace"]`` or
    ``{"pace": {"paces": [1, 2]}}`` (see vdgtool.data.views). ``flow_stores`` + ``flow_spec`` pair every
    clip with its flow by video key (items then hold ``rgb`` and ``flow`` instead of ``video``); the
    flow clip is sampled at the same positions and transformed with the flow network's spec (no colour
    ops; the same crop and flip unless ``paired_crop="independent"``).
    """
    from vdgtool.augment import build_transform
    from vdgtool.data.samplers import build_sampler

    from vdgtool.data.views import build_views

    views = kw.pop("views", None)
    if views and (not isinstance(views, dict) or any(not callable(v) for v in views.values())):
        views = build_views(views)  # names / {name: options} of the built-in views
    sampler = build_sampler(spec, train, num_clips=num_clips, **(sampler_options or {}))
    transform = build_transform(spec, train, num_crops=num_crops, **(transform_options or {}))
    flow_transform = None
    if flow_stores:
        if flow_spec is None:
            raise ConfigError("flow stores given without the flow network's input spec", "pass flow_spec=")
        from vdgtool.data.spec import spec_get

        if int(spec_get(flow_spec, "num_frames")) != int(spec_get(spec, "num_frames")):
            raise ConfigError(f"the flow network takes {spec_get(flow_spec, 'num_frames')} frames but the RGB network "
                              f"{spec_get(spec, 'num_frames')}: paired clips are sampled at the same positions",
                              "give both networks the same clip length (--num-frames, --flow-model-arg num_frames=)")
        fopts = {k: v for k, v in (transform_options or {}).items() if k in ("scale", "flip")}
        flow_transform = build_transform(flow_spec, train, num_crops=num_crops, **fopts)
    return ClipDataset(stores, class_names=class_names, sampler=sampler, transform=transform, train=train,
                       views=views, flow_stores=flow_stores, flow_transform=flow_transform, **kw)


def build_for_inputs(stores, specs: dict, train: bool, *, flow_stores: Sequence[str] | None = None,
                     **kw) -> ClipDataset:
    """The dataset a method's inputs ask for: ``specs`` is ``{"video": spec}`` or ``{"rgb": spec,
    "flow": flow_spec}`` (:meth:`Method.input_specs`); paired inputs need ``flow_stores``."""
    if "flow" in specs and "rgb" in specs:
        if not flow_stores:
            raise ConfigError("this model reads RGB and flow clips but no flow store was paired with the clips",
                              "pass the flow store of the same videos with --flow (--val-flow, --target-flow)")
        return build_dataset(stores, specs["rgb"], train, flow_stores=flow_stores, flow_spec=specs["flow"], **kw)
    if len(specs) != 1:
        raise ConfigError(f"cannot build a dataset for inputs {sorted(specs)}", "use video, or rgb + flow")
    kw.pop("paired_crop", None)
    return build_dataset(stores, next(iter(specs.values())), train, **kw)


def collate_views(batch: list[dict]) -> dict:
    """Collate item dicts: tensors/numbers stacked, str fields (and None) become lists, dicts recurse."""
    from torch.utils.data import default_collate

    from vdgtool.data.device_decode import EncodedBatch, EncodedClip

    def coll(values):
        first = values[0]
        if any(isinstance(v, EncodedClip) for v in values):  # decoded on the device (vdgtool.data.device_decode)
            return EncodedBatch(values)
        if isinstance(first, dict):
            return {k: coll([v[k] for v in values]) for k in first}
        if first is None or isinstance(first, str):
            return list(values)
        if isinstance(first, (list, tuple)) and first and isinstance(first[0], str):
            return [list(v) for v in values]
        return default_collate(values)

    return coll(batch)
