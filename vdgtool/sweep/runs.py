"""The run side of a sweep: the files a point keeps in its run directory, its state, and the job that
runs ``vdgtool train`` for it (the same job under the local launcher and under submitit/SLURM).

Files in ``SWEEP_DIR/<run>/`` besides what ``vdgtool train`` writes (config.json, results.jsonl,
checkpoints/, done):

* ``sweep_point.json``  the point: hash, options, train arguments (written before anything runs);
* ``sweep_run.json``    the latest attempt: launcher, job id, host, pid, start / end, exit code, error
  line; its modification time is a heartbeat while the job runs;
* ``sweep.log``         stdout and stderr of every attempt of ``vdgtool train``, appended.

States: ``done`` (train wrote ``done``), ``running``, ``queued`` (submitted to SLURM, not started),
``failed`` (exited without ``done``: an error, an interruption or a lost job; re-running the sweep
resumes it) and ``missing`` (never launched).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time

from vdgtool.errors import InputError

POINT_FILE = "sweep_point.json"
RUN_FILE = "sweep_run.json"
LOG_FILE = "sweep.log"
HEARTBEAT_S = 30.0
STALE_S = 180.0          # a running job whose heartbeat is older than this is taken as lost
STATES = ("done", "running", "queued", "failed", "missing")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: str, obj) -> None:
    """Atomic: a reader never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return {"state": "damaged"}


def has_checkpoint(run_dir: str) -> bool:
    ck = os.path.join(run_dir, "checkpoints")
    return any(os.path.exists(os.path.join(ck, n)) for n in ("last.pt", "preempt.pt"))


def train_argv(run_dir: str, nproc: int = 1, python: str | None = None) -> list[str]:
    """``vdgtool train`` for a point, as a user would type it; ``--resume`` when a checkpoint exists.

    Decided when the job starts (not when it is submitted), so a requeued SLURM job resumes.
    """
    point = read_json(os.path.join(run_dir, POINT_FILE))
    if not point or "args" not in point:
        raise InputError(f"{run_dir} has no {POINT_FILE}", "launch it with vdgtool sweep")
    py = python or sys.executable
    head = [py, "-m", "vdgtool", "train"] if nproc <= 1 else [
        py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "vdgtool", "train"]
    argv = head + list(point["args"]) + ["-o", os.path.abspath(run_dir)]
    if has_checkpoint(run_dir):
        argv.append("--resume")
    return argv


def display(argv: list[str]) -> str:
    """The command line as a user would type it (``vdgtool train ...``)."""
    if len(argv) > 3 and argv[1:3] == ["-m", "vdgtool"]:
        argv = ["vdgtool"] + argv[3:]
    elif len(argv) > 3 and argv[1:3] == ["-m", "torch.distributed.run"]:
        argv = ["torchrun"] + argv[3:]
    return " ".join(shlex.quote(a) for a in argv)


def _last_error(log_path: str) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(tail):
        if line.startswith("vdgtool: ") or "Error" in line or "error:" in line:
            return line.strip()[:300]
    return tail[-1].strip()[:300] if tail else ""


class TrainJob:
    """Runs ``vdgtool train`` for one point in a child process (its own session, so a Ctrl-C of the
    sweep reaches the training only as the sweep's SIGTERM, which checkpoints).

    Under submitit the job is pickled and run on the node; ``checkpoint`` is what submitit calls on
    pre-emption or time-out: it lets the training checkpoint and stop, then asks for a requeue, and the
    requeued job starts ``vdgtool train --resume``.
    """

    def __init__(self, run_dir: str, launcher: str = "local", requeue: bool = True, env: dict | None = None,
                 nproc: int = 1):
        self.run_dir = os.path.abspath(run_dir)
        self.launcher = launcher
        self.requeue = requeue
        self.env = env
        self.nproc = int(nproc)
        self._proc: subprocess.Popen | None = None
        self._stopped = False

    def __getstate__(self):
        st = dict(self.__dict__)
        st["_proc"] = None
        return st

    def __call__(self) -> int:
        argv = train_argv(self.run_dir, self.nproc)
        job_id = _job_id()
        run_path = os.path.join(self.run_dir, RUN_FILE)
        prev = read_json(run_path) or {}
        attempt = int(prev.get("attempt", 0)) + 1 if prev.get("state") in ("running", "exited") else 1
        rec = {"state": "running", "launcher": self.launcher, "job_id": job_id or prev.get("job_id"),
               "host": platform.node(), "pid": os.getpid(), "attempt": attempt, "started": now(),
               "command": display(argv), "resumed": "--resume" in argv}
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        write_json(run_path, rec)
        stop = threading.Event()

        def beat():
            while not stop.wait(HEARTBEAT_S):
                try:
                    os.utime(run_path)
                except OSError:
                    pass

        threading.Thread(target=beat, daemon=True).start()
        try:
            with open(os.path.join(self.run_dir, LOG_FILE), "a") as log:
                log.write(f"== attempt {attempt} {now()} on {platform.node()}: {display(argv)}\n")
                log.flush()
                self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True)
                rec["child_pid"] = self._proc.pid
                write_json(run_path, rec)
                if self._stopped:  # stopped while starting: pass the stop on
                    self.terminate()
                rc = self._proc.wait()
                log.write(f"== exit {rc} {now()}\n")
        finally:
            stop.set()
        rec.update(state="exited", returncode=rc, ended=now(),
                   error="" if rc == 0 else _last_error(os.path.join(self.run_dir, LOG_FILE)))
        rec["pid"] = rec["child_pid"] = None
        write_json(run_path, rec)
        return rc

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        """Ask the training to checkpoint and stop (vdgtool train saves preempt.pt on SIGTERM)."""
        self._stopped = True
        p = self._proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self, timeout: float) -> None:
        p = self._proc
        if p is not None:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.terminate(signal.SIGKILL)
                p.wait()

    def checkpoint(self, *args, **kwargs):
        """submitit's pre-emption / time-out hook: checkpoint the training, then requeue this job."""
        self.terminate()
        self.wait(timeout=float(os.environ.get("VDGTOOL_SWEEP_CHECKPOINT_WAIT", "600")))
        if not self.requeue:
            return None
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TrainJob(self.run_dir, self.launcher, self.requeue, self.env, self.nproc))


def _job_id() -> str | None:
    if os.environ.get("SLURM_JOB_ID"):
        arr, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"{arr}_{task}" if arr and task else os.environ["SLURM_JOB_ID"]
    return os.environ.get("SUBMITIT_LOCAL_JOB_ID")


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def slurm_queue() -> set[str] | None:
    """Base job ids in the SLURM queue (None when squeue is not available)."""
    import shutil

    if not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i", "--me"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return {line.split("_")[0].strip() for line in out.stdout.splitlines() if line.strip()}


def epochs_done(run_dir: str) -> int:
    try:
        with open(os.path.join(run_dir, "results.jsonl")) as f:
            return sum(1 for line in f if line.strip() and '"event"' not in line)
    except OSError:
        return 0


def run_state(run_dir: str, queue: set[str] | None = None) -> tuple[str, str]:
    """(state, detail) of one point's run directory."""
    if os.path.exists(os.path.join(run_dir, "done")):
        return "done", ""
    run_path = os.path.join(run_dir, RUN_FILE)
    rec = read_json(run_path)
    if rec is None:
        return "missing", ""
    st = rec.get("state")
    if st == "queued":
        jid = str(rec.get("job_id") or "")
        if queue is not None and jid and jid.split("_")[0] not in queue:
            return "failed", f"job {jid} left the queue without starting (cancelled?)"
        return "queued", f"job {jid}" if jid else ""
    if st == "running":
        age = time.time() - os.path.getmtime(run_path)
        pid = rec.get("child_pid") or rec.get("pid")
        if rec.get("host") == platform.node() and pid and not _pid_alive(pid):
            return "failed", "the job's process is gone (killed?)" + (
                "; a checkpoint is kept" if has_checkpoint(run_dir) else "")
        if age > STALE_S and rec.get("host") != platform.node():
            return "failed", f"no heartbeat for {int(age // 60)} min (job lost?)"
        return "running", f"attempt {rec.get('attempt', 1)}" + (f", job {rec['job_id']}" if rec.get("job_id") else "")
    if st == "exited":
        rc = rec.get("returncode")
        err = rec.get("error") or ""
        if rc == 0:
            return "failed", "train exited 0 without writing done"
        resumable = "; resumable" if has_checkpoint(run_dir) else ""
        return "failed", (f"exit {rc}: {err}" if err else f"exit {rc}") + resumable
    return "failed", f"unreadable {RUN_FILE}"


def find_points(sweep_dir: str, max_depth: int = 5) -> list[str]:
    """Run directories (holding sweep_point.json) below a sweep directory."""
    if not os.path.isdir(sweep_dir):
        raise InputError(f"sweep directory {sweep_dir} does not exist", "pass the -o of vdgtool sweep")
    out = []
    base = sweep_dir.rstrip(os.sep).count(os.sep)
    for root, dirs, files in os.walk(sweep_dir):
        if POINT_FILE in files:
            out.append(root)
            dirs[:] = [d for d in dirs if d not in ("checkpoints", "tb", "wandb")]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("checkpoints", "tb", "wandb"))
        if root.count(os.sep) - base >= max_depth:
            dirs[:] = []
    return sorted(out)


def status(sweep_dir: str) -> list[dict]:
    """One row per point of every sweep launched into ``sweep_dir``."""
    dirs = find_points(sweep_dir)
    recs = [(d, read_json(os.path.join(d, RUN_FILE)) or {}) for d in dirs]
    queue = slurm_queue() if any(r.get("state") == "queued" for _, r in recs) else None
    rows = []
    for d, rec in recs:
        point = read_json(os.path.join(d, POINT_FILE)) or {}
        state, detail = run_state(d, queue)
        opts = point.get("options") or {}
        rows.append({"run": os.path.relpath(d, sweep_dir), "hash": point.get("hash"), "arm": point.get("arm"),
                     "seed": point.get("seed"), "state": state, "epochs": epochs_done(d),
                     "of": opts.get("epochs"), "detail": detail, "launcher": rec.get("launcher"),
                     "job_id": rec.get("job_id"), "dir": d})
    return rows
