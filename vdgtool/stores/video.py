"""Per-video stores (kinds ``clips`` and ``flow``): an atomic, resumable writer and a lazy reader.

Layout of a finished store (see docs/stores.md)::

    /                 attrs: vdgtool_kind, vdgtool_schema, provenance, conventions, classes, domains, complete
    /data/<row>       one array per video: (T, H, W, C) uint8 ("raw"), or T JPEG byte strings ("jpeg"),
                      or (T, H, W, 2) uint8/float16 flow
    /meta/<column>    one entry per video (key, index, label, domain, fps, num_frames, height, width, ...)
    /errors/<column>  one entry per input that could not be read (key, index, source, reason)
    /extras/<name>/<row>  optional per-video arrays (synthetic flow, camera trajectory, depth, ...)

Writing goes to ``STORE.partial.d/seg-*.h5`` segments, each renamed into place when complete, so a
killed run loses at most the segment in progress; ``--resume`` skips what the segments hold, and the
final merge (rows ordered by manifest index) writes ``STORE.partial`` and renames it to ``STORE``.
"""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass
from typing import Any, Iterable

import h5py
import numpy as np

from vdgtool.errors import InputError, StoreError
from vdgtool.stores import schema as S
from vdgtool.stores.base import (StoreReader, _decode, check_header, damaged, name_list, open_h5, read_json_attr,
                                 read_meta, refuse_output_in_inputs, write_json_attr, write_meta)
from vdgtool.stores.checksum import check as check_crc, crc_of, crc_update, stamp
from vdgtool.stores.jpeg import choose_scale, decode_jpeg, decode_jpegs, encode_jpeg  # noqa: F401
from vdgtool.stores.lock import OutputLock

ENCODINGS = ("raw", "jpeg")
VLEN_U8 = h5py.vlen_dtype(np.dtype("uint8"))


@dataclass
class EncodedVideo:
    """One video's frames as they are stored: JPEG files or a raw array, with their checksum.

    Made by :func:`encode_video` (in ``extract``'s worker processes, so the writer only writes) and accepted by
    :meth:`VideoStoreWriter.add_video` in place of the frames; the store is the same either way.
    """

    encoding: str
    shape: tuple
    data: Any  # list of uint8 JPEG arrays, or the (T, H, W, C) array
    crc: int

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded frames (what segment sizes are counted in)."""
        return int(np.prod(self.shape)) if self.encoding == "jpeg" else int(self.data.nbytes)

    @property
    def dtype(self):
        return np.dtype(np.uint8) if self.encoding == "jpeg" else np.asarray(self.data).dtype


def stored_encoding(encoding: str, dtype, shape) -> str:
    """What a writer with ``encoding`` stores for frames of this dtype and shape: JPEG only for uint8 RGB/grey."""
    return encoding if np.dtype(dtype) == np.uint8 and len(shape) == 4 and shape[-1] in (1, 3) else "raw"


def encode_video(frames: np.ndarray, encoding: str, quality: int = 90) -> EncodedVideo:
    """Frames (T, H, W, C) as a writer with ``encoding`` stores them (see :func:`stored_encoding`)."""
    arr = np.asarray(frames)
    if stored_encoding(encoding, arr.dtype, arr.shape) == "jpeg":
        return join_encoded([(tuple(arr.shape), encode_jpeg(arr, quality))])
    arr = np.ascontiguousarray(arr)
    return EncodedVideo("raw", tuple(arr.shape), arr, crc_of(arr))


def join_encoded(parts: list[tuple[tuple, list[np.ndarray]]]) -> EncodedVideo:
    """JPEG batches of one video, each ``(shape, bufs)`` in frame order -> one :class:`EncodedVideo`."""
    bufs = [b for _, bb in parts for b in bb]
    crc = 0
    for b in bufs:
        crc = crc_update(crc, b)
    shape = (len(bufs),) + tuple(parts[0][0][1:]) if parts else (0, 0, 0, 3)
    return EncodedVideo("jpeg", shape, bufs, crc)


def _write_array(group: h5py.Group, name: str, arr: np.ndarray | EncodedVideo, encoding: str, quality: int,
                 chunk_frames: int) -> None:
    """One video's array (raw, or JPEG frames) with its checksum (see stores/checksum.py)."""
    enc = arr if isinstance(arr, EncodedVideo) else encode_video(arr, encoding, quality)
    if enc.encoding == "jpeg":
        data = np.empty(len(enc.data), dtype=object)
        for i, b in enumerate(enc.data):
            data[i] = b
        # one write for all frames: element-wise writes of a vlen dataset cost ~8x more (benchmarks/RESULTS.md)
        ds = group.create_dataset(name, shape=(len(enc.data),), dtype=VLEN_U8)
        if len(enc.data):
            ds.write_direct(data)  # (ds[...] = data would make frames of equal length one 2-D array)
        ds.attrs["shape"] = np.asarray(enc.shape, dtype=np.int64)
    else:
        a = enc.data
        chunks = None
        if a.ndim >= 1 and a.shape[0] > 0 and a.size > 0:
            chunks = (min(a.shape[0], chunk_frames),) + a.shape[1:]
        ds = group.create_dataset(name, data=a, chunks=chunks)
    stamp(ds, enc.crc)


class VideoStoreWriter:
    """Stream videos into a store atomically; resumable after a crash.

    Use as a context manager; the store appears at ``path`` only when the block exits without error.
    """

    def __init__(self, path: str, kind: str = "clips", *, classes: Iterable[str] = (),
                 domains: Iterable[str] = (), conventions: dict | None = None,
                 provenance: dict | None = None, encoding: str = "raw", jpeg_quality: int = 90,
                 chunk_frames: int = 8, resume: bool = False, overwrite: bool = False,
                 segment_bytes: int = 256 << 20, segment_videos: int = 256, input_digest: str | None = None,
                 inputs: Iterable[str] = ()):
        if kind not in S.VIDEO_KINDS:
            raise StoreError(f"unknown video store kind '{kind}'", f"use one of {S.VIDEO_KINDS}")
        if encoding not in ENCODINGS:
            raise InputError(f"unknown frame encoding '{encoding}'", f"use one of {', '.join(ENCODINGS)}")
        self.path = os.fspath(path)
        self.kind = kind
        self.classes = list(classes)
        self.domains = list(domains)
        self.encoding = encoding
        self.quality = int(jpeg_quality)
        self.chunk_frames = int(chunk_frames)
        self.conventions = dict(conventions or {})
        self.conventions.setdefault("encoding", encoding)
        if encoding == "jpeg":
            self.conventions.setdefault("jpeg_quality", self.quality)
        self.provenance = dict(provenance or {})
        if input_digest:  # what --resume compares: a different input is refused, never mixed in
            self.provenance["input_digest"] = input_digest
        self.segdir = self.path + ".partial.d"
        self.segment_bytes = segment_bytes
        self.segment_videos = segment_videos
        self.done_keys: set[str] = set()
        self.n_videos = 0
        self.n_errors = 0
        self._seg: h5py.File | None = None
        self._seg_rows: dict[str, list] = {}
        self._err_rows: dict[str, list] = {}
        self._seg_count = 0
        self._seg_bytes = 0
        self._seg_n = 0

        check_output_path(self.path, inputs)
        # one writer per output: taken before anything is deleted or created (docs/stores.md, Locks)
        self._lock = OutputLock(self.path).acquire()
        try:
            with output_errors(self.path):
                self._prepare(resume, overwrite)
        except BaseException:
            self._lock.release()
            raise

    def _prepare(self, resume: bool, overwrite: bool) -> None:
        if os.path.exists(self.path) and not overwrite:
            if resume:
                # killed between the final rename and the clean-up: the store itself is complete
                shutil.rmtree(self.segdir, ignore_errors=True)
                raise InputError(f"{self.path} is already complete, there is nothing to resume",
                                 "pass --overwrite to re-create it")
            raise InputError(f"{self.path} already exists", "pass --overwrite to replace it, or choose another -o")
        existing = sorted(glob.glob(os.path.join(glob.escape(self.segdir), "seg-*.h5")))
        if os.path.isdir(self.segdir) and not resume:
            if overwrite:
                shutil.rmtree(self.segdir)
                existing = []
            else:
                raise InputError(f"an interrupted run left {self.segdir}",
                                 "pass --resume to continue it, or --overwrite to start again")
        os.makedirs(self.segdir, exist_ok=True)
        for tmp in glob.glob(os.path.join(glob.escape(self.segdir), "*.tmp")):
            os.remove(tmp)  # a segment that was being written when the run was killed
        for seg in existing:
            self._adopt_segment(seg)
        self._seg_count = len(existing)

    # -- resume -----------------------------------------------------------------------------------
    def _adopt_segment(self, seg: str) -> None:
        try:
            with h5py.File(seg, "r") as f:
                conv = read_json_attr(f, S.ATTR_CONVENTIONS, {}, dict)
                classes = name_list(f, S.ATTR_CLASSES)
                diff = _conv_diff(conv, _jsonable(self.conventions))
                if diff or classes != self.classes or _decode(f.attrs.get(S.ATTR_KIND, "")) != self.kind:
                    what = diff or ("classes" if classes != self.classes else "kind")
                    raise InputError(
                        f"--resume with different settings than the interrupted run ({os.path.basename(seg)}: "
                        f"{what})", "resume with the same options, or pass --overwrite to start again")
                prov = read_json_attr(f, S.ATTR_PROVENANCE, {}, dict)
                had, now = prov.get("input_digest"), self.provenance.get("input_digest")
                if had and now and had != now:
                    parents = ", ".join(map(str, prov.get("parents") or [])) or "another input"
                    raise InputError(f"--resume with a different input than the interrupted run (it read "
                                     f"{parents}; the input's manifest digest differs)",
                                     "resume with the same INPUT, or pass --overwrite to start again")
                # domain indices in the segment refer to its domain list: keep every name known
                for d in name_list(f, S.ATTR_DOMAINS):
                    if d not in self.domains:
                        self.domains.append(d)
                counts = {}
                for grp in ("meta", "errors"):
                    if grp in f and "key" in f[grp]:
                        counts[grp] = [_decode(k) for k in f[grp]["key"][()]]
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - unreadable or damaged: its videos are simply redone
            os.remove(seg)
            return
        for grp, keys in counts.items():
            self.done_keys.update(keys)
            if grp == "meta":
                self.n_videos += len(keys)
            else:
                self.n_errors += len(keys)

    # -- writing ----------------------------------------------------------------------------------
    def _open_segment(self) -> None:
        self._seg_count += 1
        name = os.path.join(self.segdir, f"seg-{self._seg_count:06d}.h5")
        while os.path.exists(name):
            self._seg_count += 1
            name = os.path.join(self.segdir, f"seg-{self._seg_count:06d}.h5")
        self._seg_final = name
        self._seg = h5py.File(name + ".tmp", "w")
        self._seg.create_group("data")
        self._seg_rows = {k: [] for k in S.VIDEO_META}
        self._err_rows = {k: [] for k in S.ERROR_META}
        self._seg_bytes = 0
        self._seg_n = 0

    def _close_segment(self) -> None:
        f = self._seg
        if f is None:
            return
        self._write_header(f, complete=True)
        write_meta(f.create_group("meta"), S.VIDEO_META, self._seg_rows)
        write_meta(f.create_group("errors"), S.ERROR_META, self._err_rows)
        f.close()
        os.replace(self._seg_final + ".tmp", self._seg_final)
        self._seg = None

    def _write_header(self, f: h5py.File, complete: bool) -> None:
        f.attrs[S.ATTR_KIND] = self.kind
        f.attrs[S.ATTR_SCHEMA] = S.SCHEMA_VERSION
        write_json_attr(f, S.ATTR_PROVENANCE, self.provenance)
        write_json_attr(f, S.ATTR_CONVENTIONS, self.conventions)
        write_json_attr(f, S.ATTR_CLASSES, self.classes)
        write_json_attr(f, S.ATTR_DOMAINS, self.domains)
        f.attrs[S.ATTR_COMPLETE] = bool(complete)

    def _ensure_segment(self) -> h5py.File:
        if self._seg is None:
            self._open_segment()
        return self._seg

    def _maybe_rotate(self) -> None:
        if self._seg_bytes >= self.segment_bytes or self._seg_n >= self.segment_videos:
            self._close_segment()

    def domain_index(self, domain: str | None) -> int:
        if domain is None or domain == "":
            return -1
        if domain not in self.domains:
            self.domains.append(domain)
        return self.domains.index(domain)

    def add_video(self, key: str, frames: np.ndarray | EncodedVideo, *, index: int, label: int = -1, domain: str | None = None,
                  fps: float = 0.0, source: str = "", decoder: str = "",
                  extras: dict[str, np.ndarray] | None = None) -> None:
        """Add one video: ``frames`` is (T, H, W, C) (uint8 for clips; uint8/float16 for flow), or the same already
        encoded by :func:`encode_video` (extract's workers encode, the writer only writes)."""
        if key in self.done_keys:
            return
        if not isinstance(frames, EncodedVideo):
            frames = np.asarray(frames)
        elif frames.encoding != stored_encoding(self.encoding, frames.dtype, frames.shape):
            raise StoreError(f"video {key}: encoded as {frames.encoding} for a {self.encoding} store",
                             "this is a bug in the caller")
        if len(frames.shape) != 4:
            raise StoreError(f"video {key}: expected a (T, H, W, C) array, got shape {frames.shape}",
                             "this is a bug in the caller")
        with output_errors(self.path):
            ensure_room(self.path, frames.nbytes + sum(np.asarray(a).nbytes for a in (extras or {}).values()),
                        self._seg_bytes)
            f = self._ensure_segment()
            row = len(self._seg_rows["key"])  # videos only: add_error also counts in _seg_n
            _write_array(f["data"], f"{row:08d}", frames, stored_encoding(self.encoding, frames.dtype, frames.shape),
                         self.quality, self.chunk_frames)
            for name, arr in (extras or {}).items():
                g = f.require_group(f"extras/{name}")
                _write_array(g, f"{row:08d}", np.asarray(arr), "raw", 0, self.chunk_frames)
        r = self._seg_rows
        r["key"].append(key)
        r["index"].append(int(index))
        r["label"].append(int(label))
        r["domain"].append(self.domain_index(domain))
        r["fps"].append(float(fps))
        r["num_frames"].append(int(frames.shape[0]))
        r["height"].append(int(frames.shape[1]))
        r["width"].append(int(frames.shape[2]))
        r["source"].append(str(source))
        r["decoder"].append(str(decoder))
        self.done_keys.add(key)
        self.n_videos += 1
        self._seg_n += 1
        self._seg_bytes += frames.nbytes
        with output_errors(self.path):
            self._maybe_rotate()

    def add_error(self, key: str, *, index: int, source: str, reason: str) -> None:
        """Record an input that could not be processed (it is skipped, and reported)."""
        if key in self.done_keys:
            return
        with output_errors(self.path):
            self._ensure_segment()
        e = self._err_rows
        e["key"].append(key)
        e["index"].append(int(index))
        e["source"].append(str(source))
        e["reason"].append(" ".join(str(reason).split()))
        self.done_keys.add(key)
        self.n_errors += 1
        self._seg_n += 1
        with output_errors(self.path):
            self._maybe_rotate()

    def commit(self) -> str:
        """Close the last segment, merge all segments in manifest order, rename into place."""
        tmp = self.path + ".partial"
        try:
            with output_errors(self.path):
                self._close_segment()
                segs = sorted(glob.glob(os.path.join(glob.escape(self.segdir), "seg-*.h5")))
                ensure_room(self.path, sum(os.path.getsize(p) for p in segs))  # the merge copies every segment
                merge_video_segments(segs, tmp, header=self)
                os.replace(tmp, self.path)
            shutil.rmtree(self.segdir, ignore_errors=True)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            self.abort()
            raise
        self._lock.release()
        return self.path

    def abort(self) -> None:
        """Keep finished segments for --resume; save the rows of the one in progress when possible.

        Rows are appended to the metadata only after their arrays are written, so the open segment is
        consistent up to its last complete video (an array half-written by an interrupted ``add_video``
        has no metadata row and is ignored by the merge). If saving fails, the segment is dropped and
        its videos are redone on ``--resume``.
        """
        try:
            self._abort_segment()
        finally:
            self._lock.release()

    def _abort_segment(self) -> None:
        if self._seg is None:
            return
        name = self._seg.filename
        try:
            if self._seg_rows.get("key") or self._err_rows.get("key"):
                self._close_segment()
                return
        except BaseException:  # noqa: BLE001 - fall back to dropping the segment
            pass
        try:
            self._seg.close()
        except Exception:  # noqa: BLE001
            pass
        self._seg = None
        if os.path.exists(name):
            os.remove(name)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def check_output_path(path: str, inputs: Iterable[str] = ()) -> None:
    """Refuse an output whose folder is missing, that is a folder, or that is one of the inputs."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"output folder {parent} does not exist", "create it first")
    if os.path.isdir(path):
        raise InputError(f"the output {path} is a folder", "pass a file name for the store, e.g. -o out.h5")
    refuse_output_in_inputs(path, list(inputs))


class output_errors:
    """Turn an OS error while writing ``path`` (disk full, permissions, read-only) into a StoreError."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, OSError) and not isinstance(exc, StoreError):
            raise write_error(self.path, exc) from None
        return False


#: free space a writer leaves on the device (metadata, the final merge's header, other processes)
RESERVE_BYTES = 16 << 20


def ensure_room(path: str, nbytes: int, file_bytes: int = 0) -> None:
    """Refuse (StoreError) before writing ``nbytes`` more into a file of ``file_bytes`` when the device lacks
    the space or the process's file-size limit would be passed.

    HDF5 does not survive a failed write well (its cached metadata cannot be flushed, and closing the file
    can crash the process), so a full disk is detected before the write, while the open segment can still
    be closed cleanly and kept for --resume.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
    except (OSError, AttributeError):  # no statvfs (Windows) or an odd file system: let the write tell
        free = None
    if free is not None and free < nbytes + RESERVE_BYTES:
        raise StoreError(f"no space left on the device for {path} ({nbytes / 2**20:.1f} MiB more to write, "
                         f"{free / 2**20:.1f} MiB free in {folder})",
                         "free space or write elsewhere with -o; finished work is kept and --resume continues")
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY and soft >= 0 and file_bytes + nbytes + (1 << 20) > soft:
        raise StoreError(f"writing {path} would pass this process's file-size limit of {soft / 2**20:.1f} MiB",
                         "raise the limit (ulimit -f) or write smaller shards (--num-shards); finished work is "
                         "kept and --resume continues")


def write_error(path: str, exc: OSError) -> StoreError:
    import errno

    code = getattr(exc, "errno", None)
    text = " ".join(str(exc).split())
    if code is None:  # h5py puts the errno into the text only
        for name in ("ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EROFS", "EPERM"):
            if f"errno = {getattr(errno, name)}," in text:
                code = getattr(errno, name)
                break
    folder = os.path.dirname(os.path.abspath(path))
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"no space left on the device while writing {path}",
                          f"free space in {folder} or write elsewhere with -o; finished segments are kept and "
                          "--resume continues")
    if code == errno.EFBIG:
        return StoreError(f"the file system refused a file this large while writing {path}",
                          "write to another file system with -o (or raise the file-size limit)")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"cannot write {path}: {os.strerror(code)}",
                          f"choose an -o in a folder you can write to (not {folder})")
    return StoreError(f"cannot write {path} ({exc.__class__.__name__}: {text[:160]})",
                      "check the output folder and free space, then re-run with --resume")


def _jsonable(d: dict) -> Any:
    import json

    from vdgtool.utils.provenance import dumps

    return json.loads(dumps(d))


def _conv_diff(a: dict, b: dict, ignore: tuple = ()) -> str:
    """'' when two convention dicts agree, else 'name=A vs B' for the first differing entry."""
    for k in sorted(set(a) | set(b)):
        if k in ignore:
            continue
        if a.get(k) != b.get(k):
            return f"{k}={a.get(k)!r} vs {b.get(k)!r}"
    return ""


def merge_video_segments(inputs: list[str], out_path: str, header: Any = None, check_complete: bool = False,
                         provenance: dict | None = None, ignore_conventions: tuple = ()) -> dict:
    """Copy the videos of several store files into one, rows sorted by manifest index.

    ``header`` (a writer) supplies attributes; otherwise the first input's are used and class/domain
    lists are united by name. Raises on a duplicate key or mismatched conventions.
    """
    entries = []  # (index, key, file_i, row) for videos; errors separately
    errors = []
    files = []
    kinds, convs, classes_all, domains_all = set(), [], [], []
    try:
        for i, p in enumerate(inputs):
            f = open_h5(p)
            files.append(f)
            if check_complete:
                check_header(f, p)
            kinds.add(_decode(f.attrs.get(S.ATTR_KIND, "")))
            convs.append(read_json_attr(f, S.ATTR_CONVENTIONS, {}, dict))
            classes_all.append(name_list(f, S.ATTR_CLASSES))
            domains_all.append(name_list(f, S.ATTR_DOMAINS))
            meta = read_meta(f["meta"], S.VIDEO_META) if "meta" in f else {}
            for r, (idx, key) in enumerate(zip(meta.get("index", []), meta.get("key", []))):
                entries.append((int(idx), key, i, r))
            em = read_meta(f["errors"], S.ERROR_META) if "errors" in f else {}
            for r in range(len(em.get("key", []))):
                errors.append((int(em["index"][r]), i, r))
        if len(kinds) > 1:
            raise StoreError(f"cannot merge stores of different kinds {sorted(kinds)}", "merge stores of one kind")
        for c, p in zip(convs[1:], inputs[1:]):
            diff = _conv_diff(c, convs[0], ignore_conventions)
            if diff:
                raise StoreError(f"conventions differ between {p} and {inputs[0]}: {diff}",
                                 "merge only shards written with the same options")
        if header is not None:
            classes = list(header.classes)
            domains = list(header.domains)
        else:
            classes, domains = [], []
            for cl in classes_all:
                classes += [c for c in cl if c not in classes]
            for dl in domains_all:
                domains += [d for d in dl if d not in domains]
            # classes in another order, or extra classes: labels are remapped by name below
        entries.sort(key=lambda e: (e[0], e[1]))
        seen = {}
        for idx, key, fi, _ in entries:
            if key in seen:
                raise StoreError(f"video '{key}' appears in both {inputs[seen[key]]} and {inputs[fi]}",
                                 "a shard was given twice or shards overlap; pass each shard once")
            seen[key] = fi
        ekeys = {}
        for fi, f in enumerate(files):
            if "errors" in f and "key" in f["errors"]:
                for key in (_decode(k) for k in f["errors"]["key"][()]):
                    other = seen.get(key, ekeys.get(key))
                    if other is not None:
                        raise StoreError(f"video '{key}' appears in both {inputs[other]} and {inputs[fi]}",
                                         "a shard was given twice or shards overlap; pass each shard once")
                    ekeys[key] = fi
        errors.sort()
        metas = [read_meta(f["meta"], S.VIDEO_META) if "meta" in f else {} for f in files]
        for idx, key, fi, r in entries:  # labels / domains must index the lists of their own file
            for col, names in (("label", classes_all[fi]), ("domain", domains_all[fi])):
                v = int(metas[fi][col][r]) if col in metas[fi] else -1
                if not -1 <= v < len(names):
                    raise StoreError(f"video '{key}' in {inputs[fi]} has {col} {v}, outside its {len(names)} "
                                     f"{'classes' if col == 'label' else 'domains'}",
                                     f"the store is damaged; run vdgtool store verify {inputs[fi]} and re-create it")
        out = h5py.File(out_path, "w")
        ok = False
        try:
            if header is not None:
                header._write_header(out, complete=False)
            else:
                for k, v in files[0].attrs.items():
                    out.attrs[k] = v
                out.attrs[S.ATTR_COMPLETE] = False
                write_json_attr(out, S.ATTR_CLASSES, classes)
                write_json_attr(out, S.ATTR_DOMAINS, domains)
                if provenance is not None:
                    write_json_attr(out, S.ATTR_PROVENANCE, provenance)
            data = out.create_group("data")
            rows = {k: [] for k in S.VIDEO_META}
            for new_row, (idx, key, fi, r) in enumerate(entries):
                src = files[fi]
                name = f"{r:08d}"
                src.copy(src["data"][name], data, f"{new_row:08d}")
                if "extras" in src:
                    for ex in src["extras"]:
                        if name in src["extras"][ex]:
                            src.copy(src["extras"][ex][name], out.require_group(f"extras/{ex}"), f"{new_row:08d}")
                m = metas[fi]
                for col in S.VIDEO_META:
                    v = m[col][r]
                    if col == "label" and v >= 0 and classes_all[fi]:
                        v = classes.index(classes_all[fi][v])
                    if col == "domain" and v >= 0 and domains_all[fi]:
                        v = domains.index(domains_all[fi][v])
                    rows[col].append(v)
            write_meta(out.create_group("meta"), S.VIDEO_META, rows)
            erows = {k: [] for k in S.ERROR_META}
            emetas = [read_meta(f["errors"], S.ERROR_META) if "errors" in f else {} for f in files]
            for _, fi, r in errors:
                em = emetas[fi]
                for col in S.ERROR_META:
                    erows[col].append(em[col][r])
            write_meta(out.create_group("errors"), S.ERROR_META, erows)
            out.attrs[S.ATTR_COMPLETE] = True
            ok = True
        finally:
            out.close()
            if not ok and os.path.exists(out_path):
                os.remove(out_path)  # never leave a .partial behind a failed merge
        return {"videos": len(entries), "errors": len(errors)}
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        names = ", ".join(map(str, inputs[:3])) + (" ..." if len(inputs) > 3 else "")
        raise damaged(names, exc) from None
    finally:
        for f in files:
            f.close()


def _is_jpeg(ds: h5py.Dataset) -> bool:
    return ds.dtype == object or h5py.check_vlen_dtype(ds.dtype) is not None


def _read_rows(ds: h5py.Dataset, uniq: np.ndarray):
    """Rows ``uniq`` (sorted, unique) of a dataset in one HDF5 read: a slice when they are dense, else a point
    selection (reading a vlen dataset element by element costs ~10x more per frame)."""
    lo, hi = int(uniq[0]), int(uniq[-1]) + 1
    if hi - lo <= 2 * len(uniq):
        block = ds[lo:hi]
        return block if hi - lo == len(uniq) else block[uniq - lo]
    return ds[uniq]


def check_on_read() -> bool:
    """Whether readers verify checksums on read: ``vdgtool --check VERB`` or VDGTOOL_CHECK=1."""
    return os.environ.get("VDGTOOL_CHECK", "").strip().lower() not in ("", "0", "false", "no")


class VideoStore(StoreReader):
    """Read a clip or flow store. Metadata is loaded once; frames are read on demand."""

    #: metadata columns a reader cannot do without
    REQUIRED = ("key", "index", "label", "domain", "num_frames", "height", "width")

    def __init__(self, path: str, kind: str | tuple | None = S.VIDEO_KINDS, check: bool | None = None):
        super().__init__(path, kind)
        #: verify each video's checksum on its first read (``vdgtool --check``, VDGTOOL_CHECK=1)
        self.check = check_on_read() if check is None else bool(check)
        self._verified: set[int] = set()

    def _load(self, f: h5py.File) -> None:
        if "meta" not in f or not isinstance(f["meta"], h5py.Group):
            raise StoreError(f"{self.path} has no /meta group", "the store is damaged; re-create it")
        self.meta = read_meta(f["meta"], S.VIDEO_META)
        missing = [c for c in self.REQUIRED if c not in self.meta]
        if missing:
            raise StoreError(f"{self.path} lacks the metadata column(s) {', '.join(missing)}",
                             "the store is damaged; re-create it")
        n = len(self.meta["key"])
        bad = [c for c, v in self.meta.items() if len(v) != n]
        if bad:
            raise StoreError(f"{self.path}: metadata column {bad[0]} has {len(self.meta[bad[0]])} rows, "
                             f"key has {n}", "the store is damaged; re-create it")
        for c in ("source", "decoder"):
            self.meta.setdefault(c, np.array([""] * n, dtype=object))
        for c in ("fps",):
            self.meta.setdefault(c, np.zeros(n, np.float32))
        self._check_indices()
        self.errors = read_meta(f["errors"], S.ERROR_META) if "errors" in f else {}
        self.extras = sorted(f["extras"].keys()) if "extras" in f else []
        self.encoding = self.conventions.get("encoding", "raw")
        self._key_to_row = None

    def __len__(self) -> int:
        return len(self.meta["key"])

    @property
    def labels(self) -> np.ndarray:
        return self.meta["label"]

    @property
    def num_frames(self) -> np.ndarray:
        return self.meta["num_frames"]

    def row_of(self, key: str) -> int:
        if self._key_to_row is None:
            self._key_to_row = {k: i for i, k in enumerate(self.meta["key"])}
        return self._key_to_row[key]

    def _dataset(self, group: str, row: int, extra: str | None = None) -> h5py.Dataset:
        name = f"{int(row):08d}"
        try:
            ds = self._group(group, extra)[name]
        except KeyError:
            key = self.meta["key"][row] if 0 <= int(row) < len(self) else row
            raise StoreError(f"{self.path} has no array for video {key} (row {row})",
                             f"the store is damaged; run vdgtool store verify {self.path}") from None
        if not isinstance(ds, h5py.Dataset):
            raise StoreError(f"{self.path}: /{group}/{name} is not an array", "the store is damaged; re-create it")
        if self.check and (group, extra, int(row)) not in self._verified:
            if check_crc(ds) is False:
                key = self.meta["key"][row] if 0 <= int(row) < len(self) else row
                raise StoreError(f"video {key} (row {row}) in {self.path} is damaged (checksum mismatch)",
                                 f"re-create the store; vdgtool store verify {self.path} lists every damaged video")
            self._verified.add((group, extra, int(row)))
        return ds

    def _group(self, group: str, extra: str | None) -> h5py.Group:
        """``/group`` (or ``/group/extra``), looked up once per file handle (an h5py lookup costs ~0.15 ms per
        read). Only parent groups are kept: an open dataset keeps its chunk cache, so datasets are not."""
        h5 = self.h5
        cache = getattr(self, "_h5_groups", None)
        if cache is None or cache[0] is not h5:
            cache = self._h5_groups = (h5, {})
        g = cache[1].get((group, extra))
        if g is None:
            g = cache[1][(group, extra)] = h5[group] if extra is None else h5[group][extra]
        return g

    def read(self, row: int, frames: Iterable[int] | None = None, min_size: int | None = None) -> np.ndarray:
        """Frames of video ``row`` (all, or the given indices, repeats and any order allowed).

        ``min_size``: JPEG frames may be decoded at 1/2, 1/4 or 1/8 of their stored size in the DCT domain, the
        largest reduction that keeps the short side at least ``min_size`` (faster; see :meth:`jpeg_scale`).
        Raw frames, and ``None``, give the stored size.
        """
        ds = self._clip_dataset(row)
        return self._read_checked(ds, frames, row, min_size)

    def _clip_dataset(self, row: int) -> h5py.Dataset:
        ds = self._dataset("data", row)
        if not _is_jpeg(ds) and (ds.ndim != 4 or (self.kind == "clips" and ds.dtype != np.uint8)):
            raise StoreError(f"video {self.meta['key'][row]} in {self.path} is a {ds.dtype} array of shape "
                             f"{ds.shape}; a {self.kind} store holds {'uint8 ' if self.kind == 'clips' else ''}"
                             "(T, H, W, C) arrays", f"re-create the store; vdgtool store verify {self.path} "
                                                    "lists every such video")
        return ds

    def jpeg_scale(self, row: int, min_size: int | None) -> int:
        """The DCT-domain reduction (1, 2, 4 or 8) :meth:`read` applies to video ``row`` for ``min_size``."""
        if not min_size or self.encoding != "jpeg":
            return 1
        return choose_scale(int(self.meta["height"][row]), int(self.meta["width"][row]), min_size)

    def read_jpeg(self, row: int, frames: Iterable[int]) -> list[np.ndarray]:
        """The stored JPEG files of the given frames of video ``row`` (repeats and any order allowed), undecoded:
        for decoding elsewhere, e.g. a batch on the GPU (nvJPEG)."""
        ds = self._clip_dataset(row)
        if not _is_jpeg(ds):
            raise StoreError(f"video {self.meta['key'][row]} in {self.path} is not stored as JPEG",
                             "decode raw stores on the CPU (--decode cpu)")
        try:
            idx = self._check_index(ds, frames)
            uniq, inv = np.unique(idx, return_inverse=True)
            bufs = _read_rows(ds, uniq) if idx.size else []
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise self._unreadable(row, exc) from None
        return [bufs[int(k)] for k in inv]

    def _read_checked(self, ds, frames, row, min_size=None):
        try:
            return self._read_ds(ds, frames, self.jpeg_scale(row, min_size))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise self._unreadable(row, exc) from None

    def _unreadable(self, row, exc) -> StoreError:
        key = self.meta["key"][row] if 0 <= int(row) < len(self) else row
        return StoreError(f"video {key} (row {row}) in {self.path} cannot be read "
                          f"({exc.__class__.__name__}: {' '.join(str(exc).split())[:120]})",
                          f"the store is damaged; run vdgtool store verify {self.path} and re-create it")

    def read_extra(self, name: str, row: int, frames: Iterable[int] | None = None) -> np.ndarray:
        if name not in self.extras:
            raise StoreError(f"{self.path} has no '{name}' arrays (it has: {', '.join(self.extras) or 'none'})",
                             "re-create the store with the option that saves them")
        return self._read_checked(self._dataset("extras", row, name), frames, row)

    def _check_index(self, ds: h5py.Dataset, frames) -> np.ndarray:
        idx = np.asarray(list(frames), dtype=np.int64).reshape(-1)
        n = ds.shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise StoreError(f"frame index out of range 0..{n - 1} in {self.path}", "this is a sampler bug")
        return idx

    def _read_ds(self, ds: h5py.Dataset, frames, scale: int = 1) -> np.ndarray:
        jpeg = _is_jpeg(ds)
        if frames is None:
            if jpeg:
                if not ds.shape[0]:
                    return np.zeros(tuple(ds.attrs["shape"]), np.uint8)
                return decode_jpegs(ds[()], scale)
            return ds[()]
        idx = self._check_index(ds, frames)
        if idx.size == 0:
            shape = tuple(ds.attrs["shape"])[1:] if jpeg else ds.shape[1:]
            return np.zeros((0,) + tuple(int(v) for v in shape), np.uint8 if jpeg else ds.dtype)
        uniq, inv = np.unique(idx, return_inverse=True)
        # one HDF5 read for the sampled frames; JPEG: each sampled frame decoded once, straight into the output
        dec = decode_jpegs(_read_rows(ds, uniq), scale) if jpeg else _read_rows(ds, uniq)
        return dec if len(uniq) == len(idx) and not np.any(np.diff(idx) < 0) else dec[inv]
