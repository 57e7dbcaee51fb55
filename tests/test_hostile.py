"""Hostile and careless input (issue 15): every case here once broke or ended in an internal error.

Each test names the issue item it covers. The property-based tests at the end drive every non-train
verb with hostile option values and tampered stores and assert the CLI contract: exit code 0, 1 or 2,
never "internal error", valid JSON on stdout with --json, and no output that reads as complete unless
the command succeeded (batch stores that record their skipped inputs excepted, as documented).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import PY, REPO, known_frames, make_tree, write_video
from vdgtool.errors import CheckpointError, ConfigError, InputError, StoreError

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def vids(tmp_path_factory) -> dict:
    """Three tiny lossless videos (8 frames, 24x32) in a tree a/, b/, plus a CSV of them."""
    root = tmp_path_factory.mktemp("ds")
    for i, rel in enumerate(("a/v0.mkv", "a/v1.mkv", "b/v2.mkv")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, known_frames(seed=i))
    (root / "list.csv").write_text("path,label\na/v0.mkv,a\na/v1.mkv,a\nb/v2.mkv,b\n")
    return {"root": root, "csv": root / "list.csv", "video": root / "a/v0.mkv"}


@pytest.fixture(scope="module")
def clips(vids, tmp_path_factory) -> Path:
    """A raw clip store of the three videos (read-only for the tests: copy before tampering)."""
    from vdgtool.video.extract import extract
    from vdgtool.video.manifest import load_manifest

    out = tmp_path_factory.mktemp("stores") / "clips.h5"
    extract(load_manifest(str(vids["root"])), str(out), encoding="raw")
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def _ok_line(code, err, *needles, exit_code=1):
    """A one-line user error (no traceback, no 'internal error') containing every needle."""
    assert code == exit_code, err
    assert "internal error" not in err and "Traceback" not in err, err
    line = [ln for ln in err.splitlines() if ln.startswith("vdgtool: error:") or ln.startswith("Error:")]
    assert line, err
    for n in needles:
        assert n in err, (n, err)


# -- 1. concurrent writers ---------------------------------------------------------------------------
HOLD = textwrap.dedent("""
    import sys, time, numpy as np
    from vdgtool.stores.video import VideoStoreWriter
    w = VideoStoreWriter(sys.argv[1], classes=["a", "b"], encoding="raw", overwrite=True)
    w.add_video("x", np.zeros((2, 8, 8, 3), np.uint8), index=0)
    print("ready", flush=True)
    time.sleep(120)
""")


def test_1_second_writer_is_refused_and_a_dead_holders_lock_is_stale(run_cli, vids, tmp_path):
    out = tmp_path / "c.h5"
    proc = subprocess.Popen([PY, "-c", HOLD, str(out)], stdout=subprocess.PIPE, env=ENV, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        for flag in ("--overwrite", "--resume"):  # the remedies the first run's messages give
            code, _, err = run_cli("extract", vids["root"], "-o", out, flag, "--encoding", "raw")
            _ok_line(code, err, f"pid {proc.pid}", "is writing", str(out))
        assert (tmp_path / "c.h5.partial.d").is_dir()  # the live run's segments are untouched
    finally:
        proc.kill()  # as kill -9: the kernel drops its lock, the lock file stays behind
        proc.wait()
    assert (tmp_path / "c.h5.lock").exists()
    code, _, err = run_cli("extract", vids["root"], "-o", out, "--overwrite", "--encoding", "raw")
    assert code == 0, err
    assert not (tmp_path / "c.h5.lock").exists() and not (tmp_path / "c.h5.partial.d").exists()


def test_1_table_writer_and_merge_hold_the_lock(tmp_path, clips):
    from vdgtool.stores import TableStoreWriter, VideoStoreWriter
    from vdgtool.stores.tools import merge

    out = str(tmp_path / "f.h5")
    with TableStoreWriter(out, "features") as w:
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
            TableStoreWriter(out, "features", overwrite=True)
        w.append({"x": np.zeros((1, 2), np.float32)})
    m = str(tmp_path / "m.h5")
    w = VideoStoreWriter(m, classes=["a"])
    try:
        with pytest.raises(StoreError, match="is writing"):
            merge([str(clips)], m)
    finally:
        w.abort()


# -- 2. file names that are not UTF-8 ----------------------------------------------------------------
def test_2_non_utf8_file_names_round_trip_as_keys(run_cli, vids, tmp_path):
    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    shutil.copyfile(vids["video"], root / "a" / "ok.mkv")
    bad = os.fsdecode(os.path.join(os.fsencode(str(root / "a")), b"caf\xe9.mkv"))  # Latin-1 bytes
    shutil.copyfile(vids["video"], bad)
    out = tmp_path / "s.h5"
    code, stdout, err = run_cli("extract", root, "-o", out, "--encoding", "raw")
    assert code == 0, err
    code, stdout, err = run_cli("store", "info", out)  # a table with the name shown escaped
    assert code == 0 and "videos" in stdout, err
    from vdgtool.stores import VideoStore

    st = VideoStore(str(out))
    keys = list(st.meta["key"])
    assert "a/" + os.path.basename(bad) in keys and len(keys) == 2  # the very str os.listdir gave
    assert os.path.exists(st.meta["source"][keys.index("a/" + os.path.basename(bad))])
    st.close()
    code, stdout, err = run_cli("store", "verify", out, "--json")
    assert code == 0 and json.loads(stdout)["ok"], err
    # --resume skips the odd name like any other (interrupted after it was written)
    from vdgtool.stores.video import VideoStoreWriter

    w = VideoStoreWriter(str(tmp_path / "r.h5"), classes=["a"], encoding="raw")
    w.add_video("a/" + os.path.basename(bad), known_frames(), index=0)
    w.abort()
    w = VideoStoreWriter(str(tmp_path / "r.h5"), classes=["a"], encoding="raw", resume=True)
    assert "a/" + os.path.basename(bad) in w.done_keys
    w.abort()


# -- 3. an output that is one of the inputs --------------------------------------------------------
def test_3_outputs_that_are_inputs_are_refused(run_cli, vids, clips, tmp_path):
    store = _copy(clips, tmp_path / "in.h5")
    (tmp_path / "link.h5").symlink_to(store)
    before = store.read_bytes()
    cases = [
        ("flow", store, "-o", tmp_path / "link.h5", "--overwrite", "--backend", "dis"),
        ("eval", tmp_path / "no_ckpt.pt", "--data", store, "-o", store, "--overwrite"),
        ("eval", tmp_path / "no_ckpt.pt", "--data", store, "--confusion", tmp_path / "link.h5"),
        ("features", tmp_path / "no_ckpt.pt", "--data", store, "-o", tmp_path / "link.h5", "--overwrite"),
        ("store", "merge", store, "-o", tmp_path / "link.h5", "--overwrite"),
    ]
    for argv in cases:
        _ok_line(*run_cli(*argv)[::2], "is also an input")
    assert store.read_bytes() == before
    csv = _copy(vids["csv"], tmp_path / "list.csv")
    for p in ("a", "b"):
        shutil.copytree(vids["root"] / p, tmp_path / p)
    _ok_line(*run_cli("extract", csv, "-o", csv, "--overwrite")[::2], "is also an input")
    _ok_line(*run_cli("extract", tmp_path / "a/v0.mkv", "-o", tmp_path / "a/v0.mkv", "--overwrite")[::2],
             "is also an input")
    assert csv.read_text().startswith("path,label")


# -- 4. --resume with another input ----------------------------------------------------------------
def test_4_resume_refuses_a_different_manifest(run_cli, vids, tmp_path, monkeypatch):
    import vdgtool.video.extract as ex

    other = make_tree(tmp_path / "other", {"a/z.mkv": vids["video"], "b/y.mkv": vids["video"]})
    out = tmp_path / "s.h5"
    real, calls = ex.decode, []

    def flaky(path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, *a, **k)

    monkeypatch.setattr(ex, "decode", flaky)
    code, _, _ = run_cli("extract", vids["root"], "-o", out, "--encoding", "raw")
    assert code == 130 and (tmp_path / "s.h5.partial.d").is_dir()
    monkeypatch.setattr(ex, "decode", real)
    _ok_line(*run_cli("extract", other, "-o", out, "--resume", "--encoding", "raw")[::2], "different input",
             str(vids["root"]))
    code, stdout, err = run_cli("extract", vids["root"], "-o", out, "--resume", "--encoding", "raw", "--json")
    assert code == 0 and json.loads(stdout)["resumed_from"] == 1 and json.loads(stdout)["videos"] == 3, err


def test_4_flow_resume_refuses_another_clip_store(clips, tmp_path):
    from vdgtool.flow.backends import get_backend
    from vdgtool.flow.pipeline import _store_digest, compute_flow_store
    from vdgtool.stores import VideoStore
    from vdgtool.stores.video import VideoStoreWriter

    out = str(tmp_path / "f.h5")
    w = VideoStoreWriter(out, "flow", classes=["x"], input_digest="not the digest of clips.h5")
    w.add_video("k", np.zeros((1, 4, 4, 2), np.uint8), index=0)
    w.abort()
    be = get_backend("dis")
    with pytest.raises(InputError, match="different"):
        compute_flow_store(str(clips), out, be, resume=True)
    st = VideoStore(str(clips))
    assert _store_digest(st) != "not the digest of clips.h5" and len(_store_digest(st)) == 32


# -- 5. merge --allow-partial of a features store --------------------------------------------------
def test_5_allow_partial_merge_refuses_feature_stores(run_cli, tmp_path):
    from vdgtool.stores import TableStoreWriter

    f = str(tmp_path / "feat.h5")
    with TableStoreWriter(f, "features") as w:
        w.append({"features": np.zeros((2, 3), np.float32)}, key=["a", "b"])
    _ok_line(*run_cli("store", "merge", f, "-o", tmp_path / "m.h5", "--allow-partial")[::2], "kinds")
    assert not list(tmp_path.glob("m.h5*"))


# -- 7. checksums and verify -------------------------------------------------------------------------
def _chunk_offset(path, name="data/00000000"):
    with h5py.File(path) as f:
        ds = f[name]
        return ds.id.get_chunk_info(0).byte_offset if ds.chunks else ds.id.get_offset()


def test_7_zeroed_bytes_in_a_raw_store_fail_verify_and_checked_reads(run_cli, clips, tmp_path, monkeypatch):
    from vdgtool.stores import VideoStore

    monkeypatch.setenv("VDGTOOL_CHECK", "0")  # `vdgtool --check` sets it for the process: restored after the test

    p = _copy(clips, tmp_path / "d.h5")
    clean = VideoStore(str(p)).read(0)
    with open(p, "r+b") as f:  # 256 zero bytes inside the first video's frames, as in the report
        f.seek(_chunk_offset(p) + 100)
        f.write(bytes(256))
    assert np.abs(VideoStore(str(p)).read(0).astype(int) - clean).max() > 0  # the video did change
    code, out, err = run_cli("store", "verify", p, "--json")
    assert code == 1 and "checksum mismatch" in json.loads(out)["problems"][0], err
    assert json.loads(out)["checksums"] > 3
    with pytest.raises(StoreError, match="checksum mismatch"):
        VideoStore(str(p), check=True).read(0, [0])
    VideoStore(str(p), check=True).read(1)  # undamaged videos read fine
    code, _, err = run_cli("--check", "flow", p, "-o", tmp_path / "f.h5", "--backend", "dis", "--strict")
    assert code == 1 and "checksum mismatch" in err  # reported per video, the others are written


def test_7_damaged_metadata_and_jpeg_frames_fail_verify(clips, vids, tmp_path):
    from vdgtool.stores.tools import verify
    from vdgtool.video.extract import extract
    from vdgtool.video.manifest import load_manifest

    p = _copy(clips, tmp_path / "m.h5")
    with h5py.File(p, "a") as f:
        lab = f["meta/label"][()]
        f["meta/label"][0] = (lab[0] + 1) % 2  # a silently changed label (still in range)
    r = verify(str(p))
    assert not r["ok"] and any("/meta/label: checksum" in x for x in r["problems"])
    j = str(tmp_path / "j.h5")
    extract(load_manifest(str(vids["root"])), j)
    with h5py.File(j, "a") as f:
        fr = f["data/00000001"][2].copy()
        fr[len(fr) // 2:len(fr) // 2 + 40] = 0  # damage inside one JPEG frame
        f["data/00000001"][2] = fr
    r = verify(j)
    assert not r["ok"] and any("v1" in x and "checksum" in x for x in r["problems"])


def test_7_verify_checks_dtype_rank_channels_and_counts(clips, tmp_path):
    from vdgtool.stores import VideoStore
    from vdgtool.stores.tools import verify

    def tampered(name, fn):
        p = _copy(clips, tmp_path / f"{name}.h5")
        with h5py.File(p, "a") as f:
            fn(f)
        return verify(str(p))

    def replace(f, arr, row="00000000"):
        del f[f"data/{row}"]
        f[f"data/{row}"] = arr

    r = tampered("float", lambda f: replace(f, f["data/00000000"][()].astype(np.float32)))
    assert not r["ok"] and "float32 frames" in " ".join(r["problems"])
    r = tampered("chan", lambda f: replace(f, f["data/00000000"][()][..., :2]))
    assert "2 channels" in " ".join(r["problems"])
    r = tampered("rank", lambda f: replace(f, f["data/00000000"][()][0]))
    assert "rank 3" in " ".join(r["problems"])
    r = tampered("count", lambda f: f["meta/num_frames"].__setitem__(0, 5))
    assert "frames stored" in " ".join(r["problems"])

    def conv(f):
        c = json.loads(f.attrs["conventions"])
        c.update(max_frames=4, size=16)
        f.attrs["conventions"] = json.dumps(c)

    r = tampered("conv", conv)
    assert "max_frames 4" in " ".join(r["problems"]) and "conventions size 16" in " ".join(r["problems"])
    p = _copy(clips, tmp_path / "readf.h5")
    with h5py.File(p, "a") as f:
        replace(f, f["data/00000000"][()].astype(np.float32))
    with pytest.raises(StoreError, match="float32 array"):  # train would otherwise eat float frames
        VideoStore(str(p)).read(0)


def test_7_stores_without_checksums_still_verify(clips, tmp_path):
    from vdgtool.stores.tools import verify

    p = _copy(clips, tmp_path / "old.h5")
    with h5py.File(p, "a") as f:  # as schema 1.0 wrote them
        f.visititems(lambda n, o: o.attrs.__delitem__("crc32") if "crc32" in o.attrs else None)
        f.attrs["vdgtool_schema"] = "1.0"
    r = verify(str(p))
    assert r["ok"] and r["checksums"] == 0, r


# -- 9. FIFOs, sockets, devices ---------------------------------------------------------------------
def test_9_fifo_is_reported_not_read(run_cli, vids, tmp_path):
    root = make_tree(tmp_path / "ds", {"a/ok.mkv": vids["video"]})
    os.mkfifo(root / "a" / "pipe.gif")  # opening it for reading blocks until a writer comes: forever
    old = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("hung")))
    signal.alarm(20)
    try:
        code, out, err = run_cli("extract", root, "-o", tmp_path / "s.h5", "--json")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    d = json.loads(out)
    assert code == 0 and d["videos"] == 1, err
    assert "FIFO (named pipe), not a regular file" in d["bad_inputs"][0]["reason"], d  # not a timeout


# -- 10. decode limits -------------------------------------------------------------------------------
def _canvas_gif(path: Path, w: int, h: int, frames: int = 2) -> Path:
    """A tiny GIF whose logical screen claims w x h (the frames themselves are 4x4)."""
    from PIL import Image

    imgs = [Image.new("RGB", (4, 4), (40 * i, 0, 0)) for i in range(frames)]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=100)
    data = bytearray(path.read_bytes())
    data[6:10] = w.to_bytes(2, "little") + h.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def test_10_gif_canvas_bomb_is_refused_before_decoding(run_cli, tmp_path):
    import resource

    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    _canvas_gif(root / "a" / "bomb.gif", 12000, 12000)
    assert (root / "a" / "bomb.gif").stat().st_size < 300
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, err = run_cli("extract", root, "-o", tmp_path / "s.h5", "--json")
    assert code == 1 and "12000x12000" in err and "--max-pixels" in err, err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # KiB: nothing was allocated
    _canvas_gif(root / "a" / "bomb.gif", 600, 500)  # a genuine large canvas decodes, resized frame by frame
    code, out, err = run_cli("extract", root, "-o", tmp_path / "t.h5", "--size", "32", "--json")
    assert code == 0 and json.loads(out)["videos"] == 1, err
    _ok_line(*run_cli("extract", root, "-o", tmp_path / "u.h5", "--max-pixels", "1000")[::2], "--max-pixels")


def test_10_fps_inf_nan_refused_huge_fps_hits_the_frame_limit(run_cli, vids, tmp_path):
    from vdgtool.video.decode import DecodeOptions, decode

    for v in ("inf", "nan", "-1", "0"):
        code, _, err = run_cli("extract", vids["root"], "-o", tmp_path / "s.h5", "--fps", v)
        assert code == 2 and "internal" not in err, (v, err)
    with pytest.raises(InputError, match="positive finite"):
        DecodeOptions(fps=float("nan"))
    code, out, err = run_cli("extract", vids["video"], "-o", tmp_path / "s.h5", "--fps", "1e7", "--json")
    assert code == 1 and "--frame-limit" in err, err
    assert not (tmp_path / "s.h5").exists() or json.loads(out)["videos"] == 0
    fr, info = decode(str(vids["video"]), DecodeOptions(fps=1000, frame_limit=1000))  # 0.8 s at 1 kHz: 800
    assert fr.shape[0] == 800
    with pytest.raises(InputError, match="--size"):
        DecodeOptions(size=100_000)  # upscaling to 10^10 pixels per frame


# -- 11. decompression bombs in synth-video ----------------------------------------------------------
def _png_header(path: Path, w: int, h: int) -> Path:
    """A PNG whose IHDR claims w x h (a few bytes: a decompression bomb as the issue found)."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_11_synth_video_skips_a_decompression_bomb(run_cli, tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "a/ok.png")
    _png_header(root / "a" / "bomb.png", 60000, 60000)
    args = ("synth-video", root, "-o", tmp_path / "s.h5", "--mode", "crop2d", "--frames", "2", "--size", "16",
            "--json")
    code, out, err = run_cli(*args)
    d = json.loads(out)
    assert code == 0 and d["videos"] == 1 and "decompression bomb" in d["bad_inputs"][0]["reason"], err
    code, out, err = run_cli(*args[:-1], "--resume")
    assert code == 1 and "already complete" in err  # a resume no longer stops at the same file


# -- 12. manifests -------------------------------------------------------------------------------------
def test_12_csv_with_bom_latin1_and_malformed_rows(tmp_path, vids):
    from vdgtool.video.manifest import load_manifest

    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffpath,label\na.mp4,run\n./b.mp4,jump\n".encode("utf-8"))
    m = load_manifest(str(p))
    assert m.classes == ["jump", "run"] and [i.key for i in m.items] == ["a.mp4", "b.mp4"]
    p.write_bytes("path,label\na.mp4,run\nb.mp4,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"line 3 is not UTF-8.*iconv"):
        load_manifest(str(p))
    p.write_text("path,label\na.mp4,run\nb.mp4,run,real,extra\n")
    with pytest.raises(InputError, match="line 3 has 4 fields"):
        load_manifest(str(p))
    p.write_text("path,label\na.mp4,run\n./a.mp4,run\n")
    with pytest.raises(InputError, match="a.mp4 twice"):
        load_manifest(str(p))


def test_12_mmaction_lists_comments_spaces_and_ambiguous_lines(tmp_path):
    from vdgtool.video.manifest import load_manifest

    (tmp_path / "my clip.mp4").write_bytes(b"x")
    (tmp_path / "frames").mkdir()
    p = tmp_path / "list.txt"
    p.write_text("# a comment\nmy clip.mp4 3\nfilms/a.mp4 1\nframes 120 2\n\n")
    m = load_manifest(str(p))
    assert [(i.key, i.label) for i in m.items] == [("my clip.mp4", "3"), ("films/a.mp4", "1"), ("frames", "2")]
    p.write_text("a.mp4 0 100 3\n")  # 4 fields, no such path: refused instead of guessing
    with pytest.raises(InputError, match="line 1: cannot tell the path from the label"):
        load_manifest(str(p))
    p.write_text("a.mp4 1\n./a.mp4 1\n")
    with pytest.raises(InputError, match="twice"):
        load_manifest(str(p))
    p.write_bytes(b"a.mp4 1\nb\xff.mp4 2\n")
    with pytest.raises(InputError, match="line 2 is not UTF-8"):
        load_manifest(str(p))


# -- 14. internal errors that must become cause + remedy ----------------------------------------------
def test_14_single_video_or_gif_as_input_is_a_one_video_store(run_cli, vids, tmp_path, shared_data):
    code, out, err = run_cli("extract", vids["video"], "-o", tmp_path / "v.h5", "--json")
    d = json.loads(out)
    assert code == 0 and d["videos"] == 1, err
    gif = next((shared_data / "gifs").glob("*.gif"))
    code, out, err = run_cli("extract", gif, "-o", tmp_path / "g.h5", "--json")
    assert code == 0 and json.loads(out)["decoders"] == {"pil": 1}, err


def test_14_unreadable_class_folder_is_skipped_and_unreadable_root_exits_1(run_cli, vids, tmp_path,
                                                                          monkeypatch):
    root = make_tree(tmp_path / "ds", {"a/v.mkv": vids["video"], "b/w.mkv": vids["video"]})
    real = os.listdir

    def listdir(p="."):
        if os.fspath(p) == str(root / "b"):
            raise PermissionError(13, "Permission denied", str(p))
        return real(p)

    monkeypatch.setattr(os, "listdir", listdir)  # chmod 000 does not stop root, which runs these tests
    code, out, err = run_cli("extract", root, "-o", tmp_path / "s.h5", "--json")
    d = json.loads(out)
    assert code == 0 and d["videos"] == 1 and "cannot read the class folder" in d["bad_inputs"][0]["reason"], err
    monkeypatch.setattr(os, "listdir", lambda p=".": (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    _ok_line(*run_cli("extract", root, "-o", tmp_path / "t.h5")[::2], "cannot read the input folder")


def test_14_unwritable_output_folder_and_full_disk(run_cli, vids, tmp_path, monkeypatch):
    _ok_line(*run_cli("extract", vids["root"], "-o", "/proc/x.h5")[::2], "cannot write in the output folder")
    import vdgtool.stores.video as sv

    class Tiny:  # a disk with 1 MiB free
        f_bavail, f_frsize = 256, 4096

    monkeypatch.setattr(sv.os, "statvfs", lambda p: Tiny)
    code, _, err = run_cli("extract", vids["root"], "-o", tmp_path / "s.h5", "--encoding", "raw")
    _ok_line(code, err, "no space left on the device", "--resume")
    assert not (tmp_path / "s.h5").exists()


FSIZE = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
    from vdgtool.cli import main
    main(sys.argv[2:])
""")


def test_14_file_size_limit_mid_run_keeps_finished_work(run_cli, tmp_path):
    root = tmp_path / "ds"
    for i in range(4):  # 4 raw videos of about 600 KiB
        (root / "a").mkdir(parents=True, exist_ok=True)
        write_video(root / "a" / f"v{i}.mkv", known_frames(t=8, h=96, w=256, seed=i))
    out = tmp_path / "s.h5"
    r = subprocess.run([PY, "-c", FSIZE, str(2 << 20), "extract", str(root), "-o", str(out), "--encoding", "raw",
                        "--size", "0"], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "file-size limit" in r.stderr and "internal" not in r.stderr, r.stderr
    code, stdout, err = run_cli("extract", root, "-o", out, "--encoding", "raw", "--size", "0", "--resume", "--json")
    assert code == 0 and json.loads(stdout)["resumed_from"] >= 1 and json.loads(stdout)["videos"] == 4, err


@pytest.mark.parametrize("tamper", [
    "classes=not json", "classes=[1, 2]", "conventions=[1]", "domains={}", "del meta/key", "del meta",
    "2d meta/label", "str meta/index", "del data/00000001", "del shape", "del complete",
])
def test_14_malformed_store_attributes_and_metadata(run_cli, clips, vids, tmp_path, tamper):
    p = _copy(clips, tmp_path / "t.h5")
    if tamper == "del shape":
        from vdgtool.video.extract import extract
        from vdgtool.video.manifest import load_manifest

        p.unlink()
        extract(load_manifest(str(vids["root"])), str(p))  # jpeg frames carry a shape attribute
    with h5py.File(p, "a") as f:
        if "=" in tamper:
            k, v = tamper.split("=", 1)
            f.attrs[k] = v
        elif tamper == "del shape":
            del f["data/00000000"].attrs["shape"]
        elif tamper == "del complete":
            del f.attrs["complete"]
        elif tamper.startswith("del "):
            del f[tamper[4:]]
        elif tamper == "2d meta/label":
            del f["meta/label"]
            f["meta/label"] = np.zeros((3, 2), np.int32)
        elif tamper == "str meta/index":
            del f["meta/index"]
            f.create_dataset("meta/index", data=np.array([b"a", b"b", b"c"], dtype=object),
                             dtype=h5py.string_dtype())
    for argv in (("store", "info", p, "--json"), ("store", "verify", p, "--json"),
                 ("flow", p, "-o", tmp_path / "f.h5", "--backend", "dis", "--json"),
                 ("store", "merge", p, "-o", tmp_path / "m.h5", "--json")):
        code, out, err = run_cli(*argv)
        assert code in (0, 1) and "internal error" not in err, (tamper, argv, err)
        json.loads(out)
        if argv[1] == "verify":
            assert code == 1, (tamper, out)
    assert not list(tmp_path.glob("m.h5.partial*"))


def test_14_merge_with_an_out_of_range_label_leaves_no_partial(run_cli, clips, tmp_path):
    p = _copy(clips, tmp_path / "s.h5")
    with h5py.File(p, "a") as f:
        f["meta/label"][1] = 7
    _ok_line(*run_cli("store", "merge", p, "-o", tmp_path / "m.h5")[::2], "label 7", "outside its 2 classes")
    assert not list(tmp_path.glob("m.h5*"))


def test_14_forged_and_text_checkpoints(run_cli, clips, tmp_path):
    import torch

    from vdgtool.train.checkpoint import FORMAT, load_checkpoint

    cases = {"list": ({"format": FORMAT, "config": [1, 2], "model": {}}, "not a dict"),
             "nocls": ({"format": FORMAT, "config": {"model": "test_c3d"}, "model": {}}, "no class names"),
             "kw": ({"format": FORMAT, "config": {"model": "test_c3d", "class_names": ["a"], "model_kwargs": [1]},
                     "model": {}}, "model_kwargs")}
    for name, (obj, needle) in cases.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        _ok_line(*run_cli("eval", tmp_path / f"{name}.pt", "--data", clips)[::2], needle)
    (tmp_path / "cfg.pt").write_text('{"model": "test_c3d"}\n')
    with pytest.raises(CheckpointError, match="text file"):
        load_checkpoint(str(tmp_path / "cfg.pt"))
    _ok_line(*run_cli("features", tmp_path / "cfg.pt", "--data", clips, "-o", tmp_path / "f.h5")[::2],
             "is a text file, not a checkpoint")
    # a store given where a checkpoint goes (e.g. as an --ensemble member) is named as a store
    _ok_line(*run_cli("eval", clips, "--data", clips)[::2], "is an HDF5 store, not a checkpoint")


@pytest.mark.parametrize("argv", [
    ("eval", "x.pt", "--data", "s.h5", "--batch-size", "0"),
    ("features", "x.pt", "--data", "s.h5", "-o", "f.h5", "--batch-size", "0"),
    ("eval", "x.pt", "--data", "s.h5", "--few-shot", "--ways", "0"),
    ("eval", "x.pt", "--data", "s.h5", "--few-shot", "--shots", "abc"),
    ("eval", "x.pt", "--data", "s.h5", "--few-shot", "--episodes", "0"),
    ("eval", "x.pt", "--data", "s.h5", "--clips", "0"),
    ("score", "x.pt", "--data", "s.h5", "--student-lr", "nan"),
    ("score", "x.pt", "--data", "s.h5", "--holdout", "1.5"),
    ("flow", "s.h5", "-o", "f.h5", "--threads", "-1"),
    ("flow", "s.h5", "-o", "f.h5", "--lambda", "nan"),
    ("synth-video", "imgs", "-o", "s.h5", "--fps", "nan"),
    ("synth-video", "imgs", "-o", "s.h5", "--rot-range", "nan,1"),
    ("toydata", "t", "--size", "100000"),
])
def test_14_out_of_range_options_are_usage_errors(run_cli, tmp_path, argv):
    code, out, err = run_cli(*argv, "--json")
    assert code == 2 and "internal" not in err, err
    assert json.loads(out)["error"]


def test_14_toydata_fps_0_leaves_no_folder_and_a_failed_run_does_not_block(run_cli, tmp_path, monkeypatch):
    code, _, err = run_cli("toydata", tmp_path / "t", "--fps", "0")
    assert code == 2 and not (tmp_path / "t").exists(), err
    import vdgtool.video.toydata as td

    monkeypatch.setattr(td, "write_gif", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    code, _, err = run_cli("toydata", tmp_path / "t", "--size", "16", "--frames", "2", "--videos-per-class", "1")
    _ok_line(code, err, "No space left on device", "free space")
    monkeypatch.undo()
    code, _, err = run_cli("toydata", tmp_path / "t", "--size", "16", "--frames", "2", "--videos-per-class", "1")
    assert code == 0, err


def test_14_bad_slurm_and_world_size_variables(run_cli, vids, tmp_path, monkeypatch):
    from vdgtool.utils.env import dist_env

    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "abc")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    _ok_line(*run_cli("extract", vids["root"], "-o", tmp_path / "s.h5")[::2], "SLURM_ARRAY_TASK_COUNT='abc'")
    code, _, err = run_cli("extract", vids["root"], "-o", tmp_path / "s.h5", "--num-shards", "1", "--shard-index", "0")
    assert code == 0, err  # explicit options need no environment
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        dist_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        dist_env()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dist_env() == (0, 0, 1)


def _run_dir(path: Path, lines: list[str]) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"method": "erm", "model": "test_c3d", "seed": 0}))
    (path / "results.jsonl").write_text("\n".join(lines))
    return path


def test_14_collect_skips_a_partial_last_line_and_events(run_cli, tmp_path):
    ep = [json.dumps({"epoch": e, "val": {"src": {"top1": 0.5 + 0.1 * e}}}) for e in (1, 2)]
    ev = json.dumps({"event": "bank_refresh", "epoch": 2})
    d = _run_dir(tmp_path / "r1", [ep[0], ev, ep[1], '{"epoch": 3, "val": {"src": {"to'])
    code, out, err = run_cli("collect", d, "--select", "val", "--json")
    assert code == 0 and json.loads(out)["rows"][0]["src"]["mean"] == pytest.approx(0.7), err
    bad = _run_dir(tmp_path / "r2", [ep[0], "{not json", ep[1]])
    _ok_line(*run_cli("collect", bad)[::2], "line 2 is not JSON")
    nan = _run_dir(tmp_path / "r3", [json.dumps({"epoch": 1, "val": {"src": {"top1": float("nan")}}})])
    code, out, err = run_cli("collect", nan, "--select", "last", "--json")
    assert code == 0 and "NaN" not in out, err


def test_14_flow_pairs_hostile(run_cli, tmp_path):
    from PIL import Image

    for n in ("a", "b"):
        Image.fromarray(np.full((16, 20, 3), 9 if n == "a" else 20, np.uint8)).save(tmp_path / f"{n}.png")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    lst = tmp_path / "pairs.txt"
    lst.write_bytes(b"a.png b.png\n# caf\xe9\n")
    _ok_line(*run_cli("flow", "--pairs-list", lst, "-o", tmp_path / "out", "--backend", "dis")[::2],
             "line 2 is not UTF-8")
    _ok_line(*run_cli("flow", "--pairs", a, b, "-o", a, "--backend", "dis")[::2], "is also an input")
    os.mkfifo(tmp_path / "p.png")
    _ok_line(*run_cli("flow", "--pairs", a, tmp_path / "p.png", "-o", tmp_path / "o.flo", "--backend", "dis")[::2],
             "FIFO")
    _png_header(tmp_path / "big.png", 8000, 8000)  # 64 M pixels: above --max-pixels, below Pillow's own limit
    _ok_line(*run_cli("flow", "--pairs", a, tmp_path / "big.png", "-o", tmp_path / "o.flo", "--backend", "dis")[::2],
             "8000x8000")
    _png_header(tmp_path / "big.png", 30000, 30000)
    _ok_line(*run_cli("flow", "--pairs", a, tmp_path / "big.png", "-o", tmp_path / "o.flo", "--backend", "dis")[::2],
             "decompression bomb")


def test_14_episode_files_that_are_not_episodes(tmp_path):
    from vdgtool.evaluate.fewshot import few_shot

    feats, keys, labels = np.eye(4, dtype=np.float32), ["a", "b", "c", "d"], np.array([0, 0, 1, 1])
    for name, text in (("text", "hello"), ("empty", "[]"), ("dict", "{}"),
                       ("ragged", json.dumps([{"support": [["a"], ["c"]], "query": [["b"], ["d"]]},
                                              {"support": [["a", "b"]], "query": [["c"]]}]))):
        (tmp_path / f"{name}.json").write_text(text)
        with pytest.raises(InputError, match="episode"):
            few_shot(feats, keys, labels, ["x", "y"], ways=2, shots=1, queries=1, episodes=2,
                     episodes_file=str(tmp_path / f"{name}.json"))
    good = tmp_path / "good.json"
    r = few_shot(feats, keys, labels, ["x", "y"], ways=2, shots=1, queries=1, episodes=2, episodes_file=str(good))
    assert r["episode_source"] == "generated" and few_shot(
        feats, keys, labels, ["x", "y"], episodes_file=str(good))["episode_source"] == "loaded"


# -- smaller items --------------------------------------------------------------------------------------
def test_json_errors_go_to_stdout(run_cli, tmp_path):
    code, out, err = run_cli("store", "info", tmp_path / "missing.h5", "--json")
    d = json.loads(out)
    assert code == 1 and "does not exist" in d["error"] and d["remedy"] == "check the path" and "vdgtool: error" in err
    code, out, err = run_cli("extract", tmp_path, "-o", tmp_path / "s.h5", "--json")
    assert code == 1 and "no class sub-folders" in json.loads(out)["error"]
    code, out, err = run_cli("store", "verify", "--bogus", "--json")
    assert code == 2 and "bogus" in json.loads(out)["error"]


def test_json_emit_replaces_nan(capsys):
    from vdgtool.cli.common import emit

    emit({"a": float("nan"), "b": [float("-inf"), 1.5], "c": np.float32("nan")}, True)
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": [None, 1.5], "c": None}


def test_native_decoder_logs_are_silenced_unless_verbose(tmp_path, shared_data):
    root = make_tree(tmp_path / "ds", {"a/bad.mp4": shared_data / "videos/decode_edge/decord_corrupted.mp4",
                                       "a/trunc.mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(4000)})
    cmd = [PY, "-m", "vdgtool", "extract", str(root), "-o", str(tmp_path / "s.h5")]
    quiet = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1 and "skipped" in quiet.stderr
    assert "video_reader.cc" not in quiet.stderr and "@ 0x" not in quiet.stderr, quiet.stderr
    q = subprocess.run([PY, "-m", "vdgtool", "-q", *cmd[3:]], env=ENV, capture_output=True, text=True, timeout=120)
    assert [ln for ln in q.stderr.splitlines() if not ln.startswith("vdgtool:")] == [], q.stderr
    loud = subprocess.run([PY, "-m", "vdgtool", "-v", *cmd[3:5], "-o", str(tmp_path / "t.h5")], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert "video_reader.cc" in loud.stderr or "@ 0x" in loud.stderr, loud.stderr


# -- property-based: every non-train verb under hostile options and tampered stores --------------------
from hypothesis import HealthCheck, given, settings, strategies as S  # noqa: E402

INTS = ["-1", "0", "1", "2", "abc", "", "nan", "1e9", "999999999999", "0.5"]
SMALL_INTS = ["-1", "0", "1", "2", "abc", "nan"]
FLOATS = ["nan", "inf", "-inf", "-1", "0", "1e-9", "0.5", "1", "2", "25", "1e9", "abc", ""]
SIZES = ["0", "16", "32", "-5", "16x12", "0x5", "axb", "100000", "9x", "source"]
#: VDGTOOL_HOSTILE_EXAMPLES=500 hunts for new failures with random examples; the default run replays a fixed,
#: small set (derandomized) to stay within the suite's time budget
HUNT = int(os.environ.get("VDGTOOL_HOSTILE_EXAMPLES", "0"))


def _props(n: int):
    return settings(max_examples=HUNT or n, deadline=None, derandomize=not HUNT,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


PROPS = _props(12)


def _complete_store(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except Exception:  # noqa: BLE001 - not HDF5 at all: not a complete store
        return False


def assert_contract(argv, code, out, err, outdir: Path, before: set) -> None:
    """The CLI contract of issue 15 for one invocation (see the module docstring)."""
    assert code in (0, 1, 2), (argv, code, err)
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
    if "--json" in argv:
        try:
            json.loads(out)
        except ValueError:
            raise AssertionError(f"stdout is not one JSON document for {argv}: {out!r}") from None
    new = {p for p in outdir.rglob("*") if p not in before and ".partial.d" not in p.parts[-2]}
    assert not [p for p in new if p.name.endswith((".partial", ".lock"))], (argv, sorted(new))
    if code != 0:
        for p in new:
            if p.suffix == ".h5" and _complete_store(p):
                # documented exception: a batch store that records its skipped inputs (--strict, or none usable)
                with h5py.File(p) as f:
                    assert "errors" in f and len(f["errors/key"]) > 0, (argv, p, err)
        assert not ((outdir / "toy" / "real.csv").exists() and (outdir / "toy" / "animated.csv").exists()
                    and outdir / "toy" in new), (argv, err)


def _opts(data, table: dict) -> list[str]:
    """A random subset of options, each with a value drawn from its pool (None = a flag)."""
    out = []
    for name in data.draw(S.lists(S.sampled_from(sorted(table)), unique=True, max_size=5), label="options"):
        pool = table[name]
        out += [name] if pool is None else [name, data.draw(S.sampled_from(pool), label=name)]
    return out


def _run_property(run_cli, argv, outdir):
    before = set(outdir.rglob("*"))
    code, out, err = run_cli(*argv)
    assert_contract(argv, code, out, err, outdir, before)
    return code


@pytest.fixture(scope="module")
def hostile_inputs(vids, clips, tmp_path_factory) -> dict:
    """Inputs a careless user passes: good ones, a text file, a folder, nothing at all, a features store."""
    from vdgtool.stores import TableStoreWriter
    from vdgtool.video.extract import extract
    from vdgtool.video.manifest import load_manifest

    d = tmp_path_factory.mktemp("hostile")
    (d / "notes.txt").write_text("hello\nworld\n")
    (d / "empty").mkdir()
    with TableStoreWriter(str(d / "feat.h5"), "features", classes=["a", "b"]) as w:
        w.append({"features": np.ones((3, 4), np.float32)}, key=["a/v0.mkv", "a/v1.mkv", "b/v2.mkv"])
    for i in range(2):
        extract(load_manifest(str(vids["root"])), str(d / f"shard{i}.h5"), encoding="raw", num_shards=2, shard_index=i)
    good = _run_dir(d / "run", [json.dumps({"epoch": e, "val": {"src": {"top1": 0.5}}}) for e in (1, 2)])
    trunc = _run_dir(d / "trunc", [json.dumps({"epoch": 1, "val": {"src": {"top1": 0.5}}}), '{"epo'])
    (d / "brokenrun").mkdir()
    (d / "brokenrun" / "config.json").write_text("{")
    (d / "brokenrun" / "results.jsonl").write_text("")
    return {"videos": [vids["root"], vids["csv"], vids["video"], d / "notes.txt", d / "empty", d / "missing"],
            "stores": [clips, d / "shard0.h5", d / "shard1.h5", d / "feat.h5", d / "notes.txt", d / "missing.h5",
                       d / "empty"],
            "runs": [good, trunc, d / "brokenrun", d / "empty", d / "notes.txt", d / "missing"]}


@PROPS
@given(data=S.data())
def test_property_extract_options(run_cli, hostile_inputs, tmp_path_factory, data):
    outdir = tmp_path_factory.mktemp("p")
    src = data.draw(S.sampled_from(hostile_inputs["videos"]), label="input")
    argv = ["extract", str(src), "-o", str(outdir / "s.h5"), "--json"] + _opts(data, {
        "--size": SIZES, "--fps": FLOATS, "--stride": INTS, "--max-frames": INTS, "--encoding": ["jpeg", "raw", "png"],
        "--jpeg-quality": INTS + ["101"], "--limit": INTS, "--num-shards": INTS, "--shard-index": INTS,
        "--max-pixels": INTS, "--frame-limit": INTS, "--strict": None, "--resume": None, "--overwrite": None,
        "--domain": ["", "real", "é\u00e9"], "--classes": [str(hostile_inputs["videos"][3]), "/nope"],
        "--workers": ["-1", "0", "abc"]})
    _run_property(run_cli, argv, outdir)


@PROPS
@given(data=S.data())
def test_property_store_verbs(run_cli, hostile_inputs, tmp_path_factory, data):
    outdir = tmp_path_factory.mktemp("p")
    stores = [str(p) for p in hostile_inputs["stores"]]
    verb = data.draw(S.sampled_from(["info", "verify", "merge"]), label="verb")
    if verb == "merge":
        existing = str(_copy(Path(stores[1]), outdir / "existing.h5"))
        shards = data.draw(S.lists(S.sampled_from(stores + [existing]), min_size=1, max_size=3), label="shards")
        out = data.draw(S.sampled_from([str(outdir / "m.h5"), existing, str(outdir)]), label="out")
        argv = ["store", "merge", *shards, "-o", out] + _opts(data, {"--allow-partial": None, "--overwrite": None,
                                                                      "--json": None})
        before = Path(existing).read_bytes()
        _run_property(run_cli, argv, outdir)
        if existing in shards:
            assert Path(existing).read_bytes() == before  # an input is never replaced
    else:
        paths = data.draw(S.lists(S.sampled_from(stores), min_size=1, max_size=2), label="paths")
        argv = ["store", verb, *paths] + _opts(data, {"--json": None, **({"--no-decode": None} if verb == "verify"
                                                                          else {})})
        _run_property(run_cli, argv, outdir)


@pytest.fixture
def keep_threads():
    """`flow --threads N` sets torch's and OpenCV's thread counts for the process: restore them."""
    import cv2
    import torch

    t, c = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(t)
    cv2.setNumThreads(c)


@PROPS
@given(data=S.data())
def test_property_flow_options(run_cli, hostile_inputs, tmp_path_factory, keep_threads, data):
    outdir = tmp_path_factory.mktemp("p")
    src = data.draw(S.sampled_from([str(p) for p in hostile_inputs["stores"]]), label="input")
    argv = ["flow", src, "-o", str(outdir / "f.h5"), "--json",
            "--backend", data.draw(S.sampled_from(["dis", "farneback", "torch", "opencv"]), label="backend")]
    argv += _opts(data, {"--stride": INTS, "--bound": FLOATS, "--dtype": ["uint8", "float16", "int8"],
                         "--tau": FLOATS, "--lambda": FLOATS, "--theta": FLOATS, "--scales": SMALL_INTS,
                         "--zoom": FLOATS, "--warps": SMALL_INTS, "--epsilon": FLOATS, "--iterations": SMALL_INTS,
                         "--outer-iterations": SMALL_INTS, "--median": SMALL_INTS + ["4"], "--presmooth": FLOATS,
                         "--batch-size": SMALL_INTS, "--threads": SMALL_INTS, "--limit": INTS,
                         "--num-shards": INTS, "--shard-index": INTS, "--strict": None, "--resume": None,
                         "--overwrite": None, "--device": ["cpu", "cuda:7", "tpu", "auto"]})
    _run_property(run_cli, argv, outdir)


@PROPS
@given(data=S.data())
def test_property_toydata_collect_and_synth(run_cli, hostile_inputs, vids, tmp_path_factory, data):
    outdir = tmp_path_factory.mktemp("p")
    verb = data.draw(S.sampled_from(["toydata", "collect", "synth-video"]), label="verb")
    if verb == "toydata":
        argv = ["toydata", str(outdir / "toy"), "--json",
                "--size", data.draw(S.sampled_from(["-1", "0", "15", "16", "17", "abc", "nan", "100000"])),
                "--frames", data.draw(S.sampled_from(["-1", "0", "1", "2", "abc", "2000"])),
                "--videos-per-class", data.draw(S.sampled_from(["-1", "0", "1", "abc", "1e9"]))]
        argv += _opts(data, {"--bias": FLOATS, "--fps": SMALL_INTS + ["8"], "--speed": SMALL_INTS + ["3"],
                             "--kind": ["motion", "nope"], "--overwrite": None})
    elif verb == "collect":
        runs = data.draw(S.lists(S.sampled_from([str(p) for p in hostile_inputs["runs"]]), min_size=1, max_size=3))
        argv = ["collect", *runs] + _opts(data, {"--select": ["last", "val", "oracle", "best"], "--json": None,
                                                 "--source": ["src", "nope", ""], "--target": ["src", "x"],
                                                 "--group-by": ["method", "", "nope,seed", ","]})
    else:
        argv = ["synth-video", str(vids["root"] if data.draw(S.booleans()) else _images(outdir)),
                "-o", str(outdir / "s.h5"), "--json",
                "--size", data.draw(S.sampled_from(["16", "2", "1", "0", "abc", "8x6", "source", "99999"])),
                "--frames", data.draw(S.sampled_from(["1", "2", "0", "-1", "abc", "2000"]))]
        argv += _opts(data, {"--mode": ["depth", "crop2d", "3d"], "--fps": FLOATS, "--rot-range": ["1,2", "2,1",
                             "nan,1", "a", "-1,1", "0,0"], "--trans-range": ["0.01,0.02", "inf,1", "x"],
                             "--batch-size": SMALL_INTS, "--encoding": ["raw", "jpeg"], "--max-pixels": INTS,
                             "--depth": ["none", "/nope", "maps:/nope"], "--strict": None, "--resume": None,
                             "--trajectory": ["random", "constant", "zigzag"], "--fill": ["telea", "torch", "none"]})
    _run_property(run_cli, argv, outdir)


def _images(d: Path) -> Path:
    from PIL import Image

    root = d / "imgs"
    for i, cls in enumerate(("a", "a", "b")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(root / cls / f"i{i}.png")
    (root / "b" / "bad.jpg").write_bytes(b"not an image")
    return root


TAMPER = S.one_of(
    S.tuples(S.just("attr"), S.sampled_from(["vdgtool_kind", "vdgtool_schema", "complete", "conventions", "classes",
                                             "domains", "provenance"]),
             S.sampled_from(["", "{", "[]", "{}", "null", "[1, 2]", '["a"]', "9.0", "clips", "features", 3, -1])),
    S.tuples(S.just("del"), S.sampled_from(["data", "meta", "errors", "meta/key", "meta/label", "meta/num_frames",
                                            "data/00000000", "meta/height", "errors/key"]), S.just(None)),
    S.tuples(S.just("col"), S.sampled_from(["meta/label", "meta/domain", "meta/index", "meta/num_frames",
                                            "meta/key", "meta/width"]),
             S.sampled_from(["2d", "short", "float", "huge", "negative", "bytes"])),
    S.tuples(S.just("bytes"), S.integers(0, 2), S.binary(min_size=1, max_size=64)),
)


def _tamper(p: Path, op) -> None:
    what, name, value = op
    with h5py.File(p, "a") as f:
        if what == "attr":
            f.attrs[name] = value
        elif what == "del":
            if name in f:
                del f[name]
        elif what == "col" and name in f:
            old = f[name][()]
            del f[name]
            n = len(old)
            new = {"2d": np.zeros((n, 2), np.int32), "short": old[:1], "float": np.full(n, 0.5, np.float32),
                   "huge": np.full(n, 2**30, np.int64), "negative": np.full(n, -5, np.int64),
                   "bytes": np.array([b"\xff\xfe"] * n, dtype=object)}[value]
            f.create_dataset(name, data=new, dtype=h5py.string_dtype() if value == "bytes" else None)
    if what == "bytes":  # inside a video's frames (pure data: HDF5's own structures stay intact)
        with h5py.File(p) as f:
            if f"data/{name:08d}" not in f:
                return
        off = _chunk_offset(p, f"data/{name:08d}")
        with open(p, "r+b") as fh:
            fh.seek(off + 7)
            fh.write(value)


@_props(16)
@given(ops=S.lists(TAMPER, min_size=1, max_size=2))
def test_property_tampered_stores(run_cli, clips, tmp_path_factory, ops):
    outdir = tmp_path_factory.mktemp("t")
    p = _copy(clips, outdir / "t.h5")
    for op in ops:
        _tamper(p, op)
    for argv in (["store", "info", str(p), "--json"], ["store", "verify", str(p), "--json"],
                 ["flow", str(p), "-o", str(outdir / "f.h5"), "--backend", "dis", "--json"],
                 ["store", "merge", str(p), "-o", str(outdir / "m.h5"), "--json"]):
        code = _run_property(run_cli, argv, outdir)
        if argv[1] == "verify" and any(op[0] in ("bytes", "col", "del") for op in ops):
            assert code == 1, (ops, "a damaged store passed verify")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A vdgtool checkpoint of an untrained test_c3d over classes a, b (no training needed)."""
    from vdgtool.models import create_model
    from vdgtool.train.checkpoint import save_checkpoint

    p = tmp_path_factory.mktemp("ckpt") / "c.pt"
    model = create_model("test_c3d", num_classes=2)
    save_checkpoint(str(p), {"config": {"model": "test_c3d", "class_names": ["a", "b"], "model_kwargs": {}},
                             "model": model.state_dict()})
    return p


@pytest.mark.slow
@_props(15)
@given(data=S.data())
def test_property_eval_features_score_options(run_cli, hostile_inputs, tiny_ckpt, tmp_path_factory, data):
    outdir = tmp_path_factory.mktemp("p")
    stores = [str(p) for p in hostile_inputs["stores"]]
    ckpt = data.draw(S.sampled_from([str(tiny_ckpt), str(tiny_ckpt), stores[4], stores[0], str(outdir / "no.pt")]),
                     label="ckpt")
    data_args = [a for s in data.draw(S.lists(S.sampled_from(stores[:1] * 3 + stores[3:]), min_size=1, max_size=2),
                                      label="data") for a in ("--data", s)]
    verb = data.draw(S.sampled_from(["eval", "features", "score"]), label="verb")
    common = {"--batch-size": SMALL_INTS, "--workers": ["-1", "0", "abc"], "--device": ["cpu", "cuda:3", "x"],
              "--amp": ["auto", "off", "fp8"], "--seed": INTS}
    if verb == "eval":
        argv = ["eval", ckpt, *data_args, "--json"] + _opts(data, {
            **common, "--clips": SMALL_INTS, "--crops": ["1", "3", "2"], "-o": [str(outdir / "p.h5"), stores[0]],
            "--fusion": ["softmax", "logits", "max"], "--fuse": [str(tiny_ckpt), stores[4]],
            "--few-shot": None, "--ways": SMALL_INTS, "--shots": ["1", "1,5", "abc", "0", ""],
            "--queries": SMALL_INTS, "--episodes": SMALL_INTS, "--episodes-file": [str(outdir / "e.json"), stores[4]],
            "--overwrite": None})
    elif verb == "features":
        head = data.draw(S.sampled_from([[ckpt], ["--model", "test_c3d"], ["--model", "nope"], []]), label="model")
        argv = ["features", *head, *data_args, "-o", str(outdir / "f.h5"), "--json"] + _opts(data, {
            **common, "--clips": SMALL_INTS, "--dtype": ["float16", "float32", "int8"],
            "--weights": [stores[4], str(tiny_ckpt), "/nope.pt"], "--overwrite": None})
    else:
        argv = ["score", ckpt, *data_args, "--json", "--student", "test_frame2d", "--student-epochs", "1"] + _opts(
            data, {**common, "--method": ["freeze", "shuffle", "distill", "warp"], "--frame": ["first", "random", "9"],
                   "--permute": ["clip", "batch"], "--target": ["model", "labels"], "--student-lr": FLOATS,
                   "--student-wd": FLOATS, "--holdout": FLOATS, "--num-clips": SMALL_INTS, "--per-clip": None,
                   "--heldout": [stores[0], stores[3]]})
    _run_property(run_cli, argv, outdir)


@pytest.mark.slow
@_props(5)
@given(offset=S.floats(0, 1), blob=S.binary(min_size=1, max_size=256))
def test_property_random_byte_damage_anywhere(clips, tmp_path_factory, offset, blob):
    """Bytes damaged anywhere in a store file (HDF5's own structures included: run in a subprocess, so a crash of
    the HDF5 library would show as a failure here instead of taking pytest down)."""
    d = tmp_path_factory.mktemp("b")
    p = _copy(clips, d / "b.h5")
    with open(p, "r+b") as f:
        f.seek(int(offset * (p.stat().st_size - len(blob))))
        f.write(blob)
    for verb in ("info", "verify"):
        r = subprocess.run([PY, "-m", "vdgtool", "store", verb, str(p), "--json"], env=ENV, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode in (0, 1) and "internal error" not in r.stderr, (verb, r.returncode, r.stderr)
        json.loads(r.stdout)
