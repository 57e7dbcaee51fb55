"""Data pipeline: samplers, frame-consistent transforms, ClipDataset over tiny stores."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from vdgtool.augment import TRANSFORMS, build_transform, register_transform
from vdgtool.data import (SAMPLERS, DenseSampler, UniformSampler, align_classes, build_dataset,
                          build_sampler, collate_views, register_sampler)
from vdgtool.errors import ConfigError, ConventionMismatch
from vdgtool.stores import TableStoreWriter, VideoStoreWriter

torch.set_num_threads(1)


@dataclasses.dataclass(frozen=True)
class Spec:
    num_frames: int = 4
    size: int = 8
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)
    modality: str = "rgb"
    sampler: str = "dense"
    frame_interval: int = 1


def frames_with_index(t, h=12, w=16):
    """Frame f has value f in channel 0, a horizontal ramp (column) in channel 1, rows in channel 2."""
    fr = np.zeros((t, h, w, 3), np.uint8)
    fr[..., 0] = np.arange(t, dtype=np.uint8)[:, None, None] * 10
    fr[..., 1] = np.arange(w, dtype=np.uint8)[None, None, :] * 10
    fr[..., 2] = np.arange(h, dtype=np.uint8)[None, :, None] * 10
    return fr


def make_store(path, videos, classes, domains=("real",), kind="clips", conventions=None):
    """videos: list of (key, frames, label, domain)."""
    with VideoStoreWriter(str(path), kind, classes=classes, domains=list(domains),
                          conventions=conventions or {}) as w:
        for i, (key, fr, label, dom) in enumerate(videos):
            w.add_video(key, fr, index=i, label=label, domain=dom, fps=25.0)
    return str(path)


@pytest.fixture
def two_stores(tmp_path):
    a = make_store(tmp_path / "a.h5", [(f"a{i}", frames_with_index(10 + i), i % 2, "real") for i in range(4)],
                   ["jump", "run"])
    b = make_store(tmp_path / "b.h5", [(f"b{i}", frames_with_index(6), i % 3, "anim") for i in range(3)],
                   ["swim", "run", "jump"], domains=("anim",))
    return a, b


# -- samplers ----------------------------------------------------------------------------------------
def test_dense_sampler_test_and_train():
    rng = np.random.default_rng(0)
    s = DenseSampler(clip_len=8, frame_interval=2, num_clips=1)
    # test: centre clip, max offset 30 - 16 = 14 -> start 7
    np.testing.assert_array_equal(s(30, rng, False), [np.arange(7, 23, 2)])
    # 3 test clips evenly spaced from 0 to 14
    s3 = DenseSampler(8, 2, 3)
    np.testing.assert_array_equal(s3(30, rng, False)[:, 0], [0, 7, 14])
    # train: one random start in 0..14, consecutive stride 2, over many draws every start appears
    starts = set()
    for _ in range(300):
        ind = s(30, rng, True)
        assert ind.shape == (1, 8)
        np.testing.assert_array_equal(np.diff(ind[0]), 2)
        starts.add(int(ind[0, 0]))
    assert starts == set(range(15))


def test_dense_sampler_short_video_loop_and_repeat_last():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(DenseSampler(8)(5, rng, False), [[0, 1, 2, 3, 4, 0, 1, 2]])
    np.testing.assert_array_equal(DenseSampler(8, out_of_bound="repeat_last")(5, rng, False),
                                  [[0, 1, 2, 3, 4, 4, 4, 4]])
    np.testing.assert_array_equal(DenseSampler(4, out_of_bound="repeat_last")(1, rng, True), [[0, 0, 0, 0]])
    for _ in range(20):
        assert DenseSampler(8, 2)(5, rng, True).max() < 5


def test_dense_train_multi_clip_segments():
    rng = np.random.default_rng(1)
    for _ in range(50):
        ind = DenseSampler(4, 1, 3)(31, rng, True)  # avg interval (31 - 4 + 1) // 3 = 9
        assert ind.shape == (3, 4)
        assert [0 <= ind[0, 0] < 9, 9 <= ind[1, 0] < 18, 18 <= ind[2, 0] < 27] == [True] * 3


def test_uniform_sampler():
    rng = np.random.default_rng(0)
    u = UniformSampler(4)
    np.testing.assert_array_equal(u(20, rng, False), [[2, 7, 12, 17]])  # segment centres
    np.testing.assert_array_equal(UniformSampler(4, 2)(20, rng, False), [[1, 6, 11, 16], [3, 8, 13, 18]])
    np.testing.assert_array_equal(u(3, rng, False), [[0, 1, 1, 2]])  # short video: repeats in order
    seen = np.zeros((4, 20), bool)
    for _ in range(300):
        ind = u(20, rng, True)[0]
        assert np.all(ind // 5 == np.arange(4))  # one frame from each segment
        seen[np.arange(4), ind] = True
    assert seen.sum() == 20  # every frame of each segment can be drawn
    short = u(3, rng, True)[0]
    assert np.all(np.diff(short) >= 0) and short.max() <= 2


def test_build_sampler_from_spec_and_registry():
    s = build_sampler(Spec(num_frames=6, frame_interval=3), train=False, num_clips=2)
    assert isinstance(s, DenseSampler) and (s.clip_len, s.frame_interval, s.num_clips) == (6, 3, 2)
    u = build_sampler({"num_frames": 5, "size": 8, "mean": (0,) * 3, "std": (1,) * 3, "sampler": "uniform"}, True)
    assert isinstance(u, UniformSampler) and u.num_segments == 5
    with pytest.raises(ConfigError, match="unknown clip sampler 'nope'"):
        build_sampler(Spec(sampler="nope"), True)

    @register_sampler("test_first")
    def first(spec, num_clips=1):
        return lambda n, rng, train: np.zeros((num_clips, spec.num_frames), np.int64)

    try:
        assert build_sampler(Spec(sampler="test_first"), True, num_clips=2)(9, None, True).shape == (2, 4)
    finally:
        SAMPLERS.pop("test_first")


# -- transforms --------------------------------------------------------------------------------------
def test_train_transform_is_frame_consistent():
    spec = Spec(size=8)
    fr = frames_with_index(5, 40, 48)
    tf = build_transform(spec, train=True, scale=(0.2, 0.6), color_jitter=0.4)
    raw = build_transform(spec, train=True, scale=(0.2, 0.6), normalize=False)
    flips = 0
    for seed in range(20):
        out = raw(fr, np.random.default_rng(seed))
        assert out.shape == (3, 5, 8, 8)
        # the column / row ramps (channels 1, 2) are identical on every frame: same crop, same flip
        assert torch.equal(out[1:, 0:1].expand(-1, 5, -1, -1), out[1:])
        # channel 0 is constant per frame and keeps the frame's own value (frame order untouched)
        np.testing.assert_allclose(out[0].mean(dim=(1, 2)).numpy(), np.arange(5) * 10 / 255, atol=1e-5)
        flips += bool(out[1, 0, 0, 0] > out[1, 0, 0, -1])
        jit = tf(fr, np.random.default_rng(seed))
        assert jit.shape == (3, 5, 8, 8)
    assert 3 <= flips <= 17  # flipped about half of the time


def test_crop_covers_a_random_region():
    raw = build_transform(Spec(size=8), train=True, scale=(0.05, 0.1), flip=False, normalize=False)
    fr = frames_with_index(2, 64, 64)
    lefts = {float(raw(fr, np.random.default_rng(s))[1, 0, 0, 0]) for s in range(10)}
    assert len(lefts) > 3  # different crops for different rngs


def test_test_transform_values_and_normalisation():
    spec = Spec(size=8, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    fr = np.zeros((3, 8, 16, 3), np.uint8)
    fr[..., 0] = 255
    fr[..., 1] = 51
    fr[..., 2] = 102
    fr[:, :, 4:12, :] = fr[:, :, 4:12, :] // 3 * 3  # same values, keep uniform
    tf = build_transform(spec, train=False)
    out = tf(fr)
    assert out.shape == (3, 3, 8, 8)
    np.testing.assert_allclose(out[0].numpy(), (1.0 - 0.5) / 0.5, atol=1e-5)
    np.testing.assert_allclose(out[1].numpy(), (0.2 - 0.25) / 0.25, atol=1e-5)
    np.testing.assert_allclose(out[2].numpy(), (0.4 - 0.0) / 2.0, atol=1e-5)


def test_centre_crop_and_three_crop():
    spec = Spec(size=8)
    fr = frames_with_index(2, 8, 24)  # short side already 8: no resize, columns 0..23
    raw = build_transform(spec, train=False, normalize=False)
    col = raw(fr)[1, 0, 0] * 255 / 10
    np.testing.assert_allclose(col.numpy(), np.arange(8, 16), atol=1e-4)
    three = build_transform(spec, train=False, num_crops=3, normalize=False)(fr)
    assert three.shape == (3, 3, 2, 8, 8)
    firsts = (three[:, 1, 0, 0, 0] * 255 / 10).round().tolist()
    assert firsts == [0, 8, 16]
    # resize of the short side: 16x32 -> 8x16, centre 8 columns
    big = build_transform(spec, train=False, normalize=False)(np.zeros((1, 16, 32, 3), np.uint8))
    assert big.shape == (3, 1, 8, 8)
    with pytest.raises(ConfigError):
        build_transform(spec, train=True, num_crops=3)


def test_flow_conversion_and_flip_negates_u():
    spec = Spec(size=8, modality="flow", mean=(0.5, 0.5), std=(0.5, 0.5))
    flow = np.zeros((2, 8, 8, 2), np.uint8)
    flow[..., 0] = 255  # u = +bound
    flow[..., 1] = 0    # v = -bound
    flow[:, :, :4, 1] = 191  # left half: v positive
    tf = build_transform(spec, train=False)
    out = tf(flow, conventions={"kind": "flow", "bound": 20, "quantisation": "uint8"})
    assert out.shape == (2, 2, 8, 8)
    np.testing.assert_allclose(out[0].numpy(), 1.0)
    np.testing.assert_allclose(out[1, :, :, 0].numpy(), 191 / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(out[1, :, :, 7].numpy(), -1.0)
    flipped = tf.hflip(tf.to_tensor(flow))
    np.testing.assert_allclose(flipped[:, 0].numpy(), -1.0)  # u negated
    np.testing.assert_allclose(flipped[:, 1, :, 7].numpy(), 191 / 127.5 - 1, atol=1e-6)  # v mirrored only
    # float16 flow in pixels / bound
    f16 = np.full((1, 8, 8, 2), 5.0, np.float16)
    np.testing.assert_allclose(tf(f16, conventions={"bound": 10, "quantisation": "float16"}).numpy(), 0.5)
    # train-time flips negate u
    tr = build_transform(spec, train=True, scale=(1.0, 1.0))
    signs = {float(tr(flow, np.random.default_rng(s))[0].mean().sign()) for s in range(10)}
    assert signs == {-1.0, 1.0}
    with pytest.raises(ConfigError, match="does not apply to optical flow"):
        build_transform(spec, train=True, policy=[("brightness", 0.5)])
    # another normalisation in the spec applies on the [0, 1] scale: mean 0, std 1 -> u in [0, 1]
    unit = build_transform(dataclasses.replace(spec, mean=(0.0, 0.0), std=(1.0, 1.0)), train=False)(flow)
    np.testing.assert_allclose(unit[0].numpy(), 1.0)
    np.testing.assert_allclose(unit[1, :, :, 7].numpy(), 0.0)
    with pytest.raises(ConfigError, match="needs 2 mean/std values"):
        build_transform(dataclasses.replace(spec, mean=(0.5,) * 3, std=(0.5,) * 3), train=False)


def test_flow_rotate_rotates_vectors():
    spec = Spec(size=8, modality="flow", mean=(0.5, 0.5), std=(0.5, 0.5))
    flow = np.full((1, 8, 8, 2), 0.0, np.float32)
    flow[..., 0] = 10.0  # pure rightward motion
    tf = build_transform(spec, train=False, policy=[("rotate", 1.0)])  # +30 degrees counter-clockwise
    out = tf(flow, conventions={"bound": 20})
    c = out[:, 0, 4, 4]
    np.testing.assert_allclose(c.numpy(), [0.5 * np.cos(np.pi / 6), -0.5 * np.sin(np.pi / 6)], atol=1e-5)


def test_policy_ops_are_frame_consistent_and_registered():
    spec = Spec(size=16, num_frames=3)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    fr = np.repeat(base, 3, axis=0)  # identical frames must stay identical under every op
    plain = build_transform(spec, train=False, normalize=False)(fr)
    for name, op in TRANSFORMS.items():
        m = -0.7 if op.signed else 0.7
        out = build_transform(spec, train=False, policy=[(name, m)], normalize=False)(fr)
        assert out.shape == plain.shape
        assert torch.allclose(out[:, 0], out[:, 2]), name
        if name != "identity":
            assert not torch.allclose(out, plain, atol=1e-3), name
    inv = build_transform(spec, train=False, policy=[("invert", 1.0)], normalize=False)(fr)
    torch.testing.assert_close(inv, 1.0 - plain)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        build_transform(spec, train=False, policy=[("nope", 0.5)])
    with pytest.raises(ConfigError, match="outside"):
        build_transform(spec, train=False, policy=[("blur", -0.5)])

    @register_transform("test_zero", max=1.0)
    def zero(x, v):
        return x * (1 - v)

    try:
        z = build_transform(spec, train=False, policy=[("test_zero", 0.0, 1.0)], normalize=False)(fr)
        torch.testing.assert_close(z, plain)  # probability 0: never applied
        z = build_transform(spec, train=False, policy=[{"op": "test_zero", "magnitude": 1.0}], normalize=False)(fr)
        assert float(z.abs().max()) == 0.0
    finally:
        TRANSFORMS.pop("test_zero")


# -- datasets ----------------------------------------------------------------------------------------
def test_class_alignment_by_name(two_stores):
    a, b = two_stores
    ds = build_dataset([a, b], Spec(), train=False)
    assert ds.class_names == ["jump", "run", "swim"]
    assert ds.domains == ["real", "anim"] and len(ds) == 7
    labels = [ds[i]["label"] for i in range(len(ds))]
    names = [ds.class_names[x] for x in labels]
    assert names == ["jump", "run", "jump", "run", "swim", "run", "jump"]
    assert [ds[i]["domain"] for i in range(len(ds))] == [0] * 4 + [1] * 3
    ds2 = build_dataset([b, a], Spec(), train=False, class_names=["run", "swim", "jump", "climb"])
    assert [ds2.class_names[ds2[i]["label"]] for i in range(3)] == ["swim", "run", "jump"]
    with pytest.raises(ConfigError, match=r"class 'swim'.*b\.h5"):
        build_dataset([a, b], Spec(), train=False, class_names=["jump", "run"])
    names, maps = align_classes(None, [["x", "y"], ["y", "z"]])
    assert names == ["x", "y", "z"] and maps[1].tolist() == [1, 2]


def test_domain_filter(two_stores):
    a, b = two_stores
    ds = build_dataset([a, b], Spec(), train=True, domains=["anim"])
    assert len(ds) == 3 and ds.domains == ["anim"]
    assert {ds[i]["key"] for i in range(3)} == {"b0", "b1", "b2"}
    assert {ds[i]["domain"] for i in range(3)} == {0}
    with pytest.raises(ConfigError, match="domain 'cartoon'"):
        build_dataset([a, b], Spec(), train=True, domains=["cartoon"])


def test_item_contents_and_sampled_frames(two_stores):
    a, _ = two_stores
    ds = build_dataset([a], Spec(num_frames=4, frame_interval=2), train=False, transform_options={"normalize": False})
    item = ds[1]  # 11 frames: centre clip of span 8 starts at 1 -> frames 1, 3, 5, 7
    assert item["video"].shape == (3, 4, 8, 8)
    np.testing.assert_allclose(item["video"][0].mean(dim=(1, 2)).numpy() * 255 / 10, [1, 3, 5, 7], atol=1e-4)
    assert (item["key"], item["row"], item["store"], item["index"]) == ("a1", 1, 0, 1)
    multi = build_dataset([a], Spec(num_frames=4), train=False, num_clips=2, num_crops=3)[0]
    assert multi["video"].shape == (6, 3, 4, 8, 8)


def test_modality_and_colour_space_refused(tmp_path, two_stores):
    a, _ = two_stores
    flow = make_store(tmp_path / "f.h5", [("v", np.zeros((3, 8, 8, 2), np.uint8), 0, "real")], ["jump"],
                      kind="flow", conventions={"kind": "flow", "bound": 20, "quantisation": "uint8"})
    with pytest.raises(ConventionMismatch, match="flow frames but the model expects rgb"):
        build_dataset([flow], Spec(), train=True)
    fspec = Spec(modality="flow", mean=(0.5, 0.5), std=(0.5, 0.5))
    with pytest.raises(ConventionMismatch, match="rgb frames but the model expects flow"):
        build_dataset([a], fspec, train=True)
    fds = build_dataset([flow], fspec, train=True)
    assert fds[0]["video"].shape == (2, 4, 8, 8)
    bgr = make_store(tmp_path / "bgr.h5", [("v", frames_with_index(3), 0, "real")], ["jump"],
                     conventions={"colour_space": "BGR"})
    with pytest.raises(ConventionMismatch, match="colour_space='BGR'.*'RGB'"):
        build_dataset([bgr], Spec(), train=True)


def test_worker_count_independence_and_epochs(two_stores):
    a, b = two_stores
    ds = build_dataset([a, b], Spec(), train=True, seed=3, transform_options={"color_jitter": 0.3})

    def batches(workers):
        dl = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=collate_views)
        return list(dl)

    b0, b2 = batches(0), batches(2)
    assert len(b0) == len(b2) == 3
    for x, y in zip(b0, b2):
        assert torch.equal(x["video"], y["video"])
        assert x["key"] == y["key"] and torch.equal(x["label"], y["label"])
    assert isinstance(b0[0]["key"], list) and b0[0]["video"].shape == (3, 3, 4, 8, 8)
    first = ds[0]["video"]
    assert torch.equal(first, ds[0]["video"])  # same epoch, same item: same clip
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0]["video"])  # a new epoch draws a new clip/augmentation
    assert torch.equal(ds[(0, 0)]["video"], first)  # (index, epoch) pairs for persistent workers


def test_dataset_pickles_without_open_handle(two_stores):
    a, b = two_stores
    ds = build_dataset([a, b], Spec(), train=True)
    assert all(s._h5 is None for s in ds.stores)
    ds[0]  # opens the handle in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert all(s._h5 is None for s in clone.stores)
    assert torch.equal(clone[2]["video"], ds[2]["video"])


def test_labels_from_predictions_store(tmp_path, two_stores):
    _, b = two_stores
    target = make_store(tmp_path / "t.h5", [(f"t{i}", frames_with_index(6), -1, "anim") for i in range(4)],
                        [], domains=("anim",))
    pred = tmp_path / "pred.h5"
    classes = ["swim", "jump"]  # another order than the model's classes
    with TableStoreWriter(str(pred), "predictions", classes=classes) as w:
        # t0: two clips averaged -> jump (0.65); t1: swim 0.9; t2: jump 0.55 (< 0.6, dropped); t3 no row (dropped:
        # a row that was not selected never trains with its own label)
        w.append({"probs": np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1], [0.45, 0.55]], np.float32)},
                 key=["t0", "t0", "t1", "t2"])
    names = ["jump", "run", "swim"]
    ds = build_dataset([target], Spec(), train=True, class_names=names, labels_from=str(pred), min_confidence=0.6)
    assert [ds[i]["key"] for i in range(len(ds))] == ["t0", "t1"]
    assert [ds[i]["label"] for i in range(len(ds))] == [0, 2]
    assert ds.num_dropped == 2
    assert ds.pseudo.tolist() == [True, True] and ds[0]["pseudo"] == 1 and ds[0]["weight"] == 1.0
    # logits work too, and the class union includes the prediction classes
    pred2 = tmp_path / "pred2.h5"
    with TableStoreWriter(str(pred2), "predictions", classes=["dive", "jump"]) as w:
        w.append({"logits": np.array([[3.0, 0.0], [0.0, 3.0]], np.float32)}, key=["t0", "t1"])
    ds2 = build_dataset([target], Spec(), train=True, labels_from=str(pred2))
    assert ds2.class_names == ["dive", "jump"] and [ds2[i]["label"] for i in range(2)] == [0, 1]
    with pytest.raises(ConfigError, match="class 'dive'"):
        build_dataset([target], Spec(), train=True, class_names=names, labels_from=str(pred2))


def test_views_hook_pace(two_stores):
    a, _ = two_stores

    def pace(ctx):
        p = int(ctx.rng.integers(1, 3))  # pace 1 or 2
        s = dataclasses.replace(ctx.sampler, frame_interval=p, num_clips=1)
        idx = s(ctx.num_frames, ctx.rng, ctx.train)[0]
        return {"video": ctx.transform_clip(ctx.read(idx)), "pace": p - 1, "first": int(idx[0])}

    plain = build_dataset([a], Spec(), train=True, seed=5)
    ds = build_dataset([a], Spec(), train=True, seed=5, views={"pace": pace},
                       transform_options={"normalize": False})
    item = ds[2]
    assert set(item["pace"]) == {"video", "pace", "first"} and item["pace"]["video"].shape == (3, 4, 8, 8)
    step = (item["pace"]["video"][0, 1:].mean(dim=(1, 2)) - item["pace"]["video"][0, :-1].mean(dim=(1, 2)))
    np.testing.assert_allclose(step.numpy() * 255 / 10, item["pace"]["pace"] + 1, atol=1e-4)
    # adding a view does not change the main clip's randomness
    raw_plain = build_dataset([a], Spec(), train=True, seed=5, transform_options={"normalize": False})
    assert torch.equal(raw_plain[2]["video"], item["video"])
    assert plain[2]["key"] == item["key"]
    batch = collate_views([ds[0], ds[1]])
    assert batch["pace"]["video"].shape == (2, 3, 4, 8, 8) and batch["pace"]["pace"].shape == (2,)
    with pytest.raises(ConfigError, match="clashes"):
        build_dataset([a], Spec(), train=True, views={"label": pace})


def test_builtin_views(two_stores):
    a, _ = two_stores
    ds = build_dataset([a], Spec(num_frames=4), train=True, seed=1, transform_options={"normalize": False},
                       views={"pace": {"paces": [1, 2]}, "shuffled": {}, "frozen": {}})
    paces = set()
    for i in range(len(ds)):
        it = ds[i]
        pv = it["pace"]["video"][0].mean(dim=(1, 2)) * 255 / 10  # frame numbers of the pace clip
        np.testing.assert_allclose(np.diff(pv.numpy()), it["pace"]["pace"], atol=1e-4)
        assert it["pace"]["label"] == [1.0, 2.0].index(it["pace"]["pace"])
        paces.add(it["pace"]["label"])
        order = it["shuffled"]["order"]
        assert sorted(order.tolist()) == [0, 1, 2, 3] and order.tolist() != [0, 1, 2, 3]
        assert torch.equal(it["shuffled"]["video"], it["video"][:, order])
        j = it["frozen"]["frame"]
        assert torch.equal(it["frozen"]["video"], it["video"][:, j:j + 1].expand(-1, 4, -1, -1))
    assert paces == {0, 1}


SHARED = __import__("pathlib").Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gifs"


@pytest.mark.parametrize("name", ["misc__skimage_no_time_for_that_tiny.gif",
                                  "ucf101__Basketball__action_basketball_demo.gif"])
def test_real_gif_through_jpeg_store(tmp_path, name):
    """Real frames (a 14x25 GIF smaller than the input; a UCF101 clip) in a JPEG store: crops upsample."""
    from PIL import Image, ImageSequence

    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared test data not found: {path}")
    with Image.open(path) as im:
        frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])[:24]
    store = make_store(tmp_path / "g.h5", [("g", frames, 0, "real")], ["x"])
    with VideoStoreWriter(str(tmp_path / "j.h5"), "clips", classes=["x"], domains=["real"], encoding="jpeg") as w:
        w.add_video("g", frames, index=0, label=0, domain="real")
    spec = Spec(num_frames=8, size=32, mean=(0.0,) * 3, std=(1.0,) * 3)
    raw = build_dataset([store], spec, train=False)[0]["video"]
    jpg = build_dataset([str(tmp_path / "j.h5")], spec, train=False)[0]["video"]
    assert raw.shape == jpg.shape == (3, 8, 32, 32)
    assert float((raw - jpg).abs().mean()) < 0.03  # JPEG q90 is close to the raw frames
    # the test view equals torchvision's resize + centre crop of the expected frames, done by hand
    import torchvision.transforms.v2.functional as F
    idx = DenseSampler(8)(len(frames), np.random.default_rng(0), False)[0]
    ref = torch.as_tensor(frames[idx]).permute(0, 3, 1, 2)
    ref = F.center_crop(F.resize(ref, 32, antialias=True), [32, 32]).float().div(255).permute(1, 0, 2, 3)
    torch.testing.assert_close(raw, ref)
    tr = build_dataset([str(tmp_path / "j.h5")], spec, train=True, transform_options={"color_jitter": 0.4})[0]
    assert tr["video"].shape == (3, 8, 32, 32) and torch.isfinite(tr["video"]).all()


# -- pace resampling rules (MM 2024, spec §3) ----------------------------------------------------------
def test_pace_loop_rules_known_answer():
    from vdgtool.data.views import loop_indices

    # the paper's example, 30 frames from frame 20 (1-based) at 2x: the modulo continuation
    assert (loop_indices(30, 16, 2, 19, "modulo") + 1).tolist() == [20, 22, 24, 26, 28, 30, 2, 4, 6, 8, 10, 12,
                                                                     14, 16, 18, 20]
    # the released code: restart at frame 0 with the same stride when the next index would reach n
    expected = {1: [27, 28, 29, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                2: [27, 29, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26],
                3: [27, 0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 0, 3, 6, 9, 12],
                4: [27, 0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24],
                5: [27, 0, 5, 10, 15, 20, 25, 0, 5, 10, 15, 20, 25, 0, 5, 10]}
    for r, idx in expected.items():
        assert loop_indices(30, 16, r, 27, "restart").tolist() == idx, r
    assert loop_indices(30, 16, 3, 27, "modulo").tolist()[:4] == [27, 0, 3, 6]  # 30 = 0 (mod 30)
    assert loop_indices(30, 16, 2, 28, "modulo").tolist()[:3] == [28, 0, 2]
    assert loop_indices(30, 16, 2, 28, "restart").tolist()[:3] == [28, 0, 2]
    assert loop_indices(31, 4, 2, 29, "modulo").tolist() == [29, 0, 2, 4]      # modulo keeps the phase ...
    assert loop_indices(31, 4, 2, 29, "restart").tolist() == [29, 0, 2, 4]
    assert loop_indices(31, 4, 2, 30, "modulo").tolist() == [30, 1, 3, 5]
    assert loop_indices(31, 4, 2, 30, "restart").tolist() == [30, 0, 2, 4]     # ... restart does not
    with pytest.raises(ConfigError, match="wrap"):
        loop_indices(30, 4, 1, 0, "bounce")


def test_pace_view_release_rule_on_known_frames(two_stores):
    """Each pace clip of a store of numbered frames is the restart rule from its (uniform) start."""
    from vdgtool.data.views import loop_indices, pace_indices

    a, _ = two_stores  # videos of 10..13 frames, frame f has value 10 f in channel 0
    ds = build_dataset([a], Spec(num_frames=16), train=True, seed=3, transform_options={"normalize": False},
                       views={"pace": {"paces": [1, 2, 3, 4, 5], "start": "any", "wrap": "restart"}})
    starts, labels = set(), set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            it = ds[i]
            got = np.rint(it["pace"]["video"][0].mean(dim=(1, 2)).numpy() * 255 / 10).astype(int)
            r = int(it["pace"]["pace"])
            assert it["pace"]["label"] == r - 1
            n = 10 + i
            assert got.tolist() == loop_indices(n, 16, r, got[0], "restart").tolist()
            starts.add((n, int(got[0]))), labels.add(r)
    assert labels == {1, 2, 3, 4, 5}
    assert any(s > n - 3 for n, s in starts)  # "any" start: late starts occur (the "fit" rule never has them)
    # the default rule is unchanged: start where the clip fits, then the modulo continuation
    rng = np.random.default_rng(0)
    assert pace_indices(40, 8, 2, rng, False).tolist() == list(range(12, 28, 2))
    with pytest.raises(ConfigError, match="start"):
        build_dataset([a], Spec(), train=True, views={"pace": {"start": "late"}})
