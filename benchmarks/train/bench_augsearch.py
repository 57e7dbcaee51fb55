"""Cost of the worst-case augmentation search (`--method augsearch`) against ERM on the same batches.

Two runs of the real engine with one seed (so the same clips in the same order): ERM, and augsearch
with a search at the start of epochs 1..S (`warmup=0`, `search_every=1`, `max_T=S+1`); after that T is
full and augsearch only transforms clips. Reported side by side:

* training rate (clips/s) of the epochs after the last search, augsearch / ERM: the per-clip
  frame-consistent transformation's overhead;
* seconds per search (from the `augsearch` events) as a share of one ERM epoch: the search's cost;
* the same for rda (a random op per clip).

    python benchmarks/train/bench_augsearch.py [--model test_c3d] [--size 64] [--clips 64] [--searches 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile

import numpy as np
import torch
from tabulate import tabulate

from vdgtool.stores import VideoStoreWriter
from vdgtool.train.config import TrainConfig
from vdgtool.train.engine import train


def make_store(path, n, frames, size):
    rng = np.random.default_rng(0)
    with VideoStoreWriter(path, classes=[str(i) for i in range(4)], conventions={"size": size}, encoding="raw") as w:
        for i in range(n):
            w.add_video(f"v{i}", rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8), index=i,
                        label=i % 4, domain="d", fps=25)


def epochs_of(run):
    with open(os.path.join(run, "results.jsonl")) as f:
        lines = [json.loads(x) for x in f]
    return [ln for ln in lines if "event" not in ln], [ln for ln in lines if ln.get("event") == "augsearch"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="test_c3d")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--searches", type=int, default=3)
    ap.add_argument("--after", type=int, default=3, help="epochs measured after the last search")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--search-set", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp()
    store = os.path.join(tmp, "train.h5")
    make_store(store, args.clips, args.frames, args.size)
    epochs = args.searches + args.after
    hp = {"warmup": 0, "search_every": 1, "max_T": args.searches + 1}
    runs = {"erm": ("erm", {}), "rda": ("rda", hp),
            "augsearch": ("augsearch", {**hp, "candidates": args.candidates, "search_set": str(args.search_set)})}
    stats = {}
    for name, (method, h) in runs.items():
        out = os.path.join(tmp, name)
        train(TrainConfig(data=[store], output=out, model=args.model, size=args.size, num_frames=args.frames,
                          epochs=epochs, batch_size=8, lr=0.01, method=method, hp=h, seed=0, device=args.device,
                          flip=False))
        ep, ev = epochs_of(out)
        after = ep[args.searches:]
        stats[name] = {"rate": float(np.mean([e["clips_per_s"] for e in after])),
                       "search_s": [e["seconds"] for e in ev]}
    erm_epoch_s = args.clips / stats["erm"]["rate"]
    rows = []
    for name, s in stats.items():
        srch = float(np.mean(s["search_s"])) if s["search_s"] else None
        rows.append((name, round(s["rate"], 1), round(s["rate"] / stats["erm"]["rate"], 3),
                     None if srch is None else round(srch, 2),
                     None if srch is None else round(srch / erm_epoch_s, 2)))
    print(f"# {args.model} {args.frames}x{args.size}², {args.clips} clips, batch 8, device {args.device}, 1 thread; "
          f"augsearch: {args.candidates} candidates on {args.search_set} clips per search; "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(tabulate(rows, headers=("run", "clips/s after the searches", "vs ERM", "s per search",
                                  "search / ERM epoch"), tablefmt="github"))


if __name__ == "__main__":
    main()
