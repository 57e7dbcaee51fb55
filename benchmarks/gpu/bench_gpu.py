"""GPU figures for the hot loops that benchmarks/gpu.sh does not get from the other scripts.

    python benchmarks/gpu/bench_gpu.py step   [--device cuda] [--models r3d_18,r2plus1d_18,i3d,tsm:resnet50]
                                              [--batch 32] [--amp bf16] [--channels-last] [--compile]
    python benchmarks/gpu/bench_gpu.py loader [--batch 32] [--workers 0 4 8]   # clips/s of the store loader
    python benchmarks/gpu/bench_gpu.py nvjpeg [--device cuda]                  # batch JPEG decode vs the CPU

``step``: one SGD step (forward + backward + update) on a random batch at the model's input spec, median of
``--reps``; ``loader``: random training clips/s from a JPEG store through the real loader (augmentation on), to
set beside the step rate; ``nvjpeg``: frames/s of ``decode_jpegs_torch`` on the device against ``decode_jpegs``
(simplejpeg, one core) on the same files. Every mode also runs on the CPU (for a smoke check).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from tabulate import tabulate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "extract"))


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def step(args):
    import torch.nn.functional as F

    from vdgtool.models import create_model

    dev = torch.device(args.device)
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        m = create_model(name, 10).to(dev)
        s = m.input_spec
        x = torch.randn(args.batch, s.in_channels, s.num_frames, s.size, s.size, device=dev)
        if args.channels_last:
            m = m.to(memory_format=torch.channels_last_3d)
            x = x.contiguous(memory_format=torch.channels_last_3d)
        y = torch.randint(0, 10, (args.batch,), device=dev)
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        fwd = torch.compile(m) if args.compile else m
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

        def one():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(fwd(x), y)
            loss.backward()
            opt.step()

        t = time.perf_counter()
        one()
        _sync(dev)
        warm = time.perf_counter() - t
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            one()
            _sync(dev)
            times.append(time.perf_counter() - t)
        sec = sorted(times)[len(times) // 2]
        rows.append([name, f"{args.batch}x{s.in_channels}x{s.num_frames}x{s.size}^2", args.amp or "fp32",
                     bool(args.channels_last), bool(args.compile), warm, sec, args.batch / sec])
    print(f"# step: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}, torch {torch.__version__}")
    print(tabulate(rows, headers=["model", "input", "amp", "channels_last", "compile", "first step s", "s/step",
                                  "clips/s"], floatfmt=".3g", tablefmt="github"))


def _make_store(path, n, frames, size):
    from vdgtool.stores import VideoStoreWriter

    rng = np.random.default_rng(0)
    with VideoStoreWriter(path, classes=[str(i) for i in range(4)], conventions={"size": size},
                          encoding="jpeg") as w:
        for i in range(n):
            base = rng.integers(0, 255, (1, size // 4, size // 4, 3), dtype=np.uint8)
            v = np.repeat(np.repeat(np.repeat(base, frames, 0), 4, 1), 4, 2)  # blocky, JPEG-sized like video
            w.add_video(f"v{i}", v, index=i, label=i % 4, domain="d", fps=25)


def loader_rate(args):
    from vdgtool.data import build_dataset
    from vdgtool.data import device_decode as DD
    from vdgtool.models import create_model
    from vdgtool.runtime import make_loader

    spec = create_model(args.model, 4).input_spec
    dev = torch.device(args.device)
    if dev.type not in DD.DEVICE_TYPES:
        DD.DEVICE_TYPES.append(dev.type)  # a CPU check of the device-decoding path
    rows = []
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "s.h5")
        _make_store(p, 64, max(40, spec.num_frames + 8), int(spec.size * 1.15) // 4 * 4)
        for mode in args.decode:
            ds = build_dataset([p], spec, True, seed=0)
            DD.setup_decode(mode, dev, {"data": ds})
            for w in args.workers:
                dl = make_loader(ds, args.batch, w, shuffle=True, drop_last=True, device=dev)
                it = iter(dl)
                next(it)
                _sync(dev)
                t, n = time.perf_counter(), 0
                for _ in range(args.batches):
                    try:
                        b = next(it)
                    except StopIteration:
                        it = iter(dl)
                        b = next(it)
                    b["video"].to(dev, non_blocking=True)
                    n += len(b["label"])
                _sync(dev)
                rows.append([mode, w, n / (time.perf_counter() - t)])
    print(f"# loader: JPEG store, {args.model} training clips ({spec.num_frames}x{spec.size}^2, augmentation on), "
          f"batch {args.batch}, clips delivered on {dev}, {os.cpu_count()} CPUs; --decode cpu = decoded in the "
          "workers, cuda = JPEG bytes to the device, decoded there in one nvJPEG call per batch")
    print(tabulate(rows, headers=["--decode", "workers", "clips/s"], floatfmt=".4g", tablefmt="github"))


def nvjpeg(args):
    from _common import real_videos

    from vdgtool.stores.jpeg import decode_jpegs, decode_jpegs_torch, encode_jpeg
    from vdgtool.video.decode import DecodeOptions, decode

    frames, _ = decode(str(real_videos()[2]), DecodeOptions(size=args.size))
    bufs = encode_jpeg(frames, 90)
    dev = torch.device(args.device)
    decode_jpegs_torch(bufs[:4], dev)
    rows = []
    t = time.perf_counter()
    for _ in range(args.reps):
        cpu = decode_jpegs(bufs)
    rows.append(["simplejpeg, 1 CPU core", args.reps * len(bufs) / (time.perf_counter() - t), 1.0])
    _sync(dev)
    t = time.perf_counter()
    for _ in range(args.reps):
        out = decode_jpegs_torch(bufs, dev)
    _sync(dev)
    rate = args.reps * len(bufs) / (time.perf_counter() - t)
    rows.append([f"decode_jpegs_torch on {dev} (batch {len(bufs)})", rate, rate / rows[0][1]])
    diff = (out.cpu().numpy().astype(int) - cpu).__abs__()
    print(f"# nvjpeg: {len(bufs)} frames at short side {args.size}; max |diff| vs CPU {diff.max()}, "
          f"mean {diff.mean():.3f}")
    print(tabulate(rows, headers=["decoder", "frames/s", "x CPU"], floatfmt=".4g", tablefmt="github"))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("step")
    a.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a.add_argument("--models", default="r3d_18,r2plus1d_18,i3d,tsm:resnet50")
    a.add_argument("--batch", type=int, default=32)
    a.add_argument("--reps", type=int, default=10)
    a.add_argument("--amp", choices=["bf16", "fp16", "none"], default="bf16")
    a.add_argument("--channels-last", action="store_true")
    a.add_argument("--compile", action="store_true")
    b = sub.add_parser("loader")
    b.add_argument("--model", default="r3d_18")
    b.add_argument("--batch", type=int, default=32)
    b.add_argument("--batches", type=int, default=20)
    b.add_argument("--workers", type=int, nargs="+", default=[0, 4, 8])
    b.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    b.add_argument("--decode", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    c = sub.add_parser("nvjpeg")
    c.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    c.add_argument("--size", type=int, default=128)
    c.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if getattr(args, "amp", None) == "none":
        args.amp = None
    {"step": step, "loader": loader_rate, "nvjpeg": nvjpeg}[args.mode](args)


if __name__ == "__main__":
    main()
