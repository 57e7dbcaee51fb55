"""Model registry: shapes, interface, weight loading (incl. pytorch-i3d layout), safety, temporal behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vdgtool.errors import CheckpointError, ConfigError
from vdgtool.models import InputSpec, create_model, list_models, load_state_dict_safely, model_info
from vdgtool.models.tsn import temporal_shift

torch.set_num_threads(2)

TEST_MODELS = ["test_apn", "test_c3d", "test_frame2d", "test_i3d", "test_r3d", "test_trn", "test_tsm", "test_tsn"]


def clip(model, batch=2, seed=0):
    s = model.input_spec
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, s.in_channels, s.num_frames, s.size, s.size, generator=g)


# ------------------------------------------------------------------------------------ registry
def test_list_models_patterns():
    assert list_models("test_*") == TEST_MODELS
    everything = list_models()
    for name in ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s",
                 "swin3d_b", "i3d", "i3d_flow", "tsn", "tsm", "trn", "frame2d"]:
        assert name in everything
    assert list_models("r*") == ["r2plus1d_18", "r3d_18", "resnet3d_18", "resnet3d_50"]
    assert list_models(["swin3d_*", "s3d"]) == ["s3d", "swin3d_b", "swin3d_s", "swin3d_t"]
    assert list_models("nothing_like_this*") == []


def test_model_info_and_unknown_name():
    info = model_info("i3d_flow")
    assert info["family"] == "i3d"
    assert info["input_spec"]["modality"] == "flow" and info["input_spec"]["mean"] == [0.5, 0.5]
    spec = InputSpec.from_dict(model_info("tsm:resnet18")["input_spec"])
    assert spec.sampler == "uniform" and spec.in_channels == 3
    assert model_info("tsm:resnet18")["backbone"] == "resnet18"
    with pytest.raises(ConfigError, match="r3d_18"):
        create_model("r3d_81", 5)  # close-match suggestion
    with pytest.raises(ConfigError, match="takes no backbone"):
        create_model("test_c3d:resnet18", 5)
    with pytest.raises(ConfigError, match="does not accept"):
        create_model("test_tsn", 5, shift_div=4)
    with pytest.raises(ConfigError, match="one"):
        create_model("test_c3d", 5, pretrained=True, weights="x.pt")
    with pytest.raises(ConfigError):
        InputSpec(8, 32, (0.5,) * 3, (0.5,) * 3, sampler="random")


# ------------------------------------------------------------------------ every test model runs
@pytest.mark.parametrize("name", TEST_MODELS)
def test_test_models_forward_backward(name):
    torch.manual_seed(0)
    m = create_model(name, 5)
    assert m.model_name == name and m.num_classes == 5
    x = clip(m)
    feats = m.forward_features(x)
    assert feats.shape == (2, m.num_features)
    logits = m.forward_head(feats)
    assert logits.shape == (2, 5)
    F.cross_entropy(logits, torch.tensor([0, 3])).backward()
    head = list(m.classifier_parameters())
    body = list(m.backbone_parameters())
    assert {id(p) for p in head}.isdisjoint({id(p) for p in body})
    assert len(head) + len(body) == len(list(m.parameters()))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head)
    assert sum(p.grad.abs().sum().item() for p in body if p.grad is not None) > 0
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m(x), m.forward_head(m.forward_features(x)), atol=1e-5)
        m.reset_classifier(7)
        assert m(x).shape == (2, 7) and m.num_classes == 7
        assert next(iter(m.get_classifier().parameters())).shape[0] == 7


@pytest.mark.parametrize("name", ["test_tsn", "test_tsm", "test_frame2d"])
def test_forward_frames_average_is_forward(name):
    m = create_model(name, 4).eval()
    x = clip(m)
    with torch.no_grad():
        per_frame = m.forward_frames(x)
        assert per_frame.shape == (2, m.input_spec.num_frames, 4)
        assert torch.allclose(per_frame.mean(1), m(x), atol=1e-5)


def test_backbone_forms_and_other_timm_families():
    a = create_model("tsm:test_resnet", 3)
    b = create_model("tsm", 3, backbone="test_resnet", num_frames=4, size=32)
    assert a.model_name == b.model_name == "tsm:test_resnet"
    assert sorted(a.state_dict()) == sorted(b.state_dict())
    assert b.create_kwargs["backbone"] == "test_resnet"
    assert "layer1.0.conv1.net.weight" in "".join(a.state_dict())  # shift wraps the residual branch
    c = create_model("tsm:test_convnext", 3, num_frames=4, size=32)
    assert sum(type(q).__name__ == "TemporalShift" for q in c.modules()) > 0
    c(torch.randn(1, 3, 4, 32, 32)).sum().backward()
    with pytest.raises(ConfigError, match="no residual block"):
        create_model("tsm:test_vit", 3)
    with pytest.raises(ConfigError, match="unknown timm backbone"):
        create_model("tsn:resnet_does_not_exist", 3)
    t = create_model("trn:test_efficientnet", 3, num_frames=4, size=32)
    assert t(torch.randn(1, 3, 4, 32, 32)).shape == (1, 3)
    with pytest.raises(ConfigError, match="built for 4 frames"):
        t(torch.randn(1, 3, 6, 32, 32))


def test_flow_channels_and_wrong_input():
    m = create_model("test_c3d", 3, in_channels=2)
    assert m.input_spec.modality == "flow" and m.input_spec.mean == (0.5, 0.5)
    assert m(torch.randn(1, 2, 8, 32, 32)).shape == (1, 3)
    r = create_model("test_r3d", 3, in_channels=2)
    assert r.stem[0].weight.shape[1] == 2 and r(torch.randn(1, 2, 4, 32, 32)).shape == (1, 3)
    t = create_model("test_tsn", 3, in_channels=2)
    assert t.input_spec.modality == "flow" and t(torch.randn(1, 2, 4, 32, 32)).shape == (1, 3)
    with pytest.raises(ConfigError, match="expects input"):
        m(torch.randn(1, 3, 8, 32, 32))


# -------------------------------------------------------------------------- torchvision family
@pytest.mark.parametrize("name,features", [("r2plus1d_18", 512), ("s3d", 1024)])
def test_torchvision_nets_keep_torchvision_keys(name, features):
    from torchvision.models import get_model

    m = create_model(name, 6)
    assert m.num_features == features
    ref = get_model(name, num_classes=6).state_dict()  # torchvision's own layout, 6 classes
    assert sorted(m.state_dict()) == sorted(ref)
    assert all(m.state_dict()[k].shape == v.shape for k, v in ref.items())


def test_torchvision_real_net_trains_on_tiny_clip():
    m = create_model("mc3_18", 4, dropout=0.5)
    F.cross_entropy(m(torch.randn(2, 3, 4, 32, 32)), torch.tensor([1, 2])).backward()
    assert m.fc.weight.grad.abs().sum() > 0 and m.stem[0].weight.grad.abs().sum() > 0


def test_s3d_short_clip_is_a_config_error():
    with pytest.raises(ConfigError, match="13 frames"):
        create_model("s3d", 5, num_frames=8)
    m = create_model("s3d", 5).eval()
    with pytest.raises(ConfigError, match="pooling window"), torch.no_grad():
        m(torch.randn(1, 3, 8, 64, 64))


@pytest.mark.slow
def test_transformer_video_nets():
    s = create_model("swin3d_t", 3)
    assert s(torch.randn(1, 3, 4, 64, 64)).shape == (1, 3) and s.num_features == 768
    v = create_model("mvit_v2_s", 3)
    with pytest.raises(ConfigError, match="16 frames at 224"):
        v(torch.randn(1, 3, 8, 224, 224))
    with pytest.raises(ConfigError, match="16 frames at 224"):
        create_model("mvit_v1_b", 3, num_frames=8)


# ---------------------------------------------------------------------------------------- I3D
MIXED = ["Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c"]


def pytorch_i3d_keys() -> list[str]:
    """The pytorch-i3d state-dict layout, written out independently of vdgtool's code."""
    units = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
    units += [f"{m}.{b}" for m in MIXED for b in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")]
    keys = [f"{u}.{p}" for u in units
            for p in ("conv3d.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")]
    return keys + ["logits.conv3d.weight", "logits.conv3d.bias"]


@pytest.fixture(scope="module")
def i3d_400():
    return create_model("i3d", 400)


def test_i3d_key_layout_and_published_shapes(i3d_400, tmp_path):
    sd = i3d_400.state_dict()
    assert {k for k in sd if not k.endswith("num_batches_tracked")} == set(pytorch_i3d_keys())
    assert sd["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["Conv3d_2c_3x3.conv3d.weight"].shape == (192, 64, 3, 3, 3)
    assert sd["Mixed_3b.b1b.conv3d.weight"].shape == (128, 96, 3, 3, 3)
    assert sd["Mixed_4b.b0.conv3d.weight"].shape == (192, 480, 1, 1, 1)
    assert sd["Mixed_5c.b3b.conv3d.weight"].shape == (128, 832, 1, 1, 1)
    assert sd["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    bn = i3d_400.Mixed_4c.b2b.bn
    assert bn.eps == pytest.approx(1e-3) and bn.momentum == pytest.approx(0.01)


def test_i3d_loads_pytorch_i3d_checkpoint_and_replaces_logits(i3d_400, tmp_path):
    g = torch.Generator().manual_seed(1)
    shapes = {k: v.shape for k, v in i3d_400.state_dict().items()}
    # an old-style file: no num_batches_tracked, 400 Kinetics classes
    ckpt = {k: torch.randn(shapes[k], generator=g) for k in pytorch_i3d_keys()}
    for k in ckpt:
        if k.endswith("running_var"):
            ckpt[k] = ckpt[k].abs() + 0.5
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(ckpt, path)
    same = create_model("i3d", 400, weights=path)
    for k in ("Conv3d_1a_7x7.conv3d.weight", "Mixed_4e.b1b.bn.running_mean", "logits.conv3d.bias"):
        assert torch.equal(same.state_dict()[k], ckpt[k])
    ten = create_model("i3d", 10, weights=path)
    assert torch.equal(ten.state_dict()["Mixed_5c.b0.conv3d.weight"], ckpt["Mixed_5c.b0.conv3d.weight"])
    assert ten.logits.conv3d.weight.shape == (10, 1024, 1, 1, 1)
    same.replace_logits(7)
    assert same.logits.conv3d.weight.shape == (7, 1024, 1, 1, 1)
    assert torch.equal(same.state_dict()["Mixed_3c.b0.conv3d.weight"], ckpt["Mixed_3c.b0.conv3d.weight"])
    with pytest.raises(CheckpointError, match="Conv3d_1a_7x7"):  # rgb weights into the 2-channel flow net
        create_model("i3d_flow", 400, weights=path)
    flow = create_model("i3d_flow", 400)
    assert flow.Conv3d_1a_7x7.conv3d.weight.shape == (64, 2, 7, 7, 7)


def test_i3d_same_padding_gives_published_feature_map():
    m = create_model("test_i3d", 3).eval()
    assert set(m.state_dict()) == set(create_model("i3d", 3).state_dict())  # same keys, thinner
    with torch.no_grad():
        fmap = m.forward_feature_map(torch.randn(1, 3, 16, 224, 224))
    # I3D downsamples time by 8 and space by 32 (64 x 224^2 -> 8 x 7^2 in the paper)
    assert fmap.shape[2:] == (2, 7, 7)
    with torch.no_grad():
        assert m.forward_feature_map(torch.randn(1, 3, 8, 32, 32)).shape[2:] == (1, 1, 1)


def test_i3d_st_i2v_per_time_logits():
    torch.manual_seed(0)
    m = create_model("test_i3d", 5, variant="st-i2v", dropout=0.5)
    # the pools 4a / 5a keep time: a 16-frame clip leaves T' = 8 steps (Conv3d_1a halves time), the
    # default I3D leaves 2 (see the test above)
    assert m.MaxPool3d_4a_3x3.stride == (1, 2, 2) and m.MaxPool3d_5a_2x2.stride == (1, 2, 2)
    assert create_model("test_i3d", 5).MaxPool3d_4a_3x3.stride == (2, 2, 2)
    x = torch.randn(2, 3, 16, 32, 32)
    out = m.forward_per_time(x)
    assert out.logits.shape == (2, 5, 16) and out.features.shape == (2, m.num_features, 8)
    assert m.forward_per_time(x, length=32).logits.shape == (2, 5, 32)
    m.eval()
    with torch.no_grad():
        out = m.forward_per_time(x)
        torch.testing.assert_close(out.logits.mean(-1), m(x), rtol=1e-5, atol=1e-6)  # forward = the time mean
        step = m.logits(out.features[..., None, None]).flatten(2)                     # the 1x1x1 conv per step
        torch.testing.assert_close(F.interpolate(step, size=16, mode="linear"), out.logits)
    # the options travel in create_kwargs: a checkpoint rebuilds the same architecture
    again = create_model(m.model_name, 5, **m.create_kwargs)
    assert again.variant == "st-i2v" and again.MaxPool3d_5a_2x2.stride == (1, 2, 2)
    assert "variant" not in create_model("test_i3d", 5).create_kwargs  # the default model is unchanged
    with pytest.raises(ConfigError, match="variant"):
        create_model("test_i3d", 5, variant="st_i3d")
    with pytest.raises(ConfigError, match="Mixed_4z"):
        create_model("test_i3d", 5, freeze_before="Mixed_4z")


def test_i3d_frozen_endpoints_get_no_gradient_but_update_bn_statistics():
    torch.manual_seed(0)
    m = create_model("test_i3d", 4, variant="st-i2v", freeze_before="Mixed_4b", in_channels=2)
    assert m.frozen_endpoints[0] == "Conv3d_1a_7x7" and m.frozen_endpoints[-1] == "MaxPool3d_4a_3x3"
    frozen = [p for n in m.frozen_endpoints for p in getattr(m, n).parameters()]
    before = {k: v.clone() for k, v in m.state_dict().items() if "running_mean" in k}
    m.train()
    m.forward_per_time(torch.randn(3, 2, 8, 32, 32)).logits.sum().backward()
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
    assert m.Mixed_4b.b0.conv3d.weight.grad is not None and m.logits.conv3d.weight.grad is not None
    after = m.state_dict()
    for k in ("Conv3d_1a_7x7.bn.running_mean", "Mixed_3c.b1b.bn.running_mean", "Mixed_5c.b0.bn.running_mean"):
        assert not torch.equal(before[k], after[k]), k  # BN statistics move, frozen or not
    m.eval()
    with torch.no_grad():
        m(torch.randn(3, 2, 8, 32, 32))
    assert torch.equal(after["Conv3d_1a_7x7.bn.running_mean"], m.state_dict()["Conv3d_1a_7x7.bn.running_mean"])
    # everything trainable is outside the frozen part, so an optimiser over requires_grad params skips it
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert trainable and not trainable & {id(p) for p in frozen}


def test_i3d_st_i2v_loads_pytorch_i3d_checkpoint(i3d_400, tmp_path):
    g = torch.Generator().manual_seed(2)
    shapes = {k: v.shape for k, v in i3d_400.state_dict().items()}
    ckpt = {k: torch.randn(shapes[k], generator=g) for k in pytorch_i3d_keys()}
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(ckpt, path)
    m = create_model("i3d", 13, weights=path, variant="st-i2v", freeze_before="Mixed_4b", dropout=0.5)
    sd = m.state_dict()
    for k in ("Conv3d_1a_7x7.conv3d.weight", "Mixed_3c.b2b.bn.running_var", "Mixed_5c.b3b.conv3d.weight"):
        assert torch.equal(sd[k], ckpt[k])
    assert m.logits.conv3d.weight.shape == (13, 1024, 1, 1, 1) and m.create_kwargs["freeze_before"] == "Mixed_4b"


# -------------------------------------------------------------------------------- weights I/O
def test_weights_roundtrip_wrappers_and_class_change(tmp_path):
    torch.manual_seed(0)
    m = create_model("test_c3d", 5).eval()
    m.features[0][1].running_mean.uniform_(-1, 1)  # non-default buffers must travel too
    x = clip(m)
    wrapped = tmp_path / "ckpt.pt"
    torch.save({"model": m.state_dict(), "epoch": 3, "classes": ["a", "b"]}, wrapped)
    ddp = tmp_path / "ddp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in m.state_dict().items()}}, ddp)
    for path in (wrapped, ddp):
        m2 = create_model("test_c3d", 5, weights=path).eval()
        with torch.no_grad():
            assert torch.equal(m(x), m2(x))
    assert set(load_state_dict_safely(ddp)) == set(m.state_dict())
    other = create_model("test_c3d", 9, weights=wrapped)
    assert other.fc.weight.shape == (9, 96)
    assert torch.equal(other.features[2][0].weight, m.features[2][0].weight)
    with pytest.raises(CheckpointError, match="does not fit"):
        create_model("test_tsn", 5, weights=wrapped)


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_safely(tmp_path / "missing.pt")
    good = tmp_path / "good.pt"
    torch.save(create_model("test_c3d", 2).state_dict(), good)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_state_dict_safely(broken)
    empty = tmp_path / "meta.pt"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(CheckpointError, match="no tensors"):
        load_state_dict_safely(empty)


class _Payload:
    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_unsafe_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "executed"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "unsafe.pt"
    torch.save({"model": create_model("test_c3d", 2).state_dict(), "extra": payload}, path)
    with pytest.raises(CheckpointError, match="never unpickles arbitrary code"):
        create_model("test_c3d", 2, weights=path)
    assert not marker.exists()


# -------------------------------------------------------------------- temporal behaviour facts
def test_tsn_is_frame_order_invariant():
    m = create_model("test_tsn", 6).eval()
    x = clip(m)
    perm = torch.randperm(x.shape[2], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y, y_perm, y_other = m(x), m(x[:, :, perm]), m(clip(m, seed=1))
    assert torch.allclose(y, y_perm, atol=1e-5)
    assert not torch.allclose(y, y_other, atol=1e-3)  # the model is not just constant


def test_tsm_shift_mixes_time():
    x = torch.arange(2 * 4 * 16, dtype=torch.float32).reshape(2 * 4, 16, 1, 1)  # 2 clips x 4 frames
    out = temporal_shift(x, 4, 8).reshape(2, 4, 16)
    v = x.reshape(2, 4, 16)
    assert torch.equal(out[:, :3, :2], v[:, 1:, :2]) and (out[:, 3, :2] == 0).all()
    assert torch.equal(out[:, 1:, 2:4], v[:, :3, 2:4]) and (out[:, 0, 2:4] == 0).all()
    assert torch.equal(out[:, :, 4:], v[:, :, 4:])
    # timm zero-initialises each block's last BN (residual branch = 0 at init): switch that off so the
    # shifted branch contributes, as it does after any training
    m = create_model("test_tsm", 6, backbone_kwargs={"zero_init_last": False}).eval()
    x = clip(m)
    with torch.no_grad():
        assert not torch.allclose(m(x), m(x.flip(2)), atol=1e-4)
        for mod in m.modules():  # without the shift the same network is order invariant
            if type(mod).__name__ == "TemporalShift":
                mod.shift_div = 10 ** 6  # fold = 0 channels
        assert torch.allclose(m(x), m(x.flip(2)), atol=1e-5)


def test_trn_is_order_sensitive_and_deterministic_in_eval():
    m = create_model("test_trn", 4).eval()
    x = clip(m)
    with torch.no_grad():
        assert torch.equal(m(x), m(x))
        assert not torch.allclose(m(x), m(x.flip(2)), atol=1e-4)
    with pytest.raises(ConfigError, match="per-frame"):
        m.forward_frames(x)


def _direction_clips(n, gen, frames=8, size=32):
    """A bright square moving right (class 0) or the same clip played backwards (class 1)."""
    x = torch.rand(n, 3, 1, 1, 1, generator=gen).expand(n, 3, frames, size, size).clone() * 0.3
    for i in range(n):
        r0 = int(torch.randint(4, size - 12, (1,), generator=gen))
        for t in range(frames):
            c = 2 + 3 * t
            x[i, :, t, r0:r0 + 8, c:c + 8] = 1.0
    y = torch.randint(0, 2, (n,), generator=gen)
    x[y == 1] = x[y == 1].flip(2)
    return (x - 0.5) / 0.25, y


def test_c3d_learns_motion_direction_that_frame_models_cannot_see():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    m = create_model("test_c3d", 2)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(25):
        x, y = _direction_clips(16, gen)
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    x, y = _direction_clips(64, gen)
    m.eval()
    with torch.no_grad():
        acc = (m(x).argmax(1) == y).float().mean().item()
        tsn = create_model("test_tsn", 2, num_frames=8, size=32).eval()
        # the two classes hold identical frame sets, so a frame-order-invariant model cannot separate them
        assert torch.allclose(tsn(x[y == 0].flip(2)), tsn(x[y == 0]), atol=1e-5)
    assert acc >= 0.9, acc


# ------------------------------------------------------------ pretrained paths (no download)
def test_pretrained_uses_torchvision_weights_api(monkeypatch):
    import torchvision.models as tvm

    seen = {}
    real_get_model = tvm.get_model

    def fake_get_model(name, weights=None, **kw):  # build the net, skip the download
        seen["weights"] = weights
        return real_get_model(name, weights=None, num_classes=len(weights.meta["categories"]), **kw)

    monkeypatch.setattr(tvm, "get_model", fake_get_model)
    m = create_model("mc3_18", 7, pretrained=True)
    assert seen["weights"] == tvm.get_model_weights("mc3_18").KINETICS400_V1
    assert m.fc.out_features == 7 and m.num_classes == 7


def test_pretrained_uses_timm_only_when_asked(monkeypatch):
    import timm

    calls = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **kw: (
        calls.append((name, pretrained)), real(name, pretrained=False, **kw))[1])
    create_model("tsn:test_resnet", 3)
    create_model("tsm:test_resnet", 3, pretrained=True)
    assert calls == [("test_resnet", False), ("test_resnet", True)]
    with pytest.raises(ConfigError, match="not downloaded"):
        create_model("i3d", 3, pretrained=True)


# ------------------------------------------------------------------ DRL paper models (issue 14)
def test_hara_3d_resnet_differs_from_torchvision_r3d_in_the_stem_only(tmp_path):
    hara = create_model("resnet3d_18", num_classes=5, num_frames=8, size=32).eval()
    tv = create_model("r3d_18", num_classes=5, num_frames=8, size=32)
    assert hara.stem[0].kernel_size == (7, 7, 7) and isinstance(hara.stem[3], torch.nn.MaxPool3d)
    assert tv.stem[0].kernel_size == (3, 7, 7) and len(tv.stem) == 3
    a, b = hara.state_dict(), tv.state_dict()
    assert set(a) == set(b) and [k for k in a if a[k].shape != b[k].shape] == ["stem.0.weight"]
    assert model_info("resnet3d_18")["input_spec"]["mean"] == [0.485, 0.456, 0.406]  # ImageNet, as released
    assert model_info("resnet3d_18")["input_spec"]["num_frames"] == 16
    with torch.no_grad():
        assert hara(clip(hara)).shape == (2, 5)
    # a checkpoint in Hara's / the DRL release's layout (DataParallel prefix, 'head' classifier) loads as it is
    rename = {"stem.0.weight": "conv1.weight"}
    sd = {}
    for k, v in a.items():
        k2 = rename.get(k, k)
        k2 = k2.replace("stem.1.", "bn1.").replace("fc.", "head.")
        for z in ("1", "2", "3"):
            k2 = k2.replace(f".conv{z}.0.", f".conv{z}.").replace(f".conv{z}.1.", f".bn{z}.")
        sd["module." + k2] = v + 0.5 if v.is_floating_point() else v
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "hara.pth")
    m = create_model("resnet3d_18", num_classes=5, num_frames=8, size=32, weights=str(tmp_path / "hara.pth"))
    assert all(torch.equal(m.state_dict()[k], a[k] + 0.5) for k in a if a[k].is_floating_point())
    with pytest.raises(ConfigError, match="--weights"):
        create_model("resnet3d_50", num_classes=5, pretrained=True)


@pytest.mark.slow
def test_hara_3d_resnet_50():
    m = create_model("resnet3d_50", num_classes=5, num_frames=8, size=32).eval()
    assert m.num_features == 2048 and m.stem[0].kernel_size == (7, 7, 7)
    with torch.no_grad():
        assert m(clip(m, batch=1)).shape == (1, 5)


def test_tsm_dense_sampling_option():
    from vdgtool.data.samplers import DenseSampler, build_sampler

    m = create_model("test_tsm", num_classes=3, sampler="dense")
    assert m.input_spec.sampler == "dense" and m.create_kwargs["sampler"] == "dense"
    assert isinstance(build_sampler(m.input_spec, True), DenseSampler)
    assert create_model("test_tsm", num_classes=3).input_spec.sampler == "uniform"
    with pytest.raises(ConfigError, match="sampler"):
        create_model("test_tsm", num_classes=3, sampler="sparse")
