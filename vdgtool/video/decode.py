"""Decoding videos, animated GIFs and frame folders into uint8 RGB arrays.

Order of readers: decord (fast on MPEG-4 / MJPEG, applies rotation metadata), then PyAV (any FFmpeg
format); animated GIFs are read with Pillow, which honours per-frame durations and disposal methods
(decord cannot read GIFs at all). Frame folders (mmaction "rawframes") are read with OpenCV.
The reader that produced the frames is returned so it can be recorded in the store. ``torchcodec`` (PyTorch's
decoder, CUDA/NVDEC with ``device="cuda"``) is an optional reader (``pip install 'vdgtool[torchcodec]'``).

Resizing (``DecodeOptions.resize``): ``"decoder"`` (default) converts each decoded frame to RGB at the output
size inside the decoder (decord's ``width``/``height``, PyAV's reformatter with swscale's bilinear filter as decord uses, torchcodec's
``Resize``), which costs less than converting at full size; ``"area"`` converts at full size and resizes with
OpenCV's area filter (the behaviour before issue 17). Readers hand frames over in batches
(``decode(..., on_batch=fn)``), so a caller can encode one batch while the next is decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vdgtool.errors import DecodeError, InputError, VdgError

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
GIF_EXTS = (".gif",)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


class LimitExceeded(DecodeError):
    """A source above ``--max-pixels`` or ``--frame-limit``: refused before decoding, by every reader."""


#: Default decoding limits (``--max-pixels``, ``--frame-limit``): sized for real video, checked before any
#: frame buffer is allocated. 8K UHD is 33.2 M pixels; 30 000 frames are 16 min at 30 fps (datasets of short
#: clips stay far below; long videos want --fps or --max-frames anyway).
MAX_PIXELS = 40_000_000
FRAME_LIMIT = 30_000
#: how frames are brought to the output size (DecodeOptions.resize)
RESIZE_MODES = ("decoder", "area")
#: readers of video files, in the order ``decoders="auto"`` tries them
DECODERS = ("decord", "pyav", "torchcodec")
AUTO_DECODERS = ("decord", "pyav")


@dataclass
class DecodeOptions:
    """How frames are taken from a source.

    ``size``: None (keep), an int (short side), or (W, H). ``fps``: resample to this rate by timestamps
    (None = keep every ``stride``-th frame). ``max_frames``: cap on the number of stored frames.
    ``max_pixels`` / ``frame_limit``: a source whose frames are larger, or that would give more stored
    frames, is refused before decoding (limits, not conventions: they are not recorded in stores).
    ``resize``: ``"decoder"`` (RGB conversion at the output size inside the decoder) or ``"area"`` (full-size
    conversion, then OpenCV's area filter); recorded in the conventions. ``device``: where torchcodec decodes
    (``cuda`` = NVDEC); the other readers decode on the CPU.
    """

    size: int | tuple[int, int] | None = None
    fps: float | None = None
    stride: int = 1
    max_frames: int | None = None
    max_pixels: int = MAX_PIXELS
    frame_limit: int = FRAME_LIMIT
    resize: str = "decoder"
    device: str = "cpu"

    def __post_init__(self):
        import math

        if self.resize not in RESIZE_MODES:
            raise InputError(f"unknown resize mode '{self.resize}'", f"use one of {', '.join(RESIZE_MODES)}")

        if self.fps is not None and (not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps)
                                     or self.fps <= 0):
            raise InputError(f"--fps {self.fps} is not a positive finite frame rate", "pass e.g. --fps 25")
        for name, v, lo in (("--stride", self.stride, 1), ("--max-frames", self.max_frames, 1),
                            ("--max-pixels", self.max_pixels, 1), ("--frame-limit", self.frame_limit, 1)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo):
                raise InputError(f"{name} {v} must be an integer >= {lo}", f"pass {name} {max(lo, 1)} or more")
        if isinstance(self.size, tuple) and (len(self.size) != 2 or min(self.size) < 1):
            raise InputError(f"size {self.size} is not WIDTHxHEIGHT", "use e.g. 160x120")
        if isinstance(self.size, int) and not isinstance(self.size, bool) and self.size < 1:
            self.size = None
        out_area = (self.size[0] * self.size[1] if isinstance(self.size, tuple) else
                    self.size * self.size if isinstance(self.size, int) else 0)
        if out_area > self.max_pixels:
            raise InputError(f"--size {self.size} gives frames of more than {self.max_pixels / 1e6:.1f} M pixels "
                             "(--max-pixels)", "use a smaller --size (0 keeps the source size)")

    def check_area(self, path: str, w: int, h: int) -> None:
        """Refuse a source whose frames exceed ``max_pixels`` (before any frame is decoded)."""
        if int(w) * int(h) > self.max_pixels:
            raise LimitExceeded(f"{path} has {w}x{h} frames ({int(w) * int(h) / 1e6:.1f} M pixels), above the limit "
                              f"of {self.max_pixels / 1e6:.1f} M", "raise --max-pixels if the file is genuine")

    def check_count(self, path: str, n: int) -> None:
        """Refuse a source that would give more than ``frame_limit`` stored frames."""
        if n > self.frame_limit:
            raise LimitExceeded(f"{path} would give {n} frames with these options, above --frame-limit "
                              f"{self.frame_limit}", "pass --max-frames or a lower --fps, or raise --frame-limit")

    def to_conventions(self) -> dict:
        return {"size": list(self.size) if isinstance(self.size, tuple) else self.size,
                "fps": self.fps, "stride": self.stride, "max_frames": self.max_frames,
                "colour_space": "RGB", "layout": "THWC", "resize": self.resize}


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


def _time_grid(duration: float, opts: DecodeOptions, path: str = "the video") -> np.ndarray:
    """Target times ``j / fps`` in [0, duration), refused when there would be more than the frame limit."""
    stop = duration - 1e-9
    count = int(np.ceil(max(0.0, stop) * opts.fps)) if np.isfinite(duration) else opts.frame_limit + 1
    if opts.max_frames:
        count = min(count, int(opts.max_frames))
    opts.check_count(path, count)  # before allocating anything
    t = np.arange(count + 1) * (1.0 / opts.fps)  # as np.arange(0, stop, 1 / fps), without an unbounded grid
    t = t[t < stop]
    return t[: int(opts.max_frames)] if opts.max_frames else t


def select_indices(n: int, src_fps: float, opts: DecodeOptions, timestamps: np.ndarray | None = None,
                   path: str = "the video") -> np.ndarray:
    """Indices of the source frames to keep (fps resampling by time, or a fixed stride)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if opts.fps and src_fps and opts.fps > 0 and np.isfinite(src_fps):
        if timestamps is None:
            timestamps = np.arange(n) / float(src_fps)
        duration = float(timestamps[-1]) + (1.0 / src_fps if src_fps else 0.0)
        t = _time_grid(duration, opts, path)
        idx = np.searchsorted(timestamps, t + 1e-6, side="right") - 1
        idx = np.clip(idx, 0, n - 1)
    else:
        count = -(-n // max(1, int(opts.stride)))
        opts.check_count(path, min(count, int(opts.max_frames)) if opts.max_frames else count)
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


def native_logs() -> bool:
    """Whether FFmpeg / decord may print their own log lines (``vdgtool -v``); otherwise they are silenced,
    and the one-line reason vdgtool reports for a file says what went wrong."""
    return os.environ.get("VDGTOOL_NATIVE_LOGS", "") not in ("", "0")


class _silenced_stderr:
    """Point file descriptor 2 at /dev/null for a native call that logs there (decord's C++ logger)."""

    def __enter__(self):
        self.saved = None
        if native_logs():
            return self
        import sys

        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
            nul = os.open(os.devnull, os.O_WRONLY)
            os.dup2(nul, 2)
            os.close(nul)
        except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded / captured): leave it
            self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


def _probe_size(path: str):
    """(width, height) from the container header (PyAV, no decoding); None when it cannot tell."""
    try:
        import av

        with av.open(path) as c:
            if c.streams.video:
                cc = c.streams.video[0].codec_context
                return int(cc.width), int(cc.height)
    except Exception:  # noqa: BLE001 - the readers report the real problem
        return None
    return None


def _import_decord():
    """decord, imported after OpenCV: decord's wheel bundles its own zlib, and when it is loaded first
    OpenCV's libpng binds to it and every later ``cv2.imread`` of a PNG fails ("libpng error: bad
    parameters to zlib"), e.g. ``flow --pairs`` or ``synth-video`` after an extract in one process."""
    import cv2  # noqa: F401  (load order matters, see above)
    import decord

    return decord


def _decode_decord(path: str, opts: DecodeOptions, emit):
    decord = _import_decord()

    decord.bridge.set_bridge("native")
    decord.logging.set_level(decord.logging.INFO if native_logs() else decord.logging.QUIET)
    wh = _probe_size(path)
    if wh:
        opts.check_area(path, *wh)
    target = None
    if wh and opts.size is not None and opts.resize == "decoder":
        th, tw = _target_hw(wh[1], wh[0], opts.size)
        if (th, tw) != (wh[1], wh[0]):
            target = (th, tw)
    with _silenced_stderr():
        vr = decord.VideoReader(path, num_threads=1, **({"width": target[1], "height": target[0]} if target else {}))
    n = len(vr)
    src_fps = float(vr.get_avg_fps() or 0.0)
    if n == 0:
        raise DecodeError(f"{path} has no frames", "check the file")
    idx = select_indices(n, src_fps, opts, path=path).tolist()
    for s in range(0, len(idx), _DECORD_BATCH):
        with _silenced_stderr():
            batch = vr.get_batch(idx[s:s + _DECORD_BATCH]).asnumpy()
        if s == 0 and not wh and len(batch):
            opts.check_area(path, batch.shape[2], batch.shape[1])
        if s == 0 and target and batch.shape[1:3] != target:
            # rotation metadata: decord scaled before rotating; decode at full size and resize instead
            with _silenced_stderr():
                vr = decord.VideoReader(path, num_threads=1)
                batch = vr.get_batch(idx[s:s + _DECORD_BATCH]).asnumpy()
            target = None
        emit(batch if target else resize_frames(batch, opts.size))  # never hold full-size video
    return src_fps, n


def _decode_pyav(path: str, opts: DecodeOptions, emit):
    """Stream-decode with PyAV, keeping (and resizing) only the selected frames.

    Frame selection matches :func:`select_indices`: a fixed stride, or for ``fps`` the latest frame
    whose timestamp is at or before each target time ``j / fps``. Kept frames are converted to RGB at the output
    size by one reformatter per video (swscale's bilinear filter, as decord; ``resize="area"``: full size, then OpenCV).
    """
    import av
    from av.video.reformatter import VideoReformatter

    stride = max(1, int(opts.stride))
    cap = int(opts.max_frames) if opts.max_frames else None
    reformatter = VideoReformatter() if opts.resize == "decoder" and opts.size is not None else None
    batch = _Batcher(emit)
    with av.open(path) as container:
        if not container.streams.video:
            raise DecodeError(f"{path} has no video stream", "check the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        opts.check_area(path, stream.codec_context.width, stream.codec_context.height)
        src_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        limit = min(cap, opts.frame_limit) if cap else opts.frame_limit
        use_fps = bool(opts.fps and opts.fps > 0 and src_fps)
        n = 0
        t0 = None
        prev = None
        prev_ts = 0.0
        j = 0  # next target time index (fps mode)

        def full():
            if cap is not None and batch.count >= cap:
                return True
            if batch.count > limit:
                opts.check_count(path, batch.count)
            return False

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
                    batch.add(prev)
                    j += 1
                if full():
                    break
                prev, prev_ts = _pyav_rgb(fr, opts.size, reformatter), ts
            else:
                if k % stride:
                    continue
                batch.add(_pyav_rgb(fr, opts.size, reformatter))
                if full():
                    break
        if full() and stream.frames:
            n = int(stream.frames)  # stopped early: the container's count, when it records one
        if use_fps and prev is not None and not full():
            duration = prev_ts + 1.0 / src_fps
            while j / opts.fps < duration - 1e-9 and not full():
                batch.add(prev)
                j += 1
    batch.flush()
    return src_fps, n


class _Batcher:
    """Collects single frames and hands them on in batches of ``_DECORD_BATCH``."""

    def __init__(self, emit):
        self.emit = emit
        self.frames: list[np.ndarray] = []
        self.count = 0

    def add(self, fr: np.ndarray) -> None:
        self.frames.append(fr)
        self.count += 1
        if len(self.frames) >= _DECORD_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.frames:
            self.emit(np.stack(self.frames))
            self.frames = []


def _pyav_rgb(fr, size, reformatter=None) -> np.ndarray:
    rot = getattr(fr, "rotation", 0) or 0
    if reformatter is not None and not rot:
        th, tw = _target_hw(fr.height, fr.width, size)
        return reformatter.reformat(fr, width=tw, height=th, format="rgb24", interpolation="BILINEAR").to_ndarray()
    img = fr.to_ndarray(format="rgb24")
    if rot:
        img = np.ascontiguousarray(np.rot90(img, k=int(round(rot / 90.0)) % 4))
    return resize_frame(img, size)


def _import_torchcodec():
    """torchcodec's VideoDecoder, or a one-line ConfigError naming the extra or the missing FFmpeg libraries."""
    from vdgtool.errors import ConfigError

    try:
        import torchcodec  # noqa: F401
    except ImportError:
        raise ConfigError("the torchcodec decoder is not installed", "pip install 'vdgtool[torchcodec]'") from None
    try:
        from torchcodec.decoders import VideoDecoder
    except (ImportError, OSError, RuntimeError) as exc:
        text = " ".join(str(exc).split())
        lib = next((w for w in text.split() if w.startswith("libav") and ".so" in w), "")
        raise ConfigError(f"torchcodec cannot load the FFmpeg libraries{f' ({lib.rstrip(chr(58))})' if lib else ''}",
                          "install FFmpeg's shared libraries, version 4 to 8 (e.g. apt install ffmpeg, or conda "
                          "install ffmpeg), or use --decoder decord/pyav") from None
    return VideoDecoder


def decoder_chain(name: str) -> tuple[str, ...]:
    """The readers ``--decoder NAME`` tries, in order: ``auto`` = decord then PyAV; ``torchcodec`` = torchcodec, with
    decord and PyAV for the files it cannot finish (each video's reader is recorded in the store)."""
    chains = {"auto": AUTO_DECODERS, "decord": ("decord",), "pyav": ("pyav",),
              "torchcodec": ("torchcodec",) + AUTO_DECODERS}
    if name not in chains:
        raise InputError(f"unknown decoder '{name}'", f"use one of {', '.join(chains)}")
    return chains[name]


def check_decoders(decoders) -> None:
    """Refuse, before any video is read, a decoder choice that cannot work here (one line, exit 1)."""
    if "torchcodec" in decoders:
        _import_torchcodec()


def _decode_torchcodec(path: str, opts: DecodeOptions, emit):
    VideoDecoder = _import_torchcodec()
    wh = _probe_size(path)
    if wh:
        opts.check_area(path, *wh)
    kw = {}
    target = None
    if wh and opts.size is not None and opts.resize == "decoder":
        th, tw = _target_hw(wh[1], wh[0], opts.size)
        if (th, tw) != (wh[1], wh[0]):
            from torchcodec.transforms import Resize

            target = (th, tw)
            kw["transforms"] = [Resize((th, tw))]
    try:
        dec = VideoDecoder(path, device=opts.device, dimension_order="NHWC", num_ffmpeg_threads=1,
                           seek_mode="exact", **kw)
    except (ValueError, RuntimeError) as exc:
        raise DecodeError(f"torchcodec cannot open {path} ({' '.join(str(exc).split())[:160]})",
                          "the file is corrupt or not a video") from None
    md = dec.metadata
    if not wh:
        opts.check_area(path, md.width, md.height)
    n = int(len(dec))
    # the header's rate, as decord and PyAV report it (the scanned average differs on some files)
    src_fps = float(getattr(md, "average_fps_from_header", None) or md.average_fps or 0.0)
    if n == 0:
        raise DecodeError(f"{path} has no frames", "check the file")
    idx = select_indices(n, src_fps, opts, path=path).tolist()
    for s in range(0, len(idx), _DECORD_BATCH):
        try:
            batch = dec.get_frames_at(idx[s:s + _DECORD_BATCH]).data.cpu().numpy()
        except RuntimeError as exc:  # 0.17 stops 1-2 frames early on some MPEG-4 AVIs: the next reader takes it
            raise DecodeError(f"torchcodec stopped before frame {idx[min(len(idx), s + _DECORD_BATCH) - 1]} of {n} "
                              f"({' '.join(str(exc).split())[:100]})", "another reader decodes it") from None
        emit(batch if target else resize_frames(batch, opts.size))
    return src_fps, n


def read_gif(path: str, size=None, max_pixels: int = MAX_PIXELS, frame_limit: int = FRAME_LIMIT):
    """Frames of an animated GIF (RGB, disposal applied; resized to ``size`` one at a time, so a large
    canvas is never held more than once), their start times in seconds, and the total duration.

    A canvas above ``max_pixels`` or more than ``frame_limit`` frames is refused before decoding them.
    """
    from PIL import Image, ImageSequence, UnidentifiedImageError

    import warnings

    try:
        with warnings.catch_warnings():  # vdgtool applies its own --max-pixels limit below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"{path} is a decompression bomb ({exc})", "raise --max-pixels if the file is genuine") \
            from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DecodeError(f"{path} is not a readable GIF ({exc})", "check or re-download the file") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise LimitExceeded(f"{path} has a {w}x{h} canvas ({w * h / 1e6:.1f} M pixels), above the limit of "
                          f"{max_pixels / 1e6:.1f} M", "raise --max-pixels if the file is genuine")
    frames, starts, t_ms = [], [], 0
    try:
        with im:
            for fr in ImageSequence.Iterator(im):
                if len(frames) >= frame_limit:
                    raise LimitExceeded(f"{path} has more than {frame_limit} frames (--frame-limit)",
                                      "raise --frame-limit if the file is genuine")
                frames.append(resize_frame(np.asarray(fr.convert("RGB")), size))
                starts.append(t_ms / 1000.0)
                dur = int(fr.info.get("duration", 100) or 0)
                # browsers show frames of <= 10 ms (0 or 1 centisecond) for 100 ms; follow them
                t_ms += dur if dur > 10 else 100
    except (OSError, EOFError, ValueError, Image.DecompressionBombError) as exc:
        if not frames:
            raise DecodeError(f"{path} is a damaged GIF ({exc})", "check or re-download the file") from None
    if not frames:
        raise DecodeError(f"{path} has no frames", "the GIF is empty")
    return np.stack(frames), np.asarray(starts), t_ms / 1000.0


def _decode_gif(path: str, opts: DecodeOptions):
    frames, starts, total = read_gif(path, opts.size, opts.max_pixels, opts.frame_limit)
    n = len(frames)
    src_fps = n / total if total > 0 else 10.0
    if opts.fps and opts.fps > 0:
        # select by time using the real (possibly variable) frame durations
        t = _time_grid(total, opts, path)
        idx = np.clip(np.searchsorted(starts, t + 1e-6, side="right") - 1, 0, n - 1)
        if opts.max_frames:
            idx = idx[: int(opts.max_frames)]
    else:
        idx = select_indices(n, src_fps, opts, path=path)
    return frames[idx], src_fps, n


def _decode_frame_dir(path: str, opts: DecodeOptions, fps: float = 30.0):
    import cv2

    from PIL import Image

    try:
        names = sorted(e.name for e in os.scandir(path) if e.name.lower().endswith(IMAGE_EXTS) and e.is_file())
    except OSError as exc:
        raise DecodeError(f"cannot list the frame folder {path} ({exc.strerror})", "check its permissions") from None
    if not names:
        raise DecodeError(f"{path} holds no image frames", "check the frame folder")
    idx = select_indices(len(names), fps, opts, path=path)
    frames = []
    for i in idx:
        try:  # the header only: refuse a huge frame before OpenCV allocates it
            with Image.open(os.path.join(path, names[i])) as im:
                opts.check_area(os.path.join(path, names[i]), *im.size)
        except (OSError, ValueError, Image.DecompressionBombError):
            pass  # unreadable headers are reported by cv2.imread below
        img = cv2.imread(os.path.join(path, names[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise DecodeError(f"frame {names[i]} in {path} is unreadable", "re-extract the frames")
        frames.append(resize_frame(img[..., ::-1], opts.size))
    return np.stack(frames), fps, len(names)


class _Collect:
    """The frames a reader emits, with the channel conventions of stores applied (grey -> RGB)."""

    def __init__(self, on_batch=None):
        self.on_batch = on_batch
        self.parts: list[np.ndarray] = []
        self.count = 0

    def __call__(self, batch: np.ndarray) -> None:
        batch = np.ascontiguousarray(batch)
        if batch.ndim == 3:
            batch = batch[..., None]
        if batch.shape[-1] == 1:
            batch = batch.repeat(3, axis=-1)
        if not len(batch):
            return
        self.count += len(batch)
        if self.on_batch is None:
            self.parts.append(batch)
        else:
            self.on_batch(batch)

    def reset(self) -> None:
        """A reader failed after emitting frames: forget them (the next reader starts again)."""
        if self.count and self.on_batch is not None:
            self.on_batch(None)
        self.parts, self.count = [], 0


def decode(path: str, opts: DecodeOptions | None = None, decoders: tuple[str, ...] = AUTO_DECODERS,
           on_batch=None):
    """Decode ``path`` -> (frames uint8 (T,H,W,3), info dict with fps, decoder, source_frames).

    ``on_batch``: called with each batch of frames (N, H, W, 3) as it is decoded, instead of returning them
    (frames is then None); called with None when a reader failed after some batches and the next reader starts
    again. Raises :class:`DecodeError` with the reason of every reader that failed.
    """
    opts = opts or DecodeOptions()
    out = _Collect(on_batch)
    kind = file_kind(path)
    if kind == "missing":
        raise DecodeError(f"{path} does not exist", "check the manifest or folder")
    if kind not in ("file", "dir"):
        raise DecodeError(f"{path} is a {kind}, not a regular file",
                          "only regular files and frame folders are inputs; remove it from the dataset")
    if kind == "dir":
        frames, src_fps, n = _decode_frame_dir(path, opts)
        out(frames)
        decoder = "frames"
    elif path.lower().endswith(GIF_EXTS) or _is_gif(path):
        frames, src_fps, n = _decode_gif(path, opts)
        out(frames)
        decoder = "pil"
    else:
        if os.path.getsize(path) == 0:
            raise DecodeError(f"{path} is an empty file", "re-download it")
        errors = []
        decoder = None
        readers = {"decord": _decode_decord, "pyav": _decode_pyav, "torchcodec": _decode_torchcodec}
        for name in decoders:
            if name not in readers:
                raise InputError(f"unknown decoder '{name}'", f"use {' or '.join(readers)}")
            fn = readers[name]
            try:
                src_fps, n = fn(path, opts, out)
                if not out.count:
                    raise DecodeError(f"{path} decoded to zero frames",
                                      "the file is empty or corrupt; re-download it")
                decoder = name
                break
            except ImportError as exc:
                out.reset()
                errors.append(f"{name}: not installed ({exc})")
            except LimitExceeded:
                raise  # the same limit holds for every reader
            except MemoryError:
                raise DecodeError(f"out of memory while decoding {path}",
                                  "lower --size, --fps or --max-frames (or --frame-limit), or use fewer --workers") \
                    from None
            except DecodeError as exc:
                out.reset()
                errors.append(f"{name}: {exc.cause}")
            except VdgError:
                raise  # a configuration problem (torchcodec cannot load), not a bad file
            except Exception as exc:  # decoders raise many types on corrupt data
                out.reset()
                errors.append(f"{name}: {exc.__class__.__name__}: {' '.join(str(exc).split())[:160]}")
        if decoder is None:
            raise DecodeError(f"cannot decode {path} ({'; '.join(errors)})",
                              "the file is corrupt, truncated or not a video")
    if out.count == 0:
        raise DecodeError(f"{path} gave zero frames with these options", "lower --fps/--stride")
    frames = None
    if on_batch is None:
        frames = np.concatenate(out.parts) if len(out.parts) > 1 else out.parts[0]
    return frames, {"fps": _out_fps(src_fps, opts), "source_fps": src_fps, "decoder": decoder,
                    "source_frames": int(n)}


def file_kind(path: str) -> str:
    """'file', 'dir', 'missing', or what else it is (FIFO, socket, device): only files and folders are read."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "file"  # permission problems are reported by the reader
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _is_gif(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(6) in (b"GIF87a", b"GIF89a")
    except OSError:
        return False
