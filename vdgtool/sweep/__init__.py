"""``vdgtool sweep``: arms × grid × random samples × seeds of ``vdgtool train``, launched locally or on
SLURM through submitit, idempotent, with a status table. See docs/workflow.md."""

from vdgtool.sweep.launch import launch_local, launch_submitit, plan, run_sweep
from vdgtool.sweep.runs import STATES, TrainJob, status
from vdgtool.sweep.spec import Point, Spec, expand, load_spec, point_hash

__all__ = ["run_sweep", "plan", "launch_local", "launch_submitit", "status", "STATES", "TrainJob", "expand",
           "load_spec", "point_hash", "Point", "Spec"]
