"""Data pipeline throughput: ClipDataset items/s against the bare store read of the same frames.

    python benchmarks/bench_data.py [--videos 16] [--frames 48] [--threads 1]

Builds temporary raw and JPEG (q90) clip stores of smooth panning random-texture videos (128x171, the usual extraction
size) and times, per item, (a) ``VideoStore.read`` of the sampled frames only (the I/O + decode
ceiling) and (b) a full ``ClipDataset.__getitem__`` (sample, read, crop/resize, flip, jitter,
normalise) for an r3d_18-like input (16 x 112², frame interval 2). The ratio (b)/(a) is what the
transform costs on top of reading.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time

import numpy as np
import torch
from tabulate import tabulate

from vdgtool.data import build_dataset
from vdgtool.stores import VideoStoreWriter


@dataclasses.dataclass(frozen=True)
class Spec:
    num_frames: int = 16
    size: int = 112
    mean: tuple = (0.43216, 0.394666, 0.37645)
    std: tuple = (0.22803, 0.22145, 0.216989)
    modality: str = "rgb"
    sampler: str = "dense"
    frame_interval: int = 2


def make(path, encoding, n, t, rng):
    import cv2

    with VideoStoreWriter(path, "clips", classes=["a", "b"], domains=["d"], encoding=encoding) as w:
        for i in range(n):
            # smooth random texture (JPEG-compressible like real frames) panning 2 px per frame
            small = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
            big = cv2.resize(small, (171 + 2 * t, 128), interpolation=cv2.INTER_CUBIC)
            fr = np.stack([big[:, 2 * k:2 * k + 171] for k in range(t)])
            w.add_video(f"v{i}", fr, index=i, label=i % 2, domain="d")


def rate(fn, n, repeat=2):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for enc in ("raw", "jpeg"):
            path = os.path.join(tmp, f"{enc}.h5")
            make(path, enc, args.videos, args.frames, rng)
            for train, crops, clips in ((True, 1, 1), (False, 1, 1), (False, 3, 2)):
                ds = build_dataset([path], Spec(), train, num_clips=clips, num_crops=crops,
                                   transform_options={"color_jitter": 0.4} if train else None)
                st = ds.stores[0]

                def read_only(i):
                    idx = ds.sampler(int(ds.num_frames[i]), ds.item_rng(i), train)
                    st.read(int(ds.rows[i]), idx.reshape(-1))

                r_read = rate(read_only, len(ds))
                r_item = rate(lambda i: ds[i], len(ds))
                view = "train (RRC+flip+jitter)" if train else f"test {clips} clip x {crops} crop"
                rows.append([enc, view, f"{r_read:.0f}", f"{r_item:.1f}", f"{r_read / r_item:.1f}x"])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, {args.threads} thread(s); items of 16x112² from 128x171 stores")
    print(tabulate(rows, headers=["encoding", "view", "read only (items/s)", "full item (items/s)",
                                  "item cost / read cost"]))


if __name__ == "__main__":
    main()
