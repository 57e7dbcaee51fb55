"""The command line: help, version, exit codes, one-line errors, SLURM defaults, end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import pytest
from conftest import REPO, make_tree

VERBS = [[], ["toydata"], ["extract"], ["store"], ["store", "info"], ["store", "verify"], ["store", "merge"]]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "vdgtool")
def test_help_of_every_verb(run_cli, verb):
    code, out, err = run_cli(*verb, "--help")
    assert code == 0 and "Usage: vdgtool" in out
    if verb in ([], ["toydata"], ["extract"], ["store"]):
        assert "Example" in out


def test_python_m_version():
    from vdgtool import __version__

    r = subprocess.run([sys.executable, "-m", "vdgtool", "--version"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and __version__ in r.stdout


def _one_line_error(code, err, *needles):
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("vdgtool: error")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err  # one line, the last on stderr
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0]
    assert ";" in lines[0]  # cause; remedy


def test_user_errors_exit_1_with_one_line(run_cli, tmp_path):
    _one_line_error(*run_cli("extract", tmp_path / "missing", "-o", tmp_path / "o.h5")[::2], "does not exist")
    txt = tmp_path / "notes.h5"
    txt.write_text("hello")
    _one_line_error(*run_cli("store", "info", txt)[::2], "cannot open")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    _one_line_error(*run_cli("store", "info", plain)[::2], "not a vdgtool store")
    _one_line_error(*run_cli("store", "verify", tmp_path / "nope.h5")[::2], "does not exist")
    _one_line_error(*run_cli("store", "merge", plain, "-o", tmp_path / "m.h5")[::2], "not a vdgtool store")


def test_usage_errors_exit_2(run_cli, tmp_path):
    assert run_cli("extract", tmp_path, "-o", "x.h5", "--no-such-option")[0] == 2
    assert run_cli("extract", tmp_path)[0] == 2  # -o missing
    assert run_cli("extract", tmp_path, "-o", "x.h5", "--stride", "0")[0] == 2
    assert run_cli("frobnicate")[0] == 2


def test_extract_info_verify_merge_end_to_end(run_cli, toy, tmp_path, monkeypatch):
    code, out, err = run_cli("extract", toy / "animated.csv", "-o", tmp_path / "a.h5", "--size", "0", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["videos"] == 12 and d["decoders"] == {"pil": 12} and d["errors"] == 0
    code, out, _ = run_cli("store", "info", tmp_path / "a.h5", "--json")
    info = json.loads(out)
    assert info["kind"] == "clips" and info["per_domain"] == {"animated": 12}
    assert info["conventions"]["size"] is None and info["conventions"]["encoding"] == "jpeg"
    assert info["provenance"]["command"].startswith("vdgtool extract")
    code, out, _ = run_cli("store", "info", tmp_path / "a.h5")
    assert code == 0 and "clips (schema 1." in out and "move_up" in out
    assert run_cli("store", "verify", tmp_path / "a.h5")[0] == 0

    # SLURM array variables give the shard defaults
    for i in range(2):
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(i))
        code, out, err = run_cli("extract", toy / "animated.csv", "-o", tmp_path / f"a.{i}.h5", "--size", "0",
                                 "--json")
        assert code == 0, err
        assert json.loads(out)["videos"] == 6
        with h5py.File(tmp_path / f"a.{i}.h5") as f:
            conv = json.loads(f.attrs["conventions"])
        assert (conv["num_shards"], conv["shard_index"]) == (2, i)
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    code, out, err = run_cli("store", "merge", tmp_path / "a.1.h5", tmp_path / "a.0.h5", "-o", tmp_path / "m.h5",
                             "--json")
    assert code == 0, err and json.loads(out)["videos"] == 12
    _one_line_error(*run_cli("store", "merge", tmp_path / "a.1.h5", "-o", tmp_path / "m2.h5")[::2], "missing")

    # damage is found and reported with exit 1
    with h5py.File(tmp_path / "m.h5", "a") as f:
        del f["data/00000003"]
    _one_line_error(*run_cli("store", "verify", tmp_path / "m.h5")[::2], "failed verification")


def test_strict_with_a_corrupt_file(run_cli, tmp_path, shared_data):
    root = make_tree(tmp_path / "ds", {
        "x/good.gif": shared_data / "gifs/misc__skimage_no_time_for_that_tiny.gif",
        "x/bad.mp4": shared_data / "videos/decode_edge/decord_corrupted.mp4",
    })
    code, out, err = run_cli("extract", root, "-o", tmp_path / "s.h5")
    assert code == 0 and "bad.mp4" in out and "skipped" in out  # reported in the summary, batch goes on
    code, out, err = run_cli("-q", "extract", root, "-o", tmp_path / "t.h5", "--strict")
    _one_line_error(code, err, "1 input(s) could not be decoded")
    assert (tmp_path / "t.h5").exists()  # the good video is still stored


def test_no_usable_input_is_an_error(run_cli, tmp_path, shared_data):
    root = make_tree(tmp_path / "ds", {"x/bad.mp4": shared_data / "videos/decode_edge/decord_corrupted.mp4"})
    (tmp_path / "ds/x/empty.gif").write_bytes(b"GIF89a")
    code, out, err = run_cli("-q", "extract", root, "-o", tmp_path / "s.h5")
    _one_line_error(code, err, "none of the 2 input(s) could be used")
    with h5py.File(tmp_path / "s.h5") as f:  # the store records why
        assert len(f["errors/key"]) == 2


def test_toydata_cli(run_cli, tmp_path):
    code, out, err = run_cli("toydata", tmp_path / "d", "--size", "16", "--frames", "2", "--videos-per-class", "1",
                             "--json")
    assert code == 0, err
    assert json.loads(out)["domains"]["animated"]["videos"] == 4
    _one_line_error(*run_cli("toydata", tmp_path / "d", "--size", "16")[::2], "already holds")
