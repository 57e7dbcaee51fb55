"""Opening, validating and describing stores of every kind."""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np

from vdgtool.errors import ConventionMismatch, InputError, StoreError
from vdgtool.stores import schema as S

STR = h5py.string_dtype("utf-8")


def _decode(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


def read_json_attr(obj, name, default=None):
    if name not in obj.attrs:
        return default
    return json.loads(_decode(obj.attrs[name]))


def write_json_attr(obj, name, value) -> None:
    from vdgtool.utils.provenance import dumps

    obj.attrs[name] = dumps(value)


def str_array(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def check_header(f: h5py.File, path: str, kind: str | tuple | None = None) -> str:
    """Validate kind and schema version of an open store; return the kind."""
    if S.ATTR_KIND not in f.attrs:
        raise StoreError(f"{path} is an HDF5 file but not a vdgtool store (no '{S.ATTR_KIND}' attribute)",
                         "create stores with vdgtool extract / flow / synth-video")
    found = _decode(f.attrs[S.ATTR_KIND])
    if found not in S.KINDS:
        raise StoreError(f"{path} is a store of unknown kind '{found}'",
                         f"this vdgtool reads kinds {', '.join(S.KINDS)}; upgrade vdgtool")
    version = _decode(f.attrs.get(S.ATTR_SCHEMA, "0.0"))
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise StoreError(f"{path} has an unreadable schema version '{version}'", "re-create the store")
    if major > S.SCHEMA_MAJOR:
        raise StoreError(f"{path} uses store schema {version}, newer than this vdgtool's {S.SCHEMA_VERSION}",
                         "upgrade vdgtool (pip install -U vdgtool)")
    if kind is not None:
        wanted = (kind,) if isinstance(kind, str) else tuple(kind)
        if found not in wanted:
            raise StoreError(f"{path} is a {found} store, but a {' or '.join(wanted)} store is needed here",
                             f"pass a {' or '.join(wanted)} store")
    if not bool(f.attrs.get(S.ATTR_COMPLETE, False)):
        raise StoreError(f"{path} is incomplete (its writer did not finish)",
                         "re-run the command that wrote it with --resume")
    return found


def open_h5(path: str, mode: str = "r") -> h5py.File:
    path = os.fspath(path)
    if mode == "r":
        if not os.path.exists(path):
            hint = " (an interrupted run left a .partial; re-run with --resume)" if os.path.exists(
                path + ".partial.d") else ""
            raise InputError(f"store {path} does not exist{hint}", "check the path")
        if os.path.isdir(path):
            raise InputError(f"{path} is a directory, not a store file", "pass an .h5 store file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise StoreError(f"cannot open {path} as HDF5 ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
                         "the file is damaged or not a store; re-create it") from None


def store_kind(path: str) -> str:
    with open_h5(path) as f:
        return check_header(f, path)


def open_store(path: str, kind: str | tuple | None = None):
    """Open any store and return the matching reader (VideoStore or TableStore)."""
    from vdgtool.stores.table import TableStore
    from vdgtool.stores.video import VideoStore

    found = store_kind(path)
    if kind is not None:
        with open_h5(path) as f:
            check_header(f, path, kind)
    if found in S.VIDEO_KINDS:
        return VideoStore(path)
    return TableStore(path)


class StoreReader:
    """Common behaviour: header, lazily opened per-process handle, picklable."""

    kind: str = ""

    def __init__(self, path: str, kind: str | tuple | None = None):
        self.path = os.fspath(path)
        with open_h5(self.path) as f:
            self.kind = check_header(f, self.path, kind)
            self.schema = _decode(f.attrs[S.ATTR_SCHEMA])
            self.provenance: dict = read_json_attr(f, S.ATTR_PROVENANCE, {})
            self.conventions: dict = read_json_attr(f, S.ATTR_CONVENTIONS, {})
            self.classes: list[str] = read_json_attr(f, S.ATTR_CLASSES, [])
            self.domains: list[str] = read_json_attr(f, S.ATTR_DOMAINS, [])
            self._load(f)
        self._h5 = None
        self._pid = None

    def _load(self, f: h5py.File) -> None:  # pragma: no cover - overridden
        pass

    @property
    def h5(self) -> h5py.File:
        """The file handle, opened on first use in each process (DataLoader workers included)."""
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = open_h5(self.path)
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self):
        st = self.__dict__.copy()
        st["_h5"] = None
        st["_pid"] = None
        return st

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def require_conventions(self, **expected: Any) -> None:
        """Refuse when a consumer's expectation disagrees with what the store records."""
        for name, want in expected.items():
            if want is None:
                continue
            have = self.conventions.get(name)
            if have is None:
                continue
            if isinstance(want, (list, tuple)):
                want = list(want)
            if have != want:
                raise ConventionMismatch(
                    f"{self.path} records {name}={have!r} but {want!r} is expected here",
                    f"re-create the store with {name}={want!r} or change the consumer's setting")

    def class_names_of(self, labels) -> list[str]:
        return [self.classes[i] if 0 <= i < len(self.classes) else "" for i in np.asarray(labels).tolist()]


def read_meta(group: h5py.Group, columns: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, dtype in columns.items():
        if name not in group:
            continue
        ds = group[name]
        if dtype == "str":
            out[name] = np.array([_decode(v) for v in ds[()]], dtype=object) if ds.shape[0] else np.array(
                [], dtype=object)
        else:
            out[name] = ds[()]
    return out


def write_meta(group: h5py.Group, columns: dict, rows: dict[str, list]) -> None:
    for name, dtype in columns.items():
        vals = rows.get(name, [])
        if dtype == "str":
            group.create_dataset(name, data=str_array(vals), dtype=STR)
        else:
            group.create_dataset(name, data=np.asarray(vals, dtype=dtype).reshape(-1))
