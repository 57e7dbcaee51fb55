"""Shared fixtures: the real-data folder, a tiny toy dataset, generated lossless videos, a CLI runner."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real clips, GIFs); tests that need it skip cleanly when it is absent."""
    if not (SHARED_DATA / "videos").is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    """A tiny built-in dataset: 4 classes x 3 videos x 2 domains, 8 frames of 32x32 (about 1 s to make)."""
    from vdgtool.video.toydata import make_toy_dataset

    root = tmp_path_factory.mktemp("toy")
    make_toy_dataset(str(root), size=32, frames=8, videos_per_class=3, seed=0)
    return root


def colour_store(path, classes=("a", "b", "c"), n_per_class=4, frames=8, size=32, seed=0, domain="src",
                 key="v{k}") -> str:
    """A raw clip store of random pixels with a per-class colour cue (channel c % 3 set to 40 + 60 c), learnable
    in a few steps by the tiny test models; ``key`` formats each video key from k, domain and seed."""
    from vdgtool.stores import VideoStoreWriter

    rng = np.random.default_rng(seed)
    with VideoStoreWriter(str(path), classes=list(classes), conventions={"size": size}, encoding="raw") as w:
        k = 0
        for c in range(len(classes)):
            for _ in range(n_per_class):
                fr = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
                fr[..., c % 3] = 40 + 60 * c
                w.add_video(key.format(k=k, domain=domain, seed=seed), fr, index=k, label=c, domain=domain, fps=8)
                k += 1
    return str(path)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 10, codec: str = "ffv1") -> str:
    """Write frames (T, H, W, 3) uint8 losslessly (ffv1 in .mkv or libx264rgb qp 0) with PyAV."""
    import av

    pix = {"ffv1": "bgr0", "libx264rgb": "rgb24"}[codec]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = pix
        if codec == "libx264rgb":
            s.options = {"qp": "0", "preset": "ultrafast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def known_frames(t: int = 8, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    """Random pixels, with frame number ``k`` written into pixel (0, 0, 0) so selections are checkable."""
    fr = np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    fr[:, 0, 0, 0] = np.arange(t) * 10
    return fr


@pytest.fixture
def lossless_video(tmp_path) -> tuple[str, np.ndarray]:
    fr = known_frames()
    return write_video(tmp_path / "known.mkv", fr), fr


@pytest.fixture
def run_cli(capsys):
    """Run ``vdgtool ARGS`` in-process through the real entry point; return (exit code, stdout, stderr)."""
    import logging

    from vdgtool.cli import main

    def _run(*args: str):
        # the CLI's log handler keeps the sys.stderr of its first call: bind it to this test's capture
        lg = logging.getLogger("vdgtool")
        for h in [h for h in lg.handlers if getattr(h, "_vdgtool", False)]:
            lg.removeHandler(h)
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def make_tree(root: Path, files: dict[str, str | Path | bytes]) -> Path:
    """A folder tree ROOT/<class>/<file>: values are source paths to copy or bytes to write."""
    for rel, src in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            p.write_bytes(src)
        else:
            shutil.copyfile(src, p)
    return root


def store_content(path) -> dict:
    """Everything a consumer sees in a clip store (not provenance): for equality checks."""
    from vdgtool.stores import VideoStore

    st = VideoStore(str(path))
    d = {"classes": st.classes, "domains": st.domains,
         "meta": {k: v.tolist() for k, v in st.meta.items() if k != "source"},
         "errors": {k: v.tolist() for k, v in st.errors.items() if k != "source"},
         "frames": [st.read(i) for i in range(len(st))]}
    st.close()
    return d


def assert_same_store(a, b) -> None:
    ca, cb = store_content(a), store_content(b)
    assert ca["classes"] == cb["classes"]
    assert ca["domains"] == cb["domains"]
    assert ca["meta"] == cb["meta"]
    assert ca["errors"] == cb["errors"]
    assert len(ca["frames"]) == len(cb["frames"])
    for x, y in zip(ca["frames"], cb["frames"]):
        np.testing.assert_array_equal(x, y)


PY = sys.executable


def preempt_mid_run(trainer, method_cls, monkeypatch, *, epoch: int = 1, step: int = 0) -> None:
    """Run ``trainer.fit()`` as if SLURM sent SIGTERM right after ``method_cls.training_step`` ran step
    ``step`` of epoch ``epoch`` (0-based): the trainer writes preempt.pt and raises Preempted."""
    import signal

    from vdgtool.train.engine import Preempted

    real = method_cls.training_step

    def stepped(m, batches, st):
        out = real(m, batches, st)
        if trainer.epoch == epoch and trainer.step_in_epoch == step:
            trainer._stop_signal = signal.SIGTERM
        return out

    with monkeypatch.context() as mp:
        mp.setattr(method_cls, "training_step", stepped)
        with pytest.raises(Preempted):
            trainer.fit()
