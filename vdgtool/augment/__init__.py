"""Frame-consistent video augmentation: one set of random parameters for every frame of a clip."""

from vdgtool.augment.ops import TRANSFORMS, AugOp, parse_policy, register_transform
from vdgtool.augment.transform import VideoTransform, build_transform, flow_to_unit, rrc_params

__all__ = ["build_transform", "register_transform", "TRANSFORMS", "AugOp", "parse_policy", "VideoTransform",
           "flow_to_unit", "rrc_params"]
