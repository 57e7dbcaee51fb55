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
    """'128' -> 128 (short side); '160x120' -> (160, 120) (width x height)."""
    if text is None or text == "" or text == 0:
        return None
    if isinstance(text, int):
        return text
    s = str(text).lower().strip()
    try:
        if "x" in s:
            w, h = s.split("x")
            return int(w), int(h)
        return int(s)
    except ValueError:
        raise InputError(f"cannot read size '{text}'", "use a short side like 128 or WIDTHxHEIGHT like 160x120") from None


def _target_hw(h: int, w: int, size) -> tuple[int, int]:
    if size is None:
        return h, w
    if isinstance(size, tuple):
        return int(size[1]), int(size[0])
    if h <= w:
        return int(size), max(1, int(round(w * size / h)))
    return max(1, int(round(h * size / w))), int(size)


def resize_frames(frames: np.ndarray, size) -> np.ndarray:
    import cv2

    if size is None or frames.shape[0] == 0:
        return frames
    h, w = frames.shape[1:3]
    th, tw = _target_hw(h, w, size)
    if (th, tw) == (h, w):
        return frames
    interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], th, tw, frames.shape[3]), np.uint8)
    for i, fr in enumerate(frames):
        r = cv2.resize(fr, (tw, th), interpolation=interp)
        out[i] = r if r.ndim == 3 else r[..., None]
    return out


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


def _decode_decord(path: str, opts: DecodeOptions):
    import decord

    decord.bridge.set_bridge("native")
    vr = decord.VideoReader(path, num_threads=1)
    n = len(vr)
    src_fps = float(vr.get_avg_fps() or 0.0)
    if n == 0:
        raise DecodeError(f"{path} has no frames", "check the file")
    idx = select_indices(n, src_fps, opts)
    frames = vr.get_batch(idx.tolist()).asnumpy()
    return frames, src_fps, n


def _decode_pyav(path: str, opts: DecodeOptions):
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise DecodeError(f"{path} has no video stream", "check the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        src_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        frames, times = [], []
        limit = None
        if opts.max_frames and not opts.fps:
            limit = int(opts.max_frames) * max(1, int(opts.stride))
        for k, fr in enumerate(container.decode(stream)):
            if limit is not None and k >= limit:
                break
            if not opts.fps and k % max(1, int(opts.stride)) != 0:
                continue
            img = fr.to_ndarray(format="rgb24")
            rot = getattr(fr, "rotation", 0) or 0
            if rot:
                img = np.ascontiguousarray(np.rot90(img, k=int(round(rot / 90.0)) % 4))
            frames.append(img)
            times.append(float(fr.time) if fr.time is not None else len(times) / max(src_fps, 1.0))
    if not frames:
        raise DecodeError(f"{path} decoded to zero frames", "the file is empty or corrupt; re-download it")
    arr = np.stack(frames)
    if opts.fps:
        ts = np.asarray(times) - times[0]
        idx = select_indices(len(arr), src_fps, DecodeOptions(fps=opts.fps, max_frames=opts.max_frames), ts)
        arr = arr[idx]
        n = len(times)
    else:
        n = len(frames) * max(1, int(opts.stride))
        if opts.max_frames:
            arr = arr[: int(opts.max_frames)]
    return arr, src_fps, n


def read_gif(path: str):
    """All frames of an animated GIF (RGB, disposal applied) and their start times in seconds."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        im = Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise DecodeError(f"{path} is not a readable GIF ({exc})", "check or re-download the file") from None
    frames, starts, t = [], [], 0.0
    try:
        with im:
            for fr in ImageSequence.Iterator(im):
                frames.append(np.asarray(fr.convert("RGB")))
                starts.append(t)
                dur = fr.info.get("duration", 100) or 100
                # browsers treat durations <= 10 ms as 100 ms; follow them
                t += (dur if dur > 10 else 100) / 1000.0
    except (OSError, EOFError, ValueError) as exc:
        if not frames:
            raise DecodeError(f"{path} is a damaged GIF ({exc})", "check or re-download the file") from None
    if not frames:
        raise DecodeError(f"{path} has no frames", "the GIF is empty")
    return np.stack(frames), np.asarray(starts), t


def _decode_gif(path: str, opts: DecodeOptions):
    frames, starts, total = read_gif(path)
    n = len(frames)
    src_fps = n / total if total > 0 else 10.0
    if opts.fps:
        idx = select_indices(n, src_fps, opts, starts)
        # select by time using the real (possibly variable) frame durations
        t = np.arange(0.0, total - 1e-9, 1.0 / opts.fps)
        idx = np.clip(np.searchsorted(starts, t + 1e-6, side="right") - 1, 0, n - 1)
        if opts.max_frames:
            idx = idx[: int(opts.max_frames)]
    else:
        idx = select_indices(n, src_fps, opts)
    return frames[idx], src_fps, n


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
        frames.append(img[..., ::-1])
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
        for name in decoders:
            fn = {"decord": _decode_decord, "pyav": _decode_pyav}[name]
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
        frames = frames[..., None].repeat(3, axis=-1)
    frames = resize_frames(np.ascontiguousarray(frames), opts.size)
    return frames, {"fps": _out_fps(src_fps, opts), "source_fps": src_fps, "decoder": decoder,
                    "source_frames": int(n)}


def _is_gif(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(6) in (b"GIF87a", b"GIF89a")
    except OSError:
        return False
