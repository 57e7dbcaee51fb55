"""Named frame-consistent augmentation ops (the vocabulary of augmentation policies).

Each op maps a float video ``(T, C, H, W)`` in [0, 1] (RGB) -- or ``(T, 2, H, W)`` flow in [-1, 1]
for ops marked ``flow_ok`` -- and a magnitude to a video of the same shape, applying the SAME
parameters to every frame (one torchvision call on the whole tensor). Magnitudes are normalised:
``m`` in [-1, 1] for signed ops (``signed=True``: the sign picks the direction) and [0, 1] otherwise;
``m = 0`` is the identity and ``|m| = 1`` the strongest setting (``max`` in the op's own unit).
A searched or adversarial policy is then a point in a box, whatever the op.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torchvision.transforms.v2.functional as F

from vdgtool.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class AugOp:
    name: str
    fn: Callable[[torch.Tensor, float], torch.Tensor]  # fn(video, value in the op's unit)
    max: float                 # value at |magnitude| = 1, in the op's unit
    signed: bool = False
    flow_ok: bool = False      # valid on flow (geometric ops that also transform the vectors)
    unit: str = ""

    def value(self, magnitude: float) -> float:
        m = float(magnitude)
        lo = -1.0 if self.signed else 0.0
        if not lo <= m <= 1.0:
            raise ConfigError(f"augmentation '{self.name}' magnitude {m} is outside [{lo:g}, 1]",
                              "policies use normalised magnitudes: [-1, 1] for signed ops, [0, 1] otherwise")
        return m * self.max

    def __call__(self, video: torch.Tensor, magnitude: float, flow: bool = False) -> torch.Tensor:
        if flow and not self.flow_ok:
            raise ConfigError(f"augmentation '{self.name}' does not apply to optical flow",
                              f"use one of {', '.join(n for n, o in TRANSFORMS.items() if o.flow_ok)} on flow")
        v = self.value(magnitude)
        if v == 0:
            return video
        return self.fn(video, v, flow) if self.flow_ok else self.fn(video, v)


#: name -> AugOp
TRANSFORMS: dict[str, AugOp] = {}


def register_transform(name: str, *, max: float, signed: bool = False, flow_ok: bool = False, unit: str = ""):
    """Decorator registering ``fn(video, value[, flow])`` as a named policy op.

    ``flow_ok`` ops receive a third argument ``flow`` (bool) and must transform flow vectors too.
    """

    def deco(fn):
        TRANSFORMS[name] = AugOp(name, fn, float(max), signed, flow_ok, unit)
        return fn

    return deco


def _rotate_vectors(video: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """Rotate (u, v) flow vectors counter-clockwise on screen (image y axis points down)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    u, v = video[:, 0], video[:, 1]
    return torch.stack([c * u + s * v, -s * u + c * v], dim=1)


# -- photometric (RGB only) ------------------------------------------------------------------------
@register_transform("brightness", max=0.9, signed=True, unit="factor - 1")
def _brightness(x, v):
    return F.adjust_brightness(x, 1.0 + v)


@register_transform("contrast", max=0.9, signed=True, unit="factor - 1")
def _contrast(x, v):
    return F.adjust_contrast(x, 1.0 + v)


@register_transform("saturation", max=0.9, signed=True, unit="factor - 1")
def _saturation(x, v):
    return F.adjust_saturation(x, 1.0 + v)


@register_transform("hue", max=0.5, signed=True, unit="hue turns")
def _hue(x, v):
    return F.adjust_hue(x, v)


@register_transform("sharpness", max=0.9, signed=True, unit="factor - 1")
def _sharpness(x, v):
    return F.adjust_sharpness(x, 1.0 + v)


@register_transform("gamma", max=0.5, signed=True, unit="log2 gamma")
def _gamma(x, v):
    return F.adjust_gamma(x, 2.0 ** v)


@register_transform("blur", max=2.0, unit="sigma (px)")
def _blur(x, v):
    k = 2 * math.ceil(3 * v) + 1
    return F.gaussian_blur(x, [k, k], [v, v])


@register_transform("grayscale", max=1.0, unit="blend")
def _grayscale(x, v):
    g = F.rgb_to_grayscale(x, num_output_channels=x.shape[-3])
    return torch.lerp(x, g, v)


@register_transform("invert", max=1.0, unit="blend")
def _invert(x, v):
    return torch.lerp(x, F.invert(x), v)


@register_transform("solarize", max=1.0, unit="1 - threshold")
def _solarize(x, v):
    return F.solarize(x, 1.0 - v)


@register_transform("posterize", max=4.0, unit="bits removed")
def _posterize(x, v):
    u8 = F.to_dtype(x, torch.uint8, scale=True)
    return F.to_dtype(F.posterize(u8, 8 - int(round(v))), torch.float32, scale=True)


@register_transform("equalize", max=1.0, unit="blend")
def _equalize(x, v):
    u8 = F.to_dtype(x, torch.uint8, scale=True)
    return torch.lerp(x, F.to_dtype(F.equalize(u8), torch.float32, scale=True), v)


@register_transform("autocontrast", max=1.0, unit="blend")
def _autocontrast(x, v):
    return torch.lerp(x, F.autocontrast(x), v)


# -- geometric (RGB and flow) ----------------------------------------------------------------------
@register_transform("rotate", max=30.0, signed=True, flow_ok=True, unit="degrees")
def _rotate(x, v, flow=False):
    out = F.rotate(x, v, interpolation=F.InterpolationMode.BILINEAR)
    return _rotate_vectors(out, v) if flow else out


@register_transform("translate_x", max=0.45, signed=True, flow_ok=True, unit="fraction of width")
def _translate_x(x, v, flow=False):
    return F.affine(x, angle=0.0, translate=[round(v * x.shape[-1]), 0], scale=1.0, shear=[0.0, 0.0])


@register_transform("translate_y", max=0.45, signed=True, flow_ok=True, unit="fraction of height")
def _translate_y(x, v, flow=False):
    return F.affine(x, angle=0.0, translate=[0, round(v * x.shape[-2])], scale=1.0, shear=[0.0, 0.0])


@register_transform("shear_x", max=17.0, signed=True, unit="degrees")
def _shear_x(x, v):
    return F.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[v, 0.0],
                    interpolation=F.InterpolationMode.BILINEAR)


@register_transform("shear_y", max=17.0, signed=True, unit="degrees")
def _shear_y(x, v):
    return F.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, v],
                    interpolation=F.InterpolationMode.BILINEAR)


@register_transform("identity", max=0.0)
def _identity(x, v):
    return x


def parse_policy(policy) -> list[tuple[str, float, float]]:
    """Normalise a policy to ``[(op, probability, magnitude), ...]``.

    Accepts ``(op, magnitude)`` or ``(op, probability, magnitude)`` tuples, or dicts with keys
    ``op``/``name``, ``magnitude`` and optional ``p``/``prob``.
    """
    out = []
    for item in policy or ():
        if isinstance(item, dict):
            name = item.get("op", item.get("name"))
            p = item.get("p", item.get("prob", 1.0))
            m = item.get("magnitude", item.get("m", 0.0))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            (name, m), p = item, 1.0
        elif isinstance(item, (list, tuple)) and len(item) == 3:
            name, p, m = item
        else:
            raise ConfigError(f"cannot read augmentation policy entry {item!r}",
                              "write entries as (op, magnitude) or (op, probability, magnitude)")
        if name not in TRANSFORMS:
            raise ConfigError(f"unknown augmentation '{name}'", f"use one of {', '.join(sorted(TRANSFORMS))}")
        if not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"augmentation '{name}' probability {p} is outside [0, 1]", "fix the policy")
        TRANSFORMS[name].value(m)  # range check now, not in a worker
        out.append((str(name), float(p), float(m)))
    return out
