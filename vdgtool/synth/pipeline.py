"""``synth-video`` as a library call: labelled still images -> a clip store of synthetic videos."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from vdgtool.errors import ConfigError, DecodeError, InputError
from vdgtool.utils.log import get_logger, progress

log = get_logger("synth")

MODES = ("depth", "crop2d")


def parse_size(text) -> tuple[int, int] | None:
    """``384`` -> (384, 384) (square, as the MM 2024 code); ``640x480`` -> (640, 480) (W x H);
    ``source`` / ``0`` keeps each image's own size."""
    if text is None:
        return None
    if isinstance(text, tuple):
        return text
    s = str(text).lower().strip()
    if s in ("", "0", "source", "keep"):
        return None
    try:
        if "x" in s:
            w, h = s.split("x")
            size = int(w), int(h)
        else:
            size = int(s), int(s)
    except ValueError:
        raise InputError(f"cannot read size '{text}'", "use 384 (square), WIDTHxHEIGHT like 640x480, or source") from None
    if min(size) < 2:
        raise InputError(f"size {text} is too small", "use at least 2x2 pixels")
    if max(size) > 8192:
        raise InputError(f"size {text} is larger than 8192 pixels on a side", "use e.g. 384 or 640x480")
    return size


@dataclass
class SynthOptions:
    mode: str = "depth"
    preset: str = "mm2024"
    frames: int | None = None                  # default: the preset's
    size: tuple[int, int] | None | str = "preset"  # (W, H); None keeps the source size
    trajectory: str = "random"                 # random | constant (velocity)
    rot_deg: tuple[float, float] | None = None  # default: the preset's
    trans: tuple[float, float] | None = None
    focal: float | None = None
    fill: str = "telea"
    radius: float = 3.0
    save_flow: bool = False
    save_depth: bool = False
    fps: float = 8.0
    redepth: bool = False                      # re-run the depth network on every generated frame
    max_pixels: int | None = None              # refuse larger images (default: vdgtool.video.decode.MAX_PIXELS)

    def resolve(self) -> "SynthOptions":
        from vdgtool.synth.render import FILLS
        from vdgtool.synth.trajectory import TRAJECTORIES, get_preset

        if self.mode not in MODES:
            raise InputError(f"unknown mode '{self.mode}'", f"use one of: {', '.join(MODES)}")
        if self.fill not in FILLS:
            raise InputError(f"unknown hole filling '{self.fill}'", f"use one of: {', '.join(FILLS)}")
        if self.trajectory not in TRAJECTORIES:
            raise InputError(f"unknown trajectory '{self.trajectory}'", f"use one of: {', '.join(TRAJECTORIES)}")
        p = get_preset(self.preset)
        o = SynthOptions(**asdict(self))
        o.frames = int(self.frames or p.frames)
        if o.frames < 1:
            raise InputError(f"--frames must be at least 1 (got {o.frames})", "pass --frames 2 or more")
        o.size = p.size if self.size == "preset" else parse_size(self.size)
        if o.mode == "crop2d" and o.size is None:
            o.size = (384, 384)
        o.rot_deg = tuple(self.rot_deg or p.rot_deg)
        o.trans = tuple(self.trans or p.trans)
        import math

        if not isinstance(o.fps, (int, float)) or not math.isfinite(o.fps) or o.fps <= 0:
            raise InputError(f"--fps {o.fps} is not a positive finite frame rate", "pass e.g. --fps 8")
        if o.max_pixels is not None and o.max_pixels < 1:
            raise InputError(f"--max-pixels {o.max_pixels} must be at least 1", "pass e.g. --max-pixels 40000000")
        for name, r in (("rotation", o.rot_deg), ("translation", o.trans)):
            if len(r) != 2 or not all(math.isfinite(v) for v in r) or r[0] < 0 or r[1] < r[0]:
                raise InputError(f"{name} range {r} is not 'low,high' with 0 <= low <= high", "e.g. 1,2")
        o.focal = float(self.focal or p.focal)
        return o

    def conventions(self, depth_desc: dict) -> dict:
        c = {"mode": self.mode, "preset": self.preset, "frames": self.frames,
             "size": list(self.size) if self.size else "source", "colour_space": "RGB", "fps": self.fps,
             "trajectory": self.trajectory, "trajectory_convention": "per-step 4x4, [0]=I; X_t = M_t X_(t-1)"
             if self.mode == "depth" else "per-frame 4x4 mapping output pixel to source pixel",
             "decoder": f"synth-{self.mode}"}
        if self.mode == "depth":
            c.update({"depth": depth_desc, "rot_deg": list(self.rot_deg), "trans": list(self.trans),
                      "focal": self.focal, "fill": self.fill, "fill_radius": self.radius,
                      "chained": True, "redepth": self.redepth})
        else:
            c.update({"pan": list(self.trans), "zoom": list(self.trans)})
        if self.save_flow:
            c["flow"] = "synthetic forward flow t->t+1 in pixels, (T-1, H, W, 2) float16, extras/flow"
        return c


@dataclass
class SynthResult:
    path: str
    videos: int = 0
    frames: int = 0
    errors: list[dict] = field(default_factory=list)
    skipped_resume: int = 0
    seconds: float = 0.0
    render_seconds: float = 0.0

    def to_dict(self) -> dict:
        fps = self.frames / self.render_seconds if self.render_seconds > 0 else None
        return {"store": self.path, "videos": self.videos, "frames": self.frames, "errors": len(self.errors),
                "resumed_from": self.skipped_resume, "seconds": round(self.seconds, 3),
                "render_frames_per_s": round(fps, 2) if fps else None, "bad_inputs": self.errors}


def load_image(path: str, max_pixels: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) with EXIF orientation applied; DecodeError for anything unreadable.

    An image whose header claims more than ``max_pixels`` (a decompression bomb, or simply too large) is
    refused before its pixels are decoded.
    """
    from PIL import Image, ImageOps

    from vdgtool.video.decode import MAX_PIXELS, file_kind

    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    kind = file_kind(path)
    if kind not in ("file", "missing"):
        raise DecodeError(f"{path} is a {kind}, not an image file", "remove it from the dataset")
    import warnings

    try:
        with warnings.catch_warnings(), Image.open(path) as im:  # vdgtool applies its own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = im.size
            if w * h > limit:
                raise DecodeError(f"image {path} claims {w}x{h} pixels ({w * h / 1e6:.0f} M), above the limit of "
                                  f"{limit / 1e6:.0f} M (a decompression bomb or a huge scan)",
                                  "remove or shrink it (or raise --max-pixels if it is genuine)")
            im = ImageOps.exif_transpose(im)
            im.load()
            arr = np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise DecodeError(f"{path} does not exist", "fix the manifest") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"image {path} is a decompression bomb ({' '.join(str(exc).split())[:120]})",
                          "remove it from the dataset") from None
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError(f"out of memory while decoding image {path}", "remove or shrink it") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on damaged files; one image never stops a run
        raise DecodeError(f"cannot decode image {path}: {exc.__class__.__name__}: "
                          f"{' '.join(str(exc).split())[:160]}", "re-download or remove the file") from None
    if arr.ndim != 3 or min(arr.shape[:2]) < 2:
        raise DecodeError(f"image {path} is too small ({arr.shape})", "remove it")
    return np.ascontiguousarray(arr)


def resize_image(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    import cv2

    if size is None or (img.shape[1], img.shape[0]) == tuple(size):
        return img
    shrink = size[0] < img.shape[1] and size[1] < img.shape[0]
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _batches(items, n):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def synth_video(manifest, out: str, *, depth: str = "none", opts: SynthOptions | None = None, device="cpu",
                batch_size: int = 8, num_shards: int = 1, shard_index: int = 0, resume: bool = False,
                overwrite: bool = False, seed: int = 0, encoding: str = "raw", jpeg_quality: int = 90,
                limit: int | None = None, inputs: list[str] | None = None) -> SynthResult:
    """Turn every image of ``manifest`` (this shard's part) into a synthetic video in a clip store.

    Unreadable images (and images without a depth map) are recorded in the store's ``/errors`` and
    in the result, never raised.
    """
    import torch

    from vdgtool.stores.video import VideoStore, VideoStoreWriter
    from vdgtool.synth.depth import make_depth
    from vdgtool.utils.env import shard_items
    from vdgtool.utils.provenance import make_provenance

    opts = (opts or SynthOptions()).resolve()
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if opts.mode == "crop2d" and str(depth).lower() not in ("none", "constant", ""):
        raise ConfigError("--mode crop2d moves a 2-D crop window and uses no depth", "pass --depth none")
    backend = make_depth(depth, device=dev)
    if opts.redepth and backend.name != "transformers":
        raise ConfigError("--redepth re-estimates depth on every frame and needs a depth network",
                          "pass --depth MODEL, or drop --redepth")
    items = shard_items(manifest.items, num_shards, shard_index)
    if limit:
        items = items[:limit]
    conventions = opts.conventions(backend.describe())
    conventions.update({"num_shards": num_shards, "shard_index": shard_index})
    prov = make_provenance(seed=seed, parents=[p for p in (inputs or [manifest.root]) if p],
                           manifest_form=manifest.form, depth=backend.describe())
    writer = VideoStoreWriter(out, "clips", classes=manifest.classes, conventions=conventions, provenance=prov,
                              encoding=encoding, jpeg_quality=jpeg_quality, resume=resume, overwrite=overwrite,
                              input_digest=manifest.digest(),
                              inputs=list(inputs or []) + [it.path for it in manifest.items])
    todo = [it for it in items if it.key not in writer.done_keys]
    res = SynthResult(path=out, skipped_resume=len(items) - len(todo))
    if res.skipped_resume:
        log.info("resuming: %d of %d images already done", res.skipped_resume, len(items))
    class_index = {c: i for i, c in enumerate(manifest.classes)}
    t0 = time.perf_counter()
    try:
        bar = progress(total=len(todo), desc="synth-video", unit="image")
        for batch in _batches(todo, max(1, batch_size)):
            good = []
            for it in batch:
                try:
                    if it.error:
                        raise DecodeError(it.error, "")
                    img = load_image(it.path, opts.max_pixels)
                    if opts.mode == "depth":
                        img = resize_image(img, opts.size)
                    good.append((it, img))
                except DecodeError as exc:
                    _bad(writer, it, exc.cause)
            if opts.mode == "depth" and good:
                good = _attach_depth(writer, backend, good)
            tr = time.perf_counter()
            rendered = _render(good, opts, backend, dev, seed)
            res.render_seconds += time.perf_counter() - tr
            for it, frames, extras in rendered:
                label = class_index.get(it.label, -1) if it.label is not None else -1
                writer.add_video(it.key, frames, index=it.index, label=label, domain=it.domain, fps=opts.fps,
                                 source=it.path, decoder=f"synth-{opts.mode}", extras=extras)
                res.frames += int(frames.shape[0])
            bar.update(len(batch))
        bar.close()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    res.seconds = time.perf_counter() - t0
    st = VideoStore(out)
    res.videos = len(st)
    res.errors = [{"key": k, "source": s, "reason": r}
                  for k, s, r in zip(st.errors.get("key", []), st.errors.get("source", []), st.errors.get("reason", []))]
    if hasattr(st, "close"):
        st.close()
    if not res.videos and not res.errors:
        raise InputError("no images were found in the input", "check the input folder or manifest")
    return res


def _bad(writer, it, reason: str) -> None:
    log.warning("skipped %s: %s", it.path, reason)
    writer.add_error(it.key, index=it.index, source=it.path, reason=reason)


def _attach_depth(writer, backend, good):
    """(item, image) -> (item, image, inverse depth or None); images without a depth map become errors."""
    from vdgtool.synth.depth import resize_map

    if backend.is_constant:
        return [(it, img, None) for it, img in good]
    if backend.name == "maps":  # per image: a missing or unreadable map is that image's problem
        out = []
        for it, img in good:
            try:
                m = backend([img], [it.key])[0]
            except InputError as exc:
                _bad(writer, it, exc.cause)
                continue
            out.append((it, img, resize_map(m, img.shape[:2])))
        return out
    maps = backend([img for _, img in good], [it.key for it, _ in good])
    return [(it, img, resize_map(m, img.shape[:2])) for (it, img), m in zip(good, maps)]


def _render(good, opts: SynthOptions, backend, dev, seed: int):
    """Yield (item, frames uint8 (T, H, W, 3), extras) for a batch; depth mode batches equal sizes."""
    import torch

    from vdgtool.synth.depth import inverse_to_depth, resize_map
    from vdgtool.synth.render import render_crop2d, render_depth_video
    from vdgtool.synth.trajectory import sample_crop_trajectory, sample_trajectory, crop_boxes_to_matrices
    from vdgtool.utils.seed import derive_seed

    out = []
    if opts.mode == "crop2d":
        for it, img in good:
            rng = np.random.default_rng(derive_seed(seed, it.key))
            H, W = img.shape[:2]
            boxes = sample_crop_trajectory(opts.frames, rng, (H, W), (opts.size[1], opts.size[0]), pan=opts.trans,
                                           zoom=opts.trans, kind=opts.trajectory)
            r = render_crop2d(torch.from_numpy(img).to(dev), boxes, (opts.size[1], opts.size[0]))
            extras = {"trajectory": crop_boxes_to_matrices(boxes, (opts.size[1], opts.size[0]))}
            if opts.save_flow:
                extras["flow"] = r.flow[0].cpu().numpy().astype(np.float16)
            out.append((it, r.frames[0].cpu().numpy(), extras))
        return out
    groups: dict[tuple, list] = {}
    for g in good:
        groups.setdefault(g[1].shape, []).append(g)
    for shape, grp in groups.items():
        H, W = shape[:2]
        steps = np.stack([sample_trajectory(opts.frames, np.random.default_rng(derive_seed(seed, it.key)),
                                            opts.rot_deg, opts.trans, opts.trajectory) for it, _, _ in grp])
        imgs = torch.from_numpy(np.stack([img for _, img, _ in grp])).to(dev)
        depth = torch.stack([torch.ones(H, W) if m is None else torch.from_numpy(inverse_to_depth(m)).float()
                             for _, _, m in grp]).to(dev)
        depth_fn = None
        if opts.redepth:
            def depth_fn(frames, _H=H, _W=W):
                maps = backend(list(frames.cpu().numpy()), None)
                return torch.stack([torch.from_numpy(inverse_to_depth(resize_map(m, (_H, _W)))) for m in maps])
        r = render_depth_video(imgs, depth, torch.from_numpy(steps), focal=opts.focal, fill=opts.fill,
                               radius=opts.radius, depth_fn=depth_fn)
        frames = r.frames.cpu().numpy()
        for j, (it, _, _) in enumerate(grp):
            extras = {"trajectory": steps[j].astype(np.float32)}
            if opts.save_flow:
                extras["flow"] = r.flow[j].cpu().numpy().astype(np.float16)
            if opts.save_depth:
                extras["depth"] = r.depth[j].cpu().numpy().astype(np.float16)
            out.append((it, frames[j], extras))
    return out


__all__ = ["SynthOptions", "SynthResult", "synth_video", "parse_size", "load_image", "MODES"]
