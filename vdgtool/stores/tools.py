"""Store utilities behind ``vdgtool store info|verify|merge``."""

from __future__ import annotations

import os

import numpy as np

from vdgtool.errors import InputError, StoreError, VdgError
from vdgtool.stores import schema as S
from vdgtool.stores.base import open_store
from vdgtool.stores.checksum import check as check_crc
from vdgtool.stores.video import VideoStore, merge_video_segments


def info(path: str) -> dict:
    st = open_store(path)
    d = {"path": path, "kind": st.kind, "schema": st.schema, "size_mb": round(os.path.getsize(path) / 2**20, 3),
         "classes": st.classes, "domains": st.domains, "conventions": st.conventions,
         "provenance": st.provenance}
    if isinstance(st, VideoStore):
        m = st.meta
        d.update({"videos": len(st), "frames": int(np.sum(m["num_frames"])) if len(st) else 0,
                  "bad_inputs": len(st.errors.get("key", [])),
                  "frames_per_video": _stats(m["num_frames"]), "extras": st.extras})
        d["per_class"] = {c: int(np.sum(m["label"] == i)) for i, c in enumerate(st.classes)}
        d["per_domain"] = {dn: int(np.sum(m["domain"] == i)) for i, dn in enumerate(st.domains)}
        dec, cnt = np.unique(m["decoder"], return_counts=True) if len(st) else ([], [])
        d["decoders"] = {str(k): int(v) for k, v in zip(dec, cnt)}
    else:
        d.update({"rows": len(st), "arrays": {k: list(v) for k, v in st.shapes.items()}})
    st.close()
    return d


def _stats(a) -> dict:
    if len(a) == 0:
        return {}
    return {"min": int(np.min(a)), "mean": round(float(np.mean(a)), 2), "max": int(np.max(a))}


def verify(path: str, decode: bool = True) -> dict:
    """Check integrity: structure, metadata, conventions and (unless ``decode=False``) every array's checksum.

    Never raises for a damaged store: every finding goes into ``problems`` (``ok`` is False).
    """
    try:
        st = open_store(path)
    except VdgError as exc:
        return {"path": path, "kind": None, "checked": 0, "ok": False, "problems": [exc.cause], "checksums": 0}
    try:
        with st:
            problems, checked, crcs = (_verify_video if isinstance(st, VideoStore) else _verify_table)(st, decode)
    except (VdgError, OSError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        problems, checked, crcs = [f"unreadable structure ({getattr(exc, 'cause', None) or exc})"], 0, 0
    return {"path": path, "kind": st.kind, "checked": checked, "ok": not problems, "problems": problems,
            "checksums": crcs}


def _size_problem(conv_size, h: int, w: int) -> str:
    """'' when a frame of h x w agrees with a recorded ``size`` convention (short side or [W, H])."""
    if isinstance(conv_size, bool) or conv_size in (None, "source", 0):
        return ""
    if isinstance(conv_size, (int, float)):
        return "" if min(h, w) == int(conv_size) else f"short side {min(h, w)}, conventions size {conv_size}"
    if isinstance(conv_size, (list, tuple)) and len(conv_size) == 2:
        return "" if (w, h) == tuple(int(v) for v in conv_size) else f"{w}x{h}, conventions size " \
                                                                       f"{conv_size[0]}x{conv_size[1]}"
    return ""


def _meta_checks(st, n: int) -> tuple[list[str], int]:
    """Shared metadata checks of both store families; returns (problems, checksums found)."""
    problems, crcs = [], 0
    keys = st.meta["key"]
    if len(set(keys.tolist())) != n:
        problems.append("duplicate video keys" if isinstance(st, VideoStore) else "")
        problems = [p for p in problems if p]
    for col, names in (("label", st.classes), ("domain", st.domains)):
        v = np.asarray(st.meta[col])
        if len(v) and (v.min() < -1 or v.max() >= len(names)):
            problems.append(f"{col}s outside the {len(names)} {'classes' if col == 'label' else 'domains'}")
    for group in ("meta", "errors"):
        if group not in st.h5:
            continue
        for col, ds in st.h5[group].items():
            ok = check_crc(ds)
            crcs += ok is not None
            if ok is False:
                problems.append(f"/{group}/{col}: checksum mismatch (metadata damaged)")
    return problems, crcs


def _verify_video(st: VideoStore, decode: bool) -> tuple[list[str], int, int]:
    import h5py

    conv, meta, n = st.conventions, st.meta, len(st)
    problems, crcs = _meta_checks(st, n)
    if "data" not in st.h5:
        return problems + ["no /data group"], 0, crcs
    data = st.h5["data"]
    names = set(data.keys())
    wanted = {f"{row:08d}" for row in range(n)}
    if names != wanted:
        problems.append(f"{len(names)} arrays under /data but {n} rows of metadata"
                        + (f" (unexpected: {sorted(names - wanted)[0]})" if names - wanted else ""))
    idx = np.asarray(meta["index"])
    if len(idx) and (len(np.unique(idx)) != n or np.any(np.diff(idx) < 0)):
        problems.append("manifest indices are not unique and ascending (rows must be in manifest order)")
    if "errors" not in st.h5:
        problems.append("no /errors group (every writer records its skipped inputs there)")
    else:
        lost = [c for c in S.ERROR_META if c not in st.errors]
        if lost:
            problems.append(f"/errors lacks the column(s) {', '.join(lost)}")
        lens = {c: len(v) for c, v in st.errors.items()}
        if len(set(lens.values())) > 1:
            problems.append(f"/errors columns have different lengths {lens}")
    flow = st.kind == "flow"
    channels = 2 if flow else 3
    want_dtype = np.dtype(conv.get("dtype", "uint8")) if flow and conv.get("dtype") in ("uint8", "float16") else (
        None if flow else np.dtype("uint8"))
    size_conv = conv.get("parent_size") if flow else conv.get("size")
    jpeg_store = not flow and conv.get("encoding") == "jpeg"
    for row in range(n):
        name, key = f"{row:08d}", meta["key"][row]
        where = f"video {key} (row {row})"
        if name not in names:
            problems.append(f"{where} has no frame array")
            continue
        ds = data[name]
        if not isinstance(ds, h5py.Dataset):
            problems.append(f"{where}: /data/{name} is not an array")
            continue
        jpeg = ds.dtype == object or h5py.check_vlen_dtype(ds.dtype) is not None
        shape = tuple(int(v) for v in ds.attrs.get("shape", ())) if jpeg else tuple(ds.shape)
        if jpeg and (len(shape) != 4 or shape[0] != ds.shape[0]):
            problems.append(f"{where}: JPEG frames without a valid (T, H, W, C) shape attribute")
            continue
        if len(shape) != 4:
            problems.append(f"{where}: array of rank {len(shape)} {shape}, expected (T, H, W, C)")
            continue
        if not flow and jpeg != jpeg_store:
            problems.append(f"{where}: {'JPEG' if jpeg else 'raw'} frames in a store whose encoding is "
                            f"{conv.get('encoding')}")
        if not jpeg and want_dtype is not None and ds.dtype != want_dtype:
            problems.append(f"{where}: {ds.dtype} frames, the conventions say {want_dtype}")
        if shape[3] != channels:
            problems.append(f"{where}: {shape[3]} channels, a {st.kind} store holds {channels}")
        t, h, w = shape[:3]
        if t != meta["num_frames"][row]:
            problems.append(f"{where}: {t} frames stored, {meta['num_frames'][row]} recorded")
            continue
        if (h, w) != (meta["height"][row], meta["width"][row]):
            problems.append(f"{where}: frame size {h}x{w} differs from the metadata "
                            f"{meta['height'][row]}x{meta['width'][row]}")
        why = _size_problem(size_conv, h, w)
        if why:
            problems.append(f"{where}: {why}")
        if not flow and conv.get("max_frames") and t > int(conv["max_frames"]):
            problems.append(f"{where}: {t} frames, above the recorded max_frames {conv['max_frames']}")
        if not flow and isinstance(conv.get("frames"), int) and t != conv["frames"]:
            problems.append(f"{where}: {t} frames, the conventions say {conv['frames']} per video")
        if t == 0:
            problems.append(f"{where}: no frames")
        if not decode:
            continue
        try:
            ok = check_crc(ds)
            crcs += ok is not None
            if ok is False:
                problems.append(f"{where}: checksum mismatch (the stored frames are damaged)")
            if jpeg:
                fr = st.read(row)
                if fr.shape != shape:
                    problems.append(f"{where}: decoded frames {fr.shape} differ from the recorded {shape}")
            for ex in st.extras:
                eds = st.h5["extras"][ex].get(name)
                if eds is not None:
                    ok = check_crc(eds)
                    crcs += ok is not None
                    if ok is False:
                        problems.append(f"{where}: extras/{ex} checksum mismatch (damaged)")
        except Exception as exc:  # noqa: BLE001 - any failure to read is a finding, not a crash
            problems.append(f"{where}: unreadable ({getattr(exc, 'cause', None) or exc})")
    return problems, n, crcs


def _verify_table(st, decode: bool) -> tuple[list[str], int, int]:
    n = len(st)
    problems, crcs = _meta_checks(st, n)
    for name in st.array_names:
        if st.shapes[name][0] != n:
            problems.append(f"array {name} has {st.shapes[name][0]} rows, metadata has {n}")
            continue
        if not decode:
            continue
        ds = st.h5["arrays"][name]
        ok = check_crc(ds)
        crcs += ok is not None
        if ok is False:
            problems.append(f"array {name}: checksum mismatch (damaged)")
            continue
        arr = ds[()]
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            problems.append(f"array {name} holds NaN or inf values")
    return problems, n, crcs


def merge(shards: list[str], out: str, overwrite: bool = False, allow_partial: bool = False) -> dict:
    """Merge shard stores written with --num-shards into one store; refuse missing/duplicate shards.

    ``allow_partial`` skips only the check that every shard index is present.
    """
    import h5py

    from vdgtool.stores.base import read_json_attr, refuse_output_in_inputs, write_json_attr
    from vdgtool.stores.lock import OutputLock
    from vdgtool.stores.video import check_output_path, ensure_room, output_errors
    from vdgtool.utils.provenance import make_provenance

    if not shards:
        raise InputError("no shard stores given", "pass the shard files, e.g. out.*.h5")
    seen = set()
    for s in shards:
        rp = os.path.realpath(s)
        if rp in seen:
            raise StoreError(f"shard {s} is given twice", "pass each shard once")
        seen.add(rp)
    refuse_output_in_inputs(out, shards)
    stores = [open_store(s) for s in shards]
    for st in stores:
        st.close()
    kinds = {st.kind for st in stores}
    if len(kinds) != 1 or not kinds <= set(S.VIDEO_KINDS):
        raise StoreError(f"cannot merge stores of kinds {sorted(kinds)}", "merge clip or flow stores of one kind")
    counts = {st.conventions.get("num_shards") for st in stores}
    idx = [st.conventions.get("shard_index") for st in stores]
    if len(counts) > 1:
        raise StoreError(f"the shards come from different splits (--num-shards {sorted(counts, key=str)})",
                         "merge shards of one run, all written with the same --num-shards")
    if None not in counts and None not in idx:
        total = counts.pop()
        if len(set(map(str, idx))) != len(idx):
            dup = sorted({i for i in idx if idx.count(i) > 1}, key=str)
            raise StoreError(f"shard index {dup} appears more than once", "pass each shard once")
        missing = sorted(set(range(int(total))) - set(idx)) if isinstance(total, int) else []
        if missing and not allow_partial:
            raise StoreError(f"shard(s) {missing} of {total} are missing",
                             "wait for / re-run those shards, or pass --allow-partial")
    check_output_path(out)
    if os.path.exists(out) and not overwrite:
        raise InputError(f"{out} already exists", "pass --overwrite or choose another -o")
    tmp = out + ".partial"
    with OutputLock(out), output_errors(out):
        ensure_room(out, sum(os.path.getsize(p) for p in shards))
        try:
            res = merge_video_segments(list(shards), tmp, check_complete=True,
                                       provenance=make_provenance(parents=shards),
                                       ignore_conventions=("num_shards", "shard_index"))
            with h5py.File(tmp, "a") as f:
                conv = read_json_attr(f, S.ATTR_CONVENTIONS, {})
                conv.pop("shard_index", None)
                if allow_partial:
                    conv.pop("num_shards", None)
                    conv["partial_merge"] = True
                else:
                    conv["merged_shards"] = conv.pop("num_shards", len(shards))
                write_json_attr(f, S.ATTR_CONVENTIONS, conv)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    res.update({"store": out, "shards": len(shards)})
    return res


def allow_partial_merge(shards, out, overwrite=False) -> dict:
    """Merge whatever shards are given (no completeness check on shard indices); see :func:`merge`."""
    return merge(shards, out, overwrite=overwrite, allow_partial=True)
