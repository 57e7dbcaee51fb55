"""JPEG encoders and JPEG clip reads, side by side in one run on the same frames.

1. Encoders (what ``extract --encoding jpeg`` can use): OpenCV ``cv2.imencode`` (the encoder before issue 17),
   simplejpeg and PyTurboJPEG (both libjpeg-turbo's TurboJPEG API), quality 90, 4:2:0, on the benchmark frames
   at short side 128; frames/s per core, bytes, PSNR. And the decoders (``cv2.imdecode`` vs the two).
2. Random 16-frame clip reads from a JPEG store: the reader before issue 17 (one HDF5 read and one
   ``cv2.imdecode`` per frame; re-implemented here from the old code) against ``VideoStore.read`` today (one HDF5
   read per clip, simplejpeg straight into the output array), and with ``min_size`` (DCT-domain 1/2 decode,
   for a model whose crop is at most half the stored short side).

    python benchmarks/extract/bench_jpeg.py [--clips 300] [--size 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import Timer, machine, real_videos, set_threads  # noqa: E402


def _psnr(a, b):
    import numpy as np

    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b)])
    return 10 * np.log10(255.0 ** 2 / mse)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--clip-len", type=int, default=16)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repeats; the best time of each is kept")
    args = ap.parse_args()
    set_threads(1)
    import cv2
    import numpy as np
    import simplejpeg
    import turbojpeg
    from tabulate import tabulate

    from vdgtool.stores.video import VideoStore, VideoStoreWriter
    from vdgtool.video.decode import DecodeOptions, decode

    vids = [decode(str(p), DecodeOptions(size=args.size))[0] for p in real_videos()]
    frames = [f for v in vids for f in v]
    q = args.quality
    tj = turbojpeg.TurboJPEG()

    encoders = {
        "opencv cv2.imencode (before)": lambda f: cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]),
                                                               [int(cv2.IMWRITE_JPEG_QUALITY), q])[1],
        "simplejpeg (chosen)": lambda f: simplejpeg.encode_jpeg(f, quality=q, colorspace="RGB",
                                                                colorsubsampling="420"),
        "PyTurboJPEG": lambda f: tj.encode(f, quality=q, pixel_format=turbojpeg.TJPF_RGB,
                                           jpeg_subsample=turbojpeg.TJSAMP_420),
        "PyTurboJPEG, accurate DCT": lambda f: tj.encode(f, quality=q, pixel_format=turbojpeg.TJPF_RGB,
                                                         jpeg_subsample=turbojpeg.TJSAMP_420,
                                                         flags=turbojpeg.TJFLAG_ACCURATEDCT),
    }
    decoders = {
        "opencv cv2.imdecode (before)": lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1],
        "simplejpeg (chosen)": lambda b: simplejpeg.decode_jpeg(b, colorspace="RGB"),
        "PyTurboJPEG": lambda b: tj.decode(b, pixel_format=turbojpeg.TJPF_RGB),
    }
    def best(fns, arg_list):
        """Each fn over arg_list, the rounds interleaved (a loaded machine slows them alike); best time each."""
        times, outs = {k: [] for k in fns}, {}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                fn(arg_list[0])
                with Timer() as t:
                    outs[k] = [fn(a) for a in arg_list]
                times[k].append(t.s)
        return {k: min(v) for k, v in times.items()}, outs

    rows = []
    t_enc, bufs = best({k: (lambda f, e=e: bytes(e(f))) for k, e in encoders.items()}, frames)
    base = t_enc["opencv cv2.imencode (before)"]
    for name in encoders:
        dec = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for b in bufs[name]]
        rows.append([f"encode: {name}", len(frames) / t_enc[name], base / t_enc[name],
                     sum(map(len, bufs[name])) / len(frames), f"{_psnr(dec, frames):.2f} dB"])
    ref_bufs = bufs["opencv cv2.imencode (before)"]
    t_dec, outs = best(decoders, ref_bufs)
    base = t_dec["opencv cv2.imdecode (before)"]
    for name in decoders:
        same = all(np.array_equal(a, b) for a, b in zip(outs[name], outs["opencv cv2.imdecode (before)"]))
        rows.append([f"decode: {name}", len(frames) / t_dec[name], base / t_dec[name], "",
                     "same pixels" if same else "differs"])
    load = os.getloadavg()[0]
    print(f"# bench_jpeg: {len(frames)} frames ({len(vids)} real videos) at short side {args.size}, q{q} 4:2:0, "
          f"1 thread; load average {load:.1f} at the end of part 1")
    print(f"# machine: {machine()}; simplejpeg {simplejpeg.__version__}, PyTurboJPEG {turbojpeg.__version__}")
    print(tabulate(rows, headers=["what", "frames/s", "x before", "bytes/frame", "fidelity"], floatfmt=".3g",
                   tablefmt="github"))

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "j.h5")
        with VideoStoreWriter(p, classes=["c"], encoding="jpeg", jpeg_quality=q, conventions={"size": args.size},
                              provenance={}) as w:
            for i, v in enumerate(vids):
                w.add_video(f"v{i}", v, index=i, label=0, fps=25.0)
        st = VideoStore(p)
        picks = [(int(r), int(rng.integers(0, len(vids[r]) - args.clip_len + 1)))
                 for r in rng.integers(0, len(vids), args.clips)]

        def before(row, idx):  # the reader before issue 17 (stores/video.py at main~)
            ds = st._clip_dataset(row)
            uniq, inv = np.unique(np.asarray(idx), return_inverse=True)
            dec = np.stack([cv2.imdecode(np.asarray(ds[int(i)], np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
                            for i in uniq])
            return dec[inv]

        readers = {"before: per-frame HDF5 read + cv2.imdecode": before,
                   "now: VideoStore.read": lambda r, i: st.read(r, i),
                   f"now: VideoStore.read(min_size={args.size // 2}) (1/2 in the DCT domain)":
                       lambda r, i: st.read(r, i, min_size=args.size // 2)}
        r0, s0 = picks[0]
        assert np.array_equal(before(r0, range(s0, s0 + args.clip_len)), st.read(r0, range(s0, s0 + args.clip_len)))
        t_read, clips = best({k: (lambda rs, fn=fn: fn(rs[0], list(range(rs[1], rs[1] + args.clip_len))))
                              for k, fn in readers.items()}, picks)
        rows, base = [], t_read[next(iter(readers))]
        for name in readers:
            rows.append([name, args.clips / t_read[name], base / t_read[name],
                         "x".join(map(str, clips[name][-1].shape[1:3]))])
        st.close()
    print(f"\n# random {args.clip_len}-frame clips from a JPEG store ({args.clips} clips, 1 thread); load average "
          f"{os.getloadavg()[0]:.1f}")
    print(tabulate(rows, headers=["reader", "clips/s", "x before", "frame size"], floatfmt=".3g", tablefmt="github"))


if __name__ == "__main__":
    main()
