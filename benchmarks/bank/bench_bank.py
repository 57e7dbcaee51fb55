"""Memory of the CFB flow bank: references (vdgtool.adapt.bank) vs the release's flow tensors.

The MM 2024 release stores, per bank entry, the centre-cropped evaluation flow view as a float32
tensor (2, 16, 224, 224) = 6.4 MB, in CPU heaps and then one .npy per class. vdgtool stores a
reference (video key, view, item index, confidence, labels) and re-reads the flow from the flow store.
This script fills a bank for each benchmark size (C classes x N = 60, target pool sizes of the
release's lists; B→U: all 13320 UCF-101 videos) with realistic key strings, and reports bytes per
entry three ways (payload, Python heap, serialised checkpoint state) against the release's tensor,
plus the time of one rebuild (selection + entries; the scoring pass is the model's evaluation and is
not included) against copying the release's tensors (one 6.4 MB copy measured, times C x N).

    python benchmarks/bank/bench_bank.py
"""

from __future__ import annotations

import io
import platform
import time
import tracemalloc

import numpy as np
import torch
from tabulate import tabulate

from vdgtool.adapt.bank import FlowBank

RELEASE_ENTRY_BYTES = 2 * 16 * 224 * 224 * 4  # float32 (2, 16, 224, 224)
# (name, classes, N, target videos, key template): keys as a flow store holds them (path under the root)
SETTINGS = [
    ("toy (5 x 10)", 5, 10, 150, "target_train/disc_rise/disc_rise_{i:03d}.gif"),
    ("E→H (13 x 60)", 13, 60, 1690, "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_{i}.avi"),
    ("S→U (12 x 60)", 12, 60, 1610, "ApplyEyeMakeup/v_ApplyEyeMakeup_g{i:02d}_c01.avi"),
    ("B→U (101 x 60)", 101, 60, 13320, "ApplyEyeMakeup/v_ApplyEyeMakeup_g{i:02d}_c01.avi"),
]


def fill(c, n, videos, template, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (videos, c))
    p = np.exp(logits - logits.max(1, keepdims=True))
    scores = 2 * p / p.sum(1, keepdims=True)
    keys = [template.format(i=i) for i in range(videos)]
    bank = FlowBank(c, n, view_spec={"source_frames": 32, "frames": 16, "every": 2, "crop": "centre"})
    t0 = time.perf_counter()
    bank.rebuild(scores, keys, true_labels=rng.integers(0, c, videos))
    return bank, time.perf_counter() - t0, scores, keys


def heap_bytes(c, n, scores, keys):
    bank = FlowBank(c, n)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    bank.rebuild(scores, keys)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used


def main():
    torch.set_num_threads(1)
    x = torch.randn(2, 16, 224, 224)
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        y = x.clone()
    copy_s = (time.perf_counter() - t0) / reps
    del y
    rows = []
    for name, c, n, videos, template in SETTINGS:
        bank, rebuild_s, scores, keys = fill(c, n, videos, template)
        entries = len(bank)
        buf = io.BytesIO()
        torch.save({"bank": bank.state_dict()}, buf)
        heap = heap_bytes(c, n, scores, keys)
        release_total = c * n * RELEASE_ENTRY_BYTES
        rows.append([name, entries, bank.nbytes() / entries, heap / entries, buf.tell() / entries,
                     RELEASE_ENTRY_BYTES / (buf.tell() / entries), buf.tell() / 2**10, release_total / 2**30,
                     rebuild_s * 1e3, c * n * copy_s * 1e3])
    print(f"# machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}; 1 torch thread")
    print(f"# release entry: float32 (2, 16, 224, 224) = {RELEASE_ENTRY_BYTES} B; one copy of it took "
          f"{copy_s * 1e3:.2f} ms here (release column = C x N copies, extrapolated, no disk write)")
    print(tabulate(rows, headers=["bank", "entries", "payload B/entry", "heap B/entry", "checkpoint B/entry",
                                  "release / checkpoint", "checkpoint KiB", "release GiB (C x N)",
                                  "rebuild ms", "release copies ms"], floatfmt=".4g", tablefmt="github"))


if __name__ == "__main__":
    main()
