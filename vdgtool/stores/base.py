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
    """A stored string as the str the writer was given (file names that are not UTF-8 round-trip)."""
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v


def encode_str(v) -> bytes:
    """The bytes stored for a string: UTF-8; a name the OS gave as bytes (surrogate escapes) keeps its bytes."""
    s = v if isinstance(v, str) else str(v)
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that no file name produces
            return s.encode("utf-8", "backslashreplace")


def read_json_attr(obj, name, default=None, expect: type | None = None):
    """A JSON attribute; StoreError when it is not JSON (or not of type ``expect``)."""
    if name not in obj.attrs:
        return default
    raw = obj.attrs[name]
    try:
        val = json.loads(_decode(raw) if isinstance(raw, (bytes, str)) else str(raw))
    except (ValueError, TypeError):
        raise StoreError(f"{_where(obj)} has a malformed '{name}' attribute (not JSON)",
                         "the store is damaged; re-create it") from None
    if expect is not None and not isinstance(val, expect):
        raise StoreError(f"{_where(obj)} has a malformed '{name}' attribute (a {type(val).__name__}, "
                         f"not a {expect.__name__})", "the store is damaged; re-create it")
    return val


def _where(obj) -> str:
    try:
        return obj.file.filename
    except Exception:  # noqa: BLE001
        return "the store"


def write_json_attr(obj, name, value) -> None:
    from vdgtool.utils.provenance import dumps

    obj.attrs[name] = dumps(value)


def str_array(values) -> np.ndarray:
    """Strings as stored (UTF-8 bytes; see :func:`encode_str`)."""
    return np.array([encode_str(v) for v in values], dtype=object)


def refuse_output_in_inputs(outputs, inputs, option: str = "-o") -> None:
    """Refuse when an output path is one of the inputs (the same file after resolving links).

    ``outputs`` and ``inputs`` are paths or lists of paths (None entries are ignored). Writers call this
    before they create anything; an output that does not exist yet cannot be an input.
    """
    outs = [outputs] if isinstance(outputs, (str, os.PathLike)) else list(outputs or [])
    ins = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs or [])
    for out in outs:
        try:
            ost = os.stat(out) if out is not None else None
        except OSError:
            ost = None
        if ost is None:
            continue
        for inp in ins:
            if inp is None:
                continue
            try:
                same = os.path.samestat(ost, os.stat(inp))
            except OSError:
                same = os.path.realpath(out) == os.path.realpath(inp)
            if same:
                raise InputError(f"the output {option} {out} is also an input ({inp})",
                                 f"choose another {option}; writing it would replace the input")


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
    try:
        complete = bool(f.attrs.get(S.ATTR_COMPLETE, False))
    except (ValueError, TypeError):
        complete = False
    if not complete:
        raise StoreError(f"{path} is incomplete (its writer did not finish)",
                         "re-run the command that wrote it with --resume")
    return found


def damaged(path: str, exc: BaseException) -> StoreError:
    """The error for a store whose structure or metadata cannot be read."""
    what = " ".join(str(exc).split())[:160] or exc.__class__.__name__
    if isinstance(exc, KeyError):
        what = f"missing {what}"
    return StoreError(f"{path} is damaged or not a complete vdgtool store ({what})",
                      f"run vdgtool store verify {path}; re-create the store")


def name_list(f, attr: str) -> list[str]:
    """The ``classes`` / ``domains`` attribute: a JSON list of strings."""
    names = read_json_attr(f, attr, [], list)
    if not all(isinstance(n, str) for n in names):
        raise StoreError(f"{_where(f)} has a malformed '{attr}' attribute (not a list of names)",
                         "the store is damaged; re-create it")
    return names


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
            try:
                self.schema = str(_decode(f.attrs.get(S.ATTR_SCHEMA, "0.0")))
                self.provenance: dict = read_json_attr(f, S.ATTR_PROVENANCE, {}, dict)
                self.conventions: dict = read_json_attr(f, S.ATTR_CONVENTIONS, {}, dict)
                self.classes: list[str] = name_list(f, S.ATTR_CLASSES)
                self.domains: list[str] = name_list(f, S.ATTR_DOMAINS)
                self._load(f)
            except (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError) as exc:
                raise damaged(self.path, exc) from None
        self._h5 = None
        self._pid = None
        self._h5_groups = None  # (handle, {key: h5py.Group}) of readers that cache group lookups

    def _load(self, f: h5py.File) -> None:  # pragma: no cover - overridden
        pass

    def _check_indices(self) -> None:
        """Labels and domains must index the stored class and domain lists (-1 = none)."""
        for col, names in (("label", self.classes), ("domain", self.domains)):
            v = np.asarray(self.meta.get(col, []))
            if len(v) and (v.min() < -1 or v.max() >= len(names)):
                bad = int(v[(v < -1) | (v >= len(names))][0])
                raise StoreError(f"{self.path} has a {col} {bad} outside its {len(names)} "
                                 f"{'classes' if col == 'label' else 'domains'}",
                                 "the store is damaged; re-create it")

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
        self._h5_groups = None

    def __getstate__(self):
        st = self.__dict__.copy()
        st["_h5"] = None
        st["_pid"] = None
        st["_h5_groups"] = None
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
        if ds.ndim != 1:
            raise StoreError(f"{_where(group)}: metadata column {group.name}/{name} has shape {ds.shape}, not (N,)",
                             "the store is damaged; re-create it")
        kind = "str" if dtype == "str" else np.dtype(dtype).kind
        ok = (h5py.check_string_dtype(ds.dtype) is not None if kind == "str" else
              np.issubdtype(ds.dtype, np.integer) if kind in "iu" else np.issubdtype(ds.dtype, np.number))
        if not ok:
            want = {"str": "strings", "i": "integers", "u": "integers"}.get(kind, "numbers")
            raise StoreError(f"{_where(group)}: metadata column {group.name}/{name} holds {ds.dtype}, not {want}",
                             "the store is damaged; re-create it")
        if dtype == "str":
            out[name] = np.array([_decode(v) for v in ds[()]], dtype=object) if ds.shape[0] else np.array(
                [], dtype=object)
        else:
            out[name] = ds[()]
    return out


def write_meta(group: h5py.Group, columns: dict, rows: dict[str, list]) -> None:
    from vdgtool.stores.checksum import crc_of, stamp

    for name, dtype in columns.items():
        vals = rows.get(name, [])
        data = str_array(vals) if dtype == "str" else np.asarray(vals, dtype=dtype).reshape(-1)
        ds = group.create_dataset(name, data=data, dtype=STR if dtype == "str" else None)
        stamp(ds, crc_of(data))
