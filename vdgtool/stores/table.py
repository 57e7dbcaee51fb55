"""Row stores (kinds ``features`` and ``predictions``): one row per clip.

Layout::

    /                 attrs as every store (+ conventions such as model, layer, pooling, clips per video)
    /arrays/<name>    (N, ...) arrays, e.g. features (N, D) float16/float32; logits (N, C); probs (N, C)
    /meta/<column>    key, video, clip, label, domain (one entry per row)
"""

from __future__ import annotations

import os
from typing import Iterable

import h5py
import numpy as np

from vdgtool.errors import InputError, StoreError
from vdgtool.stores import schema as S
from vdgtool.stores.base import STR, StoreReader, read_meta, str_array, write_json_attr
from vdgtool.stores.checksum import crc_update, stamp
from vdgtool.stores.video import ensure_room, output_errors


class TableStoreWriter:
    """Append batches of rows; the store appears at ``path`` when the ``with`` block succeeds."""

    def __init__(self, path: str, kind: str, *, classes: Iterable[str] = (), domains: Iterable[str] = (),
                 conventions: dict | None = None, provenance: dict | None = None, overwrite: bool = False,
                 inputs: Iterable[str] = ()):
        from vdgtool.stores.lock import OutputLock
        from vdgtool.stores.video import check_output_path

        if kind not in S.TABLE_KINDS:
            raise StoreError(f"unknown table store kind '{kind}'", f"use one of {S.TABLE_KINDS}")
        self.path = os.fspath(path)
        check_output_path(self.path, inputs)
        if os.path.exists(self.path) and not overwrite:
            raise InputError(f"{self.path} already exists", "pass --overwrite to replace it, or choose another -o")
        self.kind = kind
        self.tmp = self.path + ".partial"
        self._crc: dict[str, int] = {}
        self._lock = OutputLock(self.path).acquire()
        try:
            with output_errors(self.path):
                self._create(classes, domains, conventions, provenance)
        except BaseException:
            self._lock.release()
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
            raise

    def _create(self, classes, domains, conventions, provenance) -> None:
        kind = self.kind
        self.f = h5py.File(self.tmp, "w")
        self.f.attrs[S.ATTR_KIND] = kind
        self.f.attrs[S.ATTR_SCHEMA] = S.SCHEMA_VERSION
        write_json_attr(self.f, S.ATTR_PROVENANCE, provenance or {})
        write_json_attr(self.f, S.ATTR_CONVENTIONS, conventions or {})
        write_json_attr(self.f, S.ATTR_CLASSES, list(classes))
        write_json_attr(self.f, S.ATTR_DOMAINS, list(domains))
        self.f.attrs[S.ATTR_COMPLETE] = False
        self.arrays = self.f.create_group("arrays")
        self.meta = self.f.create_group("meta")
        for name, dt in S.TABLE_META.items():
            self.meta.create_dataset(name, shape=(0,), maxshape=(None,), dtype=STR if dt == "str" else dt,
                                     chunks=(4096,))
        self.n = 0

    def append(self, arrays: dict[str, np.ndarray], **meta) -> None:
        """Append rows: every array has the same first dimension B; meta columns are length-B sequences."""
        with output_errors(self.path):
            self._append(arrays, meta)

    def _append(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        if not arrays:
            raise StoreError("append() needs at least one array", "this is a bug in the caller")
        arrays = {k: np.asarray(a) for k, a in arrays.items()}
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise StoreError(f"arrays of different lengths {sizes}", "this is a bug in the caller")
        b = sizes.pop()
        ensure_room(self.path, sum(a.nbytes for a in arrays.values()), sum(ds.size * ds.dtype.itemsize
                                                                          for ds in self.arrays.values()))
        if self.n and set(arrays) != set(self.arrays.keys()):
            raise StoreError(f"appended arrays {sorted(arrays)} differ from the earlier rows' "
                             f"{sorted(self.arrays.keys())}", "append the same arrays on every call")
        for name, v in meta.items():
            if name not in S.TABLE_META:
                raise StoreError(f"unknown metadata column '{name}'", f"use {', '.join(S.TABLE_META)}")
            if len(v) != b:
                raise StoreError(f"metadata column '{name}' has {len(v)} values for {b} rows",
                                 "this is a bug in the caller")
        for name, a in arrays.items():
            if name not in self.arrays:
                row_bytes = max(1, int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize)
                chunk_rows = max(1, min(4096, (1 << 20) // row_bytes))  # about 1 MiB per chunk
                self.arrays.create_dataset(name, shape=(0,) + a.shape[1:], maxshape=(None,) + a.shape[1:],
                                           dtype=a.dtype, chunks=(chunk_rows,) + a.shape[1:])
            ds = self.arrays[name]
            if ds.shape[1:] != a.shape[1:]:
                raise StoreError(f"array '{name}' rows have shape {a.shape[1:]}, earlier rows {ds.shape[1:]}",
                                 "this is a bug in the caller")
            ds.resize(self.n + b, axis=0)
            a = np.asarray(a, dtype=ds.dtype)
            ds[self.n:self.n + b] = a
            self._crc[f"arrays/{name}"] = crc_update(self._crc.get(f"arrays/{name}", 0), a)
        for name, dt in S.TABLE_META.items():
            ds = self.meta[name]
            ds.resize(self.n + b, axis=0)
            vals = meta.get(name)
            if vals is None:
                vals = [""] * b if dt == "str" else np.full(b, -1)
            vals = str_array(vals) if dt == "str" else np.asarray(vals, dtype=dt)
            ds[self.n:self.n + b] = vals
            self._crc[f"meta/{name}"] = crc_update(self._crc.get(f"meta/{name}", 0), vals)
        self.n += b

    def commit(self) -> str:
        try:
            with output_errors(self.path):
                for name, ds in list(self.arrays.items()) + list(self.meta.items()):
                    stamp(ds, self._crc.get(ds.name.lstrip("/"), 0))
                self.f.attrs[S.ATTR_COMPLETE] = True
                self.f.close()
                os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._lock.release()
        return self.path

    def abort(self) -> None:
        try:
            try:
                self.f.close()
            except Exception:  # noqa: BLE001 - already closed, or the disk is full
                pass
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
        finally:
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


class TableStore(StoreReader):
    """Read a features or predictions store."""

    def __init__(self, path: str, kind: str | tuple | None = S.TABLE_KINDS):
        super().__init__(path, kind)

    def _load(self, f: h5py.File) -> None:
        for g in ("meta", "arrays"):
            if g not in f or not isinstance(f[g], h5py.Group):
                raise StoreError(f"{self.path} has no /{g} group", "the store is damaged; re-create it")
        self.meta = read_meta(f["meta"], S.TABLE_META)
        if "key" not in self.meta:
            raise StoreError(f"{self.path} lacks the metadata column key", "the store is damaged; re-create it")
        n = len(self.meta["key"])
        for c, dt in S.TABLE_META.items():
            if c not in self.meta:
                self.meta[c] = np.array([""] * n, dtype=object) if dt == "str" else np.full(n, -1, dtype=dt)
            elif len(self.meta[c]) != n:
                raise StoreError(f"{self.path}: metadata column {c} has {len(self.meta[c])} rows, key has {n}",
                                 "the store is damaged; re-create it")
        self._check_indices()
        self.array_names = sorted(k for k in f["arrays"].keys() if isinstance(f["arrays"][k], h5py.Dataset))
        self.shapes = {k: f["arrays"][k].shape for k in self.array_names}

    def __len__(self) -> int:
        return len(self.meta["key"])

    def array(self, name: str, rows=None) -> np.ndarray:
        if name not in self.array_names:
            raise StoreError(f"{self.path} has no '{name}' array (it has: {', '.join(self.array_names)})",
                             "use a store written with that output")
        try:
            return self._array(name, rows)
        except OSError as exc:
            raise StoreError(f"array '{name}' of {self.path} cannot be read ({' '.join(str(exc).split())[:120]})",
                             f"the store is damaged; run vdgtool store verify {self.path} and re-create it") from None

    def _array(self, name: str, rows=None) -> np.ndarray:
        from vdgtool.stores.checksum import check
        from vdgtool.stores.video import check_on_read

        ds = self.h5["arrays"][name]
        if check_on_read() and name not in getattr(self, "_verified", set()):
            if check(ds) is False:
                raise StoreError(f"array '{name}' of {self.path} is damaged (checksum mismatch)",
                                 f"re-create the store; vdgtool store verify {self.path} checks every array")
            self.__dict__.setdefault("_verified", set()).add(name)
        if rows is None:
            return ds[()]
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0,) + ds.shape[1:], ds.dtype)
        if idx.min() < 0 or idx.max() >= ds.shape[0]:
            raise StoreError(f"row index out of range 0..{ds.shape[0] - 1} in {self.path}", "this is a caller bug")
        uniq, inv = np.unique(idx, return_inverse=True)  # h5py needs increasing, unique indices
        return ds[uniq][inv]
