"""extract throughput against the physical bound (raw decode of the same files with the same decoder),
and random clip reads from the store against decoding the same clips from the video files.

    python benchmarks/extract/bench_extract.py [--clips 60] [--size 128] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
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

    def decode_all(resize: bool):
        for _ in range(args.repeat):
            for p in vids:
                vr = decord.VideoReader(str(p), num_threads=1)
                for s in range(0, len(vr), 16):
                    batch = vr.get_batch(list(range(s, min(len(vr), s + 16)))).asnumpy()
                    if resize:
                        [resize_frame(f, args.size) for f in batch]

    rows = []
    with Timer() as t_raw:
        decode_all(False)
    with Timer() as t_rs:
        decode_all(True)
    rows.append(["decord decode only (bound)", t_raw.s, n_videos / t_raw.s, n_frames / t_raw.s, 1.0])
    rows.append([f"decord decode + resize to {args.size}", t_rs.s, n_videos / t_rs.s, n_frames / t_rs.s,
                 t_raw.s / t_rs.s])
    items = [Item(i, f"{k}/{p.name}", str(p), "c", "real") for i, (k, p) in
             enumerate((k, p) for k in range(args.repeat) for p in vids)]
    man = Manifest(items, ["c"], str(vids[0].parent), "bench")
    with tempfile.TemporaryDirectory() as d:
        stores = {}
        for enc, workers in (("raw", 0), ("jpeg", 0), ("jpeg", 2)):
            out = os.path.join(d, f"{enc}{workers}.h5")
            with Timer() as t:
                res = extract(man, out, opts=opts, encoding=enc, workers=workers)
            assert res.videos == n_videos and res.frames == n_frames, res
            stores.setdefault(enc, out)
            rows.append([f"vdgtool extract --encoding {enc} --workers {workers}", t.s, n_videos / t.s,
                         n_frames / t.s, t_raw.s / t.s])
        print(f"# bench_extract: {n_videos} videos ({len(vids)} files x {args.repeat}; UCF-101 MPEG-4 AVI and "
              f"Kinetics h264 mp4), {n_frames} frames, output short side {args.size}, decoder decord, 1 thread "
              f"per process")
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


if __name__ == "__main__":
    main()
