"""Depth backends for ``synth-video``.

Every backend returns *normalised inverse depth* in [0, 1] (1 = nearest), the form MiDaS writes as a
16-bit PNG; :func:`inverse_to_depth` turns it into the depth the renderer uses, exactly as the
Depthstillation code does (``depth = 1 / (inv + 0.005)``, clipped at 100). ``constant`` returns
``None``: the renderer then uses depth 1 everywhere (a pure 2-D camera).

* ``none`` / ``constant``: no depth.
* a folder of maps: ``DIR/<key without extension>.png|.npy`` (or ``DIR/<file stem>.png|.npy``);
  PNGs are 16-bit (or 8-bit) inverse depth, ``.npy`` arrays are inverse depth at any scale
  (min-max normalised).
* a ``transformers`` depth-estimation model (DPT, MiDaS-BEiT, Depth-Anything, ...): a local folder
  written by ``save_pretrained`` or a hub id (downloaded only when online).
"""

from __future__ import annotations

import os

import numpy as np

from vdgtool.errors import InputError

MAP_EXTS = (".png", ".npy", ".tif", ".tiff", ".pfm")


def inverse_to_depth(inv: np.ndarray | None, eps: float = 0.005, max_depth: float = 100.0):
    """Depthstillation's conversion of normalised inverse depth to depth (works on numpy and torch)."""
    if inv is None:
        return None
    d = 1.0 / (inv + eps)
    if hasattr(d, "clamp"):
        return d.clamp(max=max_depth)
    return np.minimum(d, max_depth)


def normalise(inv: np.ndarray) -> np.ndarray:
    inv = np.asarray(inv, dtype=np.float32)
    lo, hi = float(np.nanmin(inv)), float(np.nanmax(inv))
    if not np.isfinite(lo) or not np.isfinite(hi):
        inv = np.nan_to_num(inv, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(inv.min()), float(inv.max())
    if hi - lo < 1e-12:
        return np.zeros_like(inv)
    return (inv - lo) / (hi - lo)


def resize_map(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    if m.shape[:2] == tuple(hw):
        return m.astype(np.float32, copy=False)
    return cv2.resize(m.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


class DepthBackend:
    """Callable: ``backend(images, keys) -> list of (H, W) float32 inverse depth in [0, 1] or None``."""

    name = "base"
    spec = ""

    def __call__(self, images: list[np.ndarray], keys: list[str]) -> list[np.ndarray | None]:
        raise NotImplementedError

    @property
    def is_constant(self) -> bool:
        return False

    def describe(self) -> dict:
        return {"backend": self.name, "spec": self.spec}


class ConstantDepth(DepthBackend):
    name = "none"
    spec = "none"

    @property
    def is_constant(self) -> bool:
        return True

    def __call__(self, images, keys):
        return [None for _ in images]


def read_depth_map(path: str) -> np.ndarray:
    """Normalised inverse depth from a 16-bit/8-bit PNG (MiDaS) or an ``.npy`` array."""
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read depth map {path} ({exc})", "write it with numpy.save") from None
        arr = np.squeeze(np.asarray(arr, dtype=np.float32))
        if arr.ndim != 2:
            raise InputError(f"depth map {path} has shape {arr.shape}", "store one (H, W) array per image")
        return normalise(arr)
    import cv2

    m = cv2.imread(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise InputError(f"cannot read depth map {path}", "write 16-bit PNG inverse depth as MiDaS does, or .npy")
    if m.dtype == np.uint16:
        return m.astype(np.float32) / 65535.0
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    return normalise(m)


class MapsDepth(DepthBackend):
    name = "maps"

    def __init__(self, folder: str):
        if not os.path.isdir(folder):
            raise InputError(f"depth map folder {folder} does not exist", "pass --depth none, a folder or a model")
        self.folder = folder
        self.spec = os.path.abspath(folder)

    def find(self, key: str) -> str:
        stem_key = os.path.splitext(key)[0]
        stem = os.path.splitext(os.path.basename(key))[0]
        for base in (stem_key, stem):
            for ext in MAP_EXTS:
                p = os.path.join(self.folder, base + ext)
                if os.path.isfile(p):
                    return p
        raise InputError(f"no depth map for {key} in {self.folder}",
                         f"write {stem_key}.png (16-bit inverse depth) or {stem_key}.npy there")

    def __call__(self, images, keys):
        return [read_depth_map(self.find(k)) for k in keys]


class TransformersDepth(DepthBackend):
    """A ``transformers`` depth-estimation model (AutoModelForDepthEstimation + its image processor)."""

    name = "transformers"

    def __init__(self, model_id: str, device=None, local_only: bool | None = None):
        from vdgtool.errors import require

        require("transformers", "depth", "a depth network")
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.spec = model_id
        local = os.path.isdir(model_id)
        kw = {"local_files_only": True} if (local or local_only) else {}
        try:
            self.processor = AutoImageProcessor.from_pretrained(model_id, **kw)
            self.model = AutoModelForDepthEstimation.from_pretrained(model_id, **kw)
        except (OSError, ValueError, KeyError) as exc:
            msg = " ".join(str(exc).split())[:200]
            raise InputError(f"cannot load depth model '{model_id}' ({msg})",
                             "pass a folder written by save_pretrained (with its preprocessor_config.json), "
                             "a hub id while online, or --depth none") from None
        self.device = torch.device(device or "cpu")
        self.model.eval().to(self.device)

    def __call__(self, images, keys=None):
        import torch
        import torch.nn.functional as F

        out: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape[:2], []).append(i)
        for hw, idx in groups.items():
            inputs = self.processor(images=[images[i] for i in idx], return_tensors="pt")
            with torch.inference_mode():
                pred = self.model(pixel_values=inputs["pixel_values"].to(self.device)).predicted_depth
            if pred.ndim == 3:
                pred = pred[:, None]
            pred = F.interpolate(pred.float(), size=hw, mode="bicubic", align_corners=False)[:, 0]
            for j, i in enumerate(idx):
                out[i] = normalise(pred[j].cpu().numpy())
        return out


def looks_like_model_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def make_depth(spec: str, device=None) -> DepthBackend:
    """``none`` | ``constant`` | ``maps:DIR`` | ``model:ID`` | a folder of maps | a model folder | a hub id."""
    s = str(spec or "none").strip()
    if s.lower() in ("none", "constant", ""):
        return ConstantDepth()
    if s.startswith("maps:"):
        return MapsDepth(s[5:])
    if s.startswith("model:"):
        return TransformersDepth(s[6:], device=device)
    if os.path.isdir(s):
        return TransformersDepth(s, device=device) if looks_like_model_dir(s) else MapsDepth(s)
    if os.path.exists(s):
        raise InputError(f"--depth {s} is a file", "pass none, a folder of depth maps, or a depth model")
    if "/" in s and not s.startswith((".", "/")) and s.count("/") == 1:
        return TransformersDepth(s, device=device)
    raise InputError(f"--depth {s}: no such folder, and not a model id", "pass none, a folder of maps, or a model "
                     "(a save_pretrained folder or a hub id such as depth-anything/Depth-Anything-V2-Small-hf)")


__all__ = ["DepthBackend", "ConstantDepth", "MapsDepth", "TransformersDepth", "make_depth", "inverse_to_depth",
           "read_depth_map", "normalise", "resize_map"]
