"""Per-dataset checksums: written with the data, checked by ``store verify`` (and on read with ``--check``).

Every dataset a writer creates (a video's frames, an extra, a metadata column, a table array) carries an
attribute ``crc32``: the CRC-32 of its content as a reader sees it (array bytes in C order; for JPEG frames
and strings the stored byte strings in order, each string followed by a NUL). Stores written before schema
1.1 have no checksums; verify says so instead of failing.
"""

from __future__ import annotations

import zlib

import numpy as np

ATTR = "crc32"


def crc_update(crc: int, arr) -> int:
    """Extend ``crc`` with an array's content (numeric, vlen uint8 buffers, or byte/str values)."""
    a = np.asarray(arr)
    if a.dtype == object:
        for v in a.reshape(-1):
            if isinstance(v, str):
                v = v.encode("utf-8", "surrogateescape")
            if isinstance(v, (bytes, bytearray)):
                crc = zlib.crc32(bytes(v) + b"\0", crc)
            else:  # a vlen uint8 buffer (one JPEG frame)
                crc = zlib.crc32(np.ascontiguousarray(v, dtype=np.uint8).tobytes(), crc)
        return crc
    return zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)


def crc_of(arr) -> int:
    return crc_update(0, arr)


def stamp(ds, crc: int | None = None) -> None:
    """Write the checksum attribute of an h5py dataset (computed from its content unless given)."""
    ds.attrs[ATTR] = np.int64(crc_of(ds[()]) if crc is None else crc)


def check(ds) -> bool | None:
    """True/False: the content matches/does not match its checksum; None: the dataset has none."""
    if ATTR not in ds.attrs:
        return None
    return int(ds.attrs[ATTR]) == crc_of(ds[()])


__all__ = ["ATTR", "crc_update", "crc_of", "stamp", "check"]
