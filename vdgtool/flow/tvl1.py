"""Batched TV-L1 optical flow in torch (Zach-Pock-Bischof duality scheme, IPOL 2013 variant).

Follows Sánchez, Meinhardt-Llopis and Facciolo, "TV-L1 Optical Flow Estimation", IPOL 2013:
joint [0, 255] normalisation of the pair, Gaussian pre-smoothing (sigma 0.8), a coarse-to-fine
pyramid with zoom factor ``zoom`` (bilinear resampling, as OpenCV's DualTVL1), several warps per
scale with bicubic warping of I1 and its gradient (no data term where the warp leaves the frame), and the primal-dual iterations stopped
when the mean squared update falls below ``epsilon**2``. Optional median filtering of the flow before
each round of iterations follows OpenCV's ``DualTVL1`` (``outer_iterations`` rounds of
``iterations`` steps per warp), so the two can be run with identical parameters.

Every pair of a batch is solved at once; a pair that has converged is frozen (its variables stop
changing) while the others iterate, so the result of a pair does not depend on its batch mates.

Flow convention: ``flow[..., 0]`` = u (horizontal, +x to the right), ``flow[..., 1]`` = v (vertical,
+y down), such that ``I0(x, y) ~ I1(x + u, y + v)`` (forward flow, as in Middlebury ``.flo``).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from vdgtool.errors import InputError
from vdgtool.flow.params import PRESMOOTHING_SIGMA, TVL1Params  # noqa: F401  (re-exported)

GRAD_IS_ZERO = 1e-10


def pyramid_sizes(h: int, w: int, scales: int, zoom: float) -> list[tuple[int, int]]:
    """Level sizes, finest first; as IPOL, at most 1 + log(hypot(h, w) / 16) / log(1 / zoom) levels."""
    n_max = 1 + int(math.log(math.hypot(h, w) / 16.0) / math.log(1.0 / zoom)) if math.hypot(h, w) > 16 else 1
    n = max(1, min(scales, n_max))
    sizes = [(h, w)]
    for _ in range(1, n):
        ph, pw = sizes[-1]
        nh, nw = int(ph * zoom + 0.5), int(pw * zoom + 0.5)
        if nh < 2 or nw < 2:
            break
        sizes.append((nh, nw))
    return sizes


# -- small operators on (B, C, H, W) tensors ---------------------------------------------------------
def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    from torchvision.transforms.v2.functional import gaussian_blur

    k = 2 * int(math.ceil(3 * sigma)) + 1
    k = min(k, 2 * (min(x.shape[-2:]) // 2) - 1) if min(x.shape[-2:]) > 2 else 1
    if k < 3:
        return x
    return gaussian_blur(x, [k, k], [sigma, sigma])


def centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences; one-sided halves at the border (as IPOL's centered_gradient)."""
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (xp[..., 1:-1, 2:] - xp[..., 1:-1, :-2])
    gy = 0.5 * (xp[..., 2:, 1:-1] - xp[..., :-2, 1:-1])
    return gx, gy


def forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, zero on the last column / row."""
    ux = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1, 0, 0))
    uy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return ux, uy


def divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence, the negative adjoint of :func:`forward_gradient`."""
    return (px - F.pad(px[..., :, :-1], (1, 0, 0, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))


def median_filter(u: torch.Tensor, k: int) -> torch.Tensor:
    """k x k median with replicated borders (equals cv2.medianBlur on float images).

    Forgetful selection on shifted views of the padded image: keep k*k//2 + 2 candidates, drop the
    smallest and the largest, add the next value, repeat; only elementwise min/max, so it is fast,
    batched, memory-light and runs on any device.
    """
    if k <= 1:
        return u
    b, c, h, w = u.shape
    r = k // 2
    up = F.pad(u.reshape(b * c, 1, h, w), (r, r, r, r), mode="replicate")[:, 0]
    vals = [up[:, dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)]
    n0 = len(vals) // 2 + 2
    vals = [v.contiguous() for v in vals]
    cand = vals[:n0]
    rest = vals[n0:]
    while True:
        # move the minimum to cand[0] and the maximum to cand[-1], then drop both
        for i in range(1, len(cand)):
            lo = torch.minimum(cand[0], cand[i])
            cand[i] = torch.maximum(cand[0], cand[i])
            cand[0] = lo
        for i in range(1, len(cand) - 1):
            hi = torch.maximum(cand[i], cand[-1])
            cand[i] = torch.minimum(cand[i], cand[-1])
            cand[-1] = hi
        cand = cand[1:-1]
        if not rest:
            break
        cand.append(rest.pop(0))
    return cand[0].reshape(b, c, h, w)


def warp_bicubic(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` (B, C, H, W) at x + flow (B, 2, H, W), bicubic, replicated borders."""
    b, _, h, w = img.shape
    ys = torch.arange(h, device=img.device, dtype=img.dtype).view(1, h, 1)
    xs = torch.arange(w, device=img.device, dtype=img.dtype).view(1, 1, w)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(img, grid, mode="bicubic", padding_mode="border", align_corners=True)


# -- the primal-dual iterations -----------------------------------------------------------------------
def tvl1_step(u, px, py, Iw, neg_inv_grad, rho_c, active, l_t: float, theta: float, taut: float, eps2: float,
              masked: bool = True):
    """One primal-dual iteration for every pair; pairs with ``active`` False are left unchanged.

    u: (B, 2, H, W) flow (u1, u2); px, py: (B, 2, H, W) x / y components of the dual variables of
    u1 and u2; Iw: (B, 2, H, W) warped gradient of I1; neg_inv_grad = -1 / |grad I1w|^2 and
    rho_c: (B, 1, H, W); active: (B,) bool. Returns (u, px, py, active).

    The thresholding step TH of IPOL's three cases is written as one clamp: v = u + clamp(-rho/|g|^2,
    -l_t, l_t) * g, which equals the case analysis (pixels with a vanishing gradient get a step
    below 1e-5 px instead of exactly 0).
    """
    rho = rho_c + (Iw * u).sum(dim=1, keepdim=True)
    fi = (rho * neg_inv_grad).clamp(-l_t, l_t)
    # u_new = v + theta * div(p), with v = u + fi * Iw and div the backward-difference divergence
    div = px + py
    div[..., :, 1:] -= px[..., :, :-1]
    div[..., 1:, :] -= py[..., :-1, :]
    un = torch.addcmul(u, fi, Iw).add_(div, alpha=theta)
    err = (un - u).square().sum(dim=1).mean(dim=(1, 2))  # per pixel: |du|^2 summed over u1, u2 (IPOL, OpenCV)
    ux = torch.zeros_like(un)
    uy = torch.zeros_like(un)
    ux[..., :, :-1] = un[..., :, 1:] - un[..., :, :-1]
    uy[..., :-1, :] = un[..., 1:, :] - un[..., :-1, :]
    ng = torch.hypot(ux, uy).mul_(taut).add_(1.0)
    pxn = torch.add(px, ux, alpha=taut).div_(ng)
    pyn = torch.add(py, uy, alpha=taut).div_(ng)
    if masked:
        a = active.view(-1, 1, 1, 1)
        un = torch.where(a, un, u)
        pxn = torch.where(a, pxn, px)
        pyn = torch.where(a, pyn, py)
        err = torch.where(active, err, torch.zeros_like(err))
    return un, pxn, pyn, active & (err > eps2)


def tvl1_step_functional(u, px, py, Iw, neg_inv_grad, rho_c, active, l_t: float, theta: float, taut: float,
                         eps2: float, masked: bool = True):
    """:func:`tvl1_step` without in-place slice updates: slower eager, but ``torch.compile`` fuses it
    into a few loops (measured 5x faster per step than eager on CPU)."""
    rho = rho_c + Iw[:, :1] * u[:, :1] + Iw[:, 1:] * u[:, 1:]
    fi = (rho * neg_inv_grad).clamp(-l_t, l_t)
    div = px - F.pad(px[..., :, :-1], (1, 0, 0, 0)) + py - F.pad(py[..., :-1, :], (0, 0, 1, 0))
    un = u + fi * Iw + theta * div
    err = (un - u).square().sum(dim=1).mean(dim=(1, 2))  # per pixel: |du|^2 summed over u1, u2 (IPOL, OpenCV)
    ux = F.pad(un[..., :, 1:] - un[..., :, :-1], (0, 1, 0, 0))
    uy = F.pad(un[..., 1:, :] - un[..., :-1, :], (0, 0, 0, 1))
    ng = 1.0 + taut * torch.sqrt(ux * ux + uy * uy)
    pxn = (px + taut * ux) / ng
    pyn = (py + taut * uy) / ng
    a = active.view(-1, 1, 1, 1)
    err = torch.where(active, err, torch.zeros_like(err))
    return (torch.where(a, un, u), torch.where(a, pxn, px), torch.where(a, pyn, py), active & (err > eps2))


_COMPILED = {}
#: where compiled kernels are kept when neither --compile-cache nor VDGTOOL_COMPILE_CACHE says otherwise
DEFAULT_COMPILE_CACHE = os.path.join("~", ".cache", "vdgtool", "torch-compile")


def compile_cache_dir(path: str | None = None) -> str:
    """The persistent compile cache: ``path``, else ``$VDGTOOL_COMPILE_CACHE``, else ~/.cache/vdgtool/torch-compile."""
    return os.path.abspath(os.path.expanduser(path or os.environ.get("VDGTOOL_COMPILE_CACHE") or
                                              DEFAULT_COMPILE_CACHE))


def use_compile_cache(path: str | None = None) -> str:
    """Keep inductor's compiled kernels and FX graphs in one directory that later processes reuse.

    Tasks of a SLURM array (or any later run) that point at the same directory on a shared file system skip
    the code generation and C++/Triton compilation; what remains of the warm-up is Dynamo tracing
    (``benchmarks/flow/RESULTS.md``, "Compile warm-up"). A ``TORCHINDUCTOR_CACHE_DIR`` / ``TRITON_CACHE_DIR``
    set by the user wins. Returns the directory used.
    """
    root = compile_cache_dir(path)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        from vdgtool.errors import ConfigError

        raise ConfigError(f"cannot create the compile cache {root} ({exc.strerror})",
                          "pass --compile-cache DIR on a writable file system") from None
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(root, "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(root, "triton"))
    import torch._inductor.config as ic

    for attr in ("fx_graph_cache", "autotune_local_cache"):
        if hasattr(ic, attr):
            setattr(ic, attr, True)
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def padded_batch(n: int, batch_size: int) -> int:
    """The batch a compiled solver runs for ``n`` pairs (n <= batch_size): the next power of two, at most
    ``batch_size``, so a whole run compiles a few shapes (log2(batch_size) + 1 at most), not one per remainder."""
    b = 1
    while b < n:
        b *= 2
    return min(b, int(batch_size))


def _compiled(name: str, fn):
    out = _COMPILED.get(name)
    if out is None:
        import torch._dynamo

        for attr in ("cache_size_limit", "recompile_limit"):  # pyramid levels x batch sizes
            if hasattr(torch._dynamo.config, attr):
                setattr(torch._dynamo.config, attr, max(getattr(torch._dynamo.config, attr), 256))
        out = torch.compile(fn, dynamic=os.environ.get("VDGTOOL_FLOW_DYNAMIC", "0") == "1")
        _COMPILED[name] = out
    return out


def _get_step(compile: bool):
    return _compiled("step", tvl1_step_functional) if compile else tvl1_step


# -- the multi-scale solver -----------------------------------------------------------------------------
def _prepare(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) or (B, H, W, C) in any dtype -> (B, 1, H, W) float32 grey."""
    if x.dim() == 4:
        c = x.shape[-1]
        x = x.float()
        if c == 3:
            x = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
        elif c == 1:
            x = x[..., 0]
        else:
            raise InputError(f"frames with {c} channels cannot be used for optical flow", "pass grey or RGB frames")
    elif x.dim() != 3:
        raise InputError(f"expected frames of shape (B, H, W) or (B, H, W, C), got {tuple(x.shape)}",
                         "pass a batch of frames")
    return x.float().unsqueeze(1)


@torch.no_grad()
def tvl1_flow(im0, im1, params: TVL1Params | None = None, *, device=None, compile: bool = False) -> torch.Tensor:
    """Forward TV-L1 flow from ``im0`` to ``im1`` for a batch of pairs.

    ``im0``/``im1``: (B, H, W) grey or (B, H, W, 3) RGB tensors or arrays (any range; each pair is
    normalised jointly). Returns a float32 (B, H, W, 2) tensor on ``device`` (u, v), see module doc.
    ``compile=True`` runs the inner iteration through ``torch.compile`` (first call per shape is slow).
    """
    p = (params or TVL1Params()).validate()
    im0 = torch.as_tensor(im0)
    im1 = torch.as_tensor(im1)
    if device is None:
        device = im0.device
    if im0.shape != im1.shape:
        raise InputError(f"frame pair shapes differ: {tuple(im0.shape)} vs {tuple(im1.shape)}",
                         "both frames of a pair must have the same size")
    I0 = _prepare(im0.to(device))
    I1 = _prepare(im1.to(device))
    b, _, h, w = I0.shape
    if h < 2 or w < 2:
        raise InputError(f"frames of {w}x{h} pixels are too small for optical flow", "use frames of at least 2x2")
    # joint normalisation to [0, 255] per pair (IPOL image_normalization)
    lo = torch.minimum(I0.amin(dim=(1, 2, 3), keepdim=True), I1.amin(dim=(1, 2, 3), keepdim=True))
    hi = torch.maximum(I0.amax(dim=(1, 2, 3), keepdim=True), I1.amax(dim=(1, 2, 3), keepdim=True))
    den = hi - lo
    scale = torch.where(den > 0, 255.0 / den.clamp_min(1e-12), torch.ones_like(den))
    I0 = (I0 - lo) * scale
    I1 = (I1 - lo) * scale
    pair = _gaussian(torch.cat((I0, I1), dim=1), p.presmooth)

    sizes = pyramid_sizes(h, w, p.scales, p.zoom)
    pyr = [pair]
    for (nh, nw) in sizes[1:]:
        pyr.append(F.interpolate(pyr[-1], size=(nh, nw), mode="bilinear", align_corners=False))

    step = _get_step(compile)
    l_t = float(p.lambda_ * p.theta)
    taut = float(p.tau / p.theta)
    eps2 = float(p.epsilon * p.epsilon)
    u = torch.zeros(b, 2, *sizes[-1], device=device)
    for s in range(len(sizes) - 1, -1, -1):
        lvl = pyr[s]
        J0, J1 = lvl[:, :1].contiguous(), lvl[:, 1:].contiguous()
        if u.shape[-2:] != J0.shape[-2:]:
            ch, cw = u.shape[-2:]
            u = F.interpolate(u, size=J0.shape[-2:], mode="bilinear", align_corners=False)
            u = u * torch.tensor([J0.shape[-1] / cw, J0.shape[-2] / ch], device=device).view(1, 2, 1, 1)
        u = u.contiguous()
        gx, gy = centered_gradient(J1)
        stack = torch.cat((J1, gx, gy), dim=1)
        hw = J0.shape[-2:]
        px = torch.zeros(b, 2, *hw, device=device)
        py = torch.zeros(b, 2, *hw, device=device)
        ys = torch.arange(hw[0], device=device, dtype=u.dtype).view(1, -1, 1)
        xs = torch.arange(hw[1], device=device, dtype=u.dtype).view(1, 1, -1)
        for _ in range(p.warps):
            warped = warp_bicubic(stack, u)
            I1w, Iw = warped[:, :1], warped[:, 1:].contiguous()
            # no data term where x + u falls outside I1 (OpenCV: zero border; IPOL: replicated)
            X = xs + u[:, 0]
            Y = ys + u[:, 1]
            inside = ((X >= 0) & (X <= hw[1] - 1) & (Y >= 0) & (Y <= hw[0] - 1)).unsqueeze(1)
            Iw = Iw * inside
            grad = Iw.square().sum(dim=1, keepdim=True)
            neg_inv_grad = -1.0 / (grad + GRAD_IS_ZERO)
            rho_c = (I1w - (Iw * u).sum(dim=1, keepdim=True) - J0).contiguous()
            active = torch.ones(b, dtype=torch.bool, device=device)
            all_active = True
            for _ in range(p.outer_iterations):
                if p.median > 1:
                    mu = (_compiled("median", median_filter) if compile else median_filter)(u, p.median)
                    u = mu if all_active else torch.where(active.view(-1, 1, 1, 1), mu, u)
                for _ in range(p.iterations):
                    u, px, py, active = step(u, px, py, Iw, neg_inv_grad, rho_c, active, l_t, p.theta, taut,
                                             eps2, masked=compile or not all_active)
                    n_active = int(active.sum())  # a host sync per step is cheap next to a step's work
                    all_active = n_active == b
                    if n_active == 0:
                        break
                if not bool(active.any()):
                    break
    return u.permute(0, 2, 3, 1).contiguous()
