"""Frame-consistent video augmentation: one set of random parameters for every frame of a clip.

``ops``/``transform``: the policies of the data pipeline (normalised magnitudes); ``sets``: the PIL
transformation sets of the augmentation search, batched on the device (values in PIL units)."""

from vdgtool.augment.ops import TRANSFORMS, AugOp, parse_policy, register_transform
from vdgtool.augment.sets import IDENTITY, SET_OPS, SETS, apply_batch, apply_op, grid
from vdgtool.augment.transform import VideoTransform, build_transform, flow_to_unit, rrc_params

__all__ = ["build_transform", "register_transform", "TRANSFORMS", "AugOp", "parse_policy", "VideoTransform",
           "flow_to_unit", "rrc_params", "IDENTITY", "SET_OPS", "SETS", "apply_batch", "apply_op", "grid"]
