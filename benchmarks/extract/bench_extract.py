"""extract throughput against the physical bound (decode of the same files with the same decoder at the
output size, decord's own scaler), and random clip reads from the store against decoding the same clips from
the video files. Every row is timed ``--rounds`` times, the rows interleaved, best time kept (a loaded machine
slows all rows alike; the ratios are what to read).

    python benchmarks/extract/bench_extract.py [--clips 60] [--size 128] [--repeat 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import Timer, machine, real_videos, set_threads  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2, help="copies of each video in the manifest")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    set_threads(1)
    import decord
    import numpy as np
    from tabulate import tabulate

    from vdgtool.stores.video import VideoStore
    from vdgtool.video.decode import DecodeOptions, resize_frame
    from vdgtool.video.extract import extract
    from vdgtool.video.manifest import Item, Manifest

    vids = real_videos()
    n_src = 0
    for p in vids:
        n_src += len(decord.VideoReader(str(p), num_threads=1))
    n_videos = len(vids) * args.repeat
    n_frames = n_src * args.repeat
    opts = DecodeOptions(size=args.size)

    from vdgtool.video.decode import _target_hw

    def decode_all(mode: str):
        for _ in range(args.repeat):
            for p in vids:
                kw = {}
                if mode == "scaled":
                    h, w = decord.VideoReader(str(p), num_threads=1)[0].shape[:2]
                    th, tw = _target_hw(h, w, args.size)
                    kw = {"width": tw, "height": th}
                vr = decord.VideoReader(str(p), num_threads=1, **kw)
                for s in range(0, len(vr), 16):
                    batch = vr.get_batch(list(range(s, min(len(vr), s + 16)))).asnumpy()
                    if mode == "resize":
                        [resize_frame(f, args.size) for f in batch]

    items = [Item(i, f"{k}/{p.name}", str(p), "c", "real") for i, (k, p) in
             enumerate((k, p) for k in range(args.repeat) for p in vids)]
    man = Manifest(items, ["c"], str(vids[0].parent), "bench")
    runs = {f"decord decode at {args.size} (bound)": lambda: decode_all("scaled"),
            "decord decode at full size": lambda: decode_all("full"),
            f"decord decode full size + OpenCV resize to {args.size} (before)": lambda: decode_all("resize")}
    d = tempfile.mkdtemp()
    stores = {}
    for enc in ("raw", "jpeg"):
        for workers in args.workers:
            out = os.path.join(d, f"{enc}{workers}.h5")
            stores.setdefault(enc, out)

            def run(enc=enc, workers=workers, out=out):
                res = extract(man, out, opts=opts, encoding=enc, workers=workers, overwrite=True)
                assert res.videos == n_videos and res.frames == n_frames, res

            runs[f"vdgtool extract --encoding {enc} --workers {workers}"] = run
    best = {k: float("inf") for k in runs}
    for _ in range(args.rounds):
        for k, fn in runs.items():
            with Timer() as t:
                fn()
            best[k] = min(best[k], t.s)
    bound = best[f"decord decode at {args.size} (bound)"]
    rows = [[k, t, n_videos / t, n_frames / t, bound / t] for k, t in best.items()]
    try:
        print(f"# bench_extract: {n_videos} videos ({len(vids)} files x {args.repeat}; UCF-101 MPEG-4 AVI and "
              f"Kinetics h264 mp4), {n_frames} frames, output short side {args.size}, decoder decord, 1 thread "
              f"per process; load average {os.getloadavg()[0]:.1f}")
        print(f"# machine: {machine()}")
        print(tabulate(rows, headers=["what", "seconds", "videos/s", "frames/s", "vs decode bound"],
                       floatfmt=".3g", tablefmt="github"))

        # random clip reads: store vs decoding the clip from the video file
        rng = np.random.default_rng(0)
        lens = [len(decord.VideoReader(str(p), num_threads=1)) for p in vids]
        picks = [(int(r), int(rng.integers(0, lens[r] - args.clip_len + 1)))
                 for r in rng.integers(0, len(vids), args.clips)]
        rows = []
        with Timer() as t_dec:
            for r, s in picks:
                vr = decord.VideoReader(str(vids[r]), num_threads=1)
                batch = vr.get_batch(list(range(s, s + args.clip_len))).asnumpy()
                clip = np.stack([resize_frame(f, args.size) for f in batch])
        rows.append(["decord: open file, seek, decode 16 frames, resize", args.clips / t_dec.s, 1.0])
        for enc, p in stores.items():
            st = VideoStore(p)
            st.read(0, [0])
            with Timer() as t:
                for r, s in picks:
                    clip = st.read(r, range(s, s + args.clip_len))
            assert clip.shape == (args.clip_len,) + st.read(picks[-1][0], [0]).shape[1:]
            rows.append([f"store ({enc}) read", args.clips / t.s, t_dec.s / t.s])
            st.close()
        print(f"\n# random {args.clip_len}-frame clips at random positions ({args.clips} clips)")
        print(tabulate(rows, headers=["reader", "clips/s", "vs decoding the video"], floatfmt=".3g",
                       tablefmt="github"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
