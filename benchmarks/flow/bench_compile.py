"""Compile warm-up of the torch TV-L1 solver: cold (empty compile cache) vs warm (a later process, same cache
directory, as the next task of a SLURM array on a shared file system), against eager.

Each run is a fresh Python process that builds ``get_backend("torch", compile=True, compile_cache=DIR)`` and
times (1) its first ``compute`` on a batch of real frame pairs (= compile + one batch) and (2) a second call
(steady state); eager runs the same two calls without compiling. Warm-up = first call - steady call.

    python benchmarks/flow/bench_compile.py [--size 112] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, torch
torch.set_num_threads({threads})
from vdgtool.flow.backends import get_backend
from vdgtool.video.decode import DecodeOptions, decode
frames, _ = decode({video!r}, DecodeOptions(size=({size}, {size}), max_frames={batch} + 1))
t_import = time.perf_counter() - t0
be = get_backend("torch", batch_size={batch}, compile={compile}, compile_cache={cache!r})
t = time.perf_counter(); be.compute(frames[:-1], frames[1:]); first = time.perf_counter() - t
t = time.perf_counter(); be.compute(frames[:-1], frames[1:]); steady = time.perf_counter() - t
print(json.dumps({{"import_s": t_import, "first_s": first, "steady_s": steady}}))
"""


def run(args, compile: bool, cache: str) -> dict:
    video = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "videos", "real",
                         "k400__abseiling__abseiling_k400.mp4")
    code = CHILD.format(threads=args.threads, video=os.path.abspath(video), size=args.size, batch=args.batch,
                        compile=compile, cache=cache)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        env.pop(var, None)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=None, help="compile cache to use (default: a fresh temporary one)")
    ap.add_argument("--runs", nargs="+", default=["eager", "cold", "warm", "warm"],
                    choices=["eager", "cold", "warm"], help="cold = the first compiled run on the cache")
    args = ap.parse_args()
    from tabulate import tabulate

    names = {"eager": "eager", "cold": "compiled, cold cache (first task)", "warm": "compiled, warm cache (next task)"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or tmp
        for kind in args.runs:
            r = run(args, kind != "eager", cache)
            rows.append([names[kind], r["first_s"], r["steady_s"], r["first_s"] - r["steady_s"], r["import_s"],
                         r["process_s"]])
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"# bench_compile: torch TV-L1 at {args.size}x{args.size}, batch {args.batch} real pairs, "
          f"{args.threads} threads, default parameters; load average {os.getloadavg()[0]:.1f}")
    print(tabulate(rows, headers=["run", "first batch s", "steady batch s", "warm-up s", "imports s", "process s"],
                   floatfmt=".1f", tablefmt="github"))


if __name__ == "__main__":
    main()
