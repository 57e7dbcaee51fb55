"""Transformation sets for the worst-case augmentation search: PIL's ops as batched torch ops.

The Ani-GIFs search (and Volpi & Murino's, whose set ``pil10`` is) draws an (op, level) from a grid
of PIL transformations and applies it with the SAME parameters to every frame of a clip. Here every
op runs on the training device on a batch of clips at once:

* ``apply_op(video01, op, value)``: one (op, value) for every clip of ``video01`` (B, C, T, H, W),
  float in [0, 1] (pixel units, before normalisation);
* ``apply_batch(video01, ops)``: one entry per clip: ``(op, value)``, ``None`` / ``IDENTITY``, or a
  sequence of ``(op, value)`` pairs applied in order (a composition of length L). Clips that share
  an (op, value) are processed together in one call, so a search candidate over a search set is a
  single batched call and a training batch costs one call per distinct member of T;
* ``grid(name) -> [(op, level_index, value), ...]``: the search grid of a set (``SETS``); a name can
  be a union ``"pil10+gif"`` of sets and op names.

Values are in each op's own (PIL) unit: enhance factors, the autocontrast cutoff in percent,
thresholds and offsets on the 0-255 scale, bits, degrees, PIL's shear coefficient, the fraction of
the side, palette colours, sigma in pixels. Parameters are per clip; statistics that PIL computes
from the image (the contrast mean, autocontrast's histogram ends, equalize's CDF, the palette) are
per frame, as PIL applied frame by frame computes them. Ops whose PIL definition works on 8-bit
values (autocontrast, equalize, posterize, quantize) round the input to 8 bits first and are then
exact PIL on those values (quantize: up to the order of box splits, see ``_median_cut``).
torchvision ``transforms.v2.functional`` does the work wherever it has the op; only autocontrast
with a cutoff, per-channel offsets and palette quantisation are written here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from vdgtool.errors import ConfigError

#: the entry of ``apply_batch`` that leaves a clip unchanged (``None`` works too)
IDENTITY = ("identity", 0.0)


@dataclasses.dataclass(frozen=True)
class SetOp:
    """One op of the transformation sets. ``fn(frames, value)`` maps (N, C, H, W) float [0, 1] frames."""

    name: str
    fn: Callable[[torch.Tensor, float], torch.Tensor]
    levels: tuple[float, ...]          # the search grid, in the op's unit
    lo: float                          # accepted values: lo <= value <= hi
    hi: float
    unit: str = ""
    pil: str = ""                      # the PIL call it reproduces
    integer: bool = False              # values must be whole numbers
    identity: float | None = None      # the value that leaves every frame unchanged, if any

    def check(self, value) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"augmentation '{self.name}' value {value!r} is not a number",
                              f"pass a number in [{self.lo:g}, {self.hi:g}] ({self.unit})") from None
        if not (self.lo <= v <= self.hi) or (self.integer and v != round(v)):
            kind = "a whole number" if self.integer else "a number"
            raise ConfigError(f"augmentation '{self.name}' value {value!r} is outside its range",
                              f"pass {kind} in [{self.lo:g}, {self.hi:g}] ({self.unit})")
        return v


#: op name -> SetOp
SET_OPS: dict[str, SetOp] = {}

#: set name -> op names
SETS: dict[str, tuple[str, ...]] = {}


def register_set_op(name: str, *, levels: Iterable[float], lo: float, hi: float, unit: str = "", pil: str = "",
                    integer: bool = False, identity: float | None = None):
    """Decorator registering ``fn(frames (N, C, H, W) float [0, 1], value) -> frames`` as a set op."""

    def deco(fn):
        SET_OPS[name] = SetOp(name, fn, tuple(float(v) for v in levels), float(lo), float(hi), unit, pil, integer,
                              identity)
        return fn

    return deco


def register_set(name: str, ops: Iterable[str]) -> None:
    ops = tuple(ops)
    unknown = [o for o in ops if o not in SET_OPS]
    if unknown:
        raise ConfigError(f"transformation set '{name}' names unknown op '{unknown[0]}'",
                          f"use ops from {', '.join(sorted(SET_OPS))}")
    SETS[name] = ops


# -- helpers -----------------------------------------------------------------------------------------
def _to_u8(x: torch.Tensor) -> torch.Tensor:
    """Round float [0, 1] to uint8 levels (PIL images are 8-bit)."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _from_u8(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).div_(255.0)


def _count(index: torch.Tensor, size: int) -> torch.Tensor:
    """int64 counts of each value of a 1-D long ``index`` in [0, size) (scatter_add: ~4x bincount on a CPU)."""
    return torch.zeros(size, dtype=torch.long, device=index.device).scatter_add_(
        0, index, torch.ones(1, dtype=torch.long, device=index.device).expand_as(index))


def _histogram(q: torch.Tensor) -> torch.Tensor:
    """long (R, P) values in 0..255 -> int64 (R, 256) per-row histograms."""
    return torch.zeros(q.shape[0], 256, dtype=torch.long, device=q.device).scatter_add_(
        1, q, torch.ones(1, dtype=torch.long, device=q.device).expand_as(q))


# -- pil10: Volpi & Murino's set -----------------------------------------------------------------------
def autocontrast_cutoff(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``PIL.ImageOps.autocontrast(img, cutoff)`` per frame and channel (cutoff in percent of the pixels).

    PIL removes ``int(n * cutoff // 100)`` pixels from each end of the channel's histogram, then maps
    [lo, hi] linearly to [0, 255] through a truncating LUT; a channel with hi <= lo is kept.
    """
    n, c, h, w = x.shape
    q = _to_u8(x).reshape(n * c, h * w).long()
    hist = _histogram(q)
    p = h * w
    cut = int(p * float(cutoff) // 100)
    lo = (hist.cumsum(1) > cut).to(torch.uint8).argmax(1)                      # first v with cdf(v) > cut
    hi = 255 - (hist.flip(1).cumsum(1) > cut).to(torch.uint8).argmax(1)        # last v with sf(v) > cut
    ok = hi > lo
    span = (hi - lo).clamp(min=1).to(torch.float64)
    scale = torch.full_like(span, 255.0) / span    # tensor / tensor: IEEE division, as PIL's double arithmetic
    offset = -lo.to(torch.float64) * scale        # (scalar / tensor may multiply by a reciprocal instead)
    ix = torch.arange(256, device=x.device, dtype=torch.float64)
    lut = (ix[None] * scale[:, None] + offset[:, None]).trunc_().clamp_(0, 255)
    lut = torch.where(ok[:, None], lut, ix[None]).to(torch.float32).div_(255.0)
    return lut.gather(1, q).view(n, c, h, w)


@register_set_op("autocontrast", levels=np.linspace(0.0, 0.3, 20), lo=0.0, hi=49.0, unit="cutoff, % of pixels",
                 pil="ImageOps.autocontrast(img, cutoff=c)")
def _autocontrast(x, c):
    return autocontrast_cutoff(x, c)


_FACTORS = np.linspace(0.6, 1.4, 20)


# ImageEnhance: a blend with a degenerate image (black, grey L, mean grey, SMOOTH-filtered); torchvision's
# adjust_* are the same blends in float
for _name, _fn in (("brightness", F.adjust_brightness), ("color", F.adjust_saturation),
                   ("contrast", F.adjust_contrast), ("sharpness", F.adjust_sharpness)):
    register_set_op(_name, levels=_FACTORS, lo=0.0, hi=10.0, unit="factor", identity=1.0,
                    pil=f"ImageEnhance.{_name.capitalize()}(img).enhance(f)")(_fn)


@register_set_op("solarize", levels=np.linspace(0, 20, 20).astype(int), lo=0, hi=256, integer=True, identity=256,
                 unit="threshold on 0-255", pil="ImageOps.solarize(img, threshold=t)")
def _solarize(x, t):
    return F.solarize(x, t / 255.0) if t <= 255 else x


@register_set_op("grayscale", levels=(1.0,), lo=0.0, hi=1.0, unit="blend (1 = grey)", identity=0.0,
                 pil="ImageOps.grayscale(img).convert('RGB')")
def _grayscale(x, v):
    g = F.rgb_to_grayscale(x, num_output_channels=3)
    return g.contiguous() if v == 1.0 else torch.lerp(x, g, v)


def channel_offset(x: torch.Tensor, channel: int, delta: float) -> torch.Tensor:
    """Add ``delta`` (0-255 scale) to one RGB channel and clip to [0, 255] (Volpi's R/G/B enhancers)."""
    out = x.clone()
    out[:, channel].add_(delta / 255.0).clamp_(0.0, 1.0)
    return out


_OFFSETS = np.linspace(-120, 120, 30).astype(int)
for _i, _ch in enumerate("rgb"):
    register_set_op(f"offset_{_ch}", levels=_OFFSETS, lo=-255, hi=255, integer=True, identity=0,
                    unit="added to the channel, 0-255", pil=f"{_ch.upper()} channel + delta, clipped")(
        lambda x, d, _c=_i: channel_offset(x, _c, d))

# -- autoaugment additions ------------------------------------------------------------------------------
@register_set_op("equalize", levels=(1.0,), lo=1.0, hi=1.0, unit="-", pil="ImageOps.equalize(img)")
def _equalize(x, v):
    return _from_u8(F.equalize(_to_u8(x)))


@register_set_op("invert", levels=(1.0,), lo=1.0, hi=1.0, unit="-", pil="ImageOps.invert(img)")
def _invert(x, v):
    return F.invert(x)


@register_set_op("posterize", levels=(4, 5, 6, 7), lo=1, hi=8, integer=True, identity=8, unit="bits kept",
                 pil="ImageOps.posterize(img, bits)")
def _posterize(x, b):
    return _from_u8(F.posterize(_to_u8(x), int(b)))


_BILINEAR = F.InterpolationMode.BILINEAR


@register_set_op("rotate", levels=np.linspace(-30, 30, 10), lo=-180, hi=180, identity=0.0,
                 unit="degrees, counter-clockwise", pil="img.rotate(deg, resample=BILINEAR)")
def _rotate(x, deg):
    return F.rotate(x, deg, interpolation=_BILINEAR, fill=0.0)


def _shear(x, s, axis):
    a = math.degrees(math.atan(s))
    shear = [a, 0.0] if axis == 0 else [0.0, a]
    # PIL's shear is about the top-left corner (torchvision's AutoAugment does the same)
    return F.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=_BILINEAR, fill=0.0,
                    center=[0, 0])


@register_set_op("shear_x", levels=np.linspace(-0.3, 0.3, 10), lo=-1.0, hi=1.0, identity=0.0,
                 unit="PIL shear coefficient", pil="img.transform(size, AFFINE, (1, s, 0, 0, 1, 0), BILINEAR)")
def _shear_x(x, s):
    return _shear(x, s, 0)


@register_set_op("shear_y", levels=np.linspace(-0.3, 0.3, 10), lo=-1.0, hi=1.0, identity=0.0,
                 unit="PIL shear coefficient", pil="img.transform(size, AFFINE, (1, 0, 0, s, 1, 0), BILINEAR)")
def _shear_y(x, s):
    return _shear(x, s, 1)


@register_set_op("translate_x", levels=np.linspace(-0.45, 0.45, 10), lo=-1.0, hi=1.0, identity=0.0,
                 unit="fraction of the width (+ = right), whole pixels",
                 pil="img.transform(size, AFFINE, (1, 0, -round(f*W), 0, 1, 0))")
def _translate_x(x, f):
    return F.affine(x, angle=0.0, translate=[round(f * x.shape[-1]), 0], scale=1.0, shear=[0.0, 0.0], fill=0.0)


@register_set_op("translate_y", levels=np.linspace(-0.45, 0.45, 10), lo=-1.0, hi=1.0, identity=0.0,
                 unit="fraction of the height (+ = down), whole pixels",
                 pil="img.transform(size, AFFINE, (1, 0, 0, 0, 1, -round(f*H)))")
def _translate_y(x, f):
    return F.affine(x, angle=0.0, translate=[0, round(f * x.shape[-2])], scale=1.0, shear=[0.0, 0.0], fill=0.0)


# -- gif additions ---------------------------------------------------------------------------------------
_LUMA = (77, 150, 29)  # PIL's median cut weighs each axis' range by these before picking the longest


def _median_cut(q: torch.Tensor, k: int) -> torch.Tensor:
    """Median-cut palettes, one per frame, for ``q`` (N, P, 3) int64 colours -> box id (N, P) in [0, k).

    PIL's rule (``libImaging/Quant.c``): repeatedly split the box holding the most pixels (boxes of a
    single colour are never split) along the axis whose range x (77, 150, 29) is largest, at the
    weighted median: the upper part is every value v with #(pixels >= v) * 2 > count (if that is the
    whole box, everything above its minimum). PIL splits one box at a time; here each round splits, in
    every frame at once, all boxes holding more than half the pixels of the largest splittable box
    (most populous first, within the budget of k boxes), which is the same order whenever the split
    sizes do not interleave. Cost: a few scatter passes over the pixels per round, ~log2(k) + 2 rounds.
    """
    n, p, _ = q.shape
    dev = q.device
    box = torch.zeros(n, p, dtype=torch.long, device=dev)
    nbox = torch.ones(n, dtype=torch.long, device=dev)
    frame_base = torch.arange(n, device=dev)[:, None] * k
    luma = torch.tensor(_LUMA, device=dev)
    for _ in range(k - 1):
        flat = (box + frame_base).reshape(-1)                                         # (N*P,) slot of each pixel
        cnt = _count(flat, n * k).view(n, k)
        qf = q.reshape(-1, 3)
        lo = torch.full((n * k, 3), 256, dtype=torch.long, device=dev).scatter_reduce_(
            0, flat[:, None].expand(-1, 3), qf, "amin")
        hi = torch.full((n * k, 3), -1, dtype=torch.long, device=dev).scatter_reduce_(
            0, flat[:, None].expand(-1, 3), qf, "amax")
        rng = (hi - lo).clamp_(min=0).view(n, k, 3)
        splittable = rng.amax(-1) > 0
        c = torch.where(splittable, cnt, torch.full_like(cnt, -1))
        order = torch.argsort(-c, dim=1, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(k, device=dev).expand(n, k))
        chosen = splittable & (c * 2 > c.amax(1, keepdim=True)) & (rank < (k - nbox)[:, None])
        if not bool(chosen.any()):
            break
        axis = (rng * luma).argmax(-1)                                                # (N, k): first largest
        pa = axis.reshape(-1)[flat].view(n, p)
        v = q.gather(2, pa[..., None]).squeeze(2)                                     # value on the box's axis
        pix = chosen.reshape(-1)[flat].view(n, p)
        slots = chosen.reshape(-1).cumsum(0).sub_(1).view(n, k)                       # chosen box -> 0..S-1
        s = int(chosen.sum())
        hidx = slots.reshape(-1)[flat].view(n, p)[pix] * 256 + v[pix]
        h = _count(hidx, s * 256).view(s, 256)
        upper = h.flip(1).cumsum(1).flip(1)                                           # #(pixels >= v)
        tot = cnt[chosen]
        m = 255 - (upper * 2 > tot[:, None]).flip(1).to(torch.uint8).argmax(1)        # largest such v
        bmin = lo.view(n, k, 3)[chosen].gather(1, axis[chosen][:, None]).squeeze(1)
        m = torch.where(m <= bmin, bmin + 1, m)
        thr = torch.zeros(n, k, dtype=torch.long, device=dev)
        thr[chosen] = m
        new_id = nbox[:, None] + chosen.long().cumsum(1) - 1                          # ids for the upper parts
        up = pix & (v >= thr.reshape(-1)[flat].view(n, p))
        box = torch.where(up, new_id.reshape(-1)[flat].view(n, p), box)
        nbox = nbox + chosen.sum(1)
    return box


def palette_quantize(x: torch.Tensor, colors: int, max_pixels: int = 1 << 22) -> torch.Tensor:
    """``img.quantize(colors, dither=NONE).convert('RGB')`` per frame: median cut, box means, nearest entry.

    ``x`` (N, 3, H, W) float [0, 1]. Palette entries are the rounded mean colour of each box (as PIL);
    every pixel then takes its nearest entry (squared RGB distance, exact in float32 on 0-255 values).
    Frames are processed in chunks of about ``max_pixels`` pixels to bound memory.
    """
    n, _, h, w = x.shape
    step = max(1, max_pixels // max(1, h * w))
    return torch.cat([_quantize_frames(x[i:i + step], int(colors)) for i in range(0, n, step)])


def _quantize_frames(x: torch.Tensor, k: int) -> torch.Tensor:
    n, _, h, w = x.shape
    q = _to_u8(x).long().permute(0, 2, 3, 1).reshape(n, h * w, 3)
    box = _median_cut(q, k)
    flat = (box + torch.arange(n, device=x.device)[:, None] * k).reshape(-1)
    cnt = _count(flat, n * k).view(n, k)
    sums = torch.zeros(n * k, 3, dtype=torch.long, device=x.device).index_add_(0, flat, q.reshape(-1, 3))
    pal = (2 * sums.view(n, k, 3) + cnt[..., None]) // (2 * cnt[..., None]).clamp(min=1)  # int(0.5 + mean)
    # squared distances by broadcasting, not a matmul: exact on 0-255 integers even where TF32 matmuls are on
    palf = pal.to(torch.float32).masked_fill_((cnt == 0)[..., None], 1e4)          # empty boxes never win
    qf = q.to(torch.float32)
    out = torch.empty_like(q)
    budget = 1 << (26 if x.is_cuda else 24)                                          # distance matrix size
    step = max(1, budget // max(1, h * w * k))
    for i in range(0, n, step):
        sl = slice(i, i + step)
        d = (qf[sl, :, None, 0] - palf[sl, None, :, 0]).square_()
        for ch in (1, 2):
            d.add_((qf[sl, :, None, ch] - palf[sl, None, :, ch]).square_())
        out[sl] = pal[sl].gather(1, d.argmin(-1)[..., None].expand(-1, -1, 3))
    return out.view(n, h, w, 3).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


@register_set_op("quantize", levels=(256, 128, 64, 32, 16, 8), lo=2, hi=256, integer=True,
                 unit="palette colours", pil="img.quantize(K, dither=Dither.NONE).convert('RGB')")
def _quantize(x, k):
    return palette_quantize(x, int(k))


@register_set_op("blur", levels=np.linspace(0.2, 2.0, 10), lo=0.0, hi=20.0, identity=0.0, unit="sigma (px)",
                 pil="img.filter(ImageFilter.GaussianBlur(sigma))")
def _blur(x, s):
    if s <= 0:
        return x
    k = 2 * math.ceil(3 * s) + 1
    return F.gaussian_blur(x, [k, k], [s, s])


@register_set_op("identity", levels=(0.0,), lo=0.0, hi=0.0, identity=0.0, unit="-", pil="(none)")
def _identity(x, v):
    return x


register_set("pil10", ["autocontrast", "brightness", "color", "contrast", "sharpness", "solarize", "grayscale",
                       "offset_r", "offset_g", "offset_b"])
register_set("autoaugment", SETS["pil10"] + ("equalize", "invert", "posterize", "rotate", "shear_x", "shear_y",
                                             "translate_x", "translate_y"))
register_set("gif", SETS["pil10"] + ("quantize", "blur"))


# -- sets and grids ----------------------------------------------------------------------------------------
def set_ops(name: str) -> tuple[str, ...]:
    """Op names of a set; ``"a+b"`` is the union (in order) of sets and/or single op names."""
    out: list[str] = []
    for part in str(name).split("+"):
        part = part.strip()
        if part in SETS:
            ops = SETS[part]
        elif part in SET_OPS and part != "identity":
            ops = (part,)
        else:
            raise ConfigError(f"unknown transformation set '{part}'",
                              f"use one of {', '.join(SETS)} (or op names: {', '.join(sorted(SET_OPS))}), "
                              "joined with '+'")
        out += [o for o in ops if o not in out]
    return tuple(out)


def grid(name: str = "pil10") -> list[tuple[str, int, float]]:
    """The search grid of a set: ``[(op, level_index, value), ...]``, identities excluded."""
    return [(op, i, v) for op in set_ops(name) for i, v in enumerate(SET_OPS[op].levels)
            if not is_identity(op, v)]


def is_identity(op: str, value=0.0) -> bool:
    o = SET_OPS.get(op)
    if o is None:
        raise ConfigError(f"unknown augmentation op '{op}'", f"use one of {', '.join(sorted(SET_OPS))}")
    return op == "identity" or (o.identity is not None and float(value) == o.identity)


# -- applying ------------------------------------------------------------------------------------------------
def _check_video(video01: torch.Tensor) -> None:
    if not isinstance(video01, torch.Tensor) or video01.ndim != 5 or video01.shape[1] != 3:
        shape = tuple(video01.shape) if isinstance(video01, torch.Tensor) else type(video01).__name__
        raise ConfigError(f"augmentation sets need RGB clips (B, 3, T, H, W), got {shape}",
                          "pass the batch before normalisation, channels second")


def apply_op(video01: torch.Tensor, op: str, value=0.0) -> torch.Tensor:
    """Apply one (op, value) to every clip of ``video01`` (B, 3, T, H, W) float in [0, 1]."""
    _check_video(video01)
    o = SET_OPS.get(op)
    if o is None:
        raise ConfigError(f"unknown augmentation op '{op}'", f"use one of {', '.join(sorted(SET_OPS))}")
    v = o.check(value)
    if is_identity(op, v) or video01.numel() == 0:
        return video01
    b, c, t, h, w = video01.shape
    frames = video01.to(torch.float32).permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    out = o.fn(frames, int(v) if o.integer else v).clamp(0.0, 1.0)
    return out.view(b, t, c, h, w).permute(0, 2, 1, 3, 4).to(video01.dtype).contiguous()


def _chain(entry) -> tuple[tuple[str, float], ...]:
    """A per-clip entry -> a tuple of non-identity (op, value) steps."""
    if entry is None:
        return ()
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
        entry = (entry,)
    steps = []
    for step in entry:
        if not (isinstance(step, (list, tuple)) and len(step) == 2 and isinstance(step[0], str)):
            raise ConfigError(f"cannot read augmentation entry {entry!r}",
                              "give each clip (op, value), None, or a list of (op, value) pairs")
        op, value = step
        if op not in SET_OPS:
            raise ConfigError(f"unknown augmentation op '{op}'", f"use one of {', '.join(sorted(SET_OPS))}")
        v = SET_OPS[op].check(value)
        if not is_identity(op, v):
            steps.append((op, v))
    return tuple(steps)


def apply_batch(video01: torch.Tensor, ops: Sequence) -> torch.Tensor:
    """Apply a per-clip (op, value) (or composition, or identity) to a batch (B, 3, T, H, W) in [0, 1].

    ``ops[i]`` is ``(op, value)``, ``None``/``IDENTITY``, or a sequence of ``(op, value)`` applied in
    order. Every frame of clip i gets the same parameters; clips sharing a step run in one call.
    The input is not modified.
    """
    _check_video(video01)
    if len(ops) != video01.shape[0]:
        raise ConfigError(f"{len(ops)} augmentation entries for a batch of {video01.shape[0]} clips",
                          "pass one entry per clip")
    chains = [_chain(e) for e in ops]
    out = video01
    for j in range(max((len(c) for c in chains), default=0)):
        groups: dict[tuple[str, float], list[int]] = {}
        for i, ch in enumerate(chains):
            if j < len(ch):
                groups.setdefault(ch[j], []).append(i)
        if len(groups) == 1 and len(next(iter(groups.values()))) == len(chains):
            out = apply_op(out, *next(iter(groups)))
            continue
        out = out.clone() if out is video01 else out
        for (op, v), idx in groups.items():
            ii = torch.as_tensor(idx, device=out.device)
            out[ii] = apply_op(out[ii], op, v)
    return out


def pil_reference(img, op: str, v: float):
    """The PIL call that set op ``op`` reproduces, on one ``PIL.Image`` (RGB): the reference of the tests and
    of ``benchmarks/augment/bench_sets.py`` (Volpi & Murino's PIL calls; AutoAugment's for the affine ops)."""
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    v = float(v)
    if op == "identity":
        return img.copy()
    if op == "autocontrast":
        return ImageOps.autocontrast(img, cutoff=v)
    if op in ("brightness", "color", "contrast", "sharpness"):
        return getattr(ImageEnhance, op.capitalize())(img).enhance(v)
    if op == "solarize":
        return ImageOps.solarize(img, int(v))
    if op == "grayscale":
        return ImageOps.grayscale(img).convert("RGB")
    if op.startswith("offset_"):
        a = np.asarray(img).astype(int)
        a[..., "rgb".index(op[-1])] += int(v)
        return Image.fromarray(a.clip(0, 255).astype(np.uint8))
    if op in ("equalize", "invert"):
        return getattr(ImageOps, op)(img)
    if op == "posterize":
        return ImageOps.posterize(img, int(v))
    if op == "rotate":
        return img.rotate(v, resample=Image.BILINEAR)
    if op == "shear_x":
        return img.transform(img.size, Image.AFFINE, (1, v, 0, 0, 1, 0), Image.BILINEAR)
    if op == "shear_y":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, v, 1, 0), Image.BILINEAR)
    if op == "translate_x":
        return img.transform(img.size, Image.AFFINE, (1, 0, -round(v * img.size[0]), 0, 1, 0))
    if op == "translate_y":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, -round(v * img.size[1])))
    if op == "quantize":
        return img.quantize(int(v), dither=getattr(Image, "Dither", Image).NONE).convert("RGB")
    if op == "blur":
        return img.filter(ImageFilter.GaussianBlur(v))
    raise ConfigError(f"no PIL reference for augmentation op '{op}'", f"use one of {', '.join(sorted(SET_OPS))}")


__all__ = ["IDENTITY", "SET_OPS", "SETS", "SetOp", "apply_batch", "apply_op", "autocontrast_cutoff",
           "channel_offset", "grid", "is_identity", "palette_quantize", "pil_reference", "register_set",
           "register_set_op", "set_ops"]
