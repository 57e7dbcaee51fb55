"""Pipes into batch jobs: `extract -` (manifest on stdin), `store ls` (--paths, --json, errors), @FILE lists."""

from __future__ import annotations

import io
import json

import pytest


@pytest.fixture
def stdin(monkeypatch):
    def feed(text: str):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8"))
    return feed


def test_extract_csv_from_stdin_relative_to_cwd_then_store_ls(toy, tmp_path, run_cli, stdin, monkeypatch):
    monkeypatch.chdir(toy)
    rows = [ln for ln in (toy / "real.csv").read_text().splitlines()[1:7]]
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    stdin("# piped from find | awk\n" + "\n".join(rows) + f"\n{tmp_path / 'broken.mp4'},move_up,real\n")
    out = tmp_path / "s.h5"
    code, o, err = run_cli("extract", "-", "-o", out, "--size", "32", "--encoding", "raw", "--json")
    assert code == 0, err
    d = json.loads(o)
    assert d["videos"] == 6 and d["errors"] == 1
    code, o, err = run_cli("store", "ls", out, "--json")
    ls = json.loads(o)
    assert [r["key"] for r in ls["rows"]] == [r.split(",")[0] for r in rows]
    first = ls["rows"][0]
    assert first["class"] == "move_down" and first["domain"] == "real" and first["frames"] == 8
    assert first["size"] == "32x32" and first["decoder"] in ("decord", "pyav") and first["source"] == str(
        toy / rows[0].split(",")[0])
    assert len(ls["errors"]) == 1 and ls["errors"][0]["source"].endswith("broken.mp4")
    code, o, err = run_cli("store", "ls", out)  # the table, then the bad inputs
    assert code == 0 and "move_down_000.mp4" in o and "1 input(s) could not be used" in o and "broken.mp4" in o
    code, o, err = run_cli("store", "ls", out, "--paths")  # one path per line for the next tool
    assert o.splitlines() == [str(toy / r.split(",")[0]) for r in rows]
    code, o, err = run_cli("store", "ls", out, "--errors", "--paths")
    assert o.splitlines() == [str(tmp_path / "broken.mp4")]


def test_extract_mmaction_list_from_stdin_with_prefix(toy, tmp_path, run_cli, stdin):
    stdin("animated/move_left/move_left_000.gif 0\nanimated/move_up/move_up_001.gif 1\n")
    out = tmp_path / "a.h5"
    code, o, err = run_cli("extract", "-", "-o", out, "--data-prefix", toy, "--domain", "animated", "--json")
    assert code == 0, err
    code, o, err = run_cli("store", "ls", out, "--json")
    rows = json.loads(o)["rows"]
    assert [(r["class"], r["domain"], r["decoder"]) for r in rows] == [("0", "animated", "pil"),
                                                                        ("1", "animated", "pil")]


def test_empty_stdin_is_one_line_error(tmp_path, run_cli, stdin):
    stdin("\n# nothing\n")
    code, o, err = run_cli("extract", "-", "-o", tmp_path / "x.h5")
    assert code == 1 and "<stdin> lists no videos" in err and "Traceback" not in err


def test_at_file_lists_for_store_verbs(toy, tmp_path, run_cli):
    stores = []
    for dom in ("real", "animated"):
        p = tmp_path / f"{dom}.h5"
        assert run_cli("extract", toy / dom, "-o", p, "--size", "32", "--limit", "2")[0] == 0
        stores.append(str(p))
    lst = tmp_path / "stores.txt"
    lst.write_text("# the shard list of a SLURM array task\n\n" + "\n".join(stores) + "\n")
    code, o, err = run_cli("store", "verify", f"@{lst}", "--no-decode", "--json")
    assert code == 0, err
    assert [r["path"] for r in json.loads(o)] == stores
    code, o, err = run_cli("store", "verify", f"@{tmp_path / 'missing.txt'}")
    assert code == 2 and "cannot read the list" in err
