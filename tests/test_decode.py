"""Decoding: real files from ../shared/data and generated lossless videos with known pixels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import known_frames, write_video

from vdgtool.errors import DecodeError, InputError
from vdgtool.video import decode as D
from vdgtool.video.decode import DecodeOptions, decode, parse_size, read_gif

UCF = "videos/real/ucf101__Basketball__v_Basketball_g01_c01.avi"
UCF2 = "videos/real/ucf101__ApplyEyeMakeup__mmaction2_tests_test.avi"
CORRUPT = "videos/decode_edge/decord_corrupted.mp4"
GIF_VAR = "gifs/k400__arm_wrestling__mmaction2_demo_old_146x110.gif"  # frame durations of 40 and 120 ms
GIF_CRICKET = "gifs/ucf101__CricketShot__v_CricketShot_g04_c01_rgb_i3d.gif"  # 79 frames of 40 ms


# -- generated videos with known pixels ---------------------------------------------------------
@pytest.mark.parametrize("codec,ext", [("ffv1", "mkv"), ("libx264rgb", "mp4")])
@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_lossless_video_decodes_to_exact_pixels(tmp_path, codec, ext, decoder):
    fr = known_frames()
    p = write_video(tmp_path / f"v.{ext}", fr, codec=codec)
    out, info = decode(p, decoders=(decoder,))
    assert info["decoder"] == decoder
    assert info["source_frames"] == 8
    assert info["fps"] == pytest.approx(10.0)
    np.testing.assert_array_equal(out, fr)


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_frame_selection_stride_fps_max_frames(lossless_video, decoder):
    p, fr = lossless_video  # 8 frames at 10 fps; frame k has pixel (0,0,0) = 10k
    ids = lambda o: (decode(p, o, (decoder,))[0][:, 0, 0, 0] // 10).tolist()  # noqa: E731
    assert ids(DecodeOptions(stride=3)) == [0, 3, 6]
    assert ids(DecodeOptions(max_frames=5)) == [0, 1, 2, 3, 4]
    assert ids(DecodeOptions(stride=2, max_frames=2)) == [0, 2]
    assert ids(DecodeOptions(fps=5)) == [0, 2, 4, 6]           # t = 0, .2, .4, .6 s
    assert ids(DecodeOptions(fps=4)) == [0, 2, 5, 7]           # t = 0, .25, .5, .75 s
    assert ids(DecodeOptions(fps=20, max_frames=4)) == [0, 0, 1, 1]
    out, info = decode(p, DecodeOptions(stride=2), (decoder,))
    assert info["fps"] == pytest.approx(5.0) and info["source_frames"] == 8


def test_resize_short_side_and_exact_size(lossless_video):
    p, _ = lossless_video  # 32x24
    assert decode(p, DecodeOptions(size=12))[0].shape == (8, 12, 16, 3)
    assert decode(p, DecodeOptions(size=(20, 10)))[0].shape == (8, 10, 20, 3)


def test_parse_size():
    assert parse_size("128") == 128
    assert parse_size("160x120") == (160, 120)
    assert parse_size("0") is None and parse_size(None) is None and parse_size("") is None
    for bad in ("abc", "-3", "0x10", "12x"):
        with pytest.raises(InputError):
            parse_size(bad)


def test_decoder_fallback_when_first_reader_fails(lossless_video, monkeypatch):
    p, fr = lossless_video

    def broken(path, opts):
        raise RuntimeError("simulated decord failure")

    monkeypatch.setattr(D, "_decode_decord", broken)
    out, info = decode(p)
    assert info["decoder"] == "pyav"
    np.testing.assert_array_equal(out, fr)


def test_non_video_and_empty_files_are_reported_with_reasons(tmp_path):
    txt = tmp_path / "notes.mp4"
    txt.write_text("this is not a video\n" * 10)
    with pytest.raises(DecodeError) as e:
        decode(str(txt))
    msg = str(e.value)
    assert "decord:" in msg and "pyav:" in msg and str(txt) in msg and "\n" not in msg
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty file"):
        decode(str(empty))
    with pytest.raises(DecodeError, match="does not exist"):
        decode(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="unknown decoder"):
        decode(str(txt), decoders=("opencv",))


def test_truncated_video_is_decoded_partially_or_reported(tmp_path):
    fr = known_frames(t=30, h=32, w=48)
    p = write_video(tmp_path / "full.mkv", fr)
    data = open(p, "rb").read()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    try:
        out, info = decode(str(cut))
    except DecodeError as exc:
        assert "cut.mkv" in str(exc)
    else:  # what was decoded must be the true prefix of the video
        assert 0 < len(out) < 30
        np.testing.assert_array_equal(out, fr[: len(out)])


# -- real files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rel,n,fps", [(UCF, 141, 29.97), (UCF2, 164, 25.0)])
def test_ucf_avi_frame_counts_and_decoders_agree(shared_data, rel, n, fps):
    a, ia = decode(str(shared_data / rel), decoders=("decord",))
    b, ib = decode(str(shared_data / rel), decoders=("pyav",))
    assert a.shape == b.shape == (n, 240, 320, 3)
    assert ia["source_frames"] == ib["source_frames"] == n
    assert ia["fps"] == pytest.approx(fps, abs=0.01) and ib["fps"] == pytest.approx(fps, abs=0.01)
    # MPEG-4 part 2: a few pixels before keyframes differ by up to 2 grey levels between decoders
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 2


@pytest.mark.parametrize("resize", ["area", "decoder"])
def test_fps_resampling_agrees_between_decoders(shared_data, resize):
    o = DecodeOptions(fps=10, size=64, resize=resize)
    a, _ = decode(str(shared_data / UCF), o, ("decord",))
    b, _ = decode(str(shared_data / UCF), o, ("pyav",))
    assert len(a) == len(b) == 48  # 141 frames at 29.97 fps = 4.70 s
    assert a.shape[1:] == (64, 85, 3)
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    if resize == "area":
        assert d.max() <= 2
    else:  # both scale with swscale's bilinear filter; chroma rounding differs on a few edge pixels
        assert d.mean() < 0.5 and np.percentile(d, 99.9) <= 6


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_rotation_metadata_applied_by_both_decoders(shared_data, angle):
    p = str(shared_data / f"videos/decode_edge/decord_video_{angle}.mov")
    a, _ = decode(p, decoders=("decord",))
    b, _ = decode(p, decoders=("pyav",))
    expected = (320, 568) if angle in (0, 180) else (568, 320)
    assert a.shape[1:3] == b.shape[1:3] == expected
    np.testing.assert_array_equal(a, b)


def test_corrupt_h264_is_reported_with_each_decoders_reason(shared_data):
    p = str(shared_data / CORRUPT)
    with pytest.raises(DecodeError) as e:
        decode(p)
    msg = str(e.value)
    assert "decord_corrupted.mp4" in msg and "decord:" in msg and "pyav:" in msg
    assert "\n" not in msg


def test_decord_cannot_read_gif_so_pil_reads_it(shared_data):
    p = str(shared_data / GIF_CRICKET)
    with pytest.raises(Exception):
        D._decode_decord(p, DecodeOptions())
    out, info = decode(p)
    assert info["decoder"] == "pil"
    assert out.shape == (79, 224, 224, 3)
    assert info["source_fps"] == pytest.approx(25.0)


def test_gif_variable_frame_durations_drive_fps_resampling(shared_data):
    from PIL import Image

    p = str(shared_data / GIF_VAR)
    frames, starts, total = read_gif(p)
    with Image.open(p) as im:  # independent reading of the durations
        durs = []
        for i in range(im.n_frames):
            im.seek(i)
            durs.append(im.info["duration"])
    assert set(durs) == {40, 120}  # really variable
    assert total == pytest.approx(sum(durs) / 1000.0)
    np.testing.assert_allclose(starts, np.concatenate([[0], np.cumsum(durs)[:-1]]) / 1000.0)
    out, info = decode(p, DecodeOptions(fps=25))
    assert len(out) == int(np.ceil(total * 25 - 1e-6))
    # the frame shown at time t is the last one that started at or before t
    for j in (0, 7, 50, 133, len(out) - 1):
        t = j / 25
        k = np.searchsorted(starts, t + 1e-6, side="right") - 1
        np.testing.assert_array_equal(out[j], frames[k])
    # a uniform count-based resampling would differ: durations matter
    naive = np.round(np.arange(len(out)) * len(frames) / len(out)).astype(int).clip(0, len(frames) - 1)
    assert any(not np.array_equal(out[j], frames[naive[j]]) for j in range(len(out)))


def test_gif_fps_exact_frame_choice_on_constant_rate_gif(shared_data):
    frames, _, _ = read_gif(str(shared_data / GIF_CRICKET))  # 40 ms per frame
    out, info = decode(str(shared_data / GIF_CRICKET), DecodeOptions(fps=10))
    assert info["fps"] == 10.0
    assert len(out) == 32  # 3.16 s
    for j in range(len(out)):
        np.testing.assert_array_equal(out[j], frames[int(j * 2.5 + 1e-9)])


def test_decord_then_opencv_png_reads_still_work(tmp_path):
    """decord's bundled zlib must not break OpenCV's PNG decoder (a fresh process: import order matters)."""
    import subprocess
    import sys

    from PIL import Image

    Image.fromarray(np.full((16, 20, 3), 9, np.uint8)).save(tmp_path / "a.png")
    vid = write_video(tmp_path / "v.mkv", known_frames())
    code = ("import sys; from vdgtool.video.decode import decode; decode(sys.argv[1]); import cv2; "
            "sys.exit(0 if cv2.imread(sys.argv[2]) is not None else 3)")
    r = subprocess.run([sys.executable, "-c", code, vid, str(tmp_path / "a.png")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- torchcodec (optional reader, issue 17) -------------------------------------------------------------------


def _torchcodec_or_skip():
    from vdgtool.errors import ConfigError

    try:
        D._import_torchcodec()
    except ConfigError as exc:
        pytest.skip(f"torchcodec cannot load here: {exc}")


def test_torchcodec_missing_is_one_line_before_any_input(run_cli, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchcodec", None)  # as if not installed
    code, out, err = run_cli("extract", tmp_path / "nothing-here", "-o", tmp_path / "s.h5", "--decoder", "torchcodec")
    assert code == 1 and "vdgtool[torchcodec]" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert D.decoder_chain("torchcodec") == ("torchcodec", "decord", "pyav") and D.decoder_chain("pyav") == ("pyav",)


def test_torchcodec_matches_decord_on_a_real_file(shared_data):
    _torchcodec_or_skip()
    o = DecodeOptions(size=64, fps=10)
    a, ia = decode(str(shared_data / UCF), o, ("decord",))
    b, ib = decode(str(shared_data / UCF), o, ("torchcodec",))
    assert ib["decoder"] == "torchcodec" and a.shape == b.shape == (48, 64, 85, 3)
    assert ia["source_frames"] == ib["source_frames"] == 141 and ia["fps"] == ib["fps"]
    assert np.abs(a.astype(np.int16) - b).mean() < 2.0  # MPEG-4 decoder rounding + swscale bilinear in both


@pytest.mark.slow
def test_torchcodec_metadata_and_counts_equal_decord_on_every_real_file(shared_data):
    """Where torchcodec 0.17 stops early (some MPEG-4 AVIs), the chain hands the file to decord (recorded)."""
    _torchcodec_or_skip()
    files = sorted((shared_data / "videos/real").iterdir())
    used = set()
    for p in files:
        a, ia = decode(str(p), DecodeOptions(size=48, max_frames=40), ("decord",))
        b, ib = decode(str(p), DecodeOptions(size=48, max_frames=40), D.decoder_chain("torchcodec"))
        assert a.shape == b.shape and ia["source_frames"] == ib["source_frames"], p.name
        assert ia["source_fps"] == pytest.approx(ib["source_fps"], abs=1e-3), p.name
        used.add(ib["decoder"])
    assert "torchcodec" in used


def test_decoder_resize_is_close_to_the_area_filter(shared_data):
    a, _ = decode(str(shared_data / UCF2), DecodeOptions(size=64, max_frames=20))
    b, _ = decode(str(shared_data / UCF2), DecodeOptions(size=64, max_frames=20, resize="area"))
    assert a.shape == b.shape and 0 < np.abs(a.astype(np.int16) - b).mean() < 3
    assert DecodeOptions(size=64).to_conventions()["resize"] == "decoder"
    with pytest.raises(InputError, match="resize mode"):
        DecodeOptions(resize="nearest")
