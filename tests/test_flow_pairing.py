"""Pairing clips with their flow by video key when several stores name their videos alike."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from vdgtool.errors import StoreError
from vdgtool.models import InputSpec
from vdgtool.stores import VideoStoreWriter

SPECS = {"rgb": InputSpec(4, 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
         "flow": InputSpec(4, 16, (0.5, 0.5), (0.5, 0.5), modality="flow")}


def _clips(path, domain, seed):
    """Two videos named v0, v1 (the same names in every store, as two domains extracted with one layout)."""
    rng = np.random.default_rng(seed)
    with VideoStoreWriter(str(path), classes=["a", "b"], domains=[domain], encoding="raw") as w:
        for k in range(2):
            w.add_video(f"v{k}", rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8), index=k, label=k,
                        domain=domain, fps=8)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from vdgtool.flow.backends import get_backend
    from vdgtool.flow.pipeline import compute_flow_store

    d = tmp_path_factory.mktemp("pairing")
    out = {}
    for name, seed in (("real", 0), ("animated", 1)):
        out[name] = _clips(d / f"{name}.h5", name, seed)
        out[f"{name}_flow"] = str(d / f"{name}_flow.h5")
        compute_flow_store(out[name], out[f"{name}_flow"], get_backend("farneback"))  # records its parent
    out["dir"] = d
    return out


def _flow_paths(ds):
    return [ds.flow_stores[int(fi)].path for fi in ds.flow_index[:, 0]]


def test_each_store_pairs_with_the_flow_computed_from_it(stores):
    from vdgtool.data import build_for_inputs

    s = stores
    # both stores in one dataset (--data a --data b --flow ...), the flow stores in either order
    for flows in ([s["real_flow"], s["animated_flow"]], [s["animated_flow"], s["real_flow"]]):
        ds = build_for_inputs([s["real"], s["animated"]], SPECS, False, flow_stores=flows)
        assert _flow_paths(ds) == [s["real_flow"]] * 2 + [s["animated_flow"]] * 2
    # one store against every flow store (how the engine builds each --val with all --val-flow stores)
    ds = build_for_inputs([s["animated"]], SPECS, False, flow_stores=[s["real_flow"], s["animated_flow"]])
    assert _flow_paths(ds) == [s["animated_flow"]] * 2
    item = ds[1]
    assert item["key"] == "v1" and item["flow"].shape[0] == 2


def test_moved_stores_pair_by_file_name_and_unclaimed_names_are_refused(stores, tmp_path, monkeypatch):
    from vdgtool.data import build_for_inputs

    s = stores
    for n in ("real", "real_flow", "animated", "animated_flow"):
        shutil.copy(s[n], tmp_path / f"{n}.h5")  # the recorded parents now point elsewhere
    moved = {n: str(tmp_path / f"{n}.h5") for n in ("real", "real_flow", "animated", "animated_flow")}
    ds = build_for_inputs([moved["animated"]], SPECS, False, flow_stores=[moved["real_flow"], moved["animated_flow"]])
    assert _flow_paths(ds) == [moved["animated_flow"]] * 2
    # a third store with the same video names: neither flow store was computed from it
    other = _clips(tmp_path / "other.h5", "other", 2)
    with pytest.raises(StoreError, match="none of them records"):
        build_for_inputs([other], SPECS, False, flow_stores=[moved["real_flow"], moved["animated_flow"]])
    # ... and the flow of another clip store given alone pairs by name, with a warning naming both
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("vdgtool.data")
    monkeypatch.setattr(logger, "level", logging.WARNING)
    logger.addHandler(handler)
    try:
        build_for_inputs([other], SPECS, False, flow_stores=[moved["real_flow"]])
        build_for_inputs([moved["real"]], SPECS, False, flow_stores=[moved["real_flow"]])  # its own: silent
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and "paired by name only" in records[0].getMessage()
    assert "other.h5" in records[0].getMessage()
