"""Versioned HDF5 stores: the interface between subcommands. See docs/stores.md."""

from vdgtool.stores.base import open_store, store_kind
from vdgtool.stores.table import TableStore, TableStoreWriter
from vdgtool.stores.video import VideoStore, VideoStoreWriter, merge_video_segments

__all__ = ["open_store", "store_kind", "VideoStore", "VideoStoreWriter", "TableStore", "TableStoreWriter",
           "merge_video_segments"]
