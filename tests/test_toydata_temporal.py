"""The temporal-shift toy (``toydata --kind temporal``): layout, manifests, determinism, reversed pairs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from vdgtool.errors import InputError
from vdgtool.video.decode import decode
from vdgtool.video.toydata_temporal import CLASSES, make_temporal_toy, render_clip, slot_layout


@pytest.fixture(scope="module")
def ttoy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ttoy")
    s = make_temporal_toy(str(root), size=16, frames=10, videos_per_class=4, seed=0)
    return root, s


def test_layout_splits_and_manifests(ttoy):
    root, s = ttoy
    assert CLASSES == ["circle_then_square", "cross_then_triangle", "square_then_circle", "triangle_then_cross"]
    want = {"source_train": 16, "source_val": 8}
    for t in ("control", "onset", "tempo", "absence"):
        want.update({f"{t}_val": 8, f"{t}_test": 8})
    assert {k: v["videos"] for k, v in s["domains"].items()} == want
    for name in want:
        rows = list(csv.reader(open(root / f"{name}.csv")))
        domain, split = name.split("_")
        assert rows[0] == ["path", "label", "domain"] and len(rows) == want[name] + 1
        assert sorted({r[1] for r in rows[1:]}) == CLASSES and {r[2] for r in rows[1:]} == {domain}
        for rel, label, _ in rows[1:]:
            assert rel.startswith(f"{domain}/{split}/{label}/") and (root / rel).is_file()
    fr, info = decode(str(root / "source/train/circle_then_square/circle_then_square_000.mp4"))
    assert fr.shape == (10, 16, 16, 3)
    fr, info = decode(str(root / "onset/test/square_then_circle/square_then_circle_001.mp4"))
    assert fr.shape == (10, 16, 16, 3)  # every frame, blank ones included
    ref = render_clip([0, 2, 1, CLASSES.index("square_then_circle"), 1], "square_then_circle", "onset", "animated",
                      16, 10, 1)
    assert np.abs(fr.astype(int) - ref).mean() < 8  # the rendered frames, up to H.264 (4:2:0 chroma at 16 px)


def test_deterministic_for_a_seed(ttoy, tmp_path):
    root, _ = ttoy
    a = tmp_path / "a"
    make_temporal_toy(str(a), size=16, frames=10, videos_per_class=4, seed=0)
    assert (a / "onset_test.csv").read_bytes() == (root / "onset_test.csv").read_bytes()
    for rel in ("source/val/square_then_circle/square_then_circle_000.mp4",
                "absence/val/cross_then_triangle/cross_then_triangle_001.mp4"):
        x, y = decode(str(a / rel))[0].astype(int), decode(str(root / rel))[0].astype(int)
        assert np.abs(x - y).mean() < 1.5  # the lossy H.264 encode may vary by a few grey levels under load
    b = tmp_path / "b"
    make_temporal_toy(str(b), size=16, frames=10, videos_per_class=2, seed=1)
    rel = "control/test/circle_then_square/circle_then_square_000.mp4"
    assert np.abs(decode(str(b / rel))[0].astype(int) - decode(str(root / rel))[0]).mean() > 10
    with pytest.raises(InputError, match="already holds"):
        make_temporal_toy(str(b), size=16, frames=10, videos_per_class=2, seed=1)
    with pytest.raises(InputError, match="at least 10 frames"):
        make_temporal_toy(str(tmp_path / "c"), frames=6)


@pytest.mark.parametrize("layout,style", [("canonical", "real"), ("onset", "animated"), ("tempo", "animated")])
def test_reversed_pairs_hold_the_same_frames_in_another_order(layout, style):
    for seed in range(3):
        ab = render_clip([seed, 7], "circle_then_square", layout, style, 32, 16, 2)
        ba = render_clip([seed, 7], "square_then_circle", layout, style, 32, 16, 2)
        assert sorted(f.tobytes() for f in ab) == sorted(f.tobytes() for f in ba)  # bag of frames: equal
        assert not np.array_equal(ab, ba)  # ... the order differs
        lay = slot_layout(layout, 16, *np.random.default_rng([seed, 7, 0]).integers(0, 2, size=2))
        (s1, n), (s2, _) = lay["slots"]
        np.testing.assert_array_equal(ab[s1:s1 + n], ba[s2:s2 + n])  # sub-motion 1 of one is 2 of the other


def test_shifted_layouts():
    can, onset, tempo = (slot_layout(x, 20)["slots"] for x in ("canonical", "onset", "tempo"))
    assert can == [(1, 7), (8, 7)]
    assert onset[0][0] - can[0][0] == 4 and onset[1][0] + onset[1][1] <= 20  # 0.2-0.25 T later, inside the clip
    assert [n for _, n in tempo] == [3, 3] and tempo[0][0] == can[0][0] and slot_layout("tempo", 20)["tempo"] == 2
    assert slot_layout("absence", 20, drop=0)["slots"] == [None, (8, 7)]
    assert slot_layout("absence", 20, drop=1)["slots"] == [(1, 7), None]
    # an absent sub-motion leaves blank frames: the clip shows one shape only
    clip = render_clip([3, 1], "triangle_then_cross", "absence", "animated", 32, 20, 2)
    bg = clip[0, 0, 0]
    shown = [t for t in range(20) if (clip[t] != bg).any()]
    assert len(shown) == 7


def test_toydata_cli_temporal(run_cli, tmp_path):
    code, out, err = run_cli("toydata", tmp_path / "t", "--kind", "temporal", "--size", "16", "--frames", "10",
                             "--videos-per-class", "2", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["kind"] == "temporal" and s["domains"]["tempo_test"]["videos"] == 8
    assert s["layouts"]["onset"]["slots"][0][0] > s["layouts"]["source"]["slots"][0][0]
    code, out, err = run_cli("toydata", tmp_path / "u", "--kind", "temporal", "--bias", "0.5")
    assert code == 2 and "--bias does not apply to --kind temporal" in err
    assert not (tmp_path / "u").exists()


def test_a_failed_run_does_not_block_a_rerun(run_cli, tmp_path, monkeypatch):
    import vdgtool.video.toydata_temporal as tt

    monkeypatch.setattr(tt, "write_mp4", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    args = ("toydata", tmp_path / "t", "--kind", "temporal", "--size", "16", "--frames", "10", "--videos-per-class", "1")
    code, _, err = run_cli(*args)
    assert code == 1 and "No space left on device" in err and not list((tmp_path / "t").glob("*.csv"))
    monkeypatch.undo()
    code, _, err = run_cli(*args)
    assert code == 0, err
    code, _, err = run_cli("toydata", tmp_path / "u", "--kind", "temporal", "--fps", "0")
    assert code == 2 and not (tmp_path / "u").exists()
