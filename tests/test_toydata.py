"""The built-in two-domain dataset: files, determinism, the background bias."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from vdgtool.errors import InputError
from vdgtool.video.decode import decode
from vdgtool.video.toydata import make_toy_dataset

HUES = {"move_down": 15.0, "move_left": 105.0, "move_right": 195.0, "move_up": 285.0}


def test_layout_and_manifests(toy):
    for domain, ext, n_frames in (("real", "mp4", 8), ("animated", "gif", 8)):
        rows = list(csv.reader(open(toy / f"{domain}.csv")))
        assert rows[0] == ["path", "label", "domain"] and len(rows) == 13
        for rel, label, dom in rows[1:]:
            assert dom == domain and rel.endswith(ext) and f"/{label}/" in rel
        fr, info = decode(str(toy / rows[1][0]))
        assert fr.shape == (n_frames, 32, 32, 3)
        assert info["decoder"] == ("pil" if ext == "gif" else "decord")
        assert info["fps"] == pytest.approx(8.0, rel=0.05)  # GIF delays are whole centiseconds: 120 ms


def test_deterministic_for_a_seed(tmp_path, toy):
    a = tmp_path / "a"
    make_toy_dataset(str(a), size=32, frames=8, videos_per_class=3, seed=0)
    for rel in ("real.csv", "animated.csv", "animated/move_left/move_left_002.gif"):
        assert (a / rel).read_bytes() == (toy / rel).read_bytes()
    # the rendered frames are exactly reproducible ...
    from vdgtool.video.toydata import render_clip

    c1 = render_clip(np.random.default_rng(7), "move_up", "real", 32, 4, 100.0, 1)
    c2 = render_clip(np.random.default_rng(7), "move_up", "real", 32, 4, 100.0, 1)
    np.testing.assert_array_equal(c1, c2)
    # ... the lossy H.264 encode of them was seen to vary by a few grey levels under CPU load
    for rel in ("real/move_up/move_up_001.mp4", "real/move_down/move_down_000.mp4"):
        x, y = decode(str(a / rel))[0].astype(int), decode(str(toy / rel))[0].astype(int)
        assert np.abs(x - y).mean() < 1.5 and np.abs(x - y).max() <= 16
    b = tmp_path / "b"
    make_toy_dataset(str(b), size=32, frames=8, videos_per_class=1, seed=1)
    assert (b / "animated/move_left/move_left_000.gif").read_bytes() != (
        toy / "animated/move_left/move_left_000.gif").read_bytes()


def _bg_class(frames: np.ndarray) -> str:
    """Class whose hue is nearest to the frame's median hue (the background covers ~90% of it)."""
    hsv = cv2.cvtColor(frames[0].astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    h = float(np.median(hsv[..., 0]))
    return min(HUES, key=lambda c: min(abs(h - HUES[c]), 360 - abs(h - HUES[c])))


def test_background_cue_follows_bias_in_real_domain_only(tmp_path):
    out = {}
    for bias in (1.0, 0.0):
        root = tmp_path / f"b{bias}"
        make_toy_dataset(str(root), size=32, frames=2, videos_per_class=3, bias=bias, seed=5)
        for domain in ("real", "animated"):
            rows = list(csv.reader(open(root / f"{domain}.csv")))[1:]
            out[bias, domain] = np.mean([_bg_class(decode(str(root / r))[0]) == c for r, c, _ in rows])
    assert out[1.0, "real"] == 1.0   # the shortcut always holds
    assert out[0.0, "real"] == 0.0   # ... never holds
    assert out[1.0, "animated"] < 0.75 and out[0.0, "animated"] > 0.0  # no shortcut: bias ignored


def test_motion_direction_defines_the_class(toy):
    """The object moves by `speed` pixels a frame in the class direction (animated: flat colours)."""
    shifts = {"move_down": (1, 0), "move_up": (-1, 0), "move_left": (0, -1), "move_right": (0, 1)}
    for cls, (dy, dx) in shifts.items():
        fr = decode(str(toy / f"animated/{cls}/{cls}_000.gif"))[0].astype(np.int16)
        speed = max(1, fr.shape[1] // 16)  # the default speed: size / 16 pixels per frame
        best = min(((sy, sx) for sy in range(-4, 5) for sx in range(-4, 5)),
                   key=lambda s: np.abs(np.roll(fr[0], s, axis=(0, 1)) - fr[1]).sum())
        assert best == (dy * speed, dx * speed), cls


def test_validation_and_overwrite(tmp_path):
    with pytest.raises(InputError, match="even"):
        make_toy_dataset(str(tmp_path / "x"), size=33)
    with pytest.raises(InputError, match="bias"):
        make_toy_dataset(str(tmp_path / "x"), bias=1.5)
    d = tmp_path / "d"
    make_toy_dataset(str(d), size=16, frames=2, videos_per_class=2)
    with pytest.raises(InputError, match="already holds"):
        make_toy_dataset(str(d), size=16, frames=2, videos_per_class=1)
    make_toy_dataset(str(d), size=16, frames=2, videos_per_class=1, overwrite=True)
    assert sorted(p.name for p in (d / "real" / "move_up").iterdir()) == ["move_up_000.mp4"]
