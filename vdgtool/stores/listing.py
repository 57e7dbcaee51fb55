"""`vdgtool store ls`: one row per video (or table row) of a store, and its table of bad inputs."""

from __future__ import annotations

from vdgtool.stores.base import open_store


def _name(names: list[str], i: int, none: str = "") -> str:
    return names[i] if 0 <= int(i) < len(names) else none


def list_store(path: str) -> dict:
    """``{"path", "kind", "rows": [...], "errors": [...]}``.

    Clip / flow stores: per video key, class, domain, frames, fps, size (WxH), decoder and source file.
    Feature / prediction stores: per row key, class, domain, video (row in the parent store) and clip.
    ``errors``: the inputs that could not be used (key, source, reason), as the writer recorded them.
    """
    from vdgtool.stores.video import VideoStore

    st = open_store(path)
    try:
        m = st.meta
        n = len(st)
        if isinstance(st, VideoStore):
            rows = [{"key": str(m["key"][i]), "class": _name(st.classes, m["label"][i], "(unlabelled)"),
                     "domain": _name(st.domains, m["domain"][i]), "frames": int(m["num_frames"][i]),
                     "fps": round(float(m["fps"][i]), 3), "size": f"{int(m['width'][i])}x{int(m['height'][i])}",
                     "decoder": str(m["decoder"][i]), "source": str(m["source"][i])} for i in range(n)]
            e = st.errors or {}
            errors = [{"key": str(e["key"][i]), "source": str(e["source"][i]), "reason": str(e["reason"][i])}
                      for i in range(len(e.get("key", [])))]
        else:
            rows = [{"key": str(m["key"][i]), "class": _name(st.classes, m["label"][i], "(unlabelled)"),
                     "domain": _name(st.domains, m["domain"][i]), "video": int(m["video"][i]),
                     "clip": int(m["clip"][i])} for i in range(n)]
            errors = []
        return {"path": path, "kind": st.kind, "rows": rows, "errors": errors}
    finally:
        st.close()
