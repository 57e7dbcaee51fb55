"""APN model: sizes against the spec, the level algebra, the causal mask, subsets, partial BN, the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vdgtool.errors import ConfigError
from vdgtool.models import create_model
from vdgtool.models.apn import AttentionBlock, CodeLayerNorm, ReluAttention, subset_candidates

torch.set_num_threads(2)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _clip(m, batch=2, seed=0):
    s = m.input_spec
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, s.num_frames, s.size, s.size, generator=g)


# ------------------------------------------------------------------------ sizes (spec §1.5)
def test_parameter_counts_and_shapes_match_spec():
    m = create_model("apn", 12, size=64)  # ResNet-50 (torchvision ImageNet layout), M = 5, D = 256
    assert m.model_name == "apn" and m.num_features == 5 * 256
    assert _count(m.backbone) == 23_508_032  # ResNet-50 trunk without fc
    assert _count(m.frame_fc) == 524_544  # 2048 -> 256
    assert len(m.blocks) == 1 and _count(m.blocks) == 1_645_824  # 3 MHA x 197,888 + 2 FFN x 526,080
    assert _count(m.blocks[0].enc_attn) == 197_888 and _count(m.blocks[0].enc_ffn) == 526_080
    assert _count(m.head) == 15_372  # Linear(1280 -> 12)
    assert _count(m) == 23_508_032 + 524_544 + 1_645_824 + 15_372
    m.eval()
    with torch.no_grad():
        out = m.forward_pyramid(torch.randn(1, 3, 5, 64, 64))
    assert all(out["logits"][k].shape == (1, 12) and out["features"][k].shape == (1, 1280) for k in out["logits"])
    assert {k: v.shape[2] for k, v in out["local"].items()} == {4: 4, 3: 3, 2: 2}
    # unshared blocks: one per call, 1 + 2(M-2) = 7 for M = 5 and 3 for M = 3
    # (the pyramid's sizes do not depend on the backbone: a tiny one keeps the test fast)
    assert _count(create_model("apn:test_resnet", 12, share_blocks=False).blocks) == 7 * 1_645_824
    m3 = create_model("apn:test_resnet", 12, num_frames=3, share_blocks=False, size=64).eval()
    assert len(m3.blocks) == 3 and _count(m3.head) == 768 * 12 + 12
    with torch.no_grad():
        assert m3.forward_features(torch.randn(1, 3, 3, 64, 64)).shape == (1, 768)


def test_options_are_recorded_validated_and_rebuild():
    m = create_model("test_apn", 4, subsets="combinations")
    ck = m.create_kwargs
    assert ck["subsets"] == "combinations" and ck["eval_subsets"] == "fixed" and ck["share_blocks"] is True
    assert ck["feature_dim"] == 32 and ck["frame_dropout"] == 0.8 and ck["backbone"] == "test_resnet"
    again = create_model(m.model_name, 4, **ck)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}
    assert create_model("apn:test_resnet", 3, feature_dim=16, size=32).model_name == "apn:test_resnet"
    for bad, match in (({"subsets": "random"}, "subsets"), ({"num_frames": 2}, "at least 3 segments"),
                       ({"feature_dim": 30}, "multiple of num_heads"), ({"level": "IV"}, "level"),
                       ({"eval_draws": 0}, "eval_draws"), ({"frame_dropout": 1.0}, "probability"),
                       ({"shift_div": 4}, "does not accept")):
        with pytest.raises(ConfigError, match=match):
            create_model("test_apn", 4, **bad)
    with pytest.raises(ConfigError, match="built for 5 segments"):
        m(torch.randn(1, 3, 4, 32, 32))


# ---------------------------------------------------------------- the attention block as coded
def test_attention_block_is_causal_in_its_queries():
    torch.manual_seed(0)
    ab = AttentionBlock(16, heads=4, padding_masks=False).eval()  # the causal mask alone (see below)
    x = torch.randn(2, 3, 16, requires_grad=True)  # keys / values
    y = torch.randn(2, 5, 16, requires_grad=True)  # queries
    out = ab(x, y)
    assert out.shape == (2, 5, 16)
    w = torch.randn(16)  # (a plain sum of a layer-norm output is constant: project on a random direction)
    for t in range(5):
        gx, gy = torch.autograd.grad((out[:, t] * w).sum(), (x, y), retain_graph=True)
        per_pos = gy.abs().sum(dim=(0, 2))
        assert torch.all(per_pos[t + 1:] == 0), (t, per_pos)  # no query after t reaches output t
        assert torch.all(per_pos[:t + 1] > 0), (t, per_pos)
        assert torch.all(gx.abs().sum(dim=(0, 2)) > 0)  # every key position does (encoder is not causal)


def test_attention_internals_follow_the_code():
    x = torch.randn(3, 7)
    ln = CodeLayerNorm(7)
    ref = (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=True, keepdim=True) + 1e-8)
    assert torch.allclose(ln(x), ref, atol=1e-6)
    assert not torch.allclose(ln(x), torch.nn.functional.layer_norm(x, (7,)), atol=1e-3)  # not torch's LN
    torch.manual_seed(1)
    mha = ReluAttention(8, heads=2, dropout=0.0, causal=False).eval()
    q, k = torch.randn(1, 2, 8), torch.randn(1, 4, 8)
    k[0, 2] = torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0])  # a key row that sums to 0: masked
    base = mha(q, k, k)
    k2 = k.clone()
    k2[0, 2] = k2[0, 2] * 4  # still sums to 0: the output cannot change
    assert torch.allclose(mha(q, k2, k2), base, atol=1e-6)
    k3 = k.clone()
    k3[0, 1] += 0.5  # an ordinary key row does change it
    assert not torch.allclose(mha(q, k3, k3), base, atol=1e-4)
    # the query mask fires on layer-norm outputs, whose rows often sum to exactly 0.0 in float32: such
    # a query gets no attention, so its output is LN(query) whatever the keys are
    rows = CodeLayerNorm(8)(torch.randn(4000, 8))
    zero = rows[rows.sum(-1) == 0][:1]
    assert len(zero) == 1  # (about 1 row in 8 at D = 8)
    q2 = torch.cat([zero, torch.randn(1, 8)])[None]
    o1, o2 = mha(q2, k, k), mha(q2, k3, k3)
    assert torch.allclose(o1[0, 0], mha.norm(q2[0, :1])[0], atol=1e-6) and torch.allclose(o1[0, 0], o2[0, 0])
    assert not torch.allclose(o1[0, 1], o2[0, 1], atol=1e-4)
    off = ReluAttention(8, heads=2, dropout=0.0, causal=False, padding_masks=False).eval()
    off.load_state_dict(mha.state_dict())
    assert not torch.allclose(off(q2, k, k)[0, 0], o1[0, 0], atol=1e-4)
    # no output projection: the four parameter tensors of q/k/v + LN are all there is
    assert sorted(n for n, _ in mha.named_parameters()) == [
        "k.bias", "k.weight", "norm.bias", "norm.weight", "q.bias", "q.weight", "v.bias", "v.weight"]


# --------------------------------------------------------------------------- the pyramid levels
def test_level_algebra_on_handmade_features():
    torch.manual_seed(0)
    m = create_model("test_apn", 3).eval()
    f = torch.randn(4, 5, 32)
    subsets = {4: [(0, 1, 2, 3)], 3: [(2, 3, 4)], 2: [(1, 2)]}
    with torch.no_grad():
        rel = m.relations(f, subsets)
        ab = m.blocks[0]
        g = ab(f, f)
        r2 = sum(ab(ab(f[:, list(s)], f[:, list(s)]), g) for s in (subsets[4][0], subsets[3][0], subsets[2][0]))
    assert torch.allclose(rel["global"], g, atol=1e-6)
    assert torch.allclose(rel["II"], r2, atol=1e-5)
    assert torch.allclose(rel["III"], rel["II"] + rel["global"], atol=1e-6)  # R^III = R^II + R^I_Global
    assert rel["III"].shape == rel["II"].shape == (4, 5, 32)
    assert not torch.allclose(rel["II"], rel["global"], atol=1e-3)
    x = _clip(m)
    with torch.no_grad():
        out = m.forward_pyramid(x)
        for lvl in ("III", "II", "global"):
            assert torch.allclose(out["logits"][lvl], m.forward_head(out["features"][lvl]), atol=1e-6)
            assert torch.allclose(out["features"][lvl], out["relations"][lvl].flatten(1))
        assert torch.allclose(m(x), out["logits"]["III"], atol=1e-6)  # forward = level III
        logits, feats = m(x, with_features=True)
        assert torch.allclose(feats, out["features"]["III"], atol=1e-6) and torch.allclose(logits, m(x))
        for lvl in ("II", "global"):
            other = create_model("test_apn", 3, level=lvl).eval()
            other.load_state_dict(m.state_dict())
            assert torch.allclose(other(x), out["logits"][lvl], atol=1e-6)


def test_subset_pools_training_draws_and_deterministic_eval():
    assert [len(subset_candidates(5, k, "consecutive")) for k in (4, 3, 2)] == [2, 3, 4]
    assert [len(subset_candidates(5, k, "combinations")) for k in (4, 3, 2)] == [5, 10, 10]
    assert subset_candidates(5, 3, "consecutive") == [(0, 1, 2), (1, 2, 3), (2, 3, 4)]
    m = create_model("test_apn", 3, subsets="combinations")
    torch.manual_seed(0)
    draws = [m.sample_subsets() for _ in range(30)]
    torch.manual_seed(0)
    assert [m.sample_subsets() for _ in range(30)] == draws  # the torch RNG, so --seed reproduces them
    for k in (4, 3, 2):
        seen = {d[k][0] for d in draws}
        assert len(seen) > 2 and seen <= set(m.candidates[k])
    assert m.eval().sample_subsets() == {4: [(0, 1, 3, 4)], 3: [(0, 2, 4)], 2: [(0, 4)]}
    c = create_model("test_apn", 3).eval()
    assert c.sample_subsets() == {4: [(0, 1, 2, 3)], 3: [(1, 2, 3)], 2: [(1, 2)]}  # centred windows
    x = _clip(m)
    with torch.no_grad():
        torch.manual_seed(1)
        a = m(x)
        torch.manual_seed(2)
        assert torch.equal(a, m(x))  # two eval passes agree whatever the RNG state
        m.train()
        torch.manual_seed(1)
        t1 = m.forward_pyramid(x)
        torch.manual_seed(2)
        t2 = m.forward_pyramid(x)
        assert t1["subsets"] != t2["subsets"]  # (training: drawn; these two seeds draw differently)


def test_mean_eval_averages_cross_relations_over_subsets():
    torch.manual_seed(0)
    # padding_masks=False: with the code's masks a block's output depends on the batch it runs in (float
    # rounding decides whether a layer-norm row sums to exactly 0), and the subsets run as one batch
    m = create_model("test_apn", 3, eval_subsets="mean", eval_draws=3, padding_masks=False).eval()
    subs = m.sample_subsets()
    # 3 evenly spaced candidates per scale, all of them where a scale has at most 3
    assert subs == {4: [(0, 1, 2, 3), (1, 2, 3, 4)], 3: [(0, 1, 2), (1, 2, 3), (2, 3, 4)],
                    2: [(0, 1), (2, 3), (3, 4)]}
    f = torch.randn(2, 5, 32)
    with torch.no_grad():
        rel = m.relations(f, subs)
        ab = m.blocks[0]
        g = ab(f, f)
        expect = g + sum(sum(ab(ab(f[:, list(s)], f[:, list(s)]), g) for s in ss) / len(ss) for ss in subs.values())
    assert torch.allclose(rel["III"], expect, atol=1e-5)
    assert rel["local"][3].shape == (3, 2, 3, 32)
    with pytest.raises(ConfigError, match="distinct frame indices"):
        m.relations(f, {4: [(0, 1, 2, 2)], 3: [(0, 1, 2)], 2: [(0, 1)]})
    with pytest.raises(ConfigError, match="one entry per local scale"):
        m.relations(f, {4: [(0, 1, 2, 3)]})


def test_forward_pyramid_reuses_given_subsets():
    torch.manual_seed(0)
    m = create_model("test_apn", 3)
    x = _clip(m)
    s = m.sample_subsets()  # one training draw, reused (what ADA's reference and ascent passes need)
    m.eval()
    with torch.no_grad():
        a, b = m.forward_pyramid(x, s), m.forward_pyramid(x, s)
        other = {k: [c for c in m.candidates[k] if c != v[0]][:1] for k, v in s.items()}
        c = m.forward_pyramid(x, other)
    assert a["subsets"] == s and torch.equal(a["features"]["III"], b["features"]["III"])
    with torch.no_grad():  # the same through forward (what a DDP wrapper calls)
        assert torch.equal(m(x, pyramid=True, subsets=s)["logits"]["II"], a["logits"]["II"])
    assert torch.equal(a["features"]["global"], c["features"]["global"])  # the global relation uses no subset
    assert not torch.allclose(a["features"]["II"], c["features"]["II"], atol=1e-4)


def test_partial_bn_freezes_all_but_the_first_batchnorm():
    m = create_model("test_apn", 3).train()
    bns = [q for q in m.backbone.modules() if isinstance(q, torch.nn.BatchNorm2d)]
    assert bns[0].training and all(not b.training for b in bns[1:])
    assert all(p.requires_grad for p in bns[0].parameters())
    assert all(not p.requires_grad for b in bns[1:] for p in b.parameters())
    before = [b.running_mean.clone() for b in bns]
    m(_clip(m))
    assert not torch.equal(bns[0].running_mean, before[0])
    assert all(torch.equal(b.running_mean, r) for b, r in zip(bns[1:], before[1:]))
    full = create_model("test_apn", 3, partial_bn=False).train()
    assert all(q.training for q in full.backbone.modules() if isinstance(q, torch.nn.BatchNorm2d))


# ------------------------------------------------------------------------------ with the engine
def test_test_apn_trains_with_the_engine(run_cli, tmp_path):
    from vdgtool.stores import VideoStoreWriter

    rng = np.random.default_rng(0)
    for name, n in (("train", 4), ("val", 2)):
        with VideoStoreWriter(str(tmp_path / f"{name}.h5"), classes=["a", "b"], conventions={"size": 32},
                              encoding="raw") as w:
            for i in range(2 * n):
                fr = rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
                fr[..., 0] = 40 + 120 * (i % 2)
                w.add_video(f"v{i}", fr, index=i, label=i % 2, domain=name, fps=8)
    run = tmp_path / "run"
    code, out, err = run_cli("train", "--data", tmp_path / "train.h5", "--val", tmp_path / "val.h5",
                             "--model", "test_apn", "--model-arg", "subsets=combinations", "--method", "erm",
                             "--epochs", "1", "--batch-size", "4", "--lr", "0.01", "--workers", "0",
                             "-o", run, "--json")
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"] == "test_apn" and cfg["model_kwargs"] == {"subsets": "combinations"}  # as given
    built = cfg["networks"]["model"]["model_kwargs"]  # as created: every option, defaults included
    assert built["subsets"] == "combinations" and built["eval_subsets"] == "fixed" and built["num_frames"] == 5
    res = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    assert np.isfinite(res[-1]["train_loss"]) and "val" in res[-1]["val"]
    evals = []
    for _ in range(2):
        code, out, err = run_cli("eval", run, "--data", tmp_path / "val.h5", "--json")
        assert code == 0, err
        evals.append(json.loads(out))
    assert evals[0] == evals[1]

