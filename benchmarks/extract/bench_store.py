"""Frame encodings of a clip store: size, write speed and random 16-frame clip reads.

Same frames for every encoding (decoded once from ../shared/data videos at short side 128, as
`vdgtool extract --size 128` stores them). Encodings: raw uint8 with 8-frame chunks, raw with one
chunk per video, lzf, gzip (level 4), and JPEG q90 (cv2.imencode / cv2.imdecode), all through the
real VideoStoreWriter / VideoStore code paths except the filtered variants (h5py directly, same layout).

    python benchmarks/extract/bench_store.py [--clips 300] [--size 128]
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
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--clip-len", type=int, default=16)
    args = ap.parse_args()
    set_threads(1)
    import h5py
    import numpy as np
    from tabulate import tabulate

    from vdgtool.stores.video import VideoStore, VideoStoreWriter
    from vdgtool.video.decode import DecodeOptions, decode

    videos = []
    for p in real_videos():
        fr, _ = decode(str(p), DecodeOptions(size=args.size))
        videos.append((p.name, fr))
    n_frames = sum(len(v) for _, v in videos)
    raw_bytes = sum(v.nbytes for _, v in videos)
    rng = np.random.default_rng(0)
    picks = []
    for _ in range(args.clips):
        r = int(rng.integers(len(videos)))
        s = int(rng.integers(0, len(videos[r][1]) - args.clip_len + 1))
        picks.append((r, s))

    rows = []
    with tempfile.TemporaryDirectory() as d:
        def via_writer(name, encoding, chunk):
            p = os.path.join(d, name + ".h5")
            with Timer() as tw:
                with VideoStoreWriter(p, encoding=encoding, jpeg_quality=90, chunk_frames=chunk) as w:
                    for i, (k, v) in enumerate(videos):
                        w.add_video(k, v, index=i)
            return p, tw.s

        def via_h5py(name, compression, opts):
            # same layout as the store (one (T,H,W,3) dataset per video, 8-frame chunks), plus a filter
            p = os.path.join(d, name + ".h5")
            with Timer() as tw:
                with h5py.File(p, "w") as f:
                    for i, (k, v) in enumerate(videos):
                        f.create_dataset(f"data/{i:08d}", data=v, chunks=(8,) + v.shape[1:],
                                         compression=compression, compression_opts=opts)
            return p, tw.s

        variants = [
            ("raw, chunk 8 frames", lambda: via_writer("raw8", "raw", 8), "store"),
            ("raw, chunk = video", lambda: via_writer("rawv", "raw", 10**6), "store"),
            ("lzf, chunk 8", lambda: via_h5py("lzf", "lzf", None), "h5"),
            ("gzip 4, chunk 8", lambda: via_h5py("gzip", "gzip", 4), "h5"),
            ("jpeg q90 (default)", lambda: via_writer("jpeg", "jpeg", 8), "store"),
        ]
        ref_frames = {i: v for i, (_, v) in enumerate(videos)}
        for label, make, how in variants:
            p, tw = make()
            size = os.path.getsize(p)
            if how == "store":
                st = VideoStore(p)
                read = lambda r, s: st.read(r, range(s, s + args.clip_len))  # noqa: E731
            else:
                f = h5py.File(p, "r")
                read = lambda r, s: f[f"data/{r:08d}"][s:s + args.clip_len]  # noqa: E731
            read(*picks[0])  # open the file
            with Timer() as tr:
                for r, s in picks:
                    clip = read(r, s)
            err = []
            for r, s in picks[:20]:
                a = read(r, s).astype(np.float64)
                b = ref_frames[r][s:s + args.clip_len]
                mse = np.mean((a - b) ** 2)
                err.append(99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse))
            assert clip.shape[0] == args.clip_len
            rows.append([label, size / 2**20, raw_bytes / size, n_frames / tw, args.clips / tr.s,
                         "exact" if min(err) >= 99 else f"{np.mean(err):.1f} dB"])
            if how == "store":
                st.close()
            else:
                f.close()
    base = rows[0]
    for r in rows:
        r.insert(5, r[4] / base[4])
    print(f"# bench_store: {len(videos)} videos, {n_frames} frames at short side {args.size} "
          f"({raw_bytes / 2**20:.1f} MiB decoded), {args.clips} random {args.clip_len}-frame clips, 1 thread")
    print(f"# machine: {machine()}")
    print(tabulate(rows, headers=["encoding", "size MiB", "compression x", "write frames/s", "read clips/s",
                                  "read vs raw8", "fidelity (PSNR)"], floatfmt=".3g", tablefmt="github"))


if __name__ == "__main__":
    main()
