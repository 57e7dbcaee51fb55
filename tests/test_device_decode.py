"""JPEG clips decoded on the training device (issue 17: the nvJPEG loader path, ``--decode cpu|cuda``).

Without a GPU the device path runs on the CPU (``DEVICE_TYPES`` extended): the same code as on CUDA, with
torchvision's libjpeg-turbo instead of nvJPEG, so items must match the worker path (same frames, crop, flip,
jitter; pixels within JPEG decoder tolerance).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import colour_store

from vdgtool.data import build_dataset
from vdgtool.data import device_decode as DD
from vdgtool.errors import ConfigError
from vdgtool.models import create_model
from vdgtool.runtime import make_loader
from vdgtool.stores import TableStore, VideoStoreWriter

#: normalised values: 2 grey levels over the smallest std of the model's spec
TOL = 2 / 255 / 0.2


def jpeg_store(path, n=6, frames=10, size=(36, 44), seed=0) -> str:
    """Smooth random frames (JPEG keeps them well) with a per-class colour, stored as JPEG."""
    rng = np.random.default_rng(seed)
    with VideoStoreWriter(str(path), classes=["a", "b", "c"], conventions={"size": min(size)},
                          encoding="jpeg") as w:
        for k in range(n):
            low = rng.integers(0, 255, (frames, size[0] // 4, size[1] // 4, 3), dtype=np.uint8)
            fr = np.repeat(np.repeat(low, 4, axis=1), 4, axis=2)
            fr[..., k % 3] = 60 + 50 * (k % 3)
            w.add_video(f"j{k}", fr, index=k, label=k % 3, domain="d", fps=8)
    return str(path)


@pytest.fixture
def on_cpu(monkeypatch):
    """Let --decode cuda run its device path on the CPU."""
    monkeypatch.setattr(DD, "DEVICE_TYPES", ["cuda", "cpu"])


def _batches(ds, workers, n=2, batch=4):
    out = []
    for b in make_loader(ds, batch, workers, device="cpu"):
        out.append(b)
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("train,workers", [(True, 0), (True, 1), (False, 0)])
def test_device_decoded_batches_match_the_worker_path(tmp_path, on_cpu, train, workers):
    jp = jpeg_store(tmp_path / "j.h5")
    raw = colour_store(tmp_path / "r.h5", classes=("a", "b", "c"), n_per_class=1, frames=10, size=36)
    spec = create_model("test_c3d", num_classes=3).input_spec
    kw = (dict(transform_options={"scale": (0.3, 1.0), "color_jitter": (0.3, 0.3, 0.3, 0.1)})
          if train else dict(num_clips=2, num_crops=3))
    stores = [jp, raw] if train else [jp]  # a raw store's items are decoded in the workers, in the same batch
    ref = build_dataset(stores, spec, train, seed=3, **kw)
    dev = build_dataset(stores, spec, train, seed=3, **kw)
    assert DD.setup_decode("cuda", "cpu", {"--data": dev}) == {"--data": "device"}
    assert dev.device_decode and not ref.device_decode
    item = dev[0]
    assert isinstance(item["video"], DD.EncodedClip) and len(item["video"].bufs) == np.prod(item["video"].shape)
    got, want = _batches(dev, workers), _batches(ref, workers)
    for g, w in zip(got, want):
        assert g["key"] == w["key"] and torch.equal(g["label"], w["label"])
        assert g["video"].shape == w["video"].shape and g["video"].dtype == w["video"].dtype
        diff = (g["video"] - w["video"]).abs().max().item()
        assert diff <= TOL, diff


def test_decode_choices_and_refusals(tmp_path, on_cpu, monkeypatch):
    jp = jpeg_store(tmp_path / "j.h5")
    raw = colour_store(tmp_path / "r.h5")
    spec = create_model("test_c3d", num_classes=3).input_spec
    ds = build_dataset([jp], spec, True, seed=0)
    assert DD.setup_decode("cpu", "cpu", {"a": ds, "none": None}) == {"a": "workers"} and not ds.device_decode
    assert DD.setup_decode("auto", "cpu", {"a": ds}) == {"a": "workers"}  # auto decodes on the device on CUDA only
    with pytest.raises(ConfigError, match="none of its stores is JPEG"):
        DD.setup_decode("cuda", "cpu", {"--data": build_dataset([raw], spec, True, seed=0)})
    with pytest.raises(ConfigError, match=r"extra views \(pace\)"):
        DD.setup_decode("cuda", "cpu", {"--data": build_dataset([jp], spec, True, seed=0, views=["pace"])})
    with pytest.raises(ConfigError, match="unknown --decode"):
        DD.setup_decode("gpu", "cpu", {"a": ds})
    monkeypatch.setattr(DD, "DEVICE_TYPES", ["cuda"])
    with pytest.raises(ConfigError, match="decodes JPEG clips on the GPU, but this run uses the cpu device"):
        DD.setup_decode("cuda", "cpu", {"a": ds})


def test_train_decode_cuda_on_a_cpu_run_is_refused_in_one_line(tmp_path, run_cli):
    jp = jpeg_store(tmp_path / "j.h5")
    code, out, err = run_cli("train", "--data", jp, "--model", "test_c3d", "--epochs", "1", "--device", "cpu",
                             "--decode", "cuda", "-o", tmp_path / "run")
    assert code == 1 and "--decode cuda decodes JPEG clips on the GPU" in err and "Traceback" not in err


def test_train_with_device_decoding_matches_the_worker_path(tmp_path, on_cpu, run_cli, monkeypatch):
    jp = jpeg_store(tmp_path / "j.h5", n=8)
    calls = []
    real = DD.decode_batch
    monkeypatch.setattr(DD, "decode_batch", lambda *a: calls.append(1) or real(*a))
    losses = {}
    for mode in ("cpu", "cuda"):
        run = tmp_path / mode
        code, _, err = run_cli("train", "--data", jp, "--val", jp, "--model", "test_c3d", "--epochs", "2",
                               "--batch-size", "4", "--device", "cpu", "--decode", mode, "--seed", "1", "-o", run)
        assert code == 0, err
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["decode"] == mode
        assert set(cfg["decoding"].values()) == {"device" if mode == "cuda" else "workers"}
        rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
        losses[mode] = [(r["train_loss"], r["val"]["j"]["top1"]) for r in rows if "train_loss" in r]
        assert bool(calls) == (mode == "cuda")  # training and validation batches went through the device decoder
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-3, atol=1e-4)
    # eval and features: the same predictions whichever side decodes (three crops of two clips per video)
    out = {}
    for mode in ("cpu", "cuda"):
        code, o, err = run_cli("eval", tmp_path / "cpu", "--data", jp, "--clips", "2", "--crops", "3", "--device",
                               "cpu", "--decode", mode, "--json", "-o", tmp_path / f"preds_{mode}.h5")
        assert code == 0, err
        with TableStore(str(tmp_path / f"preds_{mode}.h5"), kind="predictions") as ts:
            out[mode] = (json.loads(o)["n"], np.asarray(ts.array("probs")))
    assert out["cuda"][0] == out["cpu"][0] == 8
    np.testing.assert_allclose(out["cuda"][1], out["cpu"][1], atol=1e-4)
