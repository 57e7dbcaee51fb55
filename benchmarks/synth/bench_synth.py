"""Benchmark: batched torch renderer of ``synth-video`` vs a per-image NumPy/OpenCV implementation.

Same steps, same output: back-project with depth, move the camera (MM 2024 motion ranges), forward-warp
with a z-buffer (nearest wins, ties to the later source pixel), fill colour holes with OpenCV Telea
(radius 3), fill depth holes with a push-pull pyramid, chain each frame from the previous one.

Two references, both written here, per image and per frame:

* ``numpy-loop``: the z-buffer as a plain per-pixel loop (what the Depthstillation C routine does,
  written in Python), the rest vectorised NumPy + OpenCV. Slow, so it runs on fewer frames.
* ``numpy-vec``: the z-buffer vectorised with ``np.lexsort`` (a careful NumPy implementation).

Run:  python benchmarks/synth/bench_synth.py [--images 4] [--frames 8] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vdgtool.synth.depth import inverse_to_depth, read_depth_map, resize_map
from vdgtool.synth.render import render_depth_video
from vdgtool.synth.trajectory import sample_trajectory

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images"
FOCAL = 0.58


# ---------------------------------------------------------------- NumPy / OpenCV reference ----------
def ref_project(depth, M, focal=FOCAL):
    h, w = depth.shape
    K = np.array([[focal * w, 0, 0.5 * w], [0, focal * h, 0.5 * h], [0, 0, 1]], np.float64)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    pix = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w, np.float32)])
    A = (K @ M[:3, :3] @ np.linalg.inv(K)).astype(np.float32)
    b = (K @ M[:3, 3:]).astype(np.float32)
    uvw = (A @ pix) * depth.reshape(1, -1).astype(np.float32) + b
    z = uvw[2]
    zz = np.where(np.abs(z) < 1e-12, np.float32(1e-12), z)
    return (uvw[0] / zz).reshape(h, w), (uvw[1] / zz).reshape(h, w), z.reshape(h, w)


def _targets(x, y, z, h, w):
    xi = np.floor(x + np.float32(0.5))
    yi = np.floor(y + np.float32(0.5))
    ok = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1) & (z > 1e-3) & np.isfinite(z)
    src = np.nonzero(ok.ravel())[0]
    tgt = yi.ravel()[src].astype(np.int64) * w + xi.ravel()[src].astype(np.int64)
    return src, tgt, z.ravel()[src].astype(np.float32)


def zbuffer_loop(src, tgt, zs, n):
    """The straightforward z-buffer: visit source pixels in raster order, keep the nearest (<= so that a
    tie goes to the later pixel)."""
    zbuf = [np.inf] * n
    owner = [-1] * n
    for s, t, z in zip(src.tolist(), tgt.tolist(), zs.tolist()):
        if z <= zbuf[t]:
            zbuf[t] = z
            owner[t] = s
    owner = np.array(owner, np.int64)
    zb = np.array(zbuf, np.float32)
    return owner, np.where(owner >= 0, zb, 0).astype(np.float32)


def zbuffer_vec(src, tgt, zs, n):
    order = np.lexsort((-src, zs, tgt))             # by target, then nearest, then later source
    t_sorted = tgt[order]
    first = np.ones(len(order), bool)
    first[1:] = t_sorted[1:] != t_sorted[:-1]
    win = order[first]
    owner = np.full(n, -1, np.int64)
    owner[tgt[win]] = src[win]
    zb = np.zeros(n, np.float32)
    zb[tgt[win]] = zs[win]
    return owner, zb


def ref_push_pull(x, valid):
    """Same pyramid as vdgtool.synth.render.push_pull_fill, in NumPy/OpenCV (x: (H, W) float32)."""
    w = valid.astype(np.float32)
    if w.min() > 0:
        return x
    levels = [(x * w, w)]
    while True:
        num, den = levels[-1]
        if min(num.shape) <= 1 or den.min() > 0:
            break
        ph, pw = num.shape[0] % 2, num.shape[1] % 2
        n2 = np.pad(num, ((0, ph), (0, pw)))
        d2 = np.pad(den, ((0, ph), (0, pw)))
        cnt = np.pad(np.ones_like(num), ((0, ph), (0, pw)))
        s = lambda a: a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).sum((1, 3))
        c = s(cnt)
        levels.append((s(n2) / c, s(d2) / c))
    num, den = levels[-1]
    cur = num / np.maximum(den, 1e-12)
    for num, den in reversed(levels[:-1]):
        up = cv2.resize(cur, (num.shape[1], num.shape[0]), interpolation=cv2.INTER_LINEAR)
        cur = np.where(den > 0, num / np.maximum(den, 1e-12), up)
    return np.where(w > 0, x, cur).astype(np.float32)


def ref_render(img, depth, steps, zbuffer=zbuffer_vec):
    """One image (H, W, 3) uint8, depth (H, W), per-step poses (T, 4, 4) -> frames (T, H, W, 3) uint8."""
    h, w = depth.shape
    cur, d = img, depth.astype(np.float32)
    frames = [img]
    for M in steps[1:]:
        x, y, z = ref_project(d, M.astype(np.float64))
        src, tgt, zs = _targets(x, y, z, h, w)
        owner, zb = zbuffer(src, tgt, zs, h * w)
        hit = owner >= 0
        warped = np.zeros((h * w, 3), np.uint8)
        warped[hit] = cur.reshape(-1, 3)[owner[hit]]
        holes = (~hit).reshape(h, w).astype(np.uint8)
        nxt = cv2.inpaint(warped.reshape(h, w, 3), holes, 3, cv2.INPAINT_TELEA)
        d = ref_push_pull(zb.reshape(h, w), hit.reshape(h, w))
        frames.append(nxt)
        cur = nxt
    return np.stack(frames)


# ---------------------------------------------------------------- benchmark --------------------------
def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--loop-frames", type=int, default=2, help="frames (incl. the source) for the slow loop reference")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    W, H = (int(v) for v in args.size.split("x"))
    if not (DATA / "depthstillation_im0.jpg").exists():
        raise SystemExit(f"needs the shared test data at {DATA}")
    img = cv2.imread(str(DATA / "depthstillation_im0.jpg"))[..., ::-1]
    img = np.ascontiguousarray(cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA))
    depth = inverse_to_depth(resize_map(read_depth_map(str(DATA / "depthstillation_d0_depth.png")), (H, W)))
    B, T = args.images, args.frames
    steps = np.stack([sample_trajectory(T, np.random.default_rng(i), (1.0, 2.0), (0.01, 0.02)) for i in range(B)])
    n_out = B * (T - 1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"threads {args.threads}, device {args.device}; load average {os.getloadavg()[0]:.2f}")
    print(f"{B} images x {T} frames at {W}x{H} (MM 2024 motion, Depthstillation sample image + its MiDaS depth)\n")

    rows = []
    dev = torch.device(args.device)
    timgs = torch.from_numpy(np.stack([img] * B)).to(dev)
    tdep = torch.from_numpy(np.stack([depth] * B)).float().to(dev)
    tsteps = torch.from_numpy(steps)
    outs = {}
    for fill in ("telea", "torch"):
        render_depth_video(timgs[:1], tdep[:1], tsteps[:1, :2], fill=fill)  # warm-up
        t0 = time.perf_counter()
        r = render_depth_video(timgs, tdep, tsteps, fill=fill)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        outs[fill] = r.frames.cpu().numpy()
        rows.append((f"torch batched, fill={fill}", n_out, dt, n_out / dt))

    t0 = time.perf_counter()
    ref = np.stack([ref_render(img, depth, steps[i]) for i in range(B)])
    dt = time.perf_counter() - t0
    rows.append(("numpy-vec per image, Telea", n_out, dt, n_out / dt))

    tl = args.loop_frames
    t0 = time.perf_counter()
    ref_loop = ref_render(img, depth, steps[0, :tl], zbuffer=zbuffer_loop)
    dt = time.perf_counter() - t0
    rows.append(("numpy-loop per image, Telea", tl - 1, dt, (tl - 1) / dt))

    base_vec = rows[2][3]
    base_loop = rows[3][3]
    print(f"{'implementation':34s} {'frames':>6s} {'seconds':>8s} {'frames/s':>9s} {'x vec':>7s} {'x loop':>7s}")
    for name, n, dt, fps in rows:
        print(f"{name:34s} {n:6d} {dt:8.2f} {fps:9.2f} {fps / base_vec:7.1f} {fps / base_loop:7.1f}")

    print("\nsame output?")
    same = outs["telea"] == ref
    print(f"  torch(telea) vs numpy-vec: {same.all(axis=-1).mean() * 100:.3f}% identical pixels over all frames; "
          f"frame 1: {same[:, 1].all(axis=-1).mean() * 100:.3f}%; min PSNR {min(psnr(outs['telea'][i, t], ref[i, t]) for i in range(B) for t in range(1, T)):.1f} dB")
    same_l = ref_loop == ref[0, :tl]
    print(f"  numpy-loop vs numpy-vec (image 0, {tl} frames): {same_l.all(axis=-1).mean() * 100:.3f}% identical pixels")
    print(f"  torch(torch fill) vs numpy-vec (Telea): mean PSNR "
          f"{np.mean([psnr(outs['torch'][i, t], ref[i, t]) for i in range(B) for t in range(1, T)]):.1f} dB "
          f"(a different hole filling: differs only in the holes)")


if __name__ == "__main__":
    main()
