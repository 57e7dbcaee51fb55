"""recipes/i2v data files: class lists and name maps (spec §1.1), the hyper-parameter table (§1.6)."""

from __future__ import annotations

import csv
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO

from vdgtool.video.manifest import read_class_list

I2V = REPO / "recipes" / "i2v"


def table(name):
    with open(I2V / f"{name}_classes.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_class_lists_match_the_release_lists():
    # totals of the release's list files (spec §1.1): E→H 3014 images / 1690 videos, S→U 2909 / 1610
    for name, n, src, tgt in (("e2h", 13, 3014, 1690), ("s2u", 12, 2909, 1610)):
        rows = table(name)
        assert [int(r["label"]) for r in rows] == list(range(n))
        assert read_class_list(str(I2V / f"{name}_classes.txt")) == [r["name"] for r in rows]
        assert sum(int(r["source_images"]) for r in rows) == src
        assert sum(int(r["target_videos"]) for r in rows) == tgt
    s2u = {r["source_folder"]: r["name"] for r in table("s2u")}
    assert s2u["cleaning_the_floor"] == "MoppingFloor" and s2u["climbing"] == "RockClimbingIndoor"


def test_benchmark_table_is_complete():
    cfg = tomllib.loads((I2V / "benchmarks.toml").read_text())
    need = {"lr", "batch_size", "epochs", "milestones", "lambda_local", "lambda_pace", "num_classes", "classes"}
    for b, (lr, bs, ep, ms, l1, l2) in {"e2h": (0.05, 16, 60, [30, 40], 1, 0.2),
                                        "b2u": (0.1, 32, 30, [15, 20], 20, 0.001),
                                        "s2u": (0.015, 32, 20, [10, 15], 1, 0.01)}.items():
        t = cfg[b]
        assert need <= set(t), b
        got = (t["lr"], t["batch_size"], t["epochs"], t["milestones"], t["lambda_local"], t["lambda_pace"])
        assert got == (lr, bs, ep, ms, l1, l2), b
    c = cfg["common"]
    assert (c["bank_size"], c["warmup_epochs"], c["pace_classes"], c["clip_len"], c["eval_frames"]) == \
        (60, 10, 5, 16, 32)
    assert c["optimizer"] == "sgd" and c["weight_decay"] == 1e-4 and c["retrieval"] == "random"


def test_make_manifests_from_official_layouts(tmp_path):
    s40 = tmp_path / "JPEGImages"  # Stanford40: flat, class in the file name
    s40.mkdir()
    for fn in ("climbing_001.jpg", "climbing_002.jpg", "applauding_001.jpg", "riding_a_bike_010.jpg"):
        (s40 / fn).write_bytes(b"")
    ucf = tmp_path / "UCF-101"
    for c in ("Biking", "Archery", "Diving"):
        (ucf / c).mkdir(parents=True)
        (ucf / c / f"v_{c}_g01_c01.avi").write_bytes(b"")
    script = str(I2V / "make_manifests.py")
    out = tmp_path / "src.csv"
    subprocess.run([sys.executable, script, "source", str(s40), "--benchmark", "s2u", "-o", str(out)], check=True,
                   capture_output=True)
    rows = list(csv.reader(open(out)))[1:]
    assert sorted(r[1] for r in rows) == ["Biking", "RockClimbingIndoor", "RockClimbingIndoor"]  # applauding: not S→U
    ind = tmp_path / "classInd.txt"
    ind.write_text("1 Archery\r\n2 Biking\r\n")
    tgt = tmp_path / "tgt.csv"
    subprocess.run([sys.executable, script, "target", str(ucf), "--classes", str(ind), "-o", str(tgt)], check=True,
                   capture_output=True)
    assert [r[1:] for r in list(csv.reader(open(tgt)))[1:]] == [["Archery", "target"], ["Biking", "target"]]
    bad = subprocess.run([sys.executable, script, "target", str(ucf), "--benchmark", "e2h", "-o", str(tgt)],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "no folder 'clap'" in bad.stderr


@pytest.mark.parametrize("name", ["e2h", "s2u"])
def test_class_names_are_unique(name):
    names = [r["name"] for r in table(name)]
    assert len(set(names)) == len(names) and len({r["source_folder"] for r in table(name)}) == len(names)
