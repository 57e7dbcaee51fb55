"""Batched torch renderer: back-project, move the camera, forward-warp with a z-buffer, fill holes.

All functions take a batch of images ``(B, C, H, W)`` (float, 0..255) and run on any torch device.
Forward warping ("splatting") sends every source pixel to the rounded pixel it projects to; when
several land on one pixel the nearest one (smallest depth) wins, ties going to the later source pixel
in raster order, so the result is deterministic and equals the reference loop of
``benchmarks/synth/bench_synth.py``. Pixels nothing lands on are holes, filled either with OpenCV's
Telea inpainting (radius 3, as the Depthstillation / MM 2024 code) or with a fast torch push-pull fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vdgtool.errors import InputError

FILLS = ("telea", "torch", "none")
Z_MIN = 1e-3  # points closer than this (or behind the camera) are dropped
_LOW = (1 << 32) - 1
_NONE = torch.iinfo(torch.int64).max


def intrinsics(h: int, w: int, focal: float = 0.58, device=None, dtype=torch.float32) -> torch.Tensor:
    """Depthstillation's K: fx = focal * W, fy = focal * H, principal point at (W/2, H/2)."""
    return torch.tensor([[focal * w, 0.0, 0.5 * w], [0.0, focal * h, 0.5 * h], [0.0, 0.0, 1.0]],
                        device=device, dtype=dtype)


def pixel_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(3, H*W) homogeneous pixel coordinates (x, y, 1), raster order."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(h * w, device=device, dtype=dtype)])


def project(depth: torch.Tensor, K: torch.Tensor, M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel goes after the camera moves by ``M`` (B, 4, 4).

    ``depth`` (B, H, W); returns target pixel coordinates (B, H, W, 2) and target depth (B, H, W).
    ``uvw = K (R d K^-1 p + t) = d (K R K^-1) p + K t``: one batched 3x3 product per image.
    """
    B, H, W = depth.shape
    dt = torch.float64 if depth.dtype == torch.float64 else torch.float32
    K = K.to(device=depth.device, dtype=torch.float64)
    M = M.to(device=depth.device, dtype=torch.float64)
    if M.ndim == 2:
        M = M.expand(B, 4, 4)
    A = (K @ M[:, :3, :3] @ torch.linalg.inv(K)).to(dt)   # (B, 3, 3)
    b = (K @ M[:, :3, 3:]).to(dt)                          # (B, 3, 1)
    grid = pixel_grid(H, W, depth.device, dt)
    uvw = torch.matmul(A, grid)
    uvw.mul_(depth.reshape(B, 1, -1).to(dt)).add_(b)      # (B, 3, HW)
    z = uvw[:, 2]
    xy = uvw[:, :2].div_(z.clamp(min=1e-12)[:, None])     # z <= 0 is dropped by splat anyway
    return xy.transpose(1, 2).reshape(B, H, W, 2), z.reshape(B, H, W)


@dataclass
class Splat:
    image: torch.Tensor    # (B, H, W, C) warped values (channels last, input dtype), 0 in holes
    depth: torch.Tensor    # (B, H, W) depth of the winning surface, 0 in holes
    hit: torch.Tensor      # (B, H, W) bool, something landed here
    visible: torch.Tensor  # (B, H, W) bool on the *source* grid: this pixel won its target


def splat(values: torch.Tensor, coords: torch.Tensor, z: torch.Tensor) -> Splat:
    """Forward-warp ``values`` (B, H, W, C), channels last, to ``coords`` (B, H, W, 2) with a z-buffer:
    the nearest surface wins, a tie goes to the later source pixel (raster order)."""
    B, H, W, C = values.shape
    HW = H * W
    N = B * HW
    dev = values.device
    xi = (coords[..., 0] + 0.5).floor_()
    yi = (coords[..., 1] + 0.5).floor_()
    ok = (xi >= 0) & (xi <= W - 1) & (yi >= 0) & (yi <= H - 1) & (z > Z_MIN) & (z < float("inf"))
    tgt = (yi.clamp_(0, H - 1) * W + xi.clamp_(0, W - 1)).long().reshape(B, HW)
    tgt += torch.arange(0, N, HW, device=dev)[:, None]
    # one int64 key per point: depth bits high (positive float32 bits order like the floats), then the
    # complement of the source index, so a single scatter-min picks the nearest, ties -> later source
    src = torch.arange(N, device=dev)
    key = (z.reshape(-1).float().view(torch.int32).long() << 32) | (_LOW - src)
    key = torch.where(ok.reshape(-1), key, torch.full_like(key, _NONE))
    best = torch.full((N,), _NONE, device=dev, dtype=torch.long)
    best.scatter_reduce_(0, tgt.reshape(-1), key, reduce="amin", include_self=True)
    hit = best != _NONE
    owner = torch.where(hit, _LOW - (best & _LOW), torch.zeros_like(best))
    out = values.reshape(N, C).index_select(0, owner)
    out.mul_(hit[:, None].to(out.dtype))
    visible = torch.zeros(N, dtype=torch.bool, device=dev)
    visible[owner[hit]] = True
    dep = (best >> 32).to(torch.int32).view(torch.float32).masked_fill_(~hit, 0.0)
    return Splat(out.reshape(B, H, W, C), dep.reshape(B, H, W), hit.reshape(B, H, W), visible.reshape(B, H, W))


def _bilinear_at(img: torch.Tensor, b: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
                 out_hw: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(img, out_hw, mode="bilinear", align_corners=False)`` evaluated only at output
    pixels (b, y, x): returns (N, C)."""
    _, C, h, w = img.shape
    sy = max(h / out_hw[0], 0.0)
    sx = max(w / out_hw[1], 0.0)
    fy = ((y.to(img.dtype) + 0.5) * sy - 0.5).clamp_(min=0)
    fx = ((x.to(img.dtype) + 0.5) * sx - 0.5).clamp_(min=0)
    y0 = fy.floor().long().clamp_(max=h - 1)
    x0 = fx.floor().long().clamp_(max=w - 1)
    y1 = (y0 + 1).clamp_(max=h - 1)
    x1 = (x0 + 1).clamp_(max=w - 1)
    ly = (fy - y0)[:, None]
    lx = (fx - x0)[:, None]
    flat = img.permute(0, 2, 3, 1).reshape(-1, C)
    base = b * (h * w)
    g = lambda yy, xx: flat.index_select(0, base + yy * w + xx)
    return (g(y0, x0) * (1 - lx) + g(y0, x1) * lx) * (1 - ly) + (g(y1, x0) * (1 - lx) + g(y1, x1) * lx) * ly


def push_pull_fill(x: torch.Tensor, valid: torch.Tensor, zero_holes: bool = False) -> torch.Tensor:
    """Fill holes of ``x`` (B, C, H, W) where ``valid`` (B, H, W) is False: mask-weighted image pyramid
    down ("push") until every pixel is covered, then bilinear up ("pull") into the holes only.

    ``zero_holes=True`` promises that ``x`` is already 0 in the holes (saves a pass). Full-resolution
    work is done only at the hole pixels."""
    if bool(valid.all()):
        return x
    w = valid[:, None].to(x.dtype)
    levels = [(x if zero_holes else x * w, w)]
    while True:
        xs, ws = levels[-1]
        if min(xs.shape[-2:]) <= 1 or (len(levels) > 1 and bool((ws > 0).all())):
            break
        levels.append((F.avg_pool2d(xs, 2, ceil_mode=True), F.avg_pool2d(ws, 2, ceil_mode=True)))
    # coarse to fine: values = num / den where den > 0, else the upsampled coarser level
    num, den = levels[-1]
    cur = num / den.clamp_min(1e-12)
    for num, den in reversed(levels[1:-1]):
        up = F.interpolate(cur, size=num.shape[-2:], mode="bilinear", align_corners=False)
        cur = torch.where(den > 0, num / den.clamp_min(1e-12), up)
    bb, yy, xx = torch.nonzero(~valid, as_tuple=True)
    vals = _bilinear_at(cur, bb, yy, xx, x.shape[-2:])
    out = x.clone()
    out.permute(0, 2, 3, 1)[bb, yy, xx] = vals.to(out.dtype)
    return out


def telea_fill(img: torch.Tensor, valid: torch.Tensor, radius: float = 3.0) -> torch.Tensor:
    """OpenCV Telea inpainting of ``img`` (B, H, W, 3) uint8, per image, on the CPU."""
    import cv2

    out = img.detach().cpu().numpy().copy()
    holes = (~valid).cpu().numpy().astype(np.uint8)
    todo = [i for i in range(out.shape[0]) if holes[i].any()]

    def one(i):
        out[i] = cv2.inpaint(out[i], holes[i], radius, cv2.INPAINT_TELEA)

    # cv2.inpaint is single-threaded and releases the GIL: the images of a batch run side by side
    n = min(len(todo), max(1, torch.get_num_threads()))
    if n > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n) as ex:
            list(ex.map(one, todo))
    else:
        for i in todo:
            one(i)
    return torch.from_numpy(out).to(img.device)


def fill_holes(img: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, method: str = "telea",
               radius: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill the holes of a warped frame: colours (B, H, W, 3) uint8 by ``method``, depth (B, H, W)
    always by push-pull (OpenCV's Telea on float32 depth overshoots towards 0)."""
    if method not in FILLS:
        raise InputError(f"unknown hole filling '{method}'", f"use one of: {', '.join(FILLS)}")
    if method == "torch" and not bool(valid.all()):
        # colour and depth share the hole mask: one pyramid for the four channels, values only at holes
        both = torch.cat([img.float(), depth[..., None]], -1).permute(0, 3, 1, 2)
        f = push_pull_fill(both, valid, zero_holes=True).permute(0, 2, 3, 1)
        out = img.clone()
        holes = ~valid
        out[holes] = f[..., :3][holes].round_().clamp_(0, 255).to(torch.uint8)
        return out, f[..., 3].contiguous()
    d = push_pull_fill(depth[:, None], valid, zero_holes=True)[:, 0]
    if method == "telea":
        return telea_fill(img, valid, radius), d
    return img, d


@dataclass
class Rendered:
    frames: torch.Tensor   # (B, T, H, W, 3) uint8
    flow: torch.Tensor     # (B, T-1, H, W, 2) float32: frame t pixel p moves to p + flow[t] in frame t+1
    depth: torch.Tensor    # (B, T, H, W) float32 depth used for each frame
    visible: torch.Tensor  # (B, T-1, H, W) bool: pixel of frame t is the visible surface in frame t+1


def render_depth_video(images: torch.Tensor, depth: torch.Tensor, steps: torch.Tensor, *, focal: float = 0.58,
                       fill: str = "telea", radius: float = 3.0, depth_fn=None) -> Rendered:
    """Render videos by moving a camera through a depth-lifted image, each frame warped from the previous.

    ``images`` (B, H, W, 3) uint8; ``depth`` (B, H, W) depth of frame 0; ``steps`` (B, T, 4, 4)
    per-step poses (``steps[:, 0]`` is ignored: frame 0 is the image). The depth of each new frame is
    the warped depth with its holes push-pull filled, or ``depth_fn(frames (B, H, W, 3) uint8) ->
    (B, H, W)`` when given (re-estimate every frame).
    """
    if images.dtype != torch.uint8 or images.shape[-1] != 3:
        raise InputError(f"images must be (B, H, W, 3) uint8, got {tuple(images.shape)} {images.dtype}",
                         "this is a bug in the caller")
    cur = images.contiguous()
    B, H, W, _ = cur.shape
    dev = cur.device
    d = depth.to(dev).float()
    steps = torch.as_tensor(steps, device=dev, dtype=torch.float32)
    T = steps.shape[1]
    K = intrinsics(H, W, focal, dev)
    grid = pixel_grid(H, W, dev).T[:, :2].reshape(H, W, 2)
    frames, depths, flows, vis = [cur], [d], [], []
    for t in range(1, T):
        xy, z = project(d, K, steps[:, t])
        sp = splat(cur, xy, z)
        img, nd = fill_holes(sp.image, sp.depth, sp.hit, fill, radius)
        if depth_fn is not None:
            nd = depth_fn(img).to(dev).float()
        flows.append(xy.sub_(grid))
        vis.append(sp.visible)
        frames.append(img)
        depths.append(nd)
        cur, d = img, nd
    fl = torch.stack(flows, 1) if flows else torch.zeros(B, 0, H, W, 2, device=dev)
    vi = torch.stack(vis, 1) if vis else torch.zeros(B, 0, H, W, dtype=torch.bool, device=dev)
    return Rendered(torch.stack(frames, 1), fl.float(), torch.stack(depths, 1), vi)


def render_crop2d(image: torch.Tensor, boxes: np.ndarray, out_hw: tuple[int, int]) -> Rendered:
    """2-D baseline: frames are crops ``boxes`` (T, 4: x0, y0, x1, y1 in source pixels) of one image
    (H, W, 3) uint8, resized to ``out_hw`` with torchvision ``roi_align`` (area-averaging when
    shrinking); the flow between consecutive crops is exact (an affine map)."""
    from torchvision.ops import roi_align

    from vdgtool.synth.trajectory import crop_boxes_to_matrices

    oh, ow = out_hw
    x = image.permute(2, 0, 1)[None].float()
    bx = torch.as_tensor(boxes, dtype=torch.float32, device=x.device)
    rois = torch.cat([torch.zeros(len(bx), 1, device=x.device), bx], 1)
    crops = roi_align(x, rois, output_size=(oh, ow), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    frames = crops.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    A = torch.as_tensor(crop_boxes_to_matrices(boxes, out_hw), dtype=torch.float64)  # out px -> src px
    grid = pixel_grid(oh, ow, dtype=torch.float64)  # (3, N)
    flows = []
    for t in range(len(boxes) - 1):
        src = A[t, :2, :2] @ grid[:2] + A[t, :2, 3:]
        nxt = torch.linalg.solve(A[t + 1, :2, :2], src - A[t + 1, :2, 3:])
        flows.append((nxt - grid[:2]).T.reshape(oh, ow, 2))
    T = len(boxes)
    fl = torch.stack(flows).float() if flows else torch.zeros(0, oh, ow, 2)
    vis = torch.zeros(max(T - 1, 0), oh, ow, dtype=torch.bool)
    if T > 1:
        tgt = grid[:2].T.reshape(oh, ow, 2)[None] + fl.double()
        vis = ((tgt[..., 0] >= -0.5) & (tgt[..., 0] <= ow - 0.5) & (tgt[..., 1] >= -0.5) & (tgt[..., 1] <= oh - 0.5))
    return Rendered(frames[None], fl[None], torch.ones(1, T, oh, ow), vis[None])


__all__ = ["FILLS", "intrinsics", "pixel_grid", "project", "splat", "Splat", "push_pull_fill", "telea_fill",
           "fill_holes", "render_depth_video", "render_crop2d", "Rendered"]
