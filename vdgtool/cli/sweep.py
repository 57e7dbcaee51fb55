"""vdgtool sweep [run] SPEC -o SWEEP_DIR, vdgtool sweep status SWEEP_DIR."""

from __future__ import annotations

import click

from vdgtool.cli.common import emit, json_option


class _DefaultRun(click.Group):
    """`vdgtool sweep SPEC ...` is `vdgtool sweep run SPEC ...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]  # the group has no options of its own: anything else is for `run`
        return super().parse_args(ctx, args)


@click.group("sweep", cls=_DefaultRun)
def sweep():
    """Grids and random searches of `vdgtool train` over seeds, launched here or on SLURM.

    `vdgtool sweep SPEC.toml -o DIR` (short for `sweep run`) expands the spec into runs, one
    directory each, named by a hash of its options (or the spec's run_name), and runs what is not
    done; running it again skips finished runs and resumes interrupted ones. `vdgtool sweep status
    DIR` shows done / running / queued / failed / missing. Spec format: docs/workflow.md.

    \b
    Examples:
      vdgtool sweep drl.toml -o runs/drl --dry-run
      vdgtool sweep drl.toml -o runs/drl --jobs 2
      vdgtool sweep drl.toml -o runs/drl --launcher slurm --partition gpu --time 24:00:00 --gpus-per-run 1
      vdgtool sweep status runs/drl && vdgtool collect runs/drl --format markdown
    """


def _status_rows(rows):
    return [(r["run"], r["state"], f"{r['epochs']}/{r['of'] if r['of'] is not None else '?'}", r["detail"])
            for r in rows]


def _counts(rows) -> str:
    from vdgtool.sweep import STATES

    n = {s: sum(r["state"] == s for r in rows) for s in STATES}
    return ", ".join(f"{v} {k}" for k, v in n.items() if v) or "no runs"


@sweep.command("run")
@click.argument("spec", type=click.Path())
@click.option("-o", "--output", "sweep_dir", required=True, type=click.Path(), help="Sweep directory.")
@click.option("--launcher", type=click.Choice(["local", "slurm"]), default=None,
              help="Where the runs go (default: the spec's launcher, else local).")
@click.option("--dry-run", is_flag=True, help="Show each run, its state and its command; launch nothing.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="local: runs at a time (default: one per GPU, or 1 without GPUs).")
@click.option("--gpus", "gpu_list", default=None,
              help="local: GPU ids to use, e.g. 0,1 (default: CUDA_VISIBLE_DEVICES or all).")
@click.option("--partition", default=None, help="slurm: partition.")
@click.option("--time", "time_limit", default=None, help="slurm: time limit per run (24:00:00, 1-00:00:00, minutes).")
@click.option("--gpus-per-run", type=click.IntRange(min=0), default=None,
              help="slurm: GPUs per run (more than 1 runs train under torchrun).")
@click.option("--cpus-per-run", type=click.IntRange(min=1), default=None, help="slurm: CPUs per run.")
@click.option("--mem-gb", type=click.FloatRange(min=0, min_open=True), default=None, help="slurm: memory per run.")
@click.option("--array-parallelism", type=click.IntRange(min=1), default=None,
              help="slurm: runs of the job array at a time.")
@click.option("--requeue/--no-requeue", default=None,
              help="slurm: requeue on pre-emption / time-out, resuming from the checkpoint  [default: requeue]")
@click.option("--executor", type=click.Choice(["slurm", "local", "debug"]), default=None,
              help="slurm: submitit executor; local / debug try a SLURM spec on this machine.")
@click.option("--wait", is_flag=True, help="slurm: wait for the jobs to finish.")
@json_option
def run_cmd(spec, sweep_dir, launcher, dry_run, jobs, gpu_list, partition, time_limit, gpus_per_run, cpus_per_run,
            mem_gb, array_parallelism, requeue, executor, wait, as_json):
    """Launch the runs of SPEC (TOML or JSON) that are not done yet into SWEEP_DIR."""
    from vdgtool.errors import VdgError
    from vdgtool.sweep import run_sweep, status

    slurm = {"partition": partition, "time": time_limit, "gpus": gpus_per_run, "cpus": cpus_per_run,
             "mem_gb": mem_gb, "array_parallelism": array_parallelism, "requeue": requeue, "executor": executor}
    gpus = [g for g in gpu_list.split(",") if g.strip()] if gpu_list is not None else None
    res = run_sweep(spec, sweep_dir, launcher=launcher, dry_run=dry_run, jobs=jobs, gpus=gpus, slurm=slurm, wait=wait)
    if dry_run:
        if as_json:
            emit(res, True)
            return
        emit(res, False, [(p["run"], p["state"], p["action"], p["command"]) for p in res["points"]],
             headers=("run", "state", "action", "command"),
             title=f"{len(res['points'])} run(s); {sum(not p['action'].startswith('skip') for p in res['points'])} "
                   "to launch (dry run: nothing launched)")
        return
    rows = status(sweep_dir)
    res["status"] = rows
    if as_json:
        emit(res, True)
    else:
        ours = {p["dir"] for p in res["points"]}
        emit(res, False, _status_rows([r for r in rows if r["dir"] in ours]),
             headers=("run", "state", "epochs", "detail"), title=f"sweep {sweep_dir}: {_counts(rows)}")
        if res.get("job_ids"):
            click.echo(f"submitted {len(res['job_ids'])} job(s): {res['job_ids'][0]} ...; logs in {res['folder']}",
                       err=True)
    if res.get("interrupted"):
        click.echo("vdgtool: sweep interrupted: running trainings checkpointed; run the same command again to "
                   "resume", err=True)
        raise KeyboardInterrupt  # exit 130, as for any interrupted verb
    if res.get("failed"):
        raise VdgError(f"{len(res['failed'])} run(s) failed (first: {res['failed'][0]}/sweep.log)",
                       "fix the cause and run the same command again: finished runs are skipped")


@sweep.command("status")
@click.argument("sweep_dir", type=click.Path())
@click.option("--state", "states", default=None, help="Only runs in these states, e.g. failed,missing.")
@json_option
def status_cmd(sweep_dir, states, as_json):
    """Done / running / queued / failed / missing per run of a sweep directory (epochs so far)."""
    from vdgtool.sweep import status

    rows = status(sweep_dir)
    if states:
        keep = {s.strip() for s in states.split(",")}
        rows = [r for r in rows if r["state"] in keep]
    if as_json:
        emit(rows, True)
        return
    emit(rows, False, _status_rows(rows), headers=("run", "state", "epochs", "detail"),
         title=f"sweep {sweep_dir}: {_counts(rows)}")
