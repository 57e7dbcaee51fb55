#!/usr/bin/env python
"""End-of-epoch cost of the CFB bank rebuild as a share of an epoch: measured on cfb runs, extrapolated.

    python benchmarks/bank/bench_rebuild.py RUN_DIR [RUN_DIR ...]     # e.g. OUT/runs/bank/seed*

Measured: per ``cfb_bank`` event, the seconds of the rebuild (the scoring pass over the target pool with
both networks plus the top-N selection) over the epoch's ``time_s`` (which includes the rebuild), from the
runs' ``results.jsonl``. Extrapolated with a frame-count cost model (one unit = one frame through one
network forward; a backward counted as two forwards, the frozen blocks' cheaper backward ignored, so the
training side is over-counted and the share is an upper bound of the model):

* rebuild: ``pool_videos x 2 networks x eval_frames``
* epoch:   ``source_items x clip_len x (2 x 3  [source RGB + flow, forward + backward]
                                         + 3      [target RGB, forward + backward through the pace head]
                                         + 1)     [target flow, forward only]``

The model is checked against the toy's measured share (same table), then applied to the benchmarks'
sizes (E→H and S→U from the release's lists; B→U: UCF101's 13,320 videos and BU101's 23.8k images, an
assumption: the release ships no B→U list). Data loading is outside the model; on the toy it is part of
the measurement.
"""

from __future__ import annotations

import json
import os
import statistics
import sys

BENCHMARKS = {  # name: (pool videos, source items, clip_len, eval_frames)
    "E→H": (1690, 3014, 16, 32),
    "S→U": (1610, 2909, 16, 32),
    "B→U": (13320, 23800, 16, 32),
}


def model_share(pool: int, source: int, clip_len: int, eval_frames: int) -> float:
    rebuild = pool * 2 * eval_frames
    epoch = source * clip_len * (2 * 3 + 3 + 1)
    return rebuild / (rebuild + epoch)


def measured(runs: list[str]) -> tuple[list[float], dict]:
    shares, info = [], {}
    for run in runs:
        res = [json.loads(x) for x in open(os.path.join(run, "results.jsonl"))]
        epochs = {r["epoch"]: r for r in res if "event" not in r}
        for ev in (r for r in res if r.get("event") == "cfb_bank"):
            ep = epochs.get(ev["epoch"])
            if ep and ep.get("time_s"):
                shares.append(ev["seconds"] / ep["time_s"])
        cfg = json.load(open(os.path.join(run, "config.json")))
        info = {"clip_len": cfg.get("num_frames"), "eval_frames": cfg["hparams"]["eval_frames"]}
    return shares, info


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    shares, info = measured(argv)
    if not shares:
        sys.exit("no cfb_bank events in these runs")
    from vdgtool.stores import VideoStore

    cfg = json.load(open(os.path.join(argv[0], "config.json")))
    pool = sum(len(VideoStore(p)) for p in cfg["target"])
    source = sum(len(VideoStore(p)) for p in cfg["data"])
    print(f"# {len(argv)} run(s), {len(shares)} rebuilds; toy: {pool} pool videos, {source} source items, "
          f"clip {info['clip_len']}, eval {info['eval_frames']} frames")
    print("| setting | pool videos | source items | rebuild share of an epoch |")
    print("|---|---|---|---|")
    m, sd = statistics.mean(shares), statistics.pstdev(shares)
    print(f"| toy, measured (mean ± sd over rebuilds) | {pool} | {source} | {100 * m:.1f} % ± {100 * sd:.1f} |")
    print(f"| toy, cost model | {pool} | {source} | "
          f"{100 * model_share(pool, source, info['clip_len'], info['eval_frames']):.1f} % |")
    for name, (p, s, t, e) in BENCHMARKS.items():
        print(f"| {name}, cost model (clip {t}, eval {e}) | {p} | {s} | {100 * model_share(p, s, t, e):.1f} % |")


if __name__ == "__main__":
    main(sys.argv[1:])
