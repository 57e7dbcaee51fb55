"""Stores: round trips, refusals, lazy handles, merge, atomic writing."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest
from conftest import assert_same_store

from vdgtool.errors import ConventionMismatch, InputError, StoreError
from vdgtool.stores import TableStore, TableStoreWriter, VideoStore, VideoStoreWriter, open_store, store_kind
from vdgtool.stores import schema as S
from vdgtool.stores import tools


def _videos(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (3 + i, 16, 20, 3), dtype=np.uint8) for i in range(n)]


def _write(path, videos, encoding="raw", conventions=None, **kw):
    with VideoStoreWriter(str(path), classes=["a", "b"], encoding=encoding, conventions=conventions or {"size": 16},
                          provenance={"seed": 3}, **kw) as w:
        for i, v in enumerate(videos):
            w.add_video(f"k{i}", v, index=i, label=i % 2, domain="real" if i < 2 else "animated", fps=5.0,
                        source=f"/x/{i}.mp4", decoder="decord")
    return str(path)


def test_raw_round_trip_is_exact(tmp_path):
    vids = _videos()
    p = _write(tmp_path / "s.h5", vids)
    assert not os.path.exists(p + ".partial") and not os.path.exists(p + ".partial.d")
    st = VideoStore(p)
    assert len(st) == 4 and st.classes == ["a", "b"] and st.domains == ["real", "animated"]
    assert st.meta["key"].tolist() == ["k0", "k1", "k2", "k3"]
    assert st.labels.tolist() == [0, 1, 0, 1] and st.meta["domain"].tolist() == [0, 0, 1, 1]
    assert st.num_frames.tolist() == [3, 4, 5, 6]
    assert st.provenance == {"seed": 3} and st.conventions["encoding"] == "raw"
    for i, v in enumerate(vids):
        np.testing.assert_array_equal(st.read(i), v)
    # any order, repeats, sparse picks
    np.testing.assert_array_equal(st.read(3, [5, 0, 0, 2]), vids[3][[5, 0, 0, 2]])
    np.testing.assert_array_equal(st.read(3, [0, 5]), vids[3][[0, 5]])
    assert st.read(3, []).shape == (0, 16, 20, 3)
    with pytest.raises(StoreError, match="out of range"):
        st.read(0, [3])
    assert st.row_of("k2") == 2
    assert st.class_names_of(st.labels) == ["a", "b", "a", "b"]


def test_jpeg_round_trip_psnr(toy):
    from vdgtool.video.decode import decode

    frames, _ = decode(str(toy / "real/move_up/move_up_000.mp4"))  # textured, photo-like
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "j.h5")
        with VideoStoreWriter(p, encoding="jpeg", jpeg_quality=90) as w:
            w.add_video("v", frames, index=0)
        st = VideoStore(p)
        assert st.conventions["jpeg_quality"] == 90
        back = st.read(0)
        assert back.shape == frames.shape and back.dtype == np.uint8
        mse = np.mean((back.astype(np.float64) - frames) ** 2)
        psnr = 10 * np.log10(255.0 ** 2 / mse)
        assert 30.0 < psnr < 60.0  # lossy, but close
        np.testing.assert_array_equal(st.read(0, [2, 1]), back[[2, 1]])
        with h5py.File(p) as f:
            assert f["data/00000000"].dtype.kind == "O"  # stored as JPEG byte strings
        st.close()


def test_grey_and_flow_arrays(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    flow = np.random.default_rng(2).standard_normal((3, 8, 8, 2)).astype(np.float16)
    p = str(tmp_path / "f.h5")
    with VideoStoreWriter(p, kind="flow", encoding="jpeg", conventions={"flow_bound": 20}) as w:
        w.add_video("g", grey, index=0, extras={"depth": np.ones((4, 8, 8), np.float16)})
        w.add_video("f", flow, index=1)
    st = VideoStore(p)
    assert st.kind == "flow" and st.extras == ["depth"]
    assert st.read(0).shape == (4, 8, 8, 1)
    np.testing.assert_array_equal(st.read(1), flow)  # non-uint8 arrays are always stored raw
    assert st.read_extra("depth", 0).shape == (4, 8, 8)
    with pytest.raises(StoreError, match="no 'camera' arrays"):
        st.read_extra("camera", 0)
    with pytest.raises(StoreError):
        VideoStoreWriter(str(tmp_path / "x.h5")).add_video("bad", np.zeros((3, 4, 4)), index=0)


def _set_attr(p, name, value):
    with h5py.File(p, "a") as f:
        f.attrs[name] = value


def test_refusals(tmp_path):
    p = _write(tmp_path / "s.h5", _videos(2))
    with pytest.raises(StoreError, match="clips store, but a features or predictions store"):
        TableStore(p)
    with pytest.raises(StoreError, match="flow store is needed"):
        open_store(p, "flow")
    newer = tmp_path / "newer.h5"
    newer.write_bytes(open(p, "rb").read())
    _set_attr(newer, S.ATTR_SCHEMA, "2.0")
    with pytest.raises(StoreError, match="schema 2.0, newer") as e:
        VideoStore(str(newer))
    assert "upgrade vdgtool" in str(e.value)
    _set_attr(newer, S.ATTR_SCHEMA, "1.7")  # a newer minor version is read
    assert len(VideoStore(str(newer))) == 2
    _set_attr(newer, S.ATTR_COMPLETE, False)
    with pytest.raises(StoreError, match="incomplete"):
        VideoStore(str(newer))
    _set_attr(newer, S.ATTR_COMPLETE, True)
    _set_attr(newer, S.ATTR_KIND, "meshes")
    with pytest.raises(StoreError, match="unknown kind 'meshes'"):
        store_kind(str(newer))
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a vdgtool store"):
        open_store(str(plain))
    txt = tmp_path / "t.h5"
    txt.write_text("hello")
    with pytest.raises(StoreError, match="cannot open"):
        open_store(str(txt))
    with pytest.raises(InputError, match="does not exist"):
        open_store(str(tmp_path / "nope.h5"))
    with pytest.raises(InputError, match="already exists"):
        VideoStoreWriter(p)


def test_conventions_mismatch_names_both_values(tmp_path):
    st = VideoStore(_write(tmp_path / "s.h5", _videos(1), conventions={"size": 16, "fps": None}))
    st.require_conventions(size=16, fps=25)  # fps not recorded: nothing to disagree with
    with pytest.raises(ConventionMismatch, match=r"size=16 but 112 is expected"):
        st.require_conventions(size=112)


def test_lazy_handle_and_pickling(tmp_path):
    vids = _videos(2)
    st = VideoStore(_write(tmp_path / "s.h5", vids))
    assert st._h5 is None  # nothing open after __init__ (safe to hand to DataLoader workers)
    np.testing.assert_array_equal(st.read(1), vids[1])
    assert st._h5 is not None
    clone = pickle.loads(pickle.dumps(st))
    assert clone._h5 is None
    np.testing.assert_array_equal(clone.read(0), vids[0])
    first = st._h5
    st._pid = -1  # as seen from a forked worker: the parent's handle must not be reused
    st.read(0)
    assert st._h5 is not first
    st.close()
    clone.close()


def test_table_store_round_trip_and_checks(tmp_path):
    p = str(tmp_path / "feat.h5")
    feats = np.random.default_rng(0).standard_normal((10, 512)).astype(np.float32)
    with TableStoreWriter(p, "features", classes=["a", "b"], conventions={"model": "tiny"}) as w:
        w.append({"features": feats[:6]}, key=[f"v{i}" for i in range(6)], label=[0, 1] * 3)
        w.append({"features": feats[6:]}, key=[f"v{i}" for i in range(6, 10)], label=[1] * 4)
        with pytest.raises(StoreError, match="differ from the earlier"):
            w.append({"logits": feats[:1]})
        with pytest.raises(StoreError, match="has 2 values for 1 rows"):
            w.append({"features": feats[:1]}, label=[0, 1])
    st = open_store(p)
    assert isinstance(st, TableStore) and len(st) == 10 and st.kind == "features"
    np.testing.assert_array_equal(st.array("features"), feats)
    np.testing.assert_array_equal(st.array("features", [7, 2, 2]), feats[[7, 2, 2]])
    assert st.meta["label"].tolist() == [0, 1, 0, 1, 0, 1, 1, 1, 1, 1]
    assert st.meta["clip"].tolist() == [-1] * 10
    with h5py.File(p) as f:
        assert f["arrays/features"].chunks[0] >= 256  # about 1 MiB chunks, not one row each
    with pytest.raises(StoreError, match="no 'logits' array"):
        st.array("logits")
    with pytest.raises(StoreError, match="clips"):
        VideoStore(p)
    st.close()


def test_table_writer_failure_leaves_nothing(tmp_path):
    p = str(tmp_path / "pred.h5")
    with pytest.raises(RuntimeError):
        with TableStoreWriter(p, "predictions") as w:
            w.append({"logits": np.zeros((2, 3), np.float32)})
            raise RuntimeError("crash")
    assert not os.path.exists(p) and not os.path.exists(p + ".partial")


def test_writer_error_in_block_leaves_no_store_but_keeps_rows_for_resume(tmp_path):
    vids = _videos(4)
    p = str(tmp_path / "s.h5")
    with pytest.raises(KeyboardInterrupt):
        with VideoStoreWriter(p, classes=["a", "b"], encoding="raw", conventions={"size": 16},
                              provenance={"seed": 3}) as w:
            for i, v in enumerate(vids[:2]):
                w.add_video(f"k{i}", v, index=i, label=i % 2, domain="real", fps=5.0, source=f"/x/{i}.mp4",
                            decoder="decord")
            raise KeyboardInterrupt
    assert not os.path.exists(p)
    with pytest.raises(InputError, match="--resume"):
        VideoStoreWriter(p)
    with pytest.raises(InputError, match="does not exist.*--resume"):
        VideoStore(p)
    w = VideoStoreWriter(p, classes=["a", "b"], encoding="raw", conventions={"size": 16}, resume=True)
    assert w.done_keys == {"k0", "k1"}
    w.abort()  # a writer holds its output's lock until it commits or aborts
    with pytest.raises(InputError, match="different settings.*size=16 vs 32"):
        VideoStoreWriter(p, classes=["a", "b"], encoding="raw", conventions={"size": 32}, resume=True)


# -- merge --------------------------------------------------------------------------------------
def _shards(tmp_path, toy, n=3, **kw):
    from vdgtool.video.extract import extract
    from vdgtool.video.manifest import load_manifest

    man = load_manifest(str(toy / "real"))
    out = []
    for i in range(n):
        p = str(tmp_path / f"part.{i}.h5")
        extract(man, p, encoding="raw", num_shards=n, shard_index=i, **kw)
        out.append(p)
    return man, out


def test_merge_of_three_shards_equals_unsharded_store(tmp_path, toy):
    from vdgtool.video.extract import extract

    man, parts = _shards(tmp_path, toy)
    whole = str(tmp_path / "whole.h5")
    extract(man, whole, encoding="raw")
    merged = str(tmp_path / "merged.h5")
    res = tools.merge(list(reversed(parts)), merged)  # shard order on the command line does not matter
    assert res["videos"] == 12
    assert_same_store(merged, whole)
    st = VideoStore(merged)
    assert st.conventions["merged_shards"] == 3 and "shard_index" not in st.conventions
    assert len(st.provenance["parents"]) == 3
    assert tools.verify(merged)["ok"]

    with pytest.raises(StoreError, match=r"shard\(s\) \[1\] of 3 are missing"):
        tools.merge([parts[0], parts[2]], str(tmp_path / "m2.h5"))
    with pytest.raises(StoreError, match="given twice"):
        tools.merge([parts[0], parts[0], parts[1], parts[2]], str(tmp_path / "m3.h5"))
    copy = tmp_path / "copy_of_0.h5"
    copy.write_bytes(open(parts[0], "rb").read())
    with pytest.raises(StoreError, match=r"shard index \[0\] appears more than once"):
        tools.merge([parts[0], str(copy), parts[1], parts[2]], str(tmp_path / "m4.h5"))
    with pytest.raises(InputError, match="does not exist"):
        tools.merge(parts + [str(tmp_path / "part.9.h5")], str(tmp_path / "m5.h5"))
    with pytest.raises(InputError, match="already exists"):
        tools.merge(parts, merged)
    # --allow-partial merges what is there
    part = tools.allow_partial_merge([parts[0], parts[2]], str(tmp_path / "p.h5"))
    assert part["videos"] == len(VideoStore(parts[0])) + len(VideoStore(parts[2]))
    assert not any(p.endswith(".partial") for p in os.listdir(tmp_path))


def test_merge_refuses_overlap_mixed_splits_and_mismatched_conventions(tmp_path, toy):
    from vdgtool.video.extract import extract
    from vdgtool.video.manifest import load_manifest

    man = load_manifest(str(toy / "real"))
    _, parts = _shards(tmp_path, toy, n=2)
    three = str(tmp_path / "three.h5")
    extract(man, three, encoding="raw", num_shards=3, shard_index=1)
    with pytest.raises(StoreError, match="different splits"):
        tools.merge([parts[0], parts[1], three], str(tmp_path / "m.h5"))
    with pytest.raises(StoreError, match="different splits"):  # --allow-partial skips only the completeness check
        tools.allow_partial_merge([parts[0], parts[1], three], str(tmp_path / "m.h5"))
    small = str(tmp_path / "small.h5")
    extract(man, small, encoding="raw", num_shards=2, shard_index=1, opts=__import__(
        "vdgtool.video.decode", fromlist=["DecodeOptions"]).DecodeOptions(size=16))
    with pytest.raises(StoreError, match="conventions differ.*size=16 vs None"):
        tools.merge([parts[0], small], str(tmp_path / "m.h5"))
    feat = str(tmp_path / "feat.h5")
    with TableStoreWriter(feat, "features") as w:
        w.append({"x": np.zeros((1, 2), np.float32)})
    with pytest.raises(StoreError, match="kinds"):
        tools.merge([feat], str(tmp_path / "m.h5"))
    assert not os.path.exists(tmp_path / "m.h5")


def test_verify_finds_damage(tmp_path):
    p = _write(tmp_path / "s.h5", _videos(3))
    assert tools.verify(p)["ok"]
    with h5py.File(p, "a") as f:
        del f["data/00000001"]
    r = tools.verify(p)
    assert not r["ok"] and any("k1" in x for x in r["problems"])
    jp = _write(tmp_path / "j.h5", _videos(2), encoding="jpeg")
    with h5py.File(jp, "a") as f:
        f["data/00000000"][1] = np.frombuffer(b"not a jpeg", np.uint8)
    r = tools.verify(jp)
    assert not r["ok"] and "checksum" in r["problems"][0] and any("corrupt" in x for x in r["problems"])
    assert tools.verify(jp, decode=False)["ok"]  # structure alone is fine


# --- JPEG frames (stores/jpeg.py): the encoder and the fast reader --------------------------------------------


def _real_frames(shared_data, n=24, size=96):
    from vdgtool.video.decode import DecodeOptions, decode

    frames, _ = decode(str(shared_data / "videos/real/k400__abseiling__abseiling_k400.mp4"),
                       DecodeOptions(size=size, max_frames=n))
    return frames


def _cv2_reader(bufs):
    """The reader before issue 17: one cv2.imdecode per frame, BGR -> RGB."""
    import cv2

    return np.stack([cv2.imdecode(np.asarray(b, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1] for b in bufs])


def test_jpeg_reader_gives_the_pixels_of_the_opencv_reader(tmp_path, shared_data):
    frames = _real_frames(shared_data)
    p = _write(tmp_path / "j.h5", [frames, frames[:5]], encoding="jpeg")
    st = VideoStore(p)
    rng = np.random.default_rng(0)
    for row, n in ((0, 24), (1, 5)):
        idx = [int(i) for i in rng.integers(0, n, 16)]  # random order, repeats
        bufs = st.read_jpeg(row, idx)
        np.testing.assert_array_equal(st.read(row, idx), _cv2_reader(bufs))
        np.testing.assert_array_equal(st.read(row), _cv2_reader(st.read_jpeg(row, range(n))))
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((st.read(0).astype(float) - frames) ** 2))
    assert psnr > 33  # q90 on real frames (37 dB on the benchmark set)
    st.close()


def test_jpeg_encoder_keeps_the_format_and_the_fallback_reads_the_same(tmp_path, shared_data, monkeypatch):
    from vdgtool.stores import jpeg as J

    frames = _real_frames(shared_data, n=4)
    bufs = J.encode_jpeg(frames, 90)
    b = bytes(bufs[0])
    assert b[:2] == b"\xff\xd8" and b"\xff\xc0" in b  # JFIF baseline (SOF0)
    sof = b.index(b"\xff\xc0")
    assert b[sof + 9] == 3 and b[sof + 11] == 0x22  # 3 components, luma sampled 2x2: 4:2:0
    grey = J.encode_jpeg(frames[..., :1], 90)
    assert J.decode_jpegs(grey).shape == (4, 96, frames.shape[2], 1)
    fast = J.decode_jpegs(bufs)
    monkeypatch.setattr(J, "_simplejpeg", lambda: None)  # OpenCV only
    assert J.encoder_name() == "opencv"
    np.testing.assert_array_equal(J.decode_jpegs(bufs), fast)
    cv_bufs = J.encode_jpeg(frames, 90)
    assert np.abs(J.decode_jpegs(cv_bufs).astype(int) - fast).mean() < 2
    with pytest.raises(StoreError, match="corrupt"):
        J.decode_jpegs([bufs[0], bufs[1][: len(bufs[1]) // 3]])


def test_jpeg_scaled_read_decodes_in_the_dct_domain(tmp_path, shared_data):
    import cv2

    frames = _real_frames(shared_data, n=8, size=128)
    p = _write(tmp_path / "j.h5", [frames], encoding="jpeg", conventions={"size": 128})
    st = VideoStore(p)
    h, w = frames.shape[1:3]
    assert st.jpeg_scale(0, None) == 1 and st.jpeg_scale(0, 64) == 2 and st.jpeg_scale(0, 33) == 2
    assert st.jpeg_scale(0, 32) == 4 and st.jpeg_scale(0, 8) == 8
    full = st.read(0, [3, 1])
    half = st.read(0, [3, 1], min_size=60)
    assert half.shape == (2, -(-h // 2), -(-w // 2), 3)
    ref = np.stack([cv2.resize(f, (half.shape[2], half.shape[1]), interpolation=cv2.INTER_AREA) for f in full])
    # libjpeg rounds odd sizes up (227 -> 114), so the grids differ by a fraction of a pixel
    assert np.abs(half.astype(int) - ref).mean() < 5 < np.abs(half.astype(int) - ref[::-1]).mean()
    np.testing.assert_array_equal(st.read(0, [3, 1], min_size=h), full)  # no reduction asked
    st.close()


def test_torch_batch_jpeg_decoder_agrees_with_the_store_reader(tmp_path, shared_data):
    """The decoding half of the nvJPEG loader path, run on the CPU (torchvision's libjpeg)."""
    from vdgtool.stores import jpeg as J

    frames = _real_frames(shared_data, n=6)
    p = _write(tmp_path / "j.h5", [frames], encoding="jpeg")
    st = VideoStore(p)
    bufs = st.read_jpeg(0, [5, 0, 2])
    got = J.decode_jpegs_torch(bufs, "cpu")
    assert tuple(got.shape) == (3,) + frames.shape[1:] and str(got.device) == "cpu"
    assert np.abs(got.numpy().astype(int) - st.read(0, [5, 0, 2])).max() <= 2
    with pytest.raises(StoreError, match="corrupt"):
        J.decode_jpegs_torch([bufs[0][:100]])
    st.close()
