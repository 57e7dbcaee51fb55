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


# ------------------------------------------------------------------------- --kind image-to-video
@pytest.fixture(scope="module")
def i2v(tmp_path_factory):
    from vdgtool.video.toydata_i2v import make_i2v_toy

    root = tmp_path_factory.mktemp("i2v")
    make_i2v_toy(str(root), size=32, frames=8, videos_per_class=2, bias=0.5, seed=0)
    return root


def _object_mask(frames: np.ndarray) -> np.ndarray:
    """The object's pixels: brighter or darker than any background shade (see render_video)."""
    g = frames.astype(np.float32).mean(-1)
    bright, dark = g > 185, g < 68
    return bright if bright.sum() > dark.sum() else dark


def test_i2v_layout_manifests_and_cues(i2v, run_cli, tmp_path):
    import json

    from PIL import Image

    from vdgtool.video.toydata_i2v import I2V_CLASSES

    classes = sorted(I2V_CLASSES)
    for split, ext in (("images", "png"), ("target_train", "gif"), ("target_test", "gif")):
        rows = list(csv.reader(open(i2v / f"{split}.csv")))
        assert rows[0] == ["path", "label", "domain"] and len(rows) == 1 + 2 * len(classes)
        assert sorted({r[1] for r in rows[1:]}) == classes
        for rel, label, dom in rows[1:]:
            assert rel.startswith(f"{split}/{label}/") and rel.endswith(ext)
            assert dom == ("source" if split == "images" else "target")
    assert np.asarray(Image.open(i2v / "images/disc_nod/disc_nod_001.png")).shape == (32, 32, 3)
    fr, info = decode(str(i2v / "target_test/ring_orbit/ring_orbit_000.gif"))
    assert fr.shape == (8, 32, 32, 3)
    cues = json.load(open(i2v / "toy.json"))["clear"]
    assert len(cues) == 20 and 0 < sum(cues.values()) < 20  # bias 0.5: some videos hide their shape
    # every target video moves in every frame (a GIF writer would merge identical frames)
    for rel in cues:
        v = decode(str(i2v / rel))[0].astype(np.int16)
        assert v.shape[0] == 8 and all(np.abs(np.diff(v, axis=0)).reshape(7, -1).max(1) > 0), rel
    # the CLI registry reaches the generator
    code, out, _ = run_cli("toydata", tmp_path / "c", "--kind", "image-to-video", "--size", "16", "--frames", "3",
                           "--videos-per-class", "1", "--json")
    assert code == 0 and set(json.loads(out)["domains"]) == {"images", "target_train", "target_test"}


def test_i2v_deterministic_and_nested(i2v, tmp_path):
    from vdgtool.video.toydata_i2v import make_i2v_toy

    make_i2v_toy(str(tmp_path / "a"), size=32, frames=8, videos_per_class=1, bias=0.5, seed=0)
    for rel in ("images/bar_pulse/bar_pulse_000.png", "target_train/cross_spin/cross_spin_000.gif",
                "target_test/triangle_shake/triangle_shake_000.gif"):
        assert (tmp_path / "a" / rel).read_bytes() == (i2v / rel).read_bytes(), rel  # a subset of the bigger run
    make_i2v_toy(str(tmp_path / "b"), size=32, frames=8, videos_per_class=1, bias=0.5, seed=1)
    assert (tmp_path / "b/images/bar_pulse/bar_pulse_000.png").read_bytes() != (
        i2v / "images/bar_pulse/bar_pulse_000.png").read_bytes()
    with pytest.raises(InputError, match="already holds"):
        make_i2v_toy(str(tmp_path / "a"), size=32, frames=8, videos_per_class=1)
    with pytest.raises(InputError, match="bias"):
        make_i2v_toy(str(tmp_path / "c"), bias=-0.1)


def test_i2v_motion_is_class_specific_and_ambiguous_videos_hide_the_shape():
    from vdgtool.video.toydata_i2v import render_video

    def track(cls, seed, clear=True):
        v = render_video(np.random.default_rng(seed), cls, 48, 14, 2, clear)
        masks = [_object_mask(f) for f in v]
        ys, xs = (np.array([np.nonzero(m)[i].mean() for m in masks]) for i in (0, 1))
        area = np.array([m.sum() for m in masks])
        turned = np.mean([(a & ~b).sum() / a.sum() for a, b in zip(masks, masks[1:])])  # pixels given up a frame
        return ys, xs, area, turned

    for seed in range(3):
        ys, xs, area, _ = track("disc_nod", seed)
        assert np.ptp(ys) > 5 and np.ptp(xs) < 1                          # up and down
        ys, xs, area, _ = track("triangle_shake", seed)
        assert np.ptp(xs) > 5 and np.ptp(ys) < 1                          # left and right
        ys, xs, area, _ = track("bar_pulse", seed)
        assert np.ptp(xs) < 1 and np.ptp(ys) < 1 and area.max() > 1.6 * area.min()  # grows and shrinks
        ys, xs, area, _ = track("ring_orbit", seed)
        assert np.ptp(ys) > 4 and np.ptp(xs) > 4                          # a circle
        ys, xs, area, turned = track("cross_spin", seed)
        assert np.ptp(xs) < 1 and np.ptp(ys) < 1 and np.ptp(area) < 0.1 * area.mean() and turned > 0.1  # turns
    # the shape's edges are sharp in a clear video and gone in an ambiguous one
    for cls in ("disc_nod", "bar_pulse", "triangle_shake"):
        for clear, lo, hi in ((True, 40, 1e9), (False, 0, 25)):
            g = render_video(np.random.default_rng(0), cls, 48, 2, 2, clear)[0].astype(np.float32).mean(-1)
            assert lo <= max(np.abs(np.diff(g, axis=0)).max(), np.abs(np.diff(g, axis=1)).max()) < hi


@pytest.mark.slow
def test_i2v_toy_pipeline_with_st_i2v_i3d(run_cli, tmp_path):
    """toydata -> synth-video -> extract -> train the ST-I2V test_i3d (frozen stem) -> checkpoint -> eval."""
    import json

    from vdgtool.train.checkpoint import build_from_checkpoint

    d = tmp_path / "i2v"
    assert run_cli("toydata", d, "--kind", "image-to-video", "--size", "32", "--frames", "16",
                   "--videos-per-class", "4", "--seed", "3")[0] == 0
    assert run_cli("synth-video", d / "images", "-o", d / "src.h5", "--preset", "mm2024", "--size", "32",
                   "--frames", "16", "--seed", "3")[0] == 0
    assert run_cli("extract", d / "target_test.csv", "-o", d / "test.h5", "--size", "32", "--encoding", "raw")[0] == 0
    code, out, err = run_cli("train", "--data", d / "src.h5", "--val", d / "test.h5", "--model", "test_i3d",
                             "--model-arg", "variant=st-i2v", "--model-arg", "freeze_before=Mixed_4b",
                             "--model-arg", "dropout=0.5", "--num-frames", "16", "--size", "32", "--epochs", "2",
                             "--batch-size", "8", "--seed", "3", "-o", d / "run", "--json")
    assert code == 0, err
    model, cfg = build_from_checkpoint(str(d / "run" / "checkpoints" / "last.pt"))
    assert cfg["model_kwargs"]["variant"] == "st-i2v" and model.frozen_endpoints[-1] == "MaxPool3d_4a_3x3"
    import torch

    with torch.no_grad():
        assert model.forward_per_time(torch.zeros(1, 3, 16, 32, 32)).logits.shape == (1, 5, 16)
    code, out, err = run_cli("eval", d / "run" / "checkpoints" / "last.pt", "--data", d / "test.h5", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 20
