"""vdgtool flow: TV-L1 accuracy, conventions, quantisation, .flo I/O, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vdgtool.cli import cli
from vdgtool.errors import InputError
from vdgtool.flow.backends import get_backend
from vdgtool.flow.flo import endpoint_error, read_flo, write_flo
from vdgtool.flow.pipeline import pair_indices, read_image
from vdgtool.flow.quantize import dequantize_flow, quantize_flow, to_network_input
from vdgtool.flow.tvl1 import TVL1Params, tvl1_flow
from vdgtool.stores import VideoStore, VideoStoreWriter

torch.set_num_threads(2)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flow"
CROP = DATA / "mmflow_tests"
CHAIRS = DATA / "flyingchairs_flownet2"
needs_crop = pytest.mark.skipif(not (CROP / "00001_flow.flo").exists(), reason="shared flow data absent")
needs_chairs = pytest.mark.skipif(not (CHAIRS / "0000000-gt.flo").exists(), reason="shared flow data absent")


def smooth_texture(h, w, seed=0):
    """A smooth random texture (blurred noise), values in 0..255, with room to shift it."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (h, w)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255


def shifted_pair(h=64, w=64, dx=2.0, dy=-1.0, seed=0):
    """im1(x, y) = im0(x - dx, y - dy): the true forward flow is (dx, dy) everywhere."""
    import cv2

    big = smooth_texture(h + 40, w + 40, seed)
    big = (big - big.min()) / (big.max() - big.min()) * 255
    im0 = big[20:20 + h, 20:20 + w]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    im1 = cv2.warpAffine(big, m, (w + 40, h + 40), flags=cv2.INTER_CUBIC)[20:20 + h, 20:20 + w]
    return im0.astype(np.float32), im1.astype(np.float32)


# -- accuracy ------------------------------------------------------------------------------------------
def test_synthetic_translation_recovered():
    im0, im1 = shifted_pair(dx=2.0, dy=-1.0)
    fl = tvl1_flow(im0[None], im1[None]).numpy()[0]
    inner = fl[8:-8, 8:-8]
    assert np.abs(inner[..., 0] - 2.0).mean() < 0.05
    assert np.abs(inner[..., 1] + 1.0).mean() < 0.05
    # a large (7.5 px) motion needs the pyramid
    im0, im1 = shifted_pair(96, 96, dx=-7.5, dy=4.0, seed=1)
    fl = tvl1_flow(im0[None], im1[None]).numpy()[0][8:-8, 8:-8]
    assert np.abs(fl - np.array([-7.5, 4.0])).mean() < 0.05


def test_batch_is_independent_of_batch_mates():
    a0, a1 = shifted_pair(dx=1.0, dy=0.5, seed=2)
    b0, b1 = shifted_pair(dx=-3.0, dy=2.0, seed=3)
    both = tvl1_flow(np.stack([a0, b0]), np.stack([a1, b1])).numpy()
    alone = tvl1_flow(a0[None], a1[None]).numpy()
    assert np.abs(both[0] - alone[0]).max() < 1e-3
    assert np.abs(both[1] - both[0]).mean() > 1.0  # really two different answers


@needs_crop
def test_epe_chairs_crop_and_channel_order_and_sign():
    im0 = read_image(str(CROP / "00001_img1.ppm"))
    im1 = read_image(str(CROP / "00001_img2.ppm"))
    gt = read_flo(str(CROP / "00001_flow.flo"))
    fl = get_backend("torch").compute(im0[None], im1[None])[0]
    epe = endpoint_error(fl, gt)
    zero = endpoint_error(np.zeros_like(gt), gt)
    assert epe < 0.5 * zero, (epe, zero)
    # u, v order: swapping the channels must be clearly worse than ours
    assert endpoint_error(fl[..., ::-1], gt) > epe + 0.25 * zero
    # sign: the backward (negated) flow must be worse than zero flow, ours better
    assert endpoint_error(-fl, gt) > zero > epe


@needs_chairs
@pytest.mark.slow
def test_epe_all_flyingchairs_pairs():
    im0 = np.stack([read_image(str(CHAIRS / f"000000{i}-img0.ppm")) for i in range(6)])
    im1 = np.stack([read_image(str(CHAIRS / f"000000{i}-img1.ppm")) for i in range(6)])
    gts = [read_flo(str(CHAIRS / f"000000{i}-gt.flo")) for i in range(6)]
    fl = get_backend("torch", batch_size=6).compute(im0, im1)
    epes = [endpoint_error(f, g) for f, g in zip(fl, gts)]
    assert np.mean(epes) <= 3.5, epes


def test_opencv_backend_agrees_on_translation():
    im0, im1 = shifted_pair(dx=1.5, dy=1.0, seed=4)
    u8 = lambda x: np.clip(np.rint(x), 0, 255).astype(np.uint8)  # noqa: E731
    for name in ("opencv", "dis", "farneback"):
        fl = get_backend(name).compute(u8(im0)[None], u8(im1)[None])[0][8:-8, 8:-8]
        assert np.abs(fl - np.array([1.5, 1.0])).mean() < 0.35, name


# -- conventions ---------------------------------------------------------------------------------------
def test_quantisation_round_trip_within_half_bucket():
    rng = np.random.default_rng(0)
    f = rng.uniform(-25, 25, (7, 9, 2)).astype(np.float32)
    q = quantize_flow(f, bound=20)
    assert q.dtype == np.uint8
    back = dequantize_flow(q, bound=20)
    inside = np.abs(f) <= 20
    assert np.abs(back - f)[inside].max() <= 20 / 255 + 1e-5
    assert np.allclose(back[~inside], np.sign(f[~inside]) * 20, atol=1e-5)  # clipped to +-bound
    assert quantize_flow(np.float32([0.0]))[0] in (127, 128)
    assert quantize_flow(np.float32([-20.0]))[0] == 0 and quantize_flow(np.float32([20.0]))[0] == 255
    x = to_network_input(q, bound=20)
    assert x.min() >= -1 and x.max() <= 1 and np.allclose(x, np.clip(back, -20, 20) / 20, atol=1e-5)
    h = quantize_flow(f, dtype="float16")
    assert h.dtype == np.float16 and np.allclose(to_network_input(h, 20), np.clip(f, -20, 20) / 20, atol=2e-3)
    with pytest.raises(InputError):
        quantize_flow(f, bound=0)


def test_flo_round_trip_and_bad_file(tmp_path):
    rng = np.random.default_rng(1)
    f = rng.normal(size=(5, 7, 2)).astype(np.float32)
    p = write_flo(tmp_path / "a.flo", f)
    g = read_flo(p)
    assert g.shape == (5, 7, 2) and np.array_equal(f, g)
    raw = Path(p).read_bytes()
    assert raw[:4] == b"PIEH" and np.frombuffer(raw[4:12], "<i4").tolist() == [7, 5]
    assert np.frombuffer(raw[12:20], "<f4").tolist() == [f[0, 0, 0], f[0, 0, 1]]  # u, v interleaved
    (tmp_path / "bad.flo").write_bytes(b"NOPE" + raw[4:])
    with pytest.raises(InputError):
        read_flo(tmp_path / "bad.flo")
    (tmp_path / "short.flo").write_bytes(raw[:40])
    with pytest.raises(InputError):
        read_flo(tmp_path / "short.flo")


def test_pair_indices_stride():
    assert pair_indices(5, 1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert pair_indices(6, 2) == [(0, 2), (2, 4)]
    assert pair_indices(1, 1) == []


def test_params_validation():
    with pytest.raises(InputError):
        TVL1Params(tau=0.5).validate()
    with pytest.raises(InputError):
        TVL1Params(median=4).validate()
    assert TVL1Params.from_dict(TVL1Params().to_dict()) == TVL1Params()


# -- CLI -------------------------------------------------------------------------------------------------
def make_clip_store(path, videos):
    with VideoStoreWriter(str(path), "clips", classes=["a", "b"], conventions={"size": 48, "stride": 1},
                          provenance={"test": True}) as w:
        for i, (key, frames) in enumerate(videos):
            w.add_video(key, frames, index=i, label=i % 2, domain="real", fps=10.0, source=key, decoder="synth")
    return str(path)


def moving_video(n, h=40, w=48, dx=1.0, seed=0):
    import cv2

    big = smooth_texture(h + 40, w + 40 + int(abs(dx) * n), seed)
    big = np.clip((big - big.min()) / (big.max() - big.min()) * 255, 0, 255)
    frames = []
    for t in range(n):
        m = np.float32([[1, 0, dx * t], [0, 1, 0]])
        fr = cv2.warpAffine(big, m, (big.shape[1], big.shape[0]), flags=cv2.INTER_CUBIC)[20:20 + h, 20:20 + w]
        frames.append(np.repeat(np.clip(np.rint(fr), 0, 255).astype(np.uint8)[..., None], 3, axis=-1))
    return np.stack(frames)


def test_cli_store_end_to_end(tmp_path):
    clips = make_clip_store(tmp_path / "clips.h5", [("v0", moving_video(5, dx=1.0)), ("short", moving_video(1)),
                                                    ("v2", moving_video(4, dx=-2.0, seed=3))])
    out = tmp_path / "flow.h5"
    r = CliRunner().invoke(cli, ["flow", clips, "-o", str(out), "--json", "--scales", "3", "--warps", "3"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["videos"] == 2 and d["errors"] == 1 and d["fields"] == 4 + 3
    st = VideoStore(str(out), kind="flow")
    assert list(st.meta["key"]) == ["v0", "v2"]
    f0 = st.read(0)
    assert f0.shape == (4, 40, 48, 2) and f0.dtype == np.uint8
    u = dequantize_flow(f0, st.conventions["bound"])[:, 8:-8, 8:-8]
    assert abs(np.median(u[..., 0]) - 1.0) < 0.2 and abs(np.median(u[..., 1])) < 0.2
    u2 = dequantize_flow(st.read(1), 20)[:, 8:-8, 8:-8]
    assert abs(np.median(u2[..., 0]) + 2.0) < 0.2
    c = st.conventions
    assert c["backend"] == "torch" and c["bound"] == 20 and c["dtype"] == "uint8" and c["stride"] == 1
    assert c["params"]["scales"] == 3 and c["frame_size"] == [40, 48] and c["parent_size"] == 48
    assert st.provenance["parents"] == [str(Path(clips).resolve())]
    assert st.classes == ["a", "b"] and st.meta["fps"][0] == pytest.approx(10.0)
    assert "short" in list(st.errors["key"])
    # --strict turns the skipped video into exit 1; --resume finishes without redoing
    r = CliRunner().invoke(cli, ["flow", clips, "-o", str(tmp_path / "f2.h5"), "--strict", "--stride", "2",
                                 "--dtype", "float16", "--backend", "dis"])
    assert r.exit_code == 1
    st2 = VideoStore(str(tmp_path / "f2.h5"))
    assert st2.read(0).shape == (2, 40, 48, 2) and st2.read(0).dtype == np.float16
    assert st2.conventions["stride"] == 2 and st2.meta["fps"][0] == pytest.approx(5.0)


def test_flow_store_feeds_a_flow_model(tmp_path):
    """What `vdgtool flow` writes (uint8 and float16) is what the data pipeline reads for a flow model."""
    from vdgtool.data import build_dataset
    from vdgtool.models import create_model

    clips = make_clip_store(tmp_path / "clips.h5", [("v0", moving_video(9, dx=1.0)),
                                                    ("v1", moving_video(9, dx=-2.0, seed=3))])
    model = create_model("test_c3d", num_classes=2, in_channels=2)
    spec = model.input_spec
    for dtype in ("uint8", "float16"):
        out = str(tmp_path / f"flow_{dtype}.h5")
        r = CliRunner().invoke(cli, ["flow", clips, "-o", out, "--scales", "2", "--warps", "2", "--dtype", dtype])
        assert r.exit_code == 0, r.output
        ds = build_dataset([out], spec, train=False, seed=0)
        item = ds[1]
        x = item["video"]
        assert x.shape[0] == 2 and item["label"] == 1
        # flow models take flow / bound in [-1, 1] (mean = std = 0.5 on the [0, 1] scale): u of v1 is
        # -2 px -> -2 / 20 = -0.1, v is 0
        assert spec.mean == (0.5, 0.5) and spec.std == (0.5, 0.5)
        assert float(x[0, :, 8:-8, 8:-8].median()) == pytest.approx(-0.1, abs=0.03)
        assert float(x[1, :, 8:-8, 8:-8].median()) == pytest.approx(0.0, abs=0.03)
        model(x[None])  # the model takes it


def test_cli_shards_and_resume(tmp_path):
    vids = [(f"v{i}", moving_video(3, dx=1.0, seed=i)) for i in range(3)]
    clips = make_clip_store(tmp_path / "clips.h5", vids)
    out = tmp_path / "s1.h5"
    r = CliRunner().invoke(cli, ["flow", clips, "-o", str(out), "--num-shards", "2", "--shard-index", "1",
                                 "--backend", "farneback", "--json"])
    assert r.exit_code == 0, r.output
    assert list(VideoStore(str(out)).meta["key"]) == ["v1"]
    # an interrupted run: keep a finished segment, then --resume skips its video
    out2 = tmp_path / "r.h5"
    from vdgtool.flow.pipeline import compute_flow_store

    be = get_backend("farneback")
    calls = []
    orig = be.compute

    def failing(a, b):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return orig(a, b)

    be.compute = failing
    import vdgtool.stores.video as sv

    with pytest.raises(KeyboardInterrupt):
        w_init = sv.VideoStoreWriter.__init__

        def small_segments(self, *a, **k):
            k["segment_videos"] = 1
            w_init(self, *a, **k)

        sv.VideoStoreWriter.__init__ = small_segments
        try:
            compute_flow_store(clips, str(out2), be)
        finally:
            sv.VideoStoreWriter.__init__ = w_init
    assert not out2.exists()
    be.compute = orig
    res = compute_flow_store(clips, str(out2), be, resume=True)
    assert res.skipped_resume == 1 and res.videos == 3


def test_cli_bad_inputs(tmp_path):
    runner = CliRunner()
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not hdf5")
    r = runner.invoke(cli, ["flow", str(junk), "-o", str(tmp_path / "o.h5")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    # a flow store is not a clip store
    clips = make_clip_store(tmp_path / "clips.h5", [("v0", moving_video(3))])
    fl = tmp_path / "flow.h5"
    assert runner.invoke(cli, ["flow", clips, "-o", str(fl), "--backend", "dis"]).exit_code == 0
    r = runner.invoke(cli, ["flow", str(fl), "-o", str(tmp_path / "o2.h5")])
    assert r.exit_code == 1 and "clips" in r.output and len(r.output.strip().splitlines()) == 1
    # a clip store without the vdgtool header
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert runner.invoke(cli, ["flow", str(tmp_path / "plain.h5"), "-o", str(tmp_path / "o3.h5")]).exit_code == 1
    # existing output without --overwrite
    assert runner.invoke(cli, ["flow", clips, "-o", str(fl)]).exit_code == 1
    # mismatched pair sizes, and a bad option value
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 12), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((11, 12), np.uint8))
    r = runner.invoke(cli, ["flow", "--pairs", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                            "-o", str(tmp_path / "x.flo")])
    assert r.exit_code == 1 and "same size" in r.output
    r = runner.invoke(cli, ["flow", clips, "-o", str(tmp_path / "o4.h5"), "--tau", "0.9"])
    assert r.exit_code == 1 and "tau" in r.output
    assert runner.invoke(cli, ["flow", "-o", str(tmp_path / "o5.h5")]).exit_code == 2


@needs_crop
def test_cli_pairs_with_gt(tmp_path):
    out = tmp_path / "crop.flo"
    r = CliRunner().invoke(cli, ["flow", "--pairs", str(CROP / "00001_img1.ppm"), str(CROP / "00001_img2.ppm"),
                                 "--gt", str(CROP / "00001_flow.flo"), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    rec = d["pairs"][0]
    assert rec["epe"] is not None and rec["epe"] < 0.5 * rec["epe_zero"]
    assert endpoint_error(read_flo(out), read_flo(CROP / "00001_flow.flo")) == pytest.approx(rec["epe"], rel=1e-5)
    # a list file with two pairs writes a folder
    lst = tmp_path / "pairs.txt"
    lst.write_text(f"{CROP / '00001_img1.ppm'} {CROP / '00001_img2.ppm'} {CROP / '00001_flow.flo'}\n"
                   f"# comment\n{CROP / '0000000-img_0.png'} {CROP / '0000000-img_1.png'}\n")
    r = CliRunner().invoke(cli, ["flow", "--pairs-list", str(lst), "-o", str(tmp_path / "flows"), "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "flows").iterdir()) == ["0000000-img_0.flo", "00001_img1.flo"]


def test_median_filter_matches_opencv():
    import cv2

    from vdgtool.flow.tvl1 import median_filter

    x = torch.randn(2, 2, 17, 23)
    for k in (3, 5):
        ours = median_filter(x, k).numpy()
        ref = np.stack([[cv2.medianBlur(x[i, j].numpy(), k) for j in range(2)] for i in range(2)])
        assert np.array_equal(ours, ref)


@pytest.mark.slow
def test_compiled_solver_matches_eager_and_a_later_process_reuses_its_kernels(tmp_path, monkeypatch):
    import torch._dynamo
    from torch._dynamo.utils import counters

    from vdgtool.flow import tvl1 as T

    for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    cache = T.use_compile_cache(str(tmp_path / "cc"))
    assert cache == str(tmp_path / "cc" / "inductor")
    a0, a1 = shifted_pair(48, 48, dx=1.0, dy=0.5, seed=5)
    p = TVL1Params(scales=2, warps=2, iterations=10)
    eager = tvl1_flow(a0[None], a1[None], p).numpy()
    comp = tvl1_flow(a0[None], a1[None], p, compile=True).numpy()
    assert np.abs(eager - comp).max() < 1e-3
    assert any(Path(cache).rglob("*")), "nothing was written to the compile cache"
    # what a second task does: no in-memory compiled code, the same cache directory
    torch._dynamo.reset()
    monkeypatch.setattr(T, "_COMPILED", {})
    hits = counters["inductor"]["fxgraph_cache_hit"]
    again = tvl1_flow(a0[None], a1[None], p, compile=True).numpy()
    assert counters["inductor"]["fxgraph_cache_hit"] > hits and np.array_equal(again, comp)


def test_compiled_backend_pads_batches_to_a_few_shapes(monkeypatch, tmp_path):
    from vdgtool.flow import tvl1 as T

    monkeypatch.setattr(T, "use_compile_cache", lambda path: path)  # (tested with the compiler, slow)
    assert [T.padded_batch(n, 16) for n in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]
    assert T.padded_batch(7, 6) == 6
    shapes = []
    real = T.tvl1_flow

    def eager_recording(a, b, params, device=None, compile=False):
        shapes.append(len(a))
        return real(a, b, params, device=device)  # eager: the padding, not the compiler, is under test

    monkeypatch.setattr(T, "tvl1_flow", eager_recording)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 20, 24), dtype=np.uint8)
    p = TVL1Params(scales=1, warps=1, iterations=5)
    be = get_backend("torch", params=p, batch_size=8, compile=True, compile_cache=str(tmp_path / "cc"))
    got = be.compute(frames[:11], frames[1:12])
    assert shapes == [8, 4] and be.compile_cache == str(tmp_path / "cc")  # 11 pairs: 8 + 3 padded to 4
    ref = get_backend("torch", params=p, batch_size=11).compute(frames[:11], frames[1:12])
    np.testing.assert_allclose(got, ref, atol=1e-4)
