"""Training step rate with paired RGB + flow items (two streams) against one RGB stream, each fed by the
store-backed loader and by the same batches held in memory.

The in-memory feed is the ceiling (model compute only); ``loader / in-memory`` says how much of it the data
pipeline keeps (goal of issue 10: >= 0.9 for r3d_18 at 16x112, batch 8, two workers). Each stream setting
runs through the method's own ``training_step`` (``erm`` for one stream, ``two-stream`` for RGB + flow: an
RGB and a flow network, paired items read from a clip store and its flow store, one shared crop). The
feeds are measured in alternating rounds (in-memory, loader, in-memory, loader, ...) so that a change of
machine load between them hits both; ``loader alone`` is the loader iterated without a model (its
headroom over the model's step rate).

    python benchmarks/train/bench_paired.py [--model r3d_18] [--steps 3] [--rounds 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_loader import make_store  # noqa: E402  (sibling benchmark: random clips in a store)

from vdgtool.data import build_for_inputs  # noqa: E402
from vdgtool.flow.pipeline import compute_flow_store  # noqa: E402
from vdgtool.flow.backends import get_backend  # noqa: E402
from vdgtool.methods import Stepper, get_method, parse_hparams  # noqa: E402
from vdgtool.models import create_model  # noqa: E402
from vdgtool.runtime import autocast_for, make_loader  # noqa: E402


def build(method_name: str, model: str, num_classes: int = 4):
    cls = get_method(method_name)
    nets = {}
    for name, role in cls.NETWORKS.items():
        kw = {"in_channels": 2} if role == "flow" else {}
        nets[name] = create_model(model, num_classes=num_classes, **kw)
    method = cls(nets, num_classes, parse_hparams(cls, {}), class_names=[str(i) for i in range(num_classes)])
    opt = torch.optim.SGD([p for n in cls.NETWORKS for p in nets[n].parameters()], lr=0.01, momentum=0.9)
    return method, Stepper({"model": opt}, None, None, autocast_for("cpu"))


def steps_per_s(method, stepper, batches, steps: int, warm: int) -> float:
    method.train()
    it = iter(batches)
    t0 = time.perf_counter()
    for s in range(steps + warm):
        if s == warm:
            t0 = time.perf_counter()  # after the warm-up steps (worker start, first reads, allocator)
        method.training_step({"source": next(it)}, stepper)
        stepper.end_iteration()
    return steps / (time.perf_counter() - t0)


def loader_alone(loader, batches: int) -> float:
    it = iter(loader)
    next(it)  # worker start
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - t0)


def sampled_loader(ds, batch_size: int, workers: int, batches: int):
    """A loader over ``batches`` random batches (with replacement): no epoch end, no worker restart."""
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=batches * batch_size,
                                             generator=torch.Generator().manual_seed(0))
    return make_loader(ds, batch_size, workers, sampler=sampler, drop_last=True)


def cycle(xs):
    while True:
        yield from xs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="r3d_18")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per feed and round")
    ap.add_argument("--warm", type=int, default=1, help="untimed steps before each timed run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--alone", type=int, default=20, help="batches timed for the loader-alone row")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    spec = create_model(a.model, num_classes=4).input_spec
    rows = []
    with tempfile.TemporaryDirectory() as d:
        clips, flow = os.path.join(d, "clips.h5"), os.path.join(d, "flow.h5")
        # frames at 1.15 x the input size, 2 x the clip length, as bench_loader; the flow of those clips
        # from OpenCV's DIS (the field values do not matter here, the store layout and the reads do)
        make_store(clips, a.videos, 2 * spec.num_frames, int(spec.size * 1.15), "raw")
        compute_flow_store(clips, flow, get_backend("dis"))
        for label, method_name, flow_stores in (("one stream (RGB)", "erm", None),
                                                ("two streams (RGB + paired flow)", "two-stream", [flow])):
            method, stepper = build(method_name, a.model)
            ds = build_for_inputs([clips], method.input_specs(), True, flow_stores=flow_stores,
                                  class_names=method.class_names, seed=0)
            need = a.steps + a.warm
            cached = []
            for b in make_loader(ds, a.batch_size, 0, shuffle=False, drop_last=True):
                cached.append(b)
                if len(cached) == need:
                    break
            mem, fed = [], []
            for _ in range(a.rounds):
                mem.append(steps_per_s(method, stepper, cycle(cached), a.steps, a.warm))
                loader = sampled_loader(ds, a.batch_size, a.workers, need)
                fed.append(steps_per_s(method, stepper, iter(loader), a.steps, a.warm))
            alone = loader_alone(sampled_loader(ds, a.batch_size, a.workers, a.alone + 1), a.alone)
            ref = sum(mem) / len(mem)
            rate = sum(fed) / len(fed)
            rows.append((label, "in memory (ceiling)", 0, f"{ref:.3g}", 1.0, ""))
            rows.append((label, "store loader", a.workers, f"{rate:.3g}", round(rate / ref, 3),
                         " / ".join(f"{f / m:.3f}" for f, m in zip(fed, mem))))
            rows.append((label, "loader alone (no model)", a.workers, f"{alone:.3g}", round(alone / ref, 1), ""))
    load1 = os.getloadavg()
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"model {a.model} (two-stream: a second {a.model} with 2 input channels), input "
          f"{spec.num_frames}x{spec.size}x{spec.size}, batch {a.batch_size}, SGD; {a.rounds} rounds x {a.steps} "
          f"timed steps per feed; torch threads {a.threads}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}")
    print(f"load average (1/5/15 min) before {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, after "
          f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}; {up}")
    print(tabulate(rows, headers=("streams", "feed", "workers", "steps/s", "ratio to in-memory",
                                  "per round")))


if __name__ == "__main__":
    main()
