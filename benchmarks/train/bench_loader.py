"""Training throughput with the store-backed loader vs the same model fed from tensors in memory.

The in-memory run is the ceiling (model compute only); the ratio says how much the data pipeline
(HDF5 read, JPEG/raw decode, sampling, frame-consistent augmentation, collation) costs.

    python benchmarks/train/bench_loader.py [--model test_c3d] [--steps 30] [--encoding raw|jpeg]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch
from tabulate import tabulate

from vdgtool.data import build_dataset
from vdgtool.evaluate.predict import make_loader
from vdgtool.models import create_model
from vdgtool.stores import VideoStoreWriter


def make_store(path, n, frames, size, encoding):
    rng = np.random.default_rng(0)
    with VideoStoreWriter(path, classes=[str(i) for i in range(4)], conventions={"size": size},
                          encoding=encoding) as w:
        for i in range(n):
            w.add_video(f"v{i}", rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8), index=i,
                        label=i % 4, domain="d", fps=25)


def steps_per_s(model, batches, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    it = iter(batches)
    t0 = None
    for s in range(steps + 2):
        b = next(it)
        if s == 2:
            t0 = time.perf_counter()  # skip warm-up steps (worker start, allocator)
        loss = torch.nn.functional.cross_entropy(model(b["video"]), b["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="test_c3d")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--encoding", default="raw", choices=["raw", "jpeg"])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = create_model(a.model, num_classes=4)
    spec = model.input_spec
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.h5")
        make_store(path, 128, 32, int(spec.size * 1.15), a.encoding)
        ds = build_dataset([path], spec, True, seed=0)
        mem = [make_loader(ds, a.batch_size, 0, shuffle=False, drop_last=True)]
        cached = [b for b in mem[0]]

        def cycle(xs):
            while True:
                yield from xs

        ref = steps_per_s(model, cycle(cached), a.steps)
        rows = [("tensors in memory (ceiling)", 0, round(ref * a.batch_size, 1), 1.0)]
        for workers in (0, 1, 2):
            # one iterator for the whole measurement (a real epoch is thousands of steps): re-creating the
            # iterator every 8 batches of this small store would time the workers' start-up, not the loader
            sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=(a.steps + 2) * a.batch_size,
                                                     generator=torch.Generator().manual_seed(0))
            loader = make_loader(ds, a.batch_size, workers, sampler=sampler, drop_last=True)
            r = steps_per_s(model, iter(loader), a.steps)
            rows.append((f"store loader ({a.encoding})", workers, round(r * a.batch_size, 1), round(r / ref, 3)))
    print(f"model {a.model}, input {spec.num_frames}x{spec.size}x{spec.size}, batch {a.batch_size}, "
          f"torch threads {a.threads}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}")
    print(tabulate(rows, headers=("feed", "workers", "clips/s", "ratio to in-memory")))


if __name__ == "__main__":
    main()
