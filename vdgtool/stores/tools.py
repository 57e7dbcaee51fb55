"""Store utilities behind ``vdgtool store info|verify|merge``."""

from __future__ import annotations

import os

import numpy as np

from vdgtool.errors import InputError, StoreError
from vdgtool.stores import schema as S
from vdgtool.stores.base import open_store
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
    """Check integrity: every video's array is present and readable, counts consistent."""
    st = open_store(path)
    problems = []
    if isinstance(st, VideoStore):
        data = st.h5["data"]
        n = len(st)
        names = set(data.keys())
        if len(names) != n:
            problems.append(f"{len(names)} arrays under /data but {n} rows of metadata")
        keys = st.meta["key"]
        if len(set(keys.tolist())) != n:
            problems.append("duplicate video keys")
        for c in S.VIDEO_META:
            if c in st.meta and len(st.meta[c]) != n:
                problems.append(f"meta column {c} has {len(st.meta[c])} rows, expected {n}")
        labels = st.meta["label"]
        if len(labels) and (labels.max() >= len(st.classes) or labels.min() < -1):
            problems.append("labels outside the class list")
        for row in range(n):
            name = f"{row:08d}"
            if name not in names:
                problems.append(f"video {keys[row]} (row {row}) has no frame array")
                continue
            ds = data[name]
            if ds.shape[0] != st.meta["num_frames"][row]:
                problems.append(f"video {keys[row]}: {ds.shape[0]} frames stored, {st.meta['num_frames'][row]} recorded")
                continue
            if decode:
                try:
                    fr = st.read(row)
                    if fr.shape[1:3] != (st.meta["height"][row], st.meta["width"][row]):
                        problems.append(f"video {keys[row]}: frame size {fr.shape[1:3]} differs from the metadata")
                except Exception as exc:  # any failure to read is a finding, not a crash
                    problems.append(f"video {keys[row]}: unreadable ({exc})")
        checked = n
    else:
        n = len(st)
        for name in st.array_names:
            if st.shapes[name][0] != n:
                problems.append(f"array {name} has {st.shapes[name][0]} rows, metadata has {n}")
            else:
                arr = st.array(name)
                if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                    problems.append(f"array {name} holds NaN or inf values")
        checked = n
    st.close()
    return {"path": path, "kind": st.kind, "checked": checked, "ok": not problems, "problems": problems}


def merge(shards: list[str], out: str, overwrite: bool = False) -> dict:
    """Merge shard stores written with --num-shards into one store; refuse missing/duplicate shards."""
    from vdgtool.utils.provenance import make_provenance

    if not shards:
        raise InputError("no shard stores given", "pass the shard files, e.g. out.*.h5")
    seen = set()
    for s in shards:
        rp = os.path.realpath(s)
        if rp in seen:
            raise StoreError(f"shard {s} is given twice", "pass each shard once")
        seen.add(rp)
    stores = [open_store(s) for s in shards]
    kinds = {st.kind for st in stores}
    if len(kinds) != 1 or not kinds <= set(S.VIDEO_KINDS):
        raise StoreError(f"cannot merge stores of kinds {sorted(kinds)}", "merge clip or flow stores of one kind")
    counts = {st.conventions.get("num_shards") for st in stores}
    idx = [st.conventions.get("shard_index") for st in stores]
    if len(counts) > 1:
        for st in stores:
            st.close()
        raise StoreError(f"the shards come from different splits (--num-shards {sorted(counts, key=str)})",
                         "merge shards of one run, all written with the same --num-shards")
    if None not in counts and None not in idx:
        total = counts.pop()
        if len(set(idx)) != len(idx):
            dup = sorted({i for i in idx if idx.count(i) > 1})
            raise StoreError(f"shard index {dup} appears more than once", "pass each shard once")
        missing = sorted(set(range(total)) - set(idx))
        if missing:
            raise StoreError(f"shard(s) {missing} of {total} are missing",
                             "wait for / re-run those shards, or pass --allow-partial")
    for st in stores:
        st.close()
    if os.path.exists(out) and not overwrite:
        raise InputError(f"{out} already exists", "pass --overwrite or choose another -o")
    if os.path.realpath(out) in seen:
        raise InputError(f"the output {out} is also one of the shards", "choose another -o")
    tmp = out + ".partial"
    prov = make_provenance(parents=shards)
    res = merge_video_segments(list(shards), tmp, check_complete=True, provenance=prov,
                               ignore_conventions=("num_shards", "shard_index"))
    import h5py

    from vdgtool.stores.base import read_json_attr, write_json_attr

    with h5py.File(tmp, "a") as f:
        conv = read_json_attr(f, S.ATTR_CONVENTIONS, {})
        conv.pop("shard_index", None)
        conv["merged_shards"] = conv.pop("num_shards", len(shards))
        write_json_attr(f, S.ATTR_CONVENTIONS, conv)
    os.replace(tmp, out)
    res.update({"store": out, "shards": len(shards)})
    return res


def allow_partial_merge(shards, out, overwrite=False) -> dict:
    """Merge whatever shards are given (no completeness check on shard indices)."""
    import h5py

    from vdgtool.stores.base import read_json_attr, write_json_attr
    from vdgtool.utils.provenance import make_provenance

    if os.path.exists(out) and not overwrite:
        raise InputError(f"{out} already exists", "pass --overwrite or choose another -o")
    tmp = out + ".partial"
    res = merge_video_segments(list(shards), tmp, check_complete=True, provenance=make_provenance(parents=shards),
                               ignore_conventions=("num_shards", "shard_index"))
    with h5py.File(tmp, "a") as f:
        conv = read_json_attr(f, S.ATTR_CONVENTIONS, {})
        conv.pop("shard_index", None)
        conv.pop("num_shards", None)
        conv["partial_merge"] = True
        write_json_attr(f, S.ATTR_CONVENTIONS, conv)
    os.replace(tmp, out)
    res.update({"store": out, "shards": len(shards)})
    return res
