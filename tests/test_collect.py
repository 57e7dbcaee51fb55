"""collect for papers: grouping by every differing option, selection rules, table formats."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from vdgtool.errors import ConfigError
from vdgtool.evaluate.collect import collect
from vdgtool.evaluate.tables import render


def _run(root, name, seed, src, tgt, *, method="erm", lam=None, init=None, done=True, events=False, **cfg):
    d = root / name
    d.mkdir(parents=True)
    conf = {"method": method, "model": "test_c3d", "seed": seed, "lr": 0.01, "output": str(d),
            "data": [f"/data/seed{seed}/real_train.h5"], "val": [f"/data/seed{seed}/real_val.h5"],
            "init": init, "hp": {"lam": lam} if lam is not None else {},
            "hparams": {"lam": lam} if lam is not None else {}, "workers": seed, "provenance": {"created": name}}
    conf.update(cfg)
    (d / "config.json").write_text(json.dumps(conf))
    with open(d / "results.jsonl", "w") as f:
        for e, (s, t) in enumerate(zip(src, tgt)):
            f.write(json.dumps({"epoch": e, "step": 10 * e, "val": {"real_val": {"top1": s, "mean_class": s},
                                                                     "anim": {"top1": t, "mean_class": t}}}) + "\n")
            if events:  # method event lines (augsearch, bank fill) share the file and are skipped
                f.write(json.dumps({"event": "bank_fill", "step": 10 * e, "fill": 0.5}) + "\n")
    if done:
        (d / "done").write_text("{}")
    return str(d)


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    runs = [
        _run(root, "erm_s0", 0, [0.5, 0.9, 0.8], [0.1, 0.2, 0.6], events=True),
        _run(root, "erm_s1", 1, [0.7, 0.6, 0.65], [0.3, 0.5, 0.4]),
        _run(root, "drl_s0", 0, [0.6, 0.8], [0.4, 0.5], method="drl-freeze", lam=0.5, init="/r/seed0/erm/last.pt"),
        _run(root, "drl_s1", 1, [0.6, 0.7], [0.3, 0.45], method="drl-freeze", lam=0.5, init="/r/seed1/erm/last.pt"),
        _run(root, "drl1_s0", 0, [0.9, 0.7], [0.6, 0.7], method="drl-freeze", lam=1.0, init="/r/seed0/erm/last.pt"),
    ]
    return root, runs


def _rows(res):
    return {(r.get("method"), r.get("hparams.lam")): r for r in res["rows"]}


def test_auto_groups_by_every_differing_option_and_per_seed_paths(sweep):
    root, runs = sweep
    res = collect([str(root)], "val")  # a sweep directory: its runs are found
    assert res["runs"] == 5
    # data / val / init differ only by the seed in the path: the same option per seed, not a group
    assert res["group_by"] == ["method", "hparams.lam"] and res["implied"] == ["init"]  # init follows the method
    rows = _rows(res)
    assert set(rows) == {("erm", "-"), ("drl-freeze", "0.5"), ("drl-freeze", "1.0")}
    erm = rows[("erm", "-")]
    assert erm["runs"] == 2 and erm["seeds"] == [0, 1]
    assert erm["anim"]["mean"] == pytest.approx((0.2 + 0.3) / 2)  # selected on real_val: epochs 1 and 0
    assert erm["anim"]["se"] == pytest.approx(np.std([0.2, 0.3], ddof=1) / np.sqrt(2))
    assert erm["anim"]["epochs"] == [1, 0]
    lam1 = rows[("drl-freeze", "1.0")]
    assert lam1["runs"] == 1 and lam1["anim"]["se"] is None  # one seed: no SE is claimed
    assert "Model selection: val (best epoch on the source validation store real_val)" in res["caption"]
    assert "Groups by: method, hparams.lam (which also fix init)" in res["caption"]


def test_selection_rules_and_compare_side_by_side(sweep):
    _, runs = sweep
    erm = runs[:2]
    last = collect(erm, "last")["rows"][0]
    assert last["anim"]["mean"] == pytest.approx(0.5)
    oracle = collect(erm, "oracle")["rows"][0]  # each store at its own best epoch
    assert oracle["anim"]["mean"] == pytest.approx(0.55) and oracle["real_val"]["mean"] == pytest.approx(0.8)
    fixed = collect(erm, "oracle", target="anim")["rows"][0]  # every column at the epoch best on anim
    assert fixed["real_val"]["mean"] == pytest.approx((0.8 + 0.6) / 2)
    both = collect(erm, "val", compare=True)
    row = both["rows"][0]
    assert [row[f"anim@{r}"]["mean"] for r in ("val", "last", "oracle")] == pytest.approx([0.25, 0.5, 0.55])
    table = render(both, "table")
    assert "anim (val)" in table and "anim (oracle)" in table and "25.00 ± 5.00" in table
    assert "last (last epoch)" in both["caption"] and "oracle (" in both["caption"]


def test_refuses_to_average_runs_that_differ_in_an_option(sweep):
    _, runs = sweep
    drl = runs[2:]
    with pytest.raises(ConfigError, match=r"differ in hparams.lam .*--ignore hparams.lam"):
        collect(drl, "val", group_by="method")
    avg = collect(drl, "val", group_by="method", ignore=["hparams.lam"])  # averaged knowingly
    assert avg["rows"][0]["runs"] == 3
    with pytest.raises(ConfigError, match="no run has such an option"):
        collect(drl, "val", group_by="methd")


def test_refuses_two_runs_with_one_seed(sweep, tmp_path):
    _, runs = sweep
    copy = _run(tmp_path / "other", "erm_s0_again", 0, [0.5], [0.1])
    with pytest.raises(ConfigError, match="two runs of one group have seed 0"):
        collect([runs[0], runs[1], copy], "last")


def test_unfinished_runs_marked_or_left_out(sweep, tmp_path):
    _, runs = sweep
    part = _run(tmp_path / "p", "erm_s2", 2, [0.5], [0.1], done=False)
    res = collect(runs[:2] + [part], "last")
    assert res["rows"][0]["unfinished"] == 1 and "unfinished" in res["caption"]
    assert "3*" in render(res, "table")
    res = collect(runs[:2] + [part], "last", done_only=True)
    assert res["rows"][0]["runs"] == 2 and res["skipped_unfinished"] == [part]


def test_formats_carry_the_caption(sweep):
    root, _ = sweep
    res = collect([str(root)], "val")
    md = render(res, "markdown")
    assert md.splitlines()[0].startswith("| method ") and "Table: Top-1 accuracy (%)" in md
    tex = render(res, "latex", digits=1)
    assert r"\caption{Top-1 accuracy (\%), mean $\pm$ SE" in tex and r"\toprule" in tex
    assert r"$25.0 \pm 5.0$" in tex and r"drl-freeze" in tex and r"hparams.lam" in tex
    assert r"real\_val" in tex  # escaped
    rows = list(csv.DictReader(io.StringIO(render(res, "csv"))))
    assert len(rows) == 3 * 2  # groups x stores
    r = next(x for x in rows if x["method"] == "erm" and x["store"] == "anim")
    assert float(r["mean"]) == pytest.approx(0.25) and r["n"] == "2" and r["selection"] == "val"
    js = json.loads(render(res, "json"))
    assert js["selection"] == "val" and len(js["rows"]) == 3


def test_cli_formats_and_at_file(sweep, run_cli, tmp_path):
    root, runs = sweep
    lst = tmp_path / "runs.txt"
    lst.write_text("# the ERM runs\n" + "\n".join(runs[:2]) + "\n")
    code, out, err = run_cli("collect", f"@{lst}", "--format", "markdown", "--metric", "mean_class")
    assert code == 0, err
    assert "Table: Mean class accuracy" in out and "| all" in out
    code, out, err = run_cli("collect", runs[2], runs[4], "--group-by", "method")
    assert code == 1 and "differ in hparams.lam" in err and "Traceback" not in err


def test_a_shared_path_holding_a_seed_digit_is_not_split(tmp_path):
    # /tmp/run0/... is the same for both seeds; only seed{N}/ is the per-seed part
    runs = [_run(tmp_path, f"s{s}", s, [0.5], [0.1 * (s + 1)], data=[f"/tmp/run0/seed{s}/train.h5"],
                 val=["/tmp/run0/val.h5"], init=f"/tmp/run0/seed{s}/erm/last.pt") for s in (0, 1)]
    res = collect(runs, "last")
    assert res["group_by"] == [] and res["rows"][0]["runs"] == 2
