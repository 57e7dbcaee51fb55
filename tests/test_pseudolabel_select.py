"""`vdgtool pseudolabel select` on a predictions store the test writes itself, and the pseudolabel group."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from vdgtool.stores.table import TableStore, TableStoreWriter

CLASSES = ["abseiling", "arm wrestling", "cutting watermelon"]
# two clip rows per video; the selection sees their mean
ROWS = {  # key: (ground truth, [clip-1 probs, clip-2 probs])
    "v0": (0, [[0.90, 0.05, 0.05], [0.70, 0.20, 0.10]]),   # mean .80 -> class 0, correct
    "v1": (1, [[0.96, 0.02, 0.02], [0.94, 0.04, 0.02]]),   # mean .95 -> class 0, wrong
    "v2": (1, [[0.05, 0.90, 0.05], [0.05, 0.90, 0.05]]),   # .90 -> class 1, correct
    "v3": (2, [[0.30, 0.30, 0.40], [0.30, 0.30, 0.40]]),   # .40 -> class 2
    "v4": (2, [[0.01, 0.01, 0.98], [0.03, 0.01, 0.96]]),   # .97 -> class 2, correct
    "v5": (-1, [[0.99, 0.005, 0.005], [0.99, 0.005, 0.005]]),  # .99 -> class 0, no ground truth
}


def write_preds(path, arrays=("probs",), labels=True):
    keys, probs, gt = [], [], []
    for k, (y, rows) in ROWS.items():
        for r in rows:
            keys.append(k)
            probs.append(r)
            gt.append(y if labels else -1)
    probs = np.asarray(probs, np.float32)
    data = {"probs": probs} if "probs" in arrays else {}
    if "logits" in arrays:
        data["logits"] = np.log(probs)
    with TableStoreWriter(str(path), "predictions", classes=CLASSES, domains=["animated"],
                          conventions={"model": "test_c3d", "num_clips": 2}) as w:
        w.append(data, key=keys, video=[int(k[1]) for k in keys], clip=[i % 2 for i in range(len(keys))], label=gt,
                 domain=[0] * len(keys))
    return str(path)


def test_select_writes_the_selected_videos(run_cli, tmp_path):
    preds = write_preds(tmp_path / "preds.h5")
    out = tmp_path / "sel.h5"
    code, stdout, err = run_cli("pseudolabel", "select", preds, "-o", out, "--threshold", "0.8", "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["n_pool"] == 6 and d["n_selected"] == 5 and d["rows_averaged"] == 12
    assert [r["selected"] for r in d["per_class"]] == [3, 1, 1]
    assert [r["predicted"] for r in d["per_class"]] == [3, 1, 2]
    assert d["precision"] == pytest.approx(3 / 4) and d["n_labelled_selected"] == 4  # v5 has no ground truth
    assert "diagnostic" in d["precision_note"] and f"wrote {out}" in err
    with TableStore(str(out)) as ts:
        assert ts.meta["key"].tolist() == ["v0", "v1", "v2", "v4", "v5"]
        np.testing.assert_allclose(ts.array("probs")[0], [0.8, 0.125, 0.075], atol=1e-6)
        np.testing.assert_allclose(ts.array("conf"), [0.8, 0.95, 0.9, 0.97, 0.99], atol=1e-6)
        assert (ts.meta["label"] == -1).all()  # ground truth withheld
        assert ts.meta["video"].tolist() == [0, 1, 2, 4, 5] and ts.classes == CLASSES
        sel = ts.conventions["selection"]
        assert sel["threshold"] == 0.8 and sel["score"] == "conf" and sel["balance"] == "none"
        assert ts.conventions["parent_store"].endswith("preds.h5") and ts.conventions["model"] == "test_c3d"
        assert ts.provenance["parents"][0].endswith("preds.h5")
    # the selected store is what the dataset's pseudo-label hook reads: argmax labels, unselected keys absent
    from vdgtool.data.dataset import read_pseudo_labels

    pl = read_pseudo_labels(str(out), CLASSES)
    assert {k: v[0] for k, v in pl.items()} == {"v0": 0, "v1": 0, "v2": 1, "v4": 2, "v5": 0}


def test_select_table_output_and_balance_rules(run_cli, tmp_path):
    preds = write_preds(tmp_path / "preds.h5")
    code, stdout, _ = run_cli("pseudolabel", "select", preds, "-o", tmp_path / "a.h5", "--threshold", "0.8")
    assert code == 0 and "precision % (diagnostic" in stdout and "coverage %" in stdout and "83.33" in stdout

    def keys(*opts):
        out = tmp_path / f"s{len(list(tmp_path.iterdir()))}.h5"
        code, stdout, err = run_cli("pseudolabel", "select", preds, "-o", out, "--json", *opts)
        assert code == 0, err
        with TableStore(str(out)) as ts:
            return ts.meta["key"].tolist()

    # fraction 0.5: ceil(0.5 * n_k) with n_k = (3, 1, 2) -> 2, 1, 1 per class
    assert keys("--threshold", "0.8", "--balance", "fraction", "--fraction", "0.5") == ["v1", "v2", "v4", "v5"]
    # cap: ceil(1.0 * 5 / 3) = 2 per class
    assert keys("--threshold", "0.8", "--balance", "cap") == ["v1", "v2", "v4", "v5"]
    assert keys("--threshold", "0.8", "--top-per-class", "1") == ["v2", "v4", "v5"]
    assert keys("--threshold", "0.85", "--score", "margin") == ["v1", "v2", "v4", "v5"]
    # accumulate: v3 (score .40) joins from a previous selection
    prev = tmp_path / "prev.h5"
    assert run_cli("pseudolabel", "select", preds, "-o", prev, "--threshold", "0.4", "--top-per-class", "1")[0] == 0
    with TableStore(str(prev)) as ts:
        assert ts.meta["key"].tolist() == ["v2", "v4", "v5"]
    assert keys("--threshold", "0.96", "--accumulate", prev) == ["v2", "v4", "v5"]
    assert keys("--threshold", "0.95", "--accumulate", prev) == ["v1", "v2", "v4", "v5"]


def test_select_refusals(run_cli, tmp_path):
    preds = write_preds(tmp_path / "preds.h5")
    out = tmp_path / "sel.h5"
    code, _, err = run_cli("pseudolabel", "select", preds, "-o", out, "--threshold", "0.995")
    assert code == 1 and "lower --threshold" in err and "highest conf is 0.990" in err and not out.exists()
    assert "Traceback" not in err
    assert run_cli("pseudolabel", "select", preds, "-o", out, "--threshold", "0.5")[0] == 0
    code, _, err = run_cli("pseudolabel", "select", preds, "-o", out)
    assert code == 1 and "--overwrite" in err
    assert run_cli("pseudolabel", "select", preds, "-o", out, "--overwrite")[0] == 0
    code, _, err = run_cli("pseudolabel", "select", preds, "-o", tmp_path / "x.h5", "--fraction", "0.3")
    assert code == 1 and "--balance fraction" in err
    assert run_cli("pseudolabel", "select", preds, "-o", tmp_path / "x.h5", "--threshold", "1.5")[0] == 2
    code, _, err = run_cli("pseudolabel", "select", tmp_path / "missing.h5", "-o", tmp_path / "x.h5")
    assert code == 1 and "does not exist" in err
    other = tmp_path / "other.h5"
    with TableStoreWriter(str(other), "predictions", classes=["x", "y", "z"]) as w:
        w.append({"probs": np.full((1, 3), 1 / 3, np.float32)}, key=["v0"])
    code, _, err = run_cli("pseudolabel", "select", preds, "-o", tmp_path / "x.h5", "--accumulate", other)
    assert code == 1 and "same model and label space" in err


def test_select_without_ground_truth_and_from_logits(run_cli, tmp_path):
    preds = write_preds(tmp_path / "preds.h5", arrays=("logits",), labels=False)
    code, stdout, err = run_cli("pseudolabel", "select", preds, "-o", tmp_path / "s.h5", "--threshold", "0.8")
    assert code == 0, err
    assert "precision" not in stdout and "83.33" in stdout  # 5 of 6 selected from the softmax of the logits


def test_default_command_group_routes_non_subcommands():
    """The rounds form (`vdgtool pseudolabel CKPT ...`) plugs in as the group's default command."""
    from vdgtool.cli.pseudolabel import DefaultCommandGroup

    grp = DefaultCommandGroup("pl")
    seen = {}

    @grp.command("rounds")
    @click.argument("ckpt")
    @click.option("--rounds", type=int, default=3)
    def rounds(ckpt, rounds):
        seen["rounds"] = (ckpt, rounds)

    @grp.command("select")
    @click.argument("preds")
    def sel(preds):
        seen["select"] = preds

    r = CliRunner()
    assert r.invoke(grp, ["runs/erm", "--rounds", "2"]).exit_code == 2  # no default command yet: plain group
    grp.default_command = "rounds"
    assert r.invoke(grp, ["runs/erm", "--rounds", "2"]).exit_code == 0 and seen["rounds"] == ("runs/erm", 2)
    assert r.invoke(grp, ["rounds", "ck.pt"]).exit_code == 0 and seen["rounds"] == ("ck.pt", 3)
    assert r.invoke(grp, ["select", "p.h5"]).exit_code == 0 and seen["select"] == "p.h5"
    res = r.invoke(grp, ["--help"])
    assert res.exit_code == 0 and "rounds" in res.output and "select" in res.output


def test_help(run_cli):
    for verb in (["pseudolabel"], ["pseudolabel", "select"]):
        code, out, _ = run_cli(*verb, "--help")
        assert code == 0 and "Usage: vdgtool" in out and "Example" in out
    assert "pseudolabel" in run_cli("--help")[1]
