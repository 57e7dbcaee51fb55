"""recipes/apn data files and generators: the UCF-HMDB class map, SSv2 pairs, PKU-MMD / NTU view
splits, the hyper-parameter file. Every generator runs on a tiny hand-written annotation set."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
import tomllib
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "apn"


def _load(name: str):
    sys.path.insert(0, str(RECIPE))
    try:
        spec = importlib.util.spec_from_file_location(f"apn_recipe_{name}", RECIPE / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(RECIPE))


def _rows(path) -> list[list[str]]:
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["path", "label", "domain"]
    return rows[1:]


# ----------------------------------------------------------------------------------- UCF-HMDB
def test_ucf_hmdb_class_map_and_lists(tmp_path):
    lists = _load("ucf_hmdb_lists")
    cmap = lists.read_class_map(str(RECIPE / "ucf_hmdb_classes.tsv"))
    assert [c[0] for c in cmap] == ["climb", "fencing", "golf", "kick_ball", "pullup", "punch", "pushup",
                                    "ride_bike", "ride_horse", "shoot_ball", "shoot_bow", "walk"]
    assert dict((c[0], c[1]) for c in cmap)["punch"] == ["BoxingPunchingBag", "BoxingSpeedBag", "Punch"]
    assert dict((c[0], c[1]) for c in cmap)["climb"] == ["RockClimbingIndoor", "RopeClimbing"]
    assert all(c[2] == [c[0]] for c in cmap)  # HMDB51 folders carry the shared names
    ucf, hmdb = tmp_path / "ucf", tmp_path / "hmdb"
    for shared, ucf_classes, hmdb_classes in cmap:
        for u in ucf_classes:
            for g in range(1, 5):  # 4 groups x 3 clips
                for c in range(1, 4):
                    (ucf / u).mkdir(parents=True, exist_ok=True)
                    (ucf / u / f"v_{u}_g{g:02d}_c{c:02d}.avi").write_bytes(b"")
        for h in hmdb_classes:
            (hmdb / h).mkdir(parents=True, exist_ok=True)
            for k in range(5):
                (hmdb / h / f"{h}_clip{k}.avi").write_bytes(b"")
    (ucf / "Archery" / "notes.txt").write_text("not a video")
    (ucf / "Drumming").mkdir()  # an unmapped UCF101 class is ignored
    (ucf / "Drumming" / "v_Drumming_g01_c01.avi").write_bytes(b"")
    counts = lists.main(["--ucf", str(ucf), "--hmdb", str(hmdb), "-o", str(tmp_path / "out")])
    assert counts["ucf_all"] == 15 * 12 and counts["hmdb_all"] == 12 * 5
    train, val = _rows(tmp_path / "out/ucf_train.csv"), _rows(tmp_path / "out/ucf_val.csv")
    assert len(train) + len(val) == 180 and 0.2 < len(val) / 180 < 0.4
    assert {r[1] for r in train} == {c[0] for c in cmap} and {r[2] for r in train} == {"ucf"}
    assert {r[1] for r in _rows(tmp_path / "out/ucf_all.csv") if "Punch" in r[0]} == {"punch"}
    groups = lambda rows: {lists.ucf_group(Path(r[0]).name) for r in rows}  # noqa: E731
    assert groups(train).isdisjoint(groups(val))  # a UCF101 group never straddles the split
    counts2 = lists.main(["--ucf", str(ucf), "--hmdb", str(hmdb), "-o", str(tmp_path / "out2")])
    assert counts2 == counts and (tmp_path / "out2/ucf_val.csv").read_text() == (tmp_path / "out/ucf_val.csv").read_text()
    lists.main(["--ucf", str(ucf), "--hmdb", str(hmdb), "-o", str(tmp_path / "out3"), "--no-group", "--seed", "1"])
    assert not groups(_rows(tmp_path / "out3/ucf_train.csv")).isdisjoint(groups(_rows(tmp_path / "out3/ucf_val.csv")))
    (ucf / "Fencing").rename(ucf / "Fencing_moved")
    with pytest.raises(SystemExit, match="no class folder 'Fencing'"):
        lists.main(["--ucf", str(ucf), "--hmdb", str(hmdb), "-o", str(tmp_path / "out4")])


# --------------------------------------------------------------------------- Something-Something
SSV2_LABELS = ["Closing something", "Opening something", "Pretending to close something without actually closing it",
               "Pretending to open something without actually opening it", "Putting something into something",
               "Pretending to put something into something", "Putting something onto something",
               "Putting something onto something else that cannot support it so it falls down",
               "Pretending to put something onto something", "Pretending to be tearing something that is not tearable",
               "Tearing something into two pieces", "Tearing something just a little bit",
               "Pretending to pour something out of something, but something is empty",
               "Pouring something out of something", "Pouring something into something",
               "Pretending to spread air onto something", "Spreading something onto something",
               "Failing to put something into something because something does not fit"]


def test_ssv2_pairs_rule(tmp_path):
    ss = _load("ssv2_pairs")
    labels = {t: i for i, t in enumerate(SSV2_LABELS)}
    pairs = ss.make_pairs(labels, "exact")
    got = {p["pretending"]: p["doing"] for p in pairs}
    assert got == {"Pretending to close something without actually closing it": ["Closing something"],
                   "Pretending to open something without actually opening it": ["Opening something"],
                   "Pretending to put something into something": ["Putting something into something"],
                   "Pretending to put something onto something": ["Putting something onto something"],
                   "Pretending to pour something out of something, but something is empty":
                       ["Pouring something out of something"],
                   "Pretending to spread air onto something": ["Spreading something onto something"]}
    assert [p["pretending_id"] for p in pairs] == sorted(p["pretending_id"] for p in pairs)
    merged = {p["category"]: p["doing"] for p in ss.make_pairs(labels, "exact-or-prefix")}
    assert merged["Tearing something"] == ["Tearing something into two pieces", "Tearing something just a little bit"]
    assert len(merged) == 7 and merged["Putting something onto something"] == ["Putting something onto something"]
    # the official files: labels {text: "id"}; train/validation entries with a bracketed template
    (tmp_path / "labels.json").write_text(json.dumps({t: str(i) for i, t in enumerate(SSV2_LABELS)}))
    entries = [{"id": "11", "label": "closing a box", "template": "Closing [something]", "placeholders": ["a box"]},
               {"id": "12", "label": "pretending to close a jar", "placeholders": ["a jar"],
                "template": "Pretending to close [something] without actually closing it"},
               {"id": "13", "label": "tearing paper", "template": "Tearing [something] into two pieces"},
               {"id": "14", "label": "x", "template": "Failing to put [something] into [something] because "
                                                       "[something] does not fit"}]
    (tmp_path / "val.json").write_text(json.dumps(entries))
    ss.main(["--labels", str(tmp_path / "labels.json"), "-o", str(tmp_path / "out"), "--validation",
             str(tmp_path / "val.json"), "--videos", "/data/ssv2"])
    assert _rows(tmp_path / "out/ssv2_doing_val.csv") == [["/data/ssv2/11.webm", "Closing something", "doing"]]
    assert _rows(tmp_path / "out/ssv2_pretending_val.csv") == [["/data/ssv2/12.webm", "Closing something",
                                                                "pretending"]]
    tsv = (tmp_path / "out/ssv2_pairs.tsv").read_text().splitlines()
    assert len(tsv) == 1 + 6 and tsv[1].split("\t")[0] == "Closing something"


# ------------------------------------------------------------------------------- PKU-MMD / NTU
def test_pku_view_splits(tmp_path):
    vs = _load("view_splits")
    lab = tmp_path / "labels"
    lab.mkdir()
    for seq in ("0002", "0003", "0004", "0005"):
        for v in "LMR":
            (lab / f"{seq}-{v}.txt").write_text("1,10,50,1\n2,60,99,2\n\n3,120,160,1\n")
    (lab / "readme.txt").write_text("ignored: not <sequence>-<view>.txt")
    counts = vs.main(["pku", "--labels", str(lab), "--videos", "/raw", "-o", str(tmp_path / "out"),
                      "--group", "sequence"])
    out = tmp_path / "out"
    assert counts["pku_C_all"] == 12 and counts["pku_C_train"] + counts["pku_C_val"] == 12
    assert counts["pku_LR_all"] == 24  # the task C -> L,R pools the two other views
    rows = _rows(out / "pku_C_all.csv")
    assert {r[2] for r in rows} == {"C"} and all("/C/" in r[0] and "-M_" in r[0] for r in rows)  # M is the centre
    assert sorted({r[1] for r in rows}) == ["A001", "A002", "A003"]
    assert {r[2] for r in _rows(out / "pku_LR_all.csv")} == {"L", "R"}
    seqs = lambda f: {Path(r[0]).name.split("-")[0] for r in _rows(out / f)}  # noqa: E731
    assert seqs("pku_L_train.csv").isdisjoint(seqs("pku_L_val.csv"))
    cut = (out / "cut_clips.sh").read_text()
    assert "-i '/raw/0003-R.avi' -vf 'trim=start_frame=60:end_frame=100,setpts=PTS-STARTPTS'" in cut
    assert len((out / "instances.csv").read_text().splitlines()) == 1 + 36
    names = tmp_path / "names.txt"
    names.write_text("drink\neat\nwave\n")
    vs.main(["pku", "--labels", str(lab), "-o", str(tmp_path / "o2"), "--classes", str(names), "--min-confidence", "2"])
    assert {r[1] for r in _rows(tmp_path / "o2/pku_L_all.csv")} == {"eat"}
    (lab / "0006-L.txt").write_text("1,50,10,1\n")
    with pytest.raises(SystemExit, match="ends before it starts"):
        vs.main(["pku", "--labels", str(lab), "-o", str(tmp_path / "o3")])


def test_ntu_view_splits(tmp_path):
    vs = _load("view_splits")
    names = [f"S001C{c:03d}P{p:03d}R001A{a:03d}_rgb.avi" for c in (1, 2, 3) for p in (1, 2, 3, 4) for a in (1, 2)]
    (tmp_path / "list.txt").write_text("\n".join(names + ["README.md"]) + "\n")
    counts = vs.main(["ntu", "--list", str(tmp_path / "list.txt"), "-o", str(tmp_path / "out"), "--group", "subject"])
    assert counts["ntu_C_all"] == counts["ntu_L_all"] == counts["ntu_R_all"] == 8 and counts["ntu_LR_all"] == 16
    assert all("C001" in r[0] for r in _rows(tmp_path / "out/ntu_C_all.csv"))  # camera 1 is the centre
    subj = lambda f: {r[0].split("P")[1][:3] for r in _rows(tmp_path / "out" / f)}  # noqa: E731
    assert subj("ntu_R_train.csv").isdisjoint(subj("ntu_R_val.csv"))
    vs.main(["ntu", "--list", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o2"), "--camera-views", "1=C,2=R,3=L"])
    assert all("C003" in r[0] for r in _rows(tmp_path / "o2/ntu_L_all.csv"))
    with pytest.raises(SystemExit, match="camera-views"):
        vs.main(["ntu", "--list", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o3"), "--camera-views", "1=X"])


# ---------------------------------------------------------------------------- hyper-parameters
def test_hparams_file_is_consistent():
    from vdgtool.models import create_model
    from vdgtool.train.config import TrainConfig

    hp = tomllib.loads((RECIPE / "hparams.toml").read_text())
    cfg = TrainConfig.from_dict(dict(hp["train"]))  # every [train] key is a vdgtool train option
    assert cfg.lr == 0.001 and cfg.epochs == 150 and cfg.batch_size == 40 and cfg.milestones == [30, 60, 90, 120]
    assert set(hp["train_code"]) <= set(hp["train"])
    m = create_model("test_apn", 12, **{**hp["model"], "feature_dim": 32})
    assert m.create_kwargs["subsets"] == "consecutive"
    keys = set(hp["train"]) | set(hp["model"]) | set(hp["ada"])
    assert keys == set(hp["source"]) and set(hp["source"].values()) <= {"paper", "code", "vdgtool"}
    assert hp["ada"]["gammas"] == [0.001, 0.01, 0.1, 1.0] and hp["ada_code"]["update"] == "joint"
    assert {b: hp["benchmarks"][b]["num_frames"] for b in hp["benchmarks"]} == {
        "ucf_hmdb": 5, "something": 5, "pku_mmd": 3, "ntu": 3}
