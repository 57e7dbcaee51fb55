"""Decoding videos, animated GIFs and frame folders into uint8 RGB arrays.

Order of readers: decord (fast on MPEG-4 / MJPEG, applies rotation metadata), then PyAV (any FFmpeg
format); animated GIFs are read with Pillow, which honours per-frame durations and disposal methods
(decord cannot read GIFs at all). Frame folders (mmaction "rawframes") are read with OpenCV.
The reader that produced the frames is returned so it can be recorded in the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vdgtool.errors import DecodeError, InputError

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
GIF_EXTS = (".gif",)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


@dataclass
class DecodeOptions:
    """How frames are taken from a source.

    ``size``: None (keep), an int (short side), or (W, H). ``fps``: resample to this rate by timestamps
    (None = keep every ``stride``-th frame). ``max_frames``: cap on the number of stored frames.
    """

    size: int | tuple[int, int] | None = None
    fps: float | None = None
    stride: int = 1
    max_frames: int | None = None

    def to_conventions(self) -> dict:
        return {"size": list(self.size) if isinstance(self.size, tuple) else self.size,
                "fps": self.fps, "stride": self.stride, "max_frames": self.max_frames,
                "colour_space": "RGB", "layout": "THWC"}


def parse_size(text: str | int | None):
    """'128' -> 128 (short side); '160x120' -> (160, 120) (width x height); '0' or '' -> None (keep)."""
    if text is None:
        return None
    s = str(text).lower().strip()
    try:
        if "x" in s:
            w, h = (int(v) for v in s.split("x"))
            if w <= 0 or h <= 0:
                raise ValueError
            return w, h
        v = int(s) if s else 0
        if v < 0:
            raise ValueError
        return v or None
    except ValueError:
        raise InputError(f"cannot read size '{text}'",
                         "use a short side like 128, WIDTHxHEIGHT like 160x120, or 0 to keep the source size") from None


def _target_hw(h: int, w: int, size) -> tuple[int, int]:
    if size is None:
        return h, w
    if isinstance(size, tuple):
        return int(size[1]), int(size[0])
    if h <= w:
        return int(size), max(1, int(round(w * size / h)))
    return max(1, int(round(h * size / w))), int(size)


def resize_frame(fr: np.ndarray, size) -> np.ndarray:
    """Resize one (H, W, C) frame to ``size`` (see :class:`DecodeOptions`); area filter when shrinking."""
    import cv2

    if size is None:
        return fr
    h, w = fr.shape[:2]
    th, tw = _target_hw(h, w, size)
    if (th, tw) == (h, w):
        return fr
    interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
    r = cv2.resize(np.ascontiguousarray(fr), (tw, th), interpolation=interp)
    return r if r.ndim == 3 else r[..., None]


def resize_frames(frames: np.ndarray, size) -> np.ndarray:
    if size is None or frames.shape[0] == 0:
        return frames
    h, w = frames.shape[1:3]
    if _target_hw(h, w, size) == (h, w):
        return frames
    return np.stack([resize_frame(fr, size) for fr in frames])


def select_indices(n: int, src_fps: float, opts: DecodeOptions, timestamps: np.ndarray | None = None) -> np.ndarray:
    """Indices of the source frames to keep (fps resampling by time, or a fixed stride)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if opts.fps and src_fps and opts.fps > 0:
        if timestamps is None:
            timestamps = np.arange(n) / float(src_fps)
        duration = float(timestamps[-1]) + (1.0 / src_fps if src_fps else 0.0)
        t = np.arange(0.0, duration - 1e-9, 1.0 / opts.fps)
        idx = np.searchsorted(timestamps, t + 1e-6, side="right") - 1
        idx = np.clip(idx, 0, n - 1)
    else:
        idx = np.arange(0, n, max(1, int(opts.stride)))
    if opts.max_frames:
        idx = idx[: int(opts.max_frames)]
    return idx.astype(np.int64)


def _out_fps(src_fps: float, opts: DecodeOptions) -> float:
    if opts.fps:
        return float(opts.fps)
    return float(src_fps) / max(1, int(opts.stride)) if src_fps else 0.0


#: frames fetched from decord per call: bounds memory to a few full-size frames at a time.
_DECORD_BATCH = 16


def _decode_decord(path: str, opts: DecodeOptions):
    import decord

    decord.bridge.set_bridge("native")
    vr = decord.VideoReader(path, num_threads=1)
    n = len(vr)
    src_fps = float(vr.get_avg_fps() or 0.0)
    if n == 0:
        raise DecodeError(f"{path} has no frames", "check the file")
    idx = select_indices(n, src_fps, opts).tolist()
    out = []
    for s in range(0, len(idx), _DECORD_BATCH):
        batch = vr.get_batch(idx[s:s + _DECORD_BATCH]).asnumpy()
        out.extend(resize_frame(fr, opts.size) for fr in batch)  # resize now: never hold full-size video
    if not out:
        raise DecodeError(f"{path} decoded to zero frames", "the file is empty or corrupt; re-download it")
    return np.stack(out), src_fps, n


def _decode_pyav(path: str, opts: DecodeOptions):
    """Stream-decode with PyAV, keeping (and resizing) only the selected frames.

    Frame selection matches :func:`select_indices`: a fixed stride, or for ``fps`` the latest frame
    whose timestamp is at or before each target time ``j / fps``.
    """
    import av

    stride = max(1, int(opts.stride))
    cap = int(opts.max_frames) if opts.max_frames else None
    with av.open(path) as container:
        if not container.streams.video:
            raise DecodeError(f"{path} has no video stream", "check the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        src_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        use_fps = bool(opts.fps and opts.fps > 0 and src_fps)
        frames: list[np.ndarray] = []
        n = 0
        t0 = None
        prev = None
        prev_ts = 0.0
        j = 0  # next target time index (fps mode)

        def full():
            return cap is not None and len(frames) >= cap

        for fr in container.decode(stream):
            ts = float(fr.time) if fr.time is not None else n / src_fps if src_fps else float(n)
            if t0 is None:
                t0 = ts
            ts -= t0
            k = n
            n += 1
            if use_fps:
                # targets strictly before this frame's time take the previous frame
                while prev is not None and j / opts.fps + 1e-6 < ts and not full():
                    frames.append(prev)
                    j += 1
                if full():
                    break
                prev, prev_ts = _pyav_rgb(fr, opts.size), ts
            else:
                if k % stride:
                    continue
                frames.append(_pyav_rgb(fr, opts.size))
                if full():
                    break
        if full() and stream.frames:
            n = int(stream.frames)  # stopped early: the container's count, when it records one
        if use_fps and prev is not None and not full():
            duration = prev_ts + 1.0 / src_fps
            while j / opts.fps < duration - 1e-9 and not full():
                frames.append(prev)
                j += 1
    if not frames:
        raise DecodeError(f"{path} decoded to zero frames", "the file is empty or corrupt; re-download it")
    return np.stack(frames), src_fps, n


def _pyav_rgb(fr, size) -> np.ndarray:
    img = fr.to_ndarray(format="rgb24")
    rot = getattr(fr, "rotation", 0) or 0
    if rot:
        img = np.ascontiguousarray(np.rot90(img, k=int(round(rot / 90.0)) % 4))
    return resize_frame(img, size)


def read_gif(path: str):
    """All frames of an animated GIF (RGB, disposal applied) and their start times in seconds."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        im = Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise DecodeError(f"{path} is not a readable GIF ({exc})", "check or re-download the file") from None
    frames, starts, t_ms = [], [], 0
    try:
        with im:
            for fr in ImageSequence.Iterator(im):
                frames.append(np.asarray(fr.convert("RGB")))
                starts.append(t_ms / 1000.0)
                dur = int(fr.info.get("duration", 100) or 0)
                # browsers show frames of <= 10 ms (0 or 1 centisecond) for 100 ms; follow them
                t_ms += dur if dur > 10 else 100
    except (OSError, EOFError, ValueError) as exc:
        if not frames:
            raise DecodeError(f"{path} is a damaged GIF ({exc})", "check or re-download the file") from None
    if not frames:
        raise DecodeError(f"{path} has no frames", "the GIF is empty")
    return np.stack(frames), np.asarray(starts), t_ms / 1000.0


def _decode_gif(path: str, opts: DecodeOptions):
    frames, starts, total = read_gif(path)
    n = len(frames)
    src_fps = n / total if total > 0 else 10.0
    if opts.fps and opts.fps > 0:
        # select by time using the real (possibly variable) frame durations
        t = np.arange(0.0, total - 1e-9, 1.0 / opts.fps)
        idx = np.clip(np.searchsorted(starts, t + 1e-6, side="right") - 1, 0, n - 1)
        if opts.max_frames:
            idx = idx[: int(opts.max_frames)]
    else:
        idx = select_indices(n, src_fps, opts)
    return np.stack([resize_frame(f, opts.size) for f in frames[idx]]), src_fps, n


def _decode_frame_dir(path: str, opts: DecodeOptions, fps: float = 30.0):
    import cv2

    names = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS))
    if not names:
        raise DecodeError(f"{path} holds no image frames", "check the frame folder")
    idx = select_indices(len(names), fps, opts)
    frames = []
    for i in idx:
        img = cv2.imread(os.path.join(path, names[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise DecodeError(f"frame {names[i]} in {path} is unreadable", "re-extract the frames")
        frames.append(resize_frame(img[..., ::-1], opts.size))
    return np.stack(frames), fps, len(names)


def decode(path: str, opts: DecodeOptions | None = None, decoders: tuple[str, ...] = ("decord", "pyav")):
    """Decode ``path`` -> (frames uint8 (T,H,W,3), info dict with fps, decoder, source_frames).

    Raises :class:`DecodeError` with the reason of every reader that failed.
    """
    opts = opts or DecodeOptions()
    if not os.path.exists(path):
        raise DecodeError(f"{path} does not exist", "check the manifest or folder")
    if os.path.isdir(path):
        frames, src_fps, n = _decode_frame_dir(path, opts)
        decoder = "frames"
    elif path.lower().endswith(GIF_EXTS) or _is_gif(path):
        frames, src_fps, n = _decode_gif(path, opts)
        decoder = "pil"
    else:
        if os.path.getsize(path) == 0:
            raise DecodeError(f"{path} is an empty file", "re-download it")
        errors = []
        frames = None
        readers = {"decord": _decode_decord, "pyav": _decode_pyav}
        for name in decoders:
            if name not in readers:
                raise InputError(f"unknown decoder '{name}'", f"use {' or '.join(readers)}")
            fn = readers[name]
            try:
                frames, src_fps, n = fn(path, opts)
                decoder = name
                break
            except ImportError as exc:
                errors.append(f"{name}: not installed ({exc})")
            except DecodeError as exc:
                errors.append(f"{name}: {exc.cause}")
            except Exception as exc:  # decoders raise many types on corrupt data
                errors.append(f"{name}: {exc.__class__.__name__}: {' '.join(str(exc).split())[:160]}")
        if frames is None:
            raise DecodeError(f"cannot decode {path} ({'; '.join(errors)})",
                              "the file is corrupt, truncated or not a video")
    if frames.shape[0] == 0:
        raise DecodeError(f"{path} gave zero frames with these options", "lower --fps/--stride")
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.shape[-1] == 1:
        frames = frames.repeat(3, axis=-1)
    frames = resize_frames(np.ascontiguousarray(frames), opts.size)  # no-op: readers resize per frame
    return frames, {"fps": _out_fps(src_fps, opts), "source_fps": src_fps, "decoder": decoder,
                    "source_frames": int(n)}


def _is_gif(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(6) in (b"GIF87a", b"GIF89a")
    except OSError:
        return False
