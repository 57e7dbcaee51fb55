"""extract: manifests, bad inputs, workers, interruption and resume."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO, assert_same_store, known_frames, make_tree, write_video

from vdgtool.errors import InputError
from vdgtool.stores import VideoStore
from vdgtool.video import extract as E
from vdgtool.video.decode import DecodeOptions
from vdgtool.video.extract import extract
from vdgtool.video.manifest import load_manifest


def test_raw_extract_stores_exact_pixels_in_manifest_order(tmp_path):
    a, b = known_frames(seed=1), known_frames(t=5, seed=2)
    root = tmp_path / "ds"
    (root / "jump").mkdir(parents=True)
    (root / "run").mkdir()
    write_video(root / "run" / "r10.mkv", b)
    write_video(root / "run" / "r2.mkv", a)
    write_video(root / "jump" / "j1.mkv", a)
    res = extract(load_manifest(str(root)), str(tmp_path / "s.h5"), encoding="raw")
    assert res.videos == 3 and res.frames == 8 + 8 + 5 and res.decoders == {"decord": 3}
    st = VideoStore(str(tmp_path / "s.h5"))
    assert st.meta["key"].tolist() == ["jump/j1.mkv", "run/r2.mkv", "run/r10.mkv"]  # natural order
    assert st.classes == ["jump", "run"] and st.labels.tolist() == [0, 1, 1]
    assert st.domains == ["ds"] and st.meta["fps"].tolist() == [10.0] * 3
    np.testing.assert_array_equal(st.read(0), a)
    np.testing.assert_array_equal(st.read(2), b)


def test_bad_inputs_are_recorded_and_skipped(tmp_path, shared_data):
    root = make_tree(tmp_path / "ds", {
        "a/good.avi": shared_data / "videos/real/ucf101__Basketball__v_Basketball_g01_c01.avi",
        "a/anim.gif": shared_data / "gifs/misc__skimage_no_time_for_that_tiny.gif",
        "b/corrupt.mp4": shared_data / "videos/decode_edge/decord_corrupted.mp4",
        "b/empty.mp4": b"",
        "b/readme.mov": b"not a video at all " * 50,
    })
    res = extract(load_manifest(str(root)), str(tmp_path / "s.h5"), opts=DecodeOptions(size=32))
    assert res.videos == 2
    assert res.decoders == {"decord": 1, "pil": 1}  # each video records the reader that decoded it
    bad = {e["key"]: e["reason"] for e in res.errors}
    assert set(bad) == {"b/corrupt.mp4", "b/empty.mp4", "b/readme.mov"}
    assert "decord:" in bad["b/corrupt.mp4"] and "pyav:" in bad["b/corrupt.mp4"]
    assert "empty" in bad["b/empty.mp4"]
    st = VideoStore(str(tmp_path / "s.h5"))
    assert st.meta["decoder"].tolist() == ["pil", "decord"]
    assert st.meta["num_frames"].tolist() == [24, 141]
    assert st.read(1, [0, 140]).shape == (2, 32, 43, 3)
    assert st.errors["key"].tolist() == ["b/corrupt.mp4", "b/empty.mp4", "b/readme.mov"]


def test_csv_and_mmaction_list_manifests(tmp_path, toy):
    man = load_manifest(str(toy / "animated.csv"))
    assert man.form == "csv" and len(man.items) == 12 and man.items[0].domain == "animated"
    lst = tmp_path / "list.txt"
    lst.write_text("animated/move_up/move_up_000.gif 3\nreal/move_left/move_left_001.mp4 1\n")
    man = load_manifest(str(lst), domain="mixed", data_prefix=str(toy))
    cls = tmp_path / "classes.txt"
    cls.write_text("move_down\nmove_left\nmove_right\nmove_up\n")
    man = load_manifest(str(lst), domain="mixed", data_prefix=str(toy), classes_file=str(cls))
    res = extract(man, str(tmp_path / "l.h5"), encoding="raw")
    st = VideoStore(str(tmp_path / "l.h5"))
    assert res.videos == 2 and st.class_names_of(st.labels) == ["move_up", "move_left"]
    assert st.meta["decoder"].tolist() == ["pil", "decord"]
    dup = tmp_path / "dup.csv"
    dup.write_text("path,label\nx.mp4,a\ny.mp4,b\nx.mp4,a\n")
    with pytest.raises(InputError, match="twice"):
        load_manifest(str(dup))
    with pytest.raises(InputError, match="outside the 4 classes"):
        lst.write_text("a.mp4 7\n")
        load_manifest(str(lst), classes_file=str(cls))


def test_workers_give_the_same_store(tmp_path, toy, monkeypatch):
    """Raw videos come back from the workers through shared memory, which the writer unlinks."""
    import vdgtool.video.extract as X

    seen = []
    real = X._add_video
    monkeypatch.setattr(X, "_add_video", lambda w, k, fr, **kw: seen.append(type(fr).__name__) or real(w, k, fr, **kw))
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    man = load_manifest(str(toy / "animated.csv"))
    extract(man, str(tmp_path / "w0.h5"), encoding="raw")
    assert set(seen) == {"EncodedVideo"}
    seen.clear()
    extract(man, str(tmp_path / "w2.h5"), encoding="raw", workers=2)
    assert_same_store(tmp_path / "w0.h5", tmp_path / "w2.h5")
    if os.path.isdir("/dev/shm"):
        assert set(seen) == {"_Shared"}
        assert set(os.listdir("/dev/shm")) - before == set()  # every block unlinked


def test_shared_memory_hand_off_round_trips_and_falls_back(tmp_path, monkeypatch):
    import vdgtool.video.extract as X
    from vdgtool.stores import VideoStoreWriter

    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 255, (n, 6, 8, 3), dtype=np.uint8) for n in (3, 5)]
    shared = X._to_shared(parts)
    assert isinstance(shared, X._Shared) and shared.shape == (8, 6, 8, 3)
    with VideoStoreWriter(str(tmp_path / "s.h5"), classes=["a"], encoding="raw") as w:
        X._add_video(w, "v", shared, index=0, label=0, domain="d", fps=5)
    assert not os.path.exists(f"/dev/shm/{shared.name.lstrip('/')}")
    got = VideoStore(str(tmp_path / "s.h5"))
    assert np.array_equal(got.read(0), np.concatenate(parts))
    got.close()
    monkeypatch.setattr(X, "_shm_room", lambda nbytes: False)  # a full /dev/shm: the pipe instead
    assert X._to_shared(parts) is None


def test_jpeg_store_is_byte_identical_whatever_the_workers(tmp_path, toy):
    """Workers decode and encode, the main process only writes: same JPEG bytes, order and checksums for 0/1/3."""
    man = load_manifest(str(toy / "real.csv"))
    paths = []
    for w in (0, 1, 3):
        paths.append(str(tmp_path / f"w{w}.h5"))
        res = extract(man, paths[-1], encoding="jpeg", workers=w, opts=DecodeOptions(size=24, max_frames=12))
        assert res.videos == 12 and not res.errors
    ref = VideoStore(paths[0])
    ref_bytes = [[bytes(b) for b in ref.read_jpeg(r, range(int(n)))] for r, n in enumerate(ref.meta["num_frames"])]
    for p in paths[1:]:
        assert_same_store(paths[0], p)
        st = VideoStore(p)
        for r, want in enumerate(ref_bytes):
            assert [bytes(b) for b in st.read_jpeg(r, range(len(want)))] == want
        st.close()
    ref.close()


def test_decoder_failing_half_way_restarts_cleanly(tmp_path, toy, monkeypatch):
    """A reader that emits batches and then fails: the next reader's frames alone are stored."""
    import vdgtool.video.decode as D

    real = D._decode_decord

    def half(path, opts, emit):
        real(path, opts, lambda b: emit(b[:1]))  # one wrong frame per batch, then fail
        raise RuntimeError("broken stream")

    monkeypatch.setitem(D.decode.__globals__, "_decode_decord", half)
    man = load_manifest(str(toy / "real.csv"))
    res = extract(man, str(tmp_path / "s.h5"), encoding="jpeg", limit=2, opts=DecodeOptions(size=24))
    monkeypatch.undo()
    ref = extract(man, str(tmp_path / "r.h5"), encoding="jpeg", limit=2, opts=DecodeOptions(size=24),
                  decoders=("pyav",))
    assert res.decoders == {"pyav": 2} and ref.videos == 2
    assert_same_store(tmp_path / "s.h5", tmp_path / "r.h5")


def test_interrupt_then_resume_equals_uninterrupted(tmp_path, toy, monkeypatch):
    man = load_manifest(str(toy / "real.csv"))
    ref = str(tmp_path / "ref.h5")
    extract(man, ref, encoding="raw")
    out = str(tmp_path / "out.h5")
    real_decode = E.decode
    calls = {"n": 0}

    def flaky(path, *a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the batch
        return real_decode(path, *a, **k)

    monkeypatch.setattr(E, "decode", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract(man, out, encoding="raw")
    assert not os.path.exists(out)
    monkeypatch.setattr(E, "decode", real_decode)
    with pytest.raises(InputError, match="--resume"):
        extract(man, out, encoding="raw")
    res = extract(man, out, encoding="raw", resume=True)
    assert res.skipped_resume == 5  # the 5 finished videos were kept
    assert res.videos == 12
    assert_same_store(out, ref)
    assert not os.path.exists(out + ".partial.d")
    with pytest.raises(InputError, match="already complete"):
        extract(man, out, encoding="raw", resume=True)


def test_hard_kill_then_resume_equals_uninterrupted(tmp_path, toy):
    """A process killed without any clean-up (os._exit mid-segment), then --resume."""
    ref, out = str(tmp_path / "ref.h5"), str(tmp_path / "out.h5")
    man = load_manifest(str(toy / "animated.csv"))
    extract(man, ref, encoding="raw", opts=DecodeOptions(max_frames=6))
    script = textwrap.dedent(f"""
        import os
        import vdgtool.stores.video as V
        import vdgtool.video.extract as E
        from vdgtool.video.decode import DecodeOptions
        from vdgtool.video.manifest import load_manifest
        V.VideoStoreWriter.__init__.__kwdefaults__["segment_videos"] = 3  # small segments
        real, n = E.decode, [0]
        def dying(path, *a, **k):
            n[0] += 1
            if n[0] > 8:
                os._exit(9)  # like SIGKILL: no finally, no flush
            return real(path, *a, **k)
        E.decode = dying
        E.extract(load_manifest({str(toy / "animated.csv")!r}), {out!r}, encoding="raw",
                  opts=DecodeOptions(max_frames=6))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=120)
    assert r.returncode == 9, r.stderr.decode()[-2000:]
    segdir = out + ".partial.d"
    names = sorted(os.listdir(segdir))
    assert names[:2] == ["seg-000001.h5", "seg-000002.h5"] and names[-1].endswith(".tmp")
    assert not os.path.exists(out)
    res = extract(man, out, encoding="raw", opts=DecodeOptions(max_frames=6), resume=True)
    assert res.skipped_resume == 6
    assert_same_store(out, ref)


def test_resume_with_other_options_is_refused(tmp_path, toy, monkeypatch):
    man = load_manifest(str(toy / "animated.csv"))
    out = str(tmp_path / "o.h5")
    real_decode = E.decode
    calls = {"n": 0}

    def flaky(path, *a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real_decode(path, *a, **k)

    monkeypatch.setattr(E, "decode", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract(man, out, encoding="raw")
    monkeypatch.setattr(E, "decode", real_decode)
    with pytest.raises(InputError, match="different settings.*encoding='jpeg' vs 'raw'|encoding='raw' vs 'jpeg'"):
        extract(man, out, encoding="jpeg", resume=True)
    res = extract(man, out, encoding="jpeg", overwrite=True)
    assert res.videos == 12 and res.skipped_resume == 0


def test_empty_input_and_empty_shard(tmp_path, toy):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(InputError, match="no videos"):
        extract(load_manifest(str(tmp_path / "empty")), str(tmp_path / "e.h5"))
    assert not os.path.exists(tmp_path / "e.h5")
    lst = tmp_path / "one.txt"
    lst.write_text("animated/move_up/move_up_000.gif 0\n")
    man = load_manifest(str(lst), data_prefix=str(toy))
    res = extract(man, str(tmp_path / "s1.h5"), num_shards=2, shard_index=1)  # more shards than videos
    assert res.videos == 0 and VideoStore(str(tmp_path / "s1.h5")).conventions["shard_index"] == 1
    with pytest.raises(InputError, match="outside 0..1"):
        extract(man, str(tmp_path / "s2.h5"), num_shards=2, shard_index=2)
