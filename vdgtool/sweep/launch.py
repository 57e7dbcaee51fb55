"""Launching a sweep: which points to run, the local launcher and the SLURM launcher (submitit).

Re-running the same sweep is safe: points with ``done`` are skipped, running / queued ones are left
alone, failed or interrupted ones are relaunched (``vdgtool train --resume`` when they have a
checkpoint), missing ones are started.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading

from vdgtool.errors import ConfigError, require
from vdgtool.sweep.runs import (LOG_FILE, POINT_FILE, RUN_FILE, TrainJob, slurm_queue, display, has_checkpoint, now,
                                read_json, run_state, train_argv, write_json)
from vdgtool.sweep.spec import Spec, load_spec
from vdgtool.utils.log import get_logger

log = get_logger("sweep")

LAUNCHERS = ("local", "slurm")
EXECUTORS = ("slurm", "local", "debug")
SLURM_KEYS = ("partition", "time", "gpus", "cpus", "mem_gb", "array_parallelism", "requeue", "account", "qos",
              "constraint", "setup", "signal_delay_s", "name", "additional", "executor")
LOCAL_KEYS = ("jobs", "gpus")


def visible_gpus() -> list[str]:
    """GPU ids for the local launcher: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists (no torch)."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [g.strip() for g in cvd.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.stdout.splitlines() if ln.startswith("GPU "))]


def slurm_minutes(t) -> int:
    """SLURM --time (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) -> whole minutes."""
    if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0:
        return int(t)
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(t).strip())
    if not m:
        raise ConfigError(f"SLURM time '{t}' is not a time", "write e.g. 24:00:00, 1-00:00:00 or 90 (minutes)")
    d, a, b, c = m.groups()
    if d is not None:  # D-HH[:MM[:SS]]
        mins = int(d) * 1440 + int(a) * 60 + int(b or 0) + (1 if c and int(c) else 0)
    elif c is not None:  # HH:MM:SS
        mins = int(a) * 60 + int(b) + (1 if int(c) else 0)
    elif b is not None:  # MM:SS
        mins = int(a) + (1 if int(b) else 0)
    else:
        mins = int(a)
    if mins < 1:
        raise ConfigError(f"SLURM time '{t}' is under a minute", "give the time a run needs")
    return mins


def _check_keys(d: dict, keys: tuple, where: str) -> dict:
    bad = [k for k in d if k not in keys]
    if bad:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(bad)}", f"use {', '.join(keys)}")
    return d


def plan(spec: Spec, sweep_dir: str, write: bool = True) -> list[dict]:
    """Each point with its run directory, state and what a launch does with it (start / resume / skip)."""
    from vdgtool import __version__

    out = []
    dirs = [os.path.join(sweep_dir, p.name) for p in spec.points]
    queued = any((read_json(os.path.join(d, RUN_FILE)) or {}).get("state") == "queued" for d in dirs)
    queue = slurm_queue() if queued else None
    for p, d in zip(spec.points, dirs):
        old = read_json(os.path.join(d, POINT_FILE))
        if old and old.get("hash") != p.hash:
            raise ConfigError(f"{d} holds another point of a sweep (hash {old.get('hash')}, this spec gives {p.hash}: "
                              "its options changed)", "use another -o, put the changed options in run_name, or "
                                                      "delete that run directory")
        state, detail = run_state(d, queue) if old else ("missing", "")
        if state in ("done", "running", "queued"):
            action = f"skip ({state})"
        elif has_checkpoint(d):
            action = "resume"
        else:
            action = "start"
        if write and not action.startswith("skip"):
            os.makedirs(d, exist_ok=True)
            if not old:
                write_json(os.path.join(d, POINT_FILE), {**p.record(), "spec": os.path.abspath(spec.path),
                                                         "created": now(), "vdgtool": __version__})
        out.append({"run": p.name, "dir": d, "hash": p.hash, "arm": p.arm, "seed": p.seed, "state": state,
                    "detail": detail, "action": action,
                    "command": display(["python", "-m", "vdgtool", "train", *p.args, "-o", d]
                                       + (["--resume"] if action == "resume" else []))})
    return out


def launch_local(run_dirs: list[str], jobs: int | None = None, gpus: list[str] | None = None) -> dict:
    """Run the points here, ``jobs`` at a time; with GPUs one per GPU (CUDA_VISIBLE_DEVICES per run).

    SIGINT / SIGTERM stop the sweep: running trainings get SIGTERM (they save a resume checkpoint),
    nothing new starts, and the result says ``interrupted``.
    """
    gpus = visible_gpus() if gpus is None else list(gpus)
    if jobs is None:
        jobs = max(1, len(gpus))
    if gpus and jobs > len(gpus):
        log.warning("sweep: %d jobs asked, %d GPU(s): running %d at a time", jobs, len(gpus), len(gpus))
        jobs = len(gpus)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pending = list(run_dirs)
    free = list(gpus)
    active: dict[threading.Thread, tuple[TrainJob, str | None, str]] = {}
    codes: dict[str, int] = {}
    stopping = threading.Event()

    def on_signal(signum, frame):
        if not stopping.is_set():
            log.warning("sweep: signal %d: stopping; running trainings checkpoint and stop", signum)
        stopping.set()
        for job, _, _ in list(active.values()):
            job.terminate()

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, on_signal)
    total = len(pending)
    try:
        while pending or active:
            while pending and len(active) < jobs and not stopping.is_set():
                d = pending.pop(0)
                gpu = free.pop(0) if gpus else None
                env = dict(os.environ)
                if gpu is not None:
                    env["CUDA_VISIBLE_DEVICES"] = gpu
                if "OMP_NUM_THREADS" not in os.environ:
                    env["OMP_NUM_THREADS"] = str(threads)
                job = TrainJob(d, "local", env=env)

                def work(job=job, d=d):
                    try:
                        codes[d] = job()
                    except Exception as exc:  # a job that cannot start is a failed point, not a dead sweep
                        log.error("sweep: %s could not start (%s)", d, exc)
                        codes[d] = -1

                t = threading.Thread(target=work, daemon=True)
                active[t] = (job, gpu, d)
                log.info("sweep: start %s (%d/%d)%s", d, total - len(pending), total,
                         f" on GPU {gpu}" if gpu is not None else "")
                t.start()
            for t in list(active):
                t.join(0.2)
                if not t.is_alive():
                    job, gpu, d = active.pop(t)
                    if gpu is not None:
                        free.append(gpu)
                    rc = codes.get(d, -1)
                    log.info("sweep: %s %s", d, "done" if rc == 0 else f"exited {rc} (see {d}/{LOG_FILE})")
            if stopping.is_set() and not active:
                break
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return {"codes": codes, "interrupted": stopping.is_set(), "not_started": pending}


def slurm_settings(spec_settings: dict, overrides: dict) -> dict:
    cfg = {**_check_keys(dict(spec_settings), SLURM_KEYS, "[slurm]"),
           **{k: v for k, v in overrides.items() if v is not None}}
    _check_keys(cfg, SLURM_KEYS, "slurm settings")
    cfg.setdefault("executor", "slurm")
    if cfg["executor"] not in EXECUTORS:
        raise ConfigError(f"[slurm] executor = {cfg['executor']!r}", f"use one of {', '.join(EXECUTORS)}")
    cfg.setdefault("requeue", True)
    cfg.setdefault("signal_delay_s", 120)
    cfg.setdefault("name", "vdgtool-sweep")
    if cfg["executor"] == "slurm" and not cfg.get("time"):
        raise ConfigError("a SLURM sweep needs a time limit per run", "pass --time 24:00:00 or set time in [slurm]")
    if cfg.get("setup") is not None and not (isinstance(cfg["setup"], list)
                                             and all(isinstance(x, str) for x in cfg["setup"])):
        raise ConfigError("[slurm] setup must be a list of shell lines", 'write setup = ["module load cuda"]')
    return cfg


def executor_parameters(cfg: dict) -> dict:
    """submitit AutoExecutor parameters for the settings (generic ones plus slurm_* ones)."""
    gpus = int(cfg.get("gpus") or 0)
    extra = dict(cfg.get("additional") or {})
    if cfg.get("requeue"):
        extra["requeue"] = True
    for k in ("account", "qos", "constraint"):
        if cfg.get(k):
            extra[k] = cfg[k]
    params = {"name": cfg["name"], "timeout_min": slurm_minutes(cfg.get("time") or 60),
              "gpus_per_node": gpus or None, "cpus_per_task": int(cfg["cpus"]) if cfg.get("cpus") else None,
              "mem_gb": cfg.get("mem_gb"), "slurm_partition": cfg.get("partition"),
              "slurm_array_parallelism": int(cfg["array_parallelism"]) if cfg.get("array_parallelism") else None,
              "slurm_signal_delay_s": int(cfg["signal_delay_s"]), "slurm_setup": cfg.get("setup"),
              "slurm_additional_parameters": extra or None}
    return {k: v for k, v in params.items() if v is not None}


def launch_submitit(run_dirs: list[str], sweep_dir: str, cfg: dict, wait: bool = False) -> dict:
    """Submit one job per point through submitit (a SLURM job array with the slurm executor)."""
    submitit = require("submitit", "slurm", "vdgtool sweep --launcher slurm")
    executor = cfg["executor"]
    folder = os.path.join(os.path.abspath(sweep_dir), ".submitit", "%j")
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster=executor)
    except RuntimeError as exc:
        raise ConfigError(f"no SLURM cluster here ({exc})",
                          "run the sweep on a SLURM login node, or use --launcher local") from None
    params = executor_parameters(cfg)
    try:
        ex.update_parameters(**params)
    except (ValueError, NameError, AssertionError) as exc:
        raise ConfigError(f"submitit refused the SLURM settings ({' '.join(str(exc).split())[:300]})",
                          "fix the [slurm] settings / options") from None
    gpus = int(cfg.get("gpus") or 0)
    launcher = "slurm" if executor == "slurm" else f"submitit-{executor}"
    try:
        with ex.batch():
            jobs = [ex.submit(TrainJob(d, launcher, bool(cfg["requeue"]), nproc=gpus if gpus > 1 else 1))
                    for d in run_dirs]
    except (OSError, subprocess.SubprocessError, submitit.core.utils.FailedJobError) as exc:
        raise ConfigError(f"submission failed ({' '.join(str(exc).split())[:300]})",
                          "check the SLURM settings (partition, time, account) and that sbatch works here") from None
    for d, j in zip(run_dirs, jobs):
        write_json(os.path.join(d, RUN_FILE), {"state": "queued", "launcher": launcher, "job_id": str(j.job_id),
                                              "submitted": now(), "command": display(train_argv(d))})
    codes = {}
    if wait or executor == "debug":
        for d, j in zip(run_dirs, jobs):
            try:
                codes[d] = j.result()
            except Exception as exc:  # the job itself failed (its log says why)
                log.error("sweep: job %s failed (%s)", j.job_id, " ".join(str(exc).split())[:300])
                codes[d] = -1
    return {"codes": codes, "job_ids": [str(j.job_id) for j in jobs], "folder": os.path.dirname(folder),
            "parameters": params, "interrupted": False, "not_started": []}


def run_sweep(spec_path: str, sweep_dir: str, *, launcher: str | None = None, dry_run: bool = False,
              jobs: int | None = None, gpus: list[str] | None = None, slurm: dict | None = None,
              wait: bool = False) -> dict:
    """Expand a spec, record every point, launch what is not done; returns the plan and what ran."""
    from vdgtool.utils.provenance import command_line

    spec = load_spec(spec_path, sweep_dir)
    launcher = launcher or spec.launcher or "local"
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher '{launcher}'", f"use one of {', '.join(LAUNCHERS)}")
    local = _check_keys(spec.local, LOCAL_KEYS, "[local]")
    scfg = slurm_settings(spec.slurm, slurm or {}) if launcher == "slurm" else None
    if not dry_run:
        os.makedirs(sweep_dir, exist_ok=True)
    steps = plan(spec, sweep_dir, write=not dry_run)
    todo = [s["dir"] for s in steps if not s["action"].startswith("skip")]
    res = {"sweep_dir": sweep_dir, "spec": spec_path, "launcher": launcher, "points": steps, "dry_run": dry_run,
           "duplicates": spec.duplicates, "launched": 0 if dry_run else len(todo)}
    if dry_run or not todo:
        return res
    import json

    with open(os.path.join(sweep_dir, "sweep_log.jsonl"), "a") as f:
        f.write(json.dumps({"time": now(), "command": command_line(), "spec": os.path.abspath(spec_path),
                            "launcher": launcher, "launched": [os.path.relpath(d, sweep_dir) for d in todo],
                            "spec_content": spec.raw}, default=str) + "\n")
    if launcher == "local":
        g = gpus if gpus is not None else ([str(x) for x in local["gpus"]] if "gpus" in local else None)
        out = launch_local(todo, jobs if jobs is not None else local.get("jobs"), g)
    else:
        out = launch_submitit(todo, sweep_dir, scfg, wait=wait)
    res.update(out)
    res["failed"] = sorted(d for d, rc in out["codes"].items() if rc != 0)
    return res
