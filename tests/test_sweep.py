"""vdgtool sweep: spec expansion, stable run names, idempotent launches, status, the SLURM launcher."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from vdgtool.errors import ConfigError
from vdgtool.sweep import expand, plan, point_hash, status
from vdgtool.sweep.runs import RUN_FILE, run_state, train_argv, write_json

BASE = {"data": "/d/seed{seed}/train.h5", "val": ["/d/val.h5", "/d/anim.h5"], "model": "test_c3d", "epochs": 2,
        "no-flip": True, "hp": {"student": "test_frame2d"}}


def _spec(**kw):
    raw = {"seeds": [0, 1], "train": dict(BASE),
           "arms": [{"name": "erm", "method": "erm"}, {"name": "drl", "method": "drl-freeze", "lr": 0.0005}]}
    raw.update(kw)
    return raw


def test_expansion_arms_grid_random_seeds_and_argv():
    s = expand(_spec(grid={"hp": {"lam": [0.5, 1.0]}, "batch_size": [4]}, random_samples=3, random_seed=7,
                     random={"weight-decay": {"log_uniform": [1e-5, 1e-2]}}))
    assert len(s.points) == 2 * 2 * 3 * 2  # arms x grid x samples x seeds
    p = s.points[0]
    assert p.arm == "erm" and p.seed == 0
    assert p.options["data"] == "/d/seed0/train.h5"  # {seed} filled in
    assert p.options["hp"] == {"student": "test_frame2d", "lam": 0.5}  # [train] hp merged with the grid's
    assert 1e-5 <= p.options["weight-decay"] <= 1e-2
    a = p.args
    assert a[:2] == ["--batch-size", "4"] and "--no-flip" in a
    assert a[a.index("--val") + 1] == "/d/val.h5" and a.count("--val") == 2  # list order kept
    assert a[a.index("--hp"):a.index("--hp") + 4] == ["--hp", "lam=0.5", "--hp", "student=test_frame2d"]  # sorted
    # the same samples for every arm and seed (random search compares arms on the same draws)
    wd = {q.options["weight-decay"] for q in s.points}
    assert len(wd) == 3
    again = expand(_spec(grid={"batch_size": [4], "hp": {"lam": [0.5, 1.0]}}, random_samples=3, random_seed=7,
                         random={"weight_decay": {"log_uniform": [1e-5, 1e-2]}}))
    assert [q.hash for q in again.points] == [q.hash for q in s.points]  # key order and spelling do not matter
    assert p.hash == point_hash(p.options) and len({q.hash for q in s.points}) == len(s.points)


def test_flag_spellings_and_templates():
    s = expand({"train": {"data": "x.h5", "flip": False, "model": "test_c3d"}, "run_name": "{model}/s{seed}",
                "seeds": 2})
    assert [p.name for p in s.points] == ["test_c3d/s0", "test_c3d/s1"]
    assert s.points[0].options["no-flip"] is True and "--no-flip" in s.points[0].args
    s = expand({"train": {"data": "x.h5", "no-flip": False}})
    assert "--no-flip" not in s.points[0].args


@pytest.mark.parametrize("raw,match", [
    ({"train": {"data": "x", "bach-size": 4}}, r"'bach-size' is not an option of vdgtool train.*batch-size"),
    ({"train": {"data": "x", "output": "o"}}, "set by the sweep itself"),
    ({"train": {"data": "x", "optimizer": "adamx"}}, r"'adamx' is not one of"),
    ({"train": {"data": "x", "epochs": "many"}}, r"'many' is not a valid integer"),
    ({"train": {"data": "x"}, "grid": {"lr": 0.1}}, "expected a non-empty list"),
    ({"train": {"data": "x"}, "lr": [0.1]}, "train options go under"),
    ({"train": {"data": "x", "no-flip": "yes"}}, "is a flag"),
    ({"train": {"data": "x"}, "seeds": [0, 0]}, "repeated"),
    ({"train": {"data": "{dataset}.h5"}}, r"'\{dataset\}' in '\{dataset\}.h5' names no option"),
    ({"train": {"data": "x"}, "random": {"lr": {"normal": [0, 1]}}}, "is not a distribution"),
    ({"train": {"data": "x"}, "grid": {"lr": [0.1, 0.2]}, "run_name": "same"}, "gives 'same' for two"),
])
def test_bad_specs_are_one_line_errors(raw, match):
    with pytest.raises(ConfigError, match=match) as e:
        expand(raw)
    assert "\n" not in str(e.value)


def test_identical_points_run_once():
    s = expand({"train": {"data": "x"}, "arms": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.1}]})
    assert len(s.points) == 1 and s.duplicates == [("b/seedNone", s.points[0].name)]


def test_plan_states_and_resume_decision(tmp_path):
    s = expand(_spec())
    steps = plan(s, str(tmp_path))
    assert [x["action"] for x in steps] == ["start"] * 4 and all(x["state"] == "missing" for x in steps)
    d = [x["dir"] for x in steps]
    assert status(str(tmp_path))[0]["state"] == "missing"  # recorded before anything runs
    (tmp_path / steps[0]["run"] / "done").write_text("{}")
    ck = tmp_path / steps[1]["run"] / "checkpoints"
    ck.mkdir()
    (ck / "preempt.pt").write_bytes(b"x")
    write_json(os.path.join(d[1], RUN_FILE), {"state": "exited", "returncode": 1, "host": "h",
                                              "error": "vdgtool: error: training stopped by signal 15"})
    write_json(os.path.join(d[2], RUN_FILE), {"state": "running", "host": os.uname().nodename, "pid": os.getpid()})
    write_json(os.path.join(d[3], RUN_FILE), {"state": "running", "host": os.uname().nodename, "child_pid": 2 ** 22 + 7})
    assert run_state(d[1]) == ("failed", "exit 1: vdgtool: error: training stopped by signal 15; resumable")
    assert run_state(d[2])[0] == "running"
    assert run_state(d[3]) == ("failed", "the job's process is gone (killed?)")
    steps = plan(s, str(tmp_path))
    assert [x["action"] for x in steps] == ["skip (done)", "resume", "skip (running)", "start"]
    assert steps[1]["command"].endswith("--resume")
    argv = train_argv(d[1])
    assert argv[1:4] == ["-m", "vdgtool", "train"] and argv[-1] == "--resume" and argv[-3:-1] == ["-o", d[1]]
    assert train_argv(d[3], nproc=4)[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4"]
    # a run directory (by run_name) that holds a point with other options is refused, not overwritten
    named = str(tmp_path / "named")
    plan(expand(_spec(run_name="{arm}/s{seed}")), named)
    with pytest.raises(ConfigError, match="holds another point"):
        plan(expand(_spec(train={**BASE, "epochs": 3}, run_name="{arm}/s{seed}")), named)


def _fake_slurm(bin_dir, queue=None):
    bin_dir.mkdir()
    for name, body in (("sbatch", 'cp "$1" "$(dirname "$0")/last_sbatch.sh"; echo "Submitted batch job 4242"'),
                       ("srun", "exit 0")):
        p = bin_dir / name
        p.write_text(f"#!/bin/sh\n{body}\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    if queue is not None:
        p = bin_dir / "squeue"
        p.write_text(f"#!/bin/sh\nprintf '{queue}'\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)


def test_slurm_launcher_writes_the_sbatch_array(tmp_path, run_cli, monkeypatch):
    pytest.importorskip("submitit")
    _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({**_spec(), "slurm": {"partition": "gpu", "setup": ["module load cuda"],
                                                     "account": "vdg"}}))
    out = tmp_path / "sw"
    code, o, err = run_cli("sweep", spec, "-o", out, "--launcher", "slurm", "--time", "1-02:00:00",
                           "--gpus-per-run", "1", "--cpus-per-run", "8", "--array-parallelism", "2", "--json")
    assert code == 0, err
    res = json.loads(o)
    assert res["job_ids"] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    sb = (tmp_path / "bin" / "last_sbatch.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=1560", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --array=0-3%2", "#SBATCH --requeue", "#SBATCH --account=vdg",
                 "#SBATCH --signal=USR2@120", "module load cuda", "-m submitit.core._submit",
                 "#SBATCH --job-name=vdgtool-sweep"):
        assert line in sb, line
    assert {r["state"] for r in res["status"]} == {"queued"}
    # a re-run does not submit queued runs again
    code, o, err = run_cli("sweep", spec, "-o", out, "--launcher", "slurm", "--time", "60", "--json")
    assert code == 0 and json.loads(o)["launched"] == 0
    # a job that left the queue without starting is reported, and a re-run resubmits it
    (tmp_path / "bin" / "squeue").write_text("#!/bin/sh\nprintf '999_1\\n'\n")
    (tmp_path / "bin" / "squeue").chmod(0o755)
    code, o, err = run_cli("sweep", "status", out, "--json")
    rows = json.loads(o)
    assert {r["state"] for r in rows} == {"failed"} and "left the queue" in rows[0]["detail"]
    code, o, err = run_cli("sweep", spec, "-o", out, "--launcher", "slurm", "--no-requeue", "--time", "60", "--json")
    assert code == 0 and json.loads(o)["launched"] == 4
    assert "--requeue" not in (tmp_path / "bin" / "last_sbatch.sh").read_text()


def test_slurm_without_time_or_cluster_is_refused(tmp_path, run_cli, monkeypatch):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(_spec()))
    code, o, err = run_cli("sweep", spec, "-o", tmp_path / "sw", "--launcher", "slurm")
    assert code == 1 and "needs a time limit" in err
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun / sbatch
    code, o, err = run_cli("sweep", spec, "-o", tmp_path / "sw", "--launcher", "slurm", "--time", "10")
    assert code == 1 and "no SLURM cluster here" in err and "--launcher local" in err


# ---- end to end on the toy data (each run is a real `vdgtool train` process) ------------------------------

@pytest.fixture(scope="module")
def toy_stores(toy, tmp_path_factory):
    from vdgtool.video.decode import DecodeOptions
    from vdgtool.video.extract import extract
    from vdgtool.video.manifest import load_manifest

    d = tmp_path_factory.mktemp("sweepdata")
    out = {}
    for dom in ("real", "animated"):
        out[dom] = str(d / f"{dom}.h5")
        extract(load_manifest(str(toy / dom)), out[dom], opts=DecodeOptions(size=32), encoding="raw")
    return out


def _toy_spec(path, stores, epochs, logger=None, **extra):
    spec = {"seeds": [0, 1], "run_name": "seed{seed}/{arm}",
            "train": {"data": stores["real"], "val": [stores["real"], stores["animated"]], "model": "test_c3d",
                      "size": 32, "epochs": epochs, "batch-size": 4, "no-flip": True, "lr": 0.01,
                      "max-steps-per-epoch": 2, **({"logger": logger} if logger else {})},
            "arms": [{"name": "erm", "method": "erm"}, {"name": "drl-freeze", "method": "drl-freeze"}], **extra}
    path.write_text(json.dumps(spec))
    return str(path)


def _sweep(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "vdgtool", "sweep", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
def test_local_sweep_interrupted_and_rerun(toy_stores, tmp_path):
    tb = importlib.util.find_spec("tensorboard") is not None  # a train option the sweep passes on as it is
    spec = _toy_spec(tmp_path / "spec.json", toy_stores, epochs=3, **({"logger": "tensorboard"} if tb else {}))
    out = tmp_path / "sw"
    p = _sweep(spec, "-o", out, "--jobs", "1")
    second = out / "seed1" / "erm"
    deadline = time.time() + 240
    while time.time() < deadline:  # Ctrl-C once the second run has finished an epoch
        if (second / "results.jsonl").exists() and (second / "results.jsonl").read_text().strip():
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=240)
    assert p.returncode == 130, err[-2000:]
    assert "run the same command again to resume" in err
    st = {r["run"]: r for r in status(str(out))}
    assert st["seed0/erm"]["state"] == "done"
    assert st["seed1/erm"]["state"] == "failed" and "resumable" in st["seed1/erm"]["detail"], st["seed1/erm"]
    assert st["seed0/drl-freeze"]["state"] == st["seed1/drl-freeze"]["state"] == "missing"
    done_mtime = os.path.getmtime(out / "seed0" / "erm" / "done")

    p = _sweep(spec, "-o", out, "--jobs", "2")
    o, err = p.communicate(timeout=400)
    assert p.returncode == 0, err[-3000:]
    assert "4 done" in o
    assert os.path.getmtime(out / "seed0" / "erm" / "done") == done_mtime  # finished work is skipped
    log = (second / "sweep.log").read_text()
    assert log.count("== attempt") == 2 and "--resume" in log.split("== attempt 2")[1].splitlines()[0]
    assert "resumed from" in log
    assert [json.loads(ln)["epoch"] for ln in (second / "results.jsonl").read_text().splitlines()] == [0, 1, 2]
    cfg = json.loads((second / "config.json").read_text())
    assert cfg["seed"] == 1 and cfg["method"] == "erm" and cfg["epochs"] == 3
    point = json.loads((second / "sweep_point.json").read_text())
    assert point["options"]["seed"] == 1 and point["arm"] == "erm"

    from vdgtool.evaluate.collect import collect

    res = collect([str(out)], "last")
    assert res["group_by"] == ["method"] and [r["runs"] for r in res["rows"]] == [2, 2]
    if tb:  # the interrupted run logged to TensorBoard across both attempts
        assert len(list((second / "tb").glob("events.out.tfevents.*"))) == 2


@pytest.mark.slow
def test_submitit_local_executor_and_preemption_requeue(toy_stores, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    spec = _toy_spec(tmp_path / "spec.json", toy_stores, epochs=1, seeds=[0],
                     arms=[{"name": "erm", "method": "erm"}])
    out = tmp_path / "sw"
    p = _sweep(spec, "-o", out, "--launcher", "slurm", "--executor", "local", "--time", "10", "--wait", "--json")
    o, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    res = json.loads(o)
    assert [r["state"] for r in res["status"]] == ["done"] and res["status"][0]["launcher"] == "submitit-local"
    assert (out / "seed0" / "erm" / "done").exists()

    # pre-emption: submitit calls the job's checkpoint(); the training saves its state, the job requeues
    from vdgtool.sweep import TrainJob

    spec2 = _toy_spec(tmp_path / "spec2.json", toy_stores, epochs=4, seeds=[3], arms=[{"name": "erm", "method": "erm"}])
    from vdgtool.sweep import load_spec

    steps = plan(load_spec(spec2), str(tmp_path / "sw2"))
    d = steps[0]["dir"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    job = TrainJob(d, "submitit-local")
    import threading

    rc = {}
    t = threading.Thread(target=lambda: rc.setdefault("first", job()))
    t.start()
    deadline = time.time() + 200
    res_file = os.path.join(d, "results.jsonl")
    while time.time() < deadline and not (os.path.exists(res_file) and open(res_file).read().strip()):
        time.sleep(0.1)
    requeued = job.checkpoint()
    t.join(120)
    assert rc["first"] != 0 and not os.path.exists(os.path.join(d, "done"))
    assert requeued is not None and isinstance(requeued.function, TrainJob)
    assert requeued.function() == 0  # what the requeued job runs on the node
    log = open(os.path.join(d, "sweep.log")).read()
    assert "--resume" in log.split("== attempt 2")[1].splitlines()[0] and os.path.exists(os.path.join(d, "done"))


def test_dry_run_writes_nothing_and_toml_specs_read(tmp_path, run_cli):
    spec = tmp_path / "s.toml"
    spec.write_text('seeds = 2\nrun_name = "{arm}/lam{hp.lam}/s{seed}"\n[train]\ndata = "d.h5"\nhp.student = "test_frame2d"\n'
                    '[[arms]]\nname = "erm"\nmethod = "erm"\n[grid]\n"hp.lam" = [0.5, 1.0]\n')
    out = tmp_path / "sw"
    code, o, err = run_cli("sweep", spec, "-o", out, "--dry-run", "--jobs", "1")
    assert code == 0, err
    assert "4 run(s); 4 to launch (dry run" in o and "--hp lam=0.5 --hp student=test_frame2d" in o
    assert "erm/lam1.0/s1" in o and not out.exists()
    code, o, err = run_cli("sweep", "status", tmp_path / "nowhere")
    assert code == 1 and "does not exist" in err
