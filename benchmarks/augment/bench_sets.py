"""Transformation-set ops: batched torch (vdgtool.augment.sets) against per-frame PIL on the same frames.

    python benchmarks/augment/bench_sets.py [--clips 8] [--frames 16] [--size 112] [--threads 1]
                                            [--device cpu|cuda] [--fidelity] [--set autoaugment+gif]

Frames: real clips from ../shared/data (a Kinetics mp4 and the UCF-101 Basketball GIF, resized to
SIZE x SIZE), cycled to fill CLIPS clips of FRAMES frames. For every op of the set, at its middle
grid level:

* ``PIL ms`` : the same frames, one ``PIL.Image`` per frame (fromarray -> op -> asarray), the way a
  per-frame PIL data pipeline does it;
* ``torch ms``: ``apply_op`` on the (B, 3, T, H, W) float batch already on the device;
* ``x PIL`` = PIL time / torch time (higher is better for torch).

A last row times a mixed batch (a different random (op, level) per clip, RDA-style) through
``apply_batch``. ``--fidelity`` adds, per op, over ALL grid levels: the largest mean |torch - PIL|,
the largest single-pixel difference, and the largest share of pixels more than 2 levels off (0-255).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tabulate import tabulate

from vdgtool.augment.sets import SET_OPS, apply_batch, apply_op, grid, pil_reference, set_ops

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SOURCES = ("videos/real/k400__abseiling__abseiling_k400.mp4", "gifs/ucf101__Basketball__action_basketball_demo.gif")


def load_frames(n: int, size: int) -> np.ndarray:
    from vdgtool.video.decode import DecodeOptions, decode

    pools = [decode(str(DATA / s), DecodeOptions(size=(size, size), max_frames=48))[0] for s in SOURCES]
    pool = np.concatenate(pools)
    return pool[np.arange(n) % len(pool)]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def best_of(fn, repeat, dev):
    best = float("inf")
    for _ in range(repeat):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


def pil_frames(frames: np.ndarray, entries) -> np.ndarray:
    """entries: one (op, value) per frame."""
    return np.stack([np.asarray(pil_reference(Image.fromarray(f), op, v)) for f, (op, v) in zip(frames, entries)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--set", dest="set_name", default="autoaugment+gif")
    ap.add_argument("--fidelity", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    b, t = args.clips, args.frames
    frames = load_frames(b * t, args.size)                                   # (B*T, H, W, 3), clip-major
    video = torch.from_numpy(frames).to(dev).float().div(255).view(b, t, args.size, args.size, 3)
    video = video.permute(0, 4, 1, 2, 3).contiguous()                        # (B, 3, T, H, W)
    rows = []
    for op in set_ops(args.set_name):
        levels = [v for o, _, v in grid(op)]
        v = levels[len(levels) // 2]
        t_pil = best_of(lambda: pil_frames(frames, [(op, v)] * len(frames)), args.repeat, dev)
        apply_op(video, op, v)                                               # warm-up
        t_torch = best_of(lambda: apply_op(video, op, v), args.repeat, dev)
        rows.append([op, f"{v:g}", f"{1e3 * t_pil:.1f}", f"{1e3 * t_torch:.1f}", f"{t_pil / t_torch:.2f}"])
    rng = np.random.default_rng(0)
    g = grid(args.set_name)
    mixed = [g[i][0::2] for i in rng.choice(len(g), b, replace=False)]
    per_frame = [e for e in mixed for _ in range(t)]
    t_pil = best_of(lambda: pil_frames(frames, per_frame), args.repeat, dev)
    apply_batch(video, mixed)
    t_torch = best_of(lambda: apply_batch(video, mixed), args.repeat, dev)
    rows.append(["mixed: 1 random (op, level) per clip", "", f"{1e3 * t_pil:.1f}", f"{1e3 * t_torch:.1f}",
                 f"{t_pil / t_torch:.2f}"])
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    print(f"# {b} clips x {t} frames x {args.size}², device {dev} ({name}), {os.cpu_count()} cpus, "
          f"{args.threads} torch thread(s); torch {torch.__version__}, Pillow {Image.__version__}")
    print(tabulate(rows, headers=["op", "level", "PIL ms", "torch ms", "x PIL"], tablefmt="github"))
    if args.fidelity:
        fid = []
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[:, :, None]  # each frame its own clip
        for op in set_ops(args.set_name):
            means, maxes, fracs = [], [], []
            for _, _, v in grid(op):
                got = apply_op(x, op, v)[:, :, 0].permute(0, 2, 3, 1).mul(255).numpy()
                d = np.abs(got - pil_frames(frames, [(op, v)] * len(frames)))
                means.append(d.mean())
                maxes.append(d.max())
                fracs.append(np.mean(d.max(-1) > 2.0))
            fid.append([op, len(means), f"{max(means):.3f}", f"{np.mean(means):.3f}", f"{max(maxes):.1f}",
                        f"{100 * max(fracs):.2f}", SET_OPS[op].pil])
        print(f"\n# fidelity on the same {len(frames)} frames, all grid levels, 0-255 levels")
        print(tabulate(fid, headers=["op", "levels", "max mean |d|", "avg mean |d|", "max |d|", "max % px > 2",
                                     "PIL call"], tablefmt="github"))


if __name__ == "__main__":
    main()
