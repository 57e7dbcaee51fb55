"""``vdgtool flow``: clip store -> flow store, and flow for loose image pairs (.flo, EPE)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from vdgtool.errors import DecodeError, InputError, VdgError
from vdgtool.flow.backends import FlowBackend
from vdgtool.flow.flo import endpoint_error, read_flo, write_flo
from vdgtool.flow.quantize import DEFAULT_BOUND, quantize_flow
from vdgtool.utils.env import shard_items
from vdgtool.utils.log import get_logger, progress
from vdgtool.utils.provenance import make_provenance

log = get_logger("flow")


def pair_indices(num_frames: int, stride: int = 1) -> list[tuple[int, int]]:
    """Frame pairs of a video: (k*stride, (k+1)*stride) for k = 0 .. (T-1)//stride - 1.

    stride 1 gives the T-1 consecutive pairs; stride s subsamples the video by s first (the flow
    video then has fps / s and (T-1)//s fields; field k belongs to frame k*s).
    """
    if stride < 1:
        raise InputError(f"stride {stride} must be >= 1", "pass --stride 1 or more")
    return [(k * stride, (k + 1) * stride) for k in range((num_frames - 1) // stride)]


@dataclass
class FlowResult:
    path: str
    videos: int = 0
    fields: int = 0
    errors: list = field(default_factory=list)
    skipped_resume: int = 0
    seconds: float = 0.0
    backend: str = ""

    def to_dict(self) -> dict:
        return {"store": self.path, "videos": self.videos, "fields": self.fields, "errors": len(self.errors),
                "resumed_from": self.skipped_resume, "seconds": round(self.seconds, 3),
                "pairs_per_second": round(self.fields / self.seconds, 3) if self.seconds > 0 else None,
                "backend": self.backend, "bad_inputs": self.errors}


def flow_conventions(backend: FlowBackend, *, bound: float, dtype: str, stride: int, parent) -> dict:
    sizes = sorted({(int(h), int(w)) for h, w in zip(parent.meta.get("height", []), parent.meta.get("width", []))})
    return {
        "backend": backend.name,
        "params": backend.params(),
        "bound": float(bound),
        "quantisation": "linear_uint8" if dtype == "uint8" else "none",
        "dtype": dtype,
        "stride": int(stride),
        "direction": "forward",          # field k maps frame k*stride to frame (k+1)*stride
        "channels": ["u", "v"],          # [..., 0] horizontal (+x right), [..., 1] vertical (+y down)
        "layout": "THW2",
        "network_input": "uint8: q/127.5-1; float16: clip(f,-bound,bound)/bound",
        "parent_size": parent.conventions.get("size"),
        "parent_stride": parent.conventions.get("stride"),
        "parent_fps": parent.conventions.get("fps"),
        "frame_size": [list(s) for s in sizes][0] if len(sizes) == 1 else [list(s) for s in sizes],
    }


def compute_flow_store(clip_store: str, out: str, backend: FlowBackend, *, stride: int = 1,
                       bound: float = DEFAULT_BOUND, dtype: str = "uint8", num_shards: int = 1,
                       shard_index: int = 0, resume: bool = False, overwrite: bool = False,
                       limit: int | None = None, seed: int = 0) -> FlowResult:
    """Flow for every video of ``clip_store`` (this shard's rows) into the flow store ``out``.

    A video that cannot be read or is too short is recorded in the store's ``/errors`` and skipped.
    """
    from vdgtool.stores import VideoStore, VideoStoreWriter
    from vdgtool.stores.base import open_h5, check_header

    if stride < 1:
        raise InputError(f"stride {stride} must be >= 1", "pass --stride 1 or more")
    quantize_flow(np.zeros((1, 2), np.float32), bound, dtype)  # validates bound and dtype early
    with open_h5(clip_store) as f:
        check_header(f, clip_store, "clips")
    src = VideoStore(clip_store, kind="clips")
    rows = shard_items(list(range(len(src))), num_shards, shard_index)
    if limit:
        rows = rows[:limit]
    conv = flow_conventions(backend, bound=bound, dtype=dtype, stride=stride, parent=src)
    conv.update({"num_shards": num_shards, "shard_index": shard_index})
    prov = make_provenance(seed=seed, parents=[clip_store])
    writer = VideoStoreWriter(out, "flow", classes=src.classes, domains=src.domains, conventions=conv,
                              provenance=prov, encoding="raw", resume=resume, overwrite=overwrite,
                              input_digest=_store_digest(src), inputs=[clip_store])
    meta = src.meta
    todo = [r for r in rows if meta["key"][r] not in writer.done_keys]
    res = FlowResult(path=out, skipped_resume=len(rows) - len(todo), backend=backend.name)
    if res.skipped_resume:
        log.info("resuming: %d of %d videos already done", res.skipped_resume, len(rows))
    t0 = time.perf_counter()
    try:
        bar = progress(total=sum(max(0, (int(meta["num_frames"][r]) - 1) // stride) for r in todo),
                       desc="flow", unit="pair")
        for r in todo:
            key, idx, source = str(meta["key"][r]), int(meta["index"][r]), str(meta["source"][r])
            try:
                frames = src.read(r)
                pairs = pair_indices(int(frames.shape[0]), stride)
                if not pairs:
                    raise InputError(f"video has {frames.shape[0]} frame(s), fewer than the {stride + 1} "
                                     f"needed for one flow field at stride {stride}", "")
                a = np.asarray([p[0] for p in pairs])
                b = np.asarray([p[1] for p in pairs])
                flow = backend.compute(frames[a], frames[b])
                if not np.isfinite(flow).all():
                    raise DecodeError("the flow solver produced non-finite values", "")
            except (VdgError, OSError, ValueError) as exc:
                reason = getattr(exc, "cause", None) or f"{exc.__class__.__name__}: {exc}"
                log.warning("skipped %s: %s", key, reason)
                writer.add_error(key, index=idx, source=source, reason=reason)
                res.errors.append({"key": key, "source": source, "reason": reason})
                continue
            dom = int(meta["domain"][r])
            writer.add_video(key, quantize_flow(flow, bound, dtype), index=idx, label=int(meta["label"][r]),
                             domain=src.domains[dom] if 0 <= dom < len(src.domains) else None,
                             fps=float(meta["fps"][r]) / stride, source=source, decoder=f"flow:{backend.name}")
            res.fields += len(pairs)
            bar.update(len(pairs))
        bar.close()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        src.close()
    res.seconds = time.perf_counter() - t0
    st = VideoStore(out)
    res.videos = len(st)
    res.errors = [{"key": k, "source": s, "reason": rs} for k, s, rs in
                  zip(st.errors.get("key", []), st.errors.get("source", []), st.errors.get("reason", []))]
    st.close()
    return res


def _store_digest(st) -> str:
    """What a resumed flow run must read again: the parent's videos (keys, manifest order, frame counts)."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps([st.classes, st.conventions], sort_keys=True, default=str).encode())
    for k, i, n in zip(st.meta["key"].tolist(), st.meta["index"].tolist(), st.meta["num_frames"].tolist()):
        h.update(json.dumps([k, i, n]).encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:32]


# -- loose image pairs --------------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (grey images are replicated)."""
    import warnings

    import cv2
    from PIL import Image

    from vdgtool.video.decode import MAX_PIXELS, file_kind

    kind = file_kind(os.fspath(path))
    if kind == "missing":
        raise InputError(f"image {path} does not exist", "check the path")
    if kind != "file":
        raise InputError(f"{path} is a {kind}, not an image file", "pass an image file")
    try:  # the header only: refuse a huge image before OpenCV allocates it
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = im.size
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"image {path} is a decompression bomb ({' '.join(str(exc).split())[:100]})",
                          "pass a smaller image") from None
    except Exception:  # noqa: BLE001 - OpenCV reports unreadable files below
        w = h = 0
    if w * h > MAX_PIXELS:
        raise DecodeError(f"image {path} claims {w}x{h} pixels, above the limit of {MAX_PIXELS / 1e6:.0f} M",
                          "pass a smaller image")
    img = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DecodeError(f"cannot decode image {path}", "pass a PNG, JPEG, PPM or other image OpenCV reads")
    return img[..., ::-1].copy()


def read_pairs_list(path: str) -> list[tuple[str, str, str | None]]:
    """A text file with one pair per line: ``IMG1 IMG2 [GT.flo]`` (relative to the file; # comments)."""
    if not os.path.isfile(path):
        raise InputError(f"pairs list {path} does not exist", "check the path")
    from vdgtool.video.manifest import read_text_lines

    base = os.path.dirname(os.path.abspath(path))
    out = []
    for n, line in enumerate(read_text_lines(path, "pairs list"), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (2, 3):
            raise InputError(f"{path}:{n}: expected 'IMG1 IMG2 [GT.flo]', got {len(parts)} field(s)",
                             "write one pair per line")
        parts = [p if os.path.isabs(p) else os.path.join(base, p) for p in parts]
        out.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    if not out:
        raise InputError(f"pairs list {path} has no pairs", "write one 'IMG1 IMG2 [GT.flo]' per line")
    return out


def flow_pairs(pairs: list[tuple[str, str, str | None]], output: str | None, backend: FlowBackend) -> list[dict]:
    """Flow for image pairs; write ``.flo`` files; EPE where ground truth is given.

    One pair: ``output`` is the .flo path. Several: ``output`` is a folder (created), files are named
    after the first image (``<stem>.flo``). Pairs of equal size are solved in one batch.
    """
    if not pairs:
        raise InputError("no image pairs given", "pass --pairs IMG1 IMG2 or --pairs-list FILE")
    if output is None:
        raise InputError("no output given for the flow files", "pass -o out.flo (one pair) or -o FOLDER")
    if len(pairs) == 1:
        if os.path.isdir(output):
            outs = [os.path.join(output, os.path.splitext(os.path.basename(pairs[0][0]))[0] + ".flo")]
        else:
            parent = os.path.dirname(os.path.abspath(output))
            if not os.path.isdir(parent):
                raise InputError(f"output folder {parent} does not exist", "create it first")
            outs = [output]
    else:
        os.makedirs(output, exist_ok=True)
        names = [os.path.splitext(os.path.basename(p[0]))[0] for p in pairs]
        if len(set(names)) != len(names):
            names = [f"{i:06d}_{n}" for i, n in enumerate(names)]
        outs = [os.path.join(output, n + ".flo") for n in names]
    from vdgtool.stores.base import refuse_output_in_inputs

    refuse_output_in_inputs(outs, [p for pair in pairs for p in pair])
    imgs = []
    for a, b, gt in pairs:
        ia, ib = read_image(a), read_image(b)
        if ia.shape != ib.shape:
            raise InputError(f"{a} is {ia.shape[1]}x{ia.shape[0]} but {b} is {ib.shape[1]}x{ib.shape[0]}",
                             "both images of a pair must have the same size")
        g = read_flo(gt) if gt else None
        if g is not None and g.shape[:2] != ia.shape[:2]:
            raise InputError(f"ground truth {gt} is {g.shape[1]}x{g.shape[0]} but {a} is "
                             f"{ia.shape[1]}x{ia.shape[0]}", "pass the ground truth of this pair")
        imgs.append((ia, ib, g))
    groups: dict = {}
    for i, (ia, _, _) in enumerate(imgs):
        groups.setdefault(ia.shape, []).append(i)
    flows: list = [None] * len(imgs)
    times = [0.0] * len(imgs)
    for idx in groups.values():
        t0 = time.perf_counter()
        fl = backend.compute(np.stack([imgs[i][0] for i in idx]), np.stack([imgs[i][1] for i in idx]))
        dt = (time.perf_counter() - t0) / len(idx)
        for j, i in enumerate(idx):
            flows[i], times[i] = fl[j], dt
    rows = []
    for (a, b, gt), (ia, _, g), fl, out, dt in zip(pairs, imgs, flows, outs, times):
        write_flo(out, fl)
        rec = {"image1": a, "image2": b, "flo": out, "height": int(ia.shape[0]), "width": int(ia.shape[1]),
               "seconds": round(dt, 4), "epe": None, "epe_zero": None}
        if g is not None:
            rec["epe"] = endpoint_error(fl, g)
            rec["epe_zero"] = endpoint_error(np.zeros_like(g), g)
        rows.append(rec)
    return rows


def check_flow_store(path: str, bound: float | None = None, dtype: str | None = None) -> None:
    """Refuse a flow store whose bound / dtype differ from what the consumer expects."""
    from vdgtool.stores import VideoStore

    st = VideoStore(path, kind="flow")
    try:
        st.require_conventions(bound=None if bound is None else float(bound), dtype=dtype)
    finally:
        st.close()


__all__ = ["pair_indices", "compute_flow_store", "flow_pairs", "read_pairs_list", "read_image", "FlowResult",
           "check_flow_store"]
