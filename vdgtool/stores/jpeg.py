"""JPEG frames of clip stores: encoding (``extract``), decoding (``VideoStore.read``), DCT-domain downscaling.

Both directions use simplejpeg (libjpeg-turbo's TurboJPEG API, bundled in its wheel) when it is installed and
fall back to OpenCV otherwise; the choice was measured on the benchmark frames (``benchmarks/RESULTS.md``,
"JPEG encoder"): at short side 128, simplejpeg encodes 2.2x and decodes 1.8x as many frames per second per core
as ``cv2.imencode`` / ``cv2.imdecode``.

* Decoding: simplejpeg gives exactly the pixels of ``cv2.imdecode`` (both are libjpeg-turbo with the accurate
  integer IDCT and fancy upsampling; tested), so stores read the same whichever is installed.
* Encoding: the format is unchanged (baseline JFIF, 4:2:0, the libjpeg quality tables, RGB frames), but the
  bytes differ from OpenCV's: below quality 96 the TurboJPEG API uses libjpeg-turbo's fast integer forward DCT
  where OpenCV uses the accurate one (0.1 dB PSNR lower at q90 on the benchmark frames). Checksums are computed
  from the bytes actually stored, so they hold for either encoder.
* ``scale``: decode at 1/2, 1/4 or 1/8 of the stored size in the DCT domain (libjpeg-turbo's scaled IDCT),
  several times cheaper than a full decode followed by a resize.
"""

from __future__ import annotations

import numpy as np

from vdgtool.errors import StoreError

#: DCT-domain downscale factors libjpeg-turbo decodes fastest (power-of-two reductions of the 8x8 IDCT)
SCALES = (1, 2, 4, 8)

_CORRUPT = ("a stored JPEG frame is corrupt", "run vdgtool store verify and re-extract the video")


def _simplejpeg():
    try:
        import simplejpeg

        return simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is a dependency; OpenCV is the fallback
        return None


def encoder_name() -> str:
    """Which library encodes JPEG frames here (recorded in the provenance's versions)."""
    return "simplejpeg" if _simplejpeg() is not None else "opencv"


def encode_jpeg(frames: np.ndarray, quality: int) -> list[np.ndarray]:
    """(T, H, W, C) uint8 frames (C = 3 RGB or 1 grey) -> T JPEG files as uint8 arrays."""
    sj = _simplejpeg()
    out = []
    if sj is not None:
        for fr in frames:
            fr = np.ascontiguousarray(fr)
            if fr.shape[-1] == 3:
                b = sj.encode_jpeg(fr, quality=int(quality), colorspace="RGB", colorsubsampling="420")
            else:
                b = sj.encode_jpeg(fr.reshape(fr.shape[0], fr.shape[1], 1), quality=int(quality), colorspace="GRAY",
                                   colorsubsampling="Gray")
            out.append(np.frombuffer(b, dtype=np.uint8))
        return out
    import cv2

    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    for fr in frames:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(fr[..., ::-1]) if fr.shape[-1] == 3 else fr, params)
        if not ok:  # pragma: no cover
            raise StoreError("JPEG encoding failed", "use --encoding raw")
        out.append(buf.reshape(-1))
    return out


def _cv2_decode(buf) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.asarray(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise StoreError(*_CORRUPT)
    if img.ndim == 2:
        return img[..., None]
    return img[..., ::-1]


def decode_jpeg(buf) -> np.ndarray:
    """One JPEG file -> (H, W, C) uint8 RGB (C = 1 for a grey JPEG)."""
    return decode_jpegs([buf])[0]


def scaled_size(h: int, w: int, scale: int) -> tuple[int, int]:
    """Size of an (h, w) JPEG decoded at 1/scale (libjpeg rounds up)."""
    return -(-int(h) // scale), -(-int(w) // scale)


def choose_scale(h: int, w: int, min_short: int | None) -> int:
    """The largest of 1, 2, 4, 8 that keeps the short side of an (h, w) frame at least ``min_short``."""
    if not min_short:
        return 1
    best = 1
    for s in SCALES[1:]:
        if min(scaled_size(h, w, s)) >= int(min_short):
            best = s
    return best


def decode_jpegs(bufs, scale: int = 1) -> np.ndarray:
    """JPEG files of one video (same size) -> (N, H, W, C) uint8, decoded at 1/``scale`` of their size.

    Frames are decoded straight into the output array (no per-frame copy). A frame that is not a JPEG, is
    truncated or has another size than the first raises StoreError.
    """
    if scale not in SCALES:
        raise ValueError(f"JPEG scale 1/{scale} is not one of {SCALES}")
    bufs = [b if isinstance(b, np.ndarray) else np.frombuffer(b, np.uint8) for b in bufs]
    if not bufs:
        return np.zeros((0, 0, 0, 3), np.uint8)
    sj = _simplejpeg()
    if sj is None:  # pragma: no cover - OpenCV fallback
        frames = [_cv2_decode(b) for b in bufs]
        if scale > 1:
            import cv2

            h, w = scaled_size(*frames[0].shape[:2], scale)
            frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1) for f in frames]
        try:
            return np.stack(frames)
        except ValueError:
            raise StoreError(*_CORRUPT) from None
    try:
        h, w, cs, _ = sj.decode_jpeg_header(bufs[0])
        grey = cs == "Gray"
        oh, ow = scaled_size(h, w, scale)
        out = np.empty((len(bufs), oh, ow, 1 if grey else 3), np.uint8)
        kw = {"colorspace": "GRAY" if grey else "RGB"}
        if scale > 1:
            kw.update(min_height=oh, min_width=ow, min_factor=scale)
        for k, b in enumerate(bufs):
            got = sj.decode_jpeg(b, buffer=out[k], **kw)
            if got.shape[:2] != (oh, ow):
                raise ValueError("frame size differs")
    except ValueError:
        raise StoreError(*_CORRUPT) from None
    return out


def decode_jpeg_list_torch(bufs, device="cpu") -> list:
    """JPEG files (any sizes) -> list of (3, H, W) uint8 torch tensors on ``device``, decoded there in one call.

    On CUDA this is nvJPEG's batched decode (``torchvision.io.decode_jpeg(list, device="cuda")``): only the
    compressed bytes cross the bus (~8x fewer than decoded frames). On the CPU it is torchvision's libjpeg-turbo;
    both agree with :func:`decode_jpegs` within JPEG decoder tolerance (the CPU paths give the same pixels, tested;
    nvJPEG's IDCT and chroma upsampling may differ by a few grey levels). A damaged file raises StoreError.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.from_numpy(np.array(b, dtype=np.uint8)) for b in bufs]  # a copy: h5py buffers are read-only
    if not data:
        return []
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        raise StoreError(*_CORRUPT) from None


def decode_jpegs_torch(bufs, device="cpu"):
    """JPEG files (same size) -> (N, H, W, 3) uint8 torch tensor on ``device``, decoded there as one batch
    (:func:`decode_jpeg_list_torch`, stacked)."""
    import torch

    imgs = decode_jpeg_list_torch(bufs, device)
    if not imgs:
        return torch.zeros((0, 0, 0, 3), dtype=torch.uint8, device=device)
    try:
        return torch.stack(imgs).permute(0, 2, 3, 1).contiguous()
    except RuntimeError:
        raise StoreError(*_CORRUPT) from None


__all__ = ["SCALES", "decode_jpeg_list_torch", "decode_jpegs_torch", "encoder_name", "encode_jpeg", "decode_jpeg", "decode_jpegs", "choose_scale", "scaled_size"]
