"""Store schema: kinds, version, attribute names. See docs/stores.md."""

from __future__ import annotations

SCHEMA_VERSION = "1.1"  # 1.1: per-dataset crc32 checksums (additive; 1.0 stores are read as before)
SCHEMA_MAJOR = 1

#: Per-video stores: one array per video under /data (frames, flow fields, ...).
VIDEO_KINDS = ("clips", "flow")
#: Row stores: fixed-width arrays with one row per clip (features, logits, ...).
TABLE_KINDS = ("features", "predictions")
KINDS = VIDEO_KINDS + TABLE_KINDS

ATTR_KIND = "vdgtool_kind"
ATTR_SCHEMA = "vdgtool_schema"
ATTR_PROVENANCE = "provenance"
ATTR_CONVENTIONS = "conventions"
ATTR_CLASSES = "classes"
ATTR_DOMAINS = "domains"
ATTR_COMPLETE = "complete"

#: Per-video metadata columns of video stores (name -> numpy dtype; "str" = variable-length UTF-8).
VIDEO_META = {
    "key": "str",          # unique id of the video within the dataset (relative path by default)
    "index": "int64",      # position in the input manifest (defines the store's row order)
    "label": "int32",      # index into the classes attribute, -1 when unlabelled
    "domain": "int32",     # index into the domains attribute
    "fps": "float32",      # frames per second of the stored frames
    "num_frames": "int32",
    "height": "int32",
    "width": "int32",
    "source": "str",       # path of the source file
    "decoder": "str",      # which reader produced the frames (decord / pyav / pil / synth ...)
}

ERROR_META = {"key": "str", "index": "int64", "source": "str", "reason": "str"}

#: Per-row metadata columns of table stores.
TABLE_META = {
    "key": "str",          # video key the row comes from
    "video": "int64",      # row of the video in the parent store
    "clip": "int32",       # clip number within the video (multi-clip views)
    "label": "int32",
    "domain": "int32",
}
