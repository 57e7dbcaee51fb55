"""Training-step cost of registered models against the machine's matmul throughput (same run).

    python benchmarks/models_step.py [--models test_c3d,test_i3d,...] [--batch 16] [--threads 2]

For each model: one SGD step (forward + backward + update) on a random batch at its default input
spec; reports seconds per step, clips/s, the step's FLOPs (torch's FlopCounterMode) and the achieved
GFLOP/s as a fraction of a dense float32 matmul measured here (the practical compute ceiling).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch.utils.flop_counter import FlopCounterMode

from vdgtool.models import create_model


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def bench(name: str, batch: int, reps: int) -> dict:
    torch.manual_seed(0)
    m = create_model(name, 10)
    s = m.input_spec
    x = torch.randn(batch, s.in_channels, s.num_frames, s.size, s.size)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    sec = sorted(times)[len(times) // 2]
    return {"model": name, "input": f"{batch}x{s.in_channels}x{s.num_frames}x{s.size}^2",
            "params (M)": sum(p.numel() for p in m.parameters()) / 1e6, "s/step": sec,
            "clips/s": batch / sec, "GFLOP/step": flops / 1e9, "GFLOP/s": flops / sec / 1e9}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="test_c3d,test_i3d,test_tsn,test_tsm,test_trn,test_r3d")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    peak = matmul_gflops()
    rows = [bench(n, a.batch, a.reps) for n in a.models.split(",")]
    for r in rows:
        r["of matmul"] = f"{r['GFLOP/s'] / peak:.0%}"
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{a.threads} threads, float32 matmul {peak:.1f} GFLOP/s")
    print(tabulate(rows, headers="keys", floatfmt=".3g"))


if __name__ == "__main__":
    main()
