"""synth-video: trajectories, z-buffer forward warping, exact synthetic flow, depth backends, CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vdgtool.cli import cli
from vdgtool.stores import VideoStore
from vdgtool.synth.render import (intrinsics, project, push_pull_fill, render_crop2d, render_depth_video, splat)
from vdgtool.synth.trajectory import (cumulative, sample_crop_trajectory, sample_trajectory)

torch.set_num_threads(2)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGES = DATA / "images"
needs_data = pytest.mark.skipif(not (IMAGES / "depthstillation_im0.jpg").exists(), reason="shared data not present")


def smooth_image(h, w, seed=0, sigma=2.0):
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), sigma)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.round().astype(np.uint8)


def shift_step(dx_px, dy_px, h, w, focal=0.58):
    M = torch.eye(4)
    M[0, 3] = dx_px / (focal * w)  # constant depth 1: a translation t moves pixels by f * t
    M[1, 3] = dy_px / (focal * h)
    return M


# -- geometry and warping ---------------------------------------------------------------------------

@pytest.mark.parametrize("fill", ["telea", "torch"])
def test_constant_depth_translation_is_exact_integer_shift(fill):
    h, w = 30, 40
    img = torch.from_numpy(smooth_image(h, w))[None]
    steps = torch.stack([torch.eye(4), shift_step(3, 2, h, w), shift_step(3, 2, h, w)])[None]
    r = render_depth_video(img, torch.ones(1, h, w), steps, fill=fill)
    f = r.frames[0]
    assert f.shape == (3, h, w, 3) and f.dtype == torch.uint8
    assert torch.equal(f[0], img[0])
    assert torch.equal(f[1][2:, 3:], f[0][:-2, :-3])          # exact shift, no resampling
    assert torch.equal(f[2][4:, 6:], f[0][:-4, :-6])          # chained: shift of the shifted frame
    assert torch.allclose(r.flow[0, 0, ..., 0], torch.full((h, w), 3.0), atol=1e-4)
    assert torch.allclose(r.flow[0, 0, ..., 1], torch.full((h, w), 2.0), atol=1e-4)
    # the uncovered border was filled (not left black) and differs from the exact-shift region's source
    assert f[1][:2].float().mean() > 0 and f[1][:, :3].float().mean() > 0


def test_zbuffer_keeps_the_nearer_surface():
    # pixels 0 and 2 of a 1x3 image both land on pixel 1; pixel 2 (depth 1) is nearer than 0 (depth 2)
    values = torch.tensor([[[[10.0], [0.0], [20.0]]]])  # (B, H, W, C)
    coords = torch.tensor([[[[1.0, 0.0], [7.0, 0.0], [1.2, 0.0]]]])
    for z, winner, val in ((torch.tensor([[[2.0, 1.0, 1.0]]]), 2, 20.0), (torch.tensor([[[0.5, 1.0, 1.0]]]), 0, 10.0)):
        s = splat(values, coords, z)
        assert s.hit[0, 0].tolist() == [False, True, False]
        assert s.image[0, 0, 1, 0].item() == val
        assert s.depth[0, 0, 1].item() == float(z[0, 0, winner])
        assert s.visible[0, 0].tolist() == [winner == 0, False, winner == 2]  # pixel 1 left the image


def test_zbuffer_foreground_occludes_background_in_a_render():
    h, w = 32, 48
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 50                      # far background: red 50
    img[10:20, 20:30] = (200, 200, 200)   # near square
    depth = torch.full((1, h, w), 10.0)
    depth[0, 10:20, 20:30] = 1.0
    # move the camera so the near square shifts by 6 px and the background by 0.6 px
    steps = torch.stack([torch.eye(4), shift_step(6, 0, h, w)])[None]
    r = render_depth_video(torch.from_numpy(img)[None], depth, steps, fill="none")
    f1 = r.frames[0, 1].numpy()
    # where the square lands it must be visible, though background pixels also land there
    assert (f1[10:20, 26:36] == 200).all()
    # a reversed z order would let the background win: check by flipping the depths
    depth2 = torch.where(depth == 1.0, torch.tensor(10.0), torch.tensor(1.0))
    r2 = render_depth_video(torch.from_numpy(img)[None], depth2, steps, fill="none")
    assert not (r2.frames[0, 1].numpy()[10:20, 26:36] == 200).all()


def test_flow_maps_frame_t_to_t_plus_1_exactly_for_visible_pixels():
    h, w = 48, 64
    img = torch.from_numpy(smooth_image(h, w, 1))[None]
    yy = torch.linspace(1.5, 6.0, h)[:, None].expand(h, w)
    depth = (yy + 0.5 * torch.sin(torch.linspace(0, 6, w))[None]).contiguous()[None]
    steps = torch.from_numpy(sample_trajectory(4, np.random.default_rng(3)))[None]
    r = render_depth_video(img, depth, steps, fill="torch")
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for t in range(3):
        tx = torch.floor(xs + r.flow[0, t, ..., 0] + 0.5).long()
        ty = torch.floor(ys + r.flow[0, t, ..., 1] + 0.5).long()
        vis = r.visible[0, t]
        assert vis.float().mean() > 0.6
        a = r.frames[0, t][vis]
        b = r.frames[0, t + 1][ty[vis], tx[vis]]
        assert torch.equal(a, b)
        assert r.flow[0, t].abs().max() > 0.5   # the camera did move


def test_push_pull_fill_only_touches_holes():
    x = torch.arange(2 * 3 * 9 * 11, dtype=torch.float32).reshape(2, 3, 9, 11)
    valid = torch.rand(2, 9, 11, generator=torch.Generator().manual_seed(0)) > 0.4
    out = push_pull_fill(x * valid[:, None], valid)
    assert torch.equal(out[valid[:, None].expand_as(out)], x[valid[:, None].expand_as(x)])
    holes = ~valid[:, None].expand_as(out)
    assert (out[holes] > 0).all()                              # filled from the (positive) neighbours
    assert (out[holes] <= x.amax()).all()


def test_project_identity_and_intrinsics():
    K = intrinsics(20, 30)
    xy, z = project(torch.full((1, 20, 30), 2.0), K, torch.eye(4)[None])
    ys, xs = torch.meshgrid(torch.arange(20.0), torch.arange(30.0), indexing="ij")
    assert torch.allclose(xy[0, ..., 0], xs, atol=1e-4) and torch.allclose(xy[0, ..., 1], ys, atol=1e-4)
    assert torch.allclose(z, torch.full_like(z, 2.0))


# -- trajectories -----------------------------------------------------------------------------------

def test_mm2024_trajectory_ranges_and_reproducibility():
    import cv2

    tr = sample_trajectory(16, np.random.default_rng(7), (1.0, 2.0), (0.01, 0.02))
    assert tr.shape == (16, 4, 4) and np.allclose(tr[0], np.eye(4))
    for M in tr[1:]:
        t = np.abs(M[:3, 3])
        assert ((t >= 0.01 - 1e-6) & (t <= 0.02 + 1e-6)).all()
        rvec, _ = cv2.Rodrigues(M[:3, :3].astype(np.float64))
        deg = np.abs(np.rad2deg(rvec.ravel()))
        assert ((deg >= 1 - 1e-3) & (deg <= 2 + 1e-3)).all()
    signs = np.sign(tr[1:, :3, 3])
    assert (signs > 0).any() and (signs < 0).any()
    assert np.array_equal(tr, sample_trajectory(16, np.random.default_rng(7), (1.0, 2.0), (0.01, 0.02)))
    const = sample_trajectory(5, np.random.default_rng(1), kind="constant")
    assert all(np.array_equal(const[1], const[t]) for t in range(2, 5))
    assert not np.allclose(const[1], np.eye(4))
    cum = cumulative(const)
    assert np.allclose(cum[2], const[1] @ const[1], atol=1e-6)


def test_crop2d_flow_is_exact_for_the_affine_crops():
    img = smooth_image(120, 160, 2, sigma=5.0)
    boxes = sample_crop_trajectory(5, np.random.default_rng(0), (120, 160), (48, 64), pan=(0.02, 0.04), zoom=(0.02, 0.04))
    assert (boxes[:, 0] >= -1e-6).all() and (boxes[:, 2] <= 160 + 1e-6).all() and (boxes[:, 3] <= 120 + 1e-6).all()
    r = render_crop2d(torch.from_numpy(img), boxes, (48, 64))
    assert r.frames.shape == (1, 5, 48, 64, 3)
    fr = r.frames[0].float().permute(0, 3, 1, 2)
    for t in range(4):
        err_flow = _backwarp_error(fr[t], fr[t + 1], r.flow[0, t])
        err_zero = _backwarp_error(fr[t], fr[t + 1], torch.zeros_like(r.flow[0, t]))
        assert err_flow < 1.5 and err_flow < 0.2 * err_zero


def _backwarp_error(a, b, flow, valid=None):
    """Mean |a(p) - b(p + flow(p))| over pixels whose target lies inside b (bilinear sampling)."""
    import torch.nn.functional as F

    C, H, W = a.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    tx, ty = xs + flow[..., 0].float(), ys + flow[..., 1].float()
    inside = (tx >= 0) & (tx <= W - 1) & (ty >= 0) & (ty <= H - 1)
    if valid is not None:
        inside &= valid
    grid = torch.stack([tx / (W - 1) * 2 - 1, ty / (H - 1) * 2 - 1], -1)[None]
    s = F.grid_sample(b[None].float(), grid, mode="bilinear", align_corners=True)[0]
    return (s - a.float()).abs().mean(0)[inside].mean().item()


# -- CLI end to end ---------------------------------------------------------------------------------

def _tree(tmp_path, n=2, size=(40, 32)):
    from PIL import Image

    root = tmp_path / "images"
    for c in ("jump", "run"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(smooth_image(size[1], size[0], hash((c, i)) % 1000)).save(root / c / f"img{i}.png")
    return root


def _run(args):
    return CliRunner().invoke(cli, args)


@needs_data
def test_cli_real_image_with_precomputed_depth(tmp_path):
    root = tmp_path / "root" / "bird"
    root.mkdir(parents=True)
    shutil.copy(IMAGES / "depthstillation_im0.jpg", root / "im0.jpg")
    maps = tmp_path / "maps" / "bird"
    maps.mkdir(parents=True)
    shutil.copy(IMAGES / "depthstillation_d0_depth.png", maps / "im0.png")
    out = tmp_path / "synth.h5"
    res = _run(["synth-video", str(tmp_path / "root"), "-o", str(out), "--depth", str(tmp_path / "maps"),
                "--frames", "5", "--size", "160x120", "--save-flow", "--save-depth", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["videos"] == 1 and summary["frames"] == 5 and summary["errors"] == 0
    st = VideoStore(str(out))
    assert st.classes == ["bird"] and st.domains == ["synthetic"]
    assert st.meta["key"][0] == "bird/im0.jpg" and st.meta["label"][0] == 0
    assert st.meta["decoder"][0] == "synth-depth" and st.meta["fps"][0] == 8.0
    c = st.conventions
    assert c["size"] == [160, 120] and c["mode"] == "depth" and c["colour_space"] == "RGB"
    assert c["depth"]["backend"] == "maps" and c["preset"] == "mm2024" and c["frames"] == 5
    frames = st.read(0)
    assert frames.shape == (5, 120, 160, 3) and frames.dtype == np.uint8
    from vdgtool.synth.pipeline import load_image, resize_image

    assert np.array_equal(frames[0], resize_image(load_image(str(root / "im0.jpg")), (160, 120)))
    traj = st.read_extra("trajectory", 0)
    assert traj.shape == (5, 4, 4) and np.allclose(traj[0], np.eye(4))
    flow = st.read_extra("flow", 0)
    assert flow.shape == (4, 120, 160, 2) and flow.dtype == np.float16
    depth = st.read_extra("depth", 0).astype(np.float32)
    assert depth.shape == (5, 120, 160) and depth[0].std() > 1.0      # real depth, not constant
    fr = torch.from_numpy(frames).permute(0, 3, 1, 2)
    for t in range(4):
        assert not np.array_equal(frames[t], frames[t + 1])
        e_flow = _backwarp_error(fr[t], fr[t + 1], torch.from_numpy(flow[t].astype(np.float32)))
        e_zero = _backwarp_error(fr[t], fr[t + 1], torch.zeros(120, 160, 2))
        assert e_flow < 0.5 * e_zero and e_flow < 8.0, (t, e_flow, e_zero)
    # parallax: with real depth the flow is not a single global shift
    assert np.std(flow[0][..., 0].astype(np.float32)) > 0.2


def test_cli_corrupt_image_is_skipped_and_strict_fails(tmp_path):
    root = _tree(tmp_path, n=1)
    (root / "run" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    out = tmp_path / "o.h5"
    res = _run(["synth-video", str(root), "-o", str(out), "--frames", "3", "--size", "32", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["videos"] == 2 and d["errors"] == 1
    assert d["bad_inputs"][0]["key"] == "run/broken.jpg"
    st = VideoStore(str(out))
    assert sorted(st.meta["key"]) == ["jump/img0.png", "run/img0.png"]
    assert list(st.errors["key"]) == ["run/broken.jpg"]
    assert st.classes == ["jump", "run"] and list(st.meta["label"]) == [0, 1]
    res = _run(["synth-video", str(root), "-o", str(tmp_path / "s.h5"), "--frames", "2", "--size", "32", "--strict"])
    assert res.exit_code == 1
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith("vdgtool: error:") and "Traceback" not in res.output


def test_cli_missing_depth_map_is_a_bad_input(tmp_path):
    root = _tree(tmp_path, n=1)
    maps = tmp_path / "maps" / "jump"
    maps.mkdir(parents=True)
    np.save(maps / "img0.npy", np.linspace(0, 3, 32 * 40).reshape(32, 40).astype(np.float32))
    out = tmp_path / "o.h5"
    res = _run(["synth-video", str(root), "-o", str(out), "--depth", f"maps:{tmp_path / 'maps'}", "--frames", "2",
                "--size", "40x32", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["videos"] == 1 and d["errors"] == 1 and "no depth map" in d["bad_inputs"][0]["reason"]


def test_cli_csv_manifest_crop2d_and_sharding(tmp_path):
    _tree(tmp_path, n=2)
    man = tmp_path / "m.csv"
    with open(man, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["path", "label", "domain"])
        for c in ("jump", "run"):
            for i in range(2):
                wr.writerow([f"images/{c}/img{i}.png", c, "stills"])
    outs = []
    for k in range(2):
        out = tmp_path / f"o{k}.h5"
        res = _run(["synth-video", str(man), "-o", str(out), "--mode", "crop2d", "--frames", "4", "--size", "24x16",
                    "--save-flow", "--num-shards", "2", "--shard-index", str(k), "--json"])
        assert res.exit_code == 0, res.output
        outs.append(VideoStore(str(out)))
    keys = [list(s.meta["key"]) for s in outs]
    assert keys[0] == ["images/jump/img0.png", "images/run/img0.png"]
    assert keys[1] == ["images/jump/img1.png", "images/run/img1.png"]
    st = outs[0]
    assert st.domains == ["stills"] and st.meta["decoder"][0] == "synth-crop2d"
    assert st.read(0).shape == (4, 16, 24, 3) and st.read_extra("flow", 0).shape == (3, 16, 24, 2)
    assert st.conventions["mode"] == "crop2d"


def test_cli_resume_skips_finished_images(tmp_path, monkeypatch):
    import vdgtool.synth.pipeline as P
    from vdgtool.stores.video import VideoStoreWriter

    root = _tree(tmp_path, n=2)
    out = tmp_path / "o.h5"
    calls = []
    real = P._render

    def flaky(good, *a, **k):
        calls.append([it.key for it, *_ in good])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while rendering the third image
        return real(good, *a, **k)

    # one finished segment per video, so an interrupted run leaves two of them behind
    monkeypatch.setattr(VideoStoreWriter, "_maybe_rotate", lambda self: self._close_segment())
    monkeypatch.setattr(P, "_render", flaky)
    base = ["synth-video", str(root), "-o", str(out), "--frames", "2", "--size", "16", "--batch-size", "1"]
    res = _run(base)
    assert res.exit_code != 0 and not out.exists() and Path(str(out) + ".partial.d").is_dir()
    done = [k for c in calls[:2] for k in c]
    calls.clear()
    res = _run(base + ["--resume", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["resumed_from"] == 2
    assert [k for c in calls for k in c] == ["run/img0.png", "run/img1.png"]
    st = VideoStore(str(out))
    assert sorted(st.meta["key"]) == sorted(done + ["run/img0.png", "run/img1.png"])
    assert list(st.meta["index"]) == [0, 1, 2, 3] and not Path(str(out) + ".partial.d").exists()


def test_cli_usage_and_input_errors(tmp_path):
    root = _tree(tmp_path, n=1)
    res = _run(["synth-video", str(root), "-o", str(tmp_path / "a.h5"), "--depth", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "vdgtool: error:" in res.stderr and "--depth" in res.stderr
    res = _run(["synth-video", str(root), "-o", str(tmp_path / "a.h5"), "--size", "big"])
    assert res.exit_code == 1 and "size" in res.stderr
    res = _run(["synth-video", str(root), "-o", str(tmp_path / "a.h5"), "--mode", "zoom"])
    assert res.exit_code == 2
    res = _run(["synth-video", str(root), "-o", str(tmp_path / "a.h5"), "--mode", "crop2d", "--depth",
                str(root)])
    assert res.exit_code == 1 and "crop2d" in res.stderr
    res = _run(["synth-video", "--help"])
    assert res.exit_code == 0 and "Example" in res.output


def _tiny_depth_model(path):
    from transformers import AutoModelForDepthEstimation, DepthAnythingConfig, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                            image_size=28, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False, apply_layernorm=True)
    cfg = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=8,
                              head_hidden_size=4, reassemble_hidden_size=16, patch_size=14)
    AutoModelForDepthEstimation.from_config(cfg).save_pretrained(path)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(path)


@pytest.mark.slow
def test_cli_tiny_transformers_depth_model_from_a_local_folder(tmp_path):
    pytest.importorskip("transformers")
    model = tmp_path / "tiny-depth"
    _tiny_depth_model(model)
    root = _tree(tmp_path, n=1)
    out = tmp_path / "o.h5"
    res = _run(["synth-video", str(root), "-o", str(out), "--depth", str(model), "--frames", "3", "--size", "40x32",
                "--save-depth", "--json"])
    assert res.exit_code == 0, res.output
    st = VideoStore(str(out))
    assert len(st) == 2 and st.conventions["depth"]["backend"] == "transformers"
    d0 = st.read_extra("depth", 0)[0].astype(np.float32)
    assert d0.std() > 0  # the network's (random) depth, not the constant fallback
    from vdgtool.synth.depth import make_depth

    b = make_depth(str(model))
    inv = b([smooth_image(32, 40)], ["x"])[0]
    assert inv.shape == (32, 40) and inv.min() == 0.0 and abs(inv.max() - 1.0) < 1e-6
    res = _run(["synth-video", str(root), "-o", str(tmp_path / "r.h5"), "--depth", str(model), "--frames", "2",
                "--size", "40x32", "--redepth"])
    assert res.exit_code == 0, res.output
