"""Dynamic scores (`vdgtool score`): KL properties, perturbations, the facts the paper relies on, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vdgtool.evaluate.dynamic import (build_spatial_student, distill_score, dynamic_score, freeze_frames,
                                      kl_divergence, label_kl, perturbation_score, random_permutations,
                                      shuffle_frames, split_indices)
from vdgtool.models import create_model
from vdgtool.stores import VideoStoreWriter
from vdgtool.train.checkpoint import save_checkpoint

torch.set_num_threads(1)
CLASSES = ["a", "b", "c"]


def _store(path, n_per_class=3, frames=8, size=32, seed=0, static=False, domain="real"):
    """Random clips with a per-class colour cue; ``static=True``: every clip is one frame repeated."""
    rng = np.random.default_rng(seed)
    with VideoStoreWriter(str(path), classes=CLASSES, conventions={"size": size}, encoding="raw") as w:
        k = 0
        for c in range(len(CLASSES)):
            for _ in range(n_per_class):
                fr = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
                if static:
                    fr[:] = fr[0]
                fr[..., c] = 60 + 50 * c
                w.add_video(f"v{k}", fr, index=k, label=c, domain=domain, fps=8)
                k += 1
    return str(path)


def _ckpt(path, model_name="test_c3d", seed=0):
    torch.manual_seed(seed)
    m = create_model(model_name, num_classes=len(CLASSES))
    cfg = {"model": model_name, "class_names": CLASSES, "input_spec": m.input_spec.to_dict(), "model_kwargs": {}}
    save_checkpoint(str(path), {"model": m.state_dict(), "config": cfg})
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    return {"moving": _store(d / "moving.h5"), "static": _store(d / "static.h5", static=True, seed=1),
            "c3d": _ckpt(d / "c3d.pt"), "tsn": _ckpt(d / "tsn.pt", "test_tsn"), "dir": d}


# -- divergences and perturbations -----------------------------------------------------------------
def test_kl_matches_torch_is_nonnegative_and_zero_on_equal_rows():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(64, 7, generator=g) * 3, torch.randn(64, 7, generator=g) * 3
    kl = kl_divergence(p, q)
    ref = F.kl_div(F.log_softmax(q.double(), -1), F.log_softmax(p.double(), -1), reduction="none",
                   log_target=True).sum(-1)
    torch.testing.assert_close(kl, ref)
    assert (kl > 0).all()
    assert torch.equal(kl_divergence(p, p), torch.zeros(64, dtype=torch.float64))
    # labels as the reference distribution: KL(onehot(y) || q) = -log q_y, NaN for unlabelled clips
    y = torch.tensor([0, 3, -1])
    lk = label_kl(y, q[:3])
    torch.testing.assert_close(lk[:2], -F.log_softmax(q[:2].double(), -1)[[0, 1], [0, 3]])
    assert torch.isnan(lk[2])


def test_freeze_frames_repeats_the_chosen_frame():
    x = torch.arange(2 * 1 * 5 * 2 * 2, dtype=torch.float32).view(2, 1, 5, 2, 2)
    for frame, j in (("first", 0), ("middle", 2)):
        xf = freeze_frames(x, frame)
        assert torch.equal(xf, x[:, :, j:j + 1].expand_as(x))
    xf = freeze_frames(x, index=torch.tensor([4, 1]))
    assert torch.equal(xf[0], x[0, :, 4:5].expand_as(x[0])) and torch.equal(xf[1], x[1, :, 1:2].expand_as(x[1]))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(freeze_frames(x, "random", g1), freeze_frames(x, "random", g2))


def test_shuffle_per_clip_and_per_batch():
    b, t = 6, 4
    x = torch.arange(t, dtype=torch.float32).view(1, 1, t, 1, 1).expand(b, 2, t, 3, 3).contiguous()
    g = torch.Generator().manual_seed(0)
    xs = shuffle_frames(x, "clip", g)
    orders = xs[:, 0, :, 0, 0].long()
    for o in orders:  # every clip: a permutation of its frames, never the identity
        assert sorted(o.tolist()) == list(range(t)) and o.tolist() != list(range(t))
    assert len({tuple(o.tolist()) for o in orders}) > 1  # not one shared permutation (6 draws of 23)
    xb = shuffle_frames(x, "batch", g)
    ob = xb[:, 0, :, 0, 0].long()
    assert all(torch.equal(ob[0], o) for o in ob) and ob[0].tolist() != list(range(t))
    with pytest.raises(Exception, match="permutation mode"):
        random_permutations(2, 3, "video")


# -- facts the paper relies on -------------------------------------------------------------------------
def test_tsn_average_consensus_has_zero_shuffle_score_and_a_3d_cnn_does_not(data):
    from vdgtool.data import build_dataset

    tsn = create_model("test_tsn", num_classes=3)
    c3d = create_model("test_c3d", num_classes=3)
    ds_t = build_dataset([data["moving"]], tsn.input_spec, False, class_names=CLASSES)
    ds_c = build_dataset([data["moving"]], c3d.input_spec, False, class_names=CLASSES)
    r_tsn = perturbation_score(tsn, ds_t, method="shuffle", batch_size=4)
    r_c3d = perturbation_score(c3d, ds_c, method="shuffle", batch_size=4)
    assert r_tsn["n"] == 9 and r_tsn["score"] < 1e-12 and r_tsn["agreement"] == 1.0
    assert r_c3d["score"] > 1e-9  # order-sensitive model: the same code reports a positive score
    assert all(k >= 0 for k in r_c3d["per_clip"]["kl"])


def test_identical_frames_give_zero_freeze_score(data):
    from vdgtool.data import build_dataset

    m = create_model("test_c3d", num_classes=3)
    for frame in ("first", "middle", "random"):
        ds = build_dataset([data["static"]], m.input_spec, False, class_names=CLASSES)
        r = perturbation_score(m, ds, method="freeze", frame=frame, batch_size=4, seed=1)
        assert r["score"] == 0.0 and max(r["per_clip"]["kl"]) == 0.0 and r["agreement"] == 1.0
    ds = build_dataset([data["moving"]], m.input_spec, False, class_names=CLASSES)
    r = perturbation_score(m, ds, method="freeze", batch_size=4)
    assert r["score"] > 0 and min(r["per_clip"]["kl"]) >= 0
    assert set(r["per_class"]) == set(CLASSES) and sum(v["n"] for v in r["per_class"].values()) == 9
    np.testing.assert_allclose(np.mean([v["score"] for v in r["per_class"].values()]), r["score"], rtol=1e-9)


def test_label_target_is_cross_entropy_of_the_perturbed_prediction(data):
    from vdgtool.data import build_dataset
    from vdgtool.evaluate.predict import make_loader

    m = create_model("test_c3d", num_classes=3).eval()
    ds = build_dataset([data["moving"]], m.input_spec, False, class_names=CLASSES)
    r = perturbation_score(m, ds, method="freeze", frame="first", target="labels", batch_size=4)
    batch = next(iter(make_loader(ds, 9, 0)))
    with torch.no_grad():
        lt = m(batch["video"][:, :, :1].expand_as(batch["video"]))
    ce = F.cross_entropy(lt.double(), torch.as_tensor(batch["label"]), reduction="none").numpy()
    np.testing.assert_allclose(r["per_clip"]["kl"], ce, rtol=1e-5)


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(3), 4)
    tr, he = split_indices(12, 0.5, 0, labels)
    assert len(set(tr) & set(he)) == 0 and len(tr) + len(he) == 12
    assert sorted(np.bincount(labels[he]).tolist()) == [2, 2, 2]
    assert np.array_equal(split_indices(12, 0.5, 0, labels)[1], he)
    assert not np.array_equal(split_indices(12, 0.5, 1, labels)[1], he)


def test_spatial_student_is_order_invariant_and_renormalises():
    from vdgtool.models.registry import InputSpec

    spec = InputSpec(num_frames=4, size=32, mean=(0.2, 0.3, 0.4), std=(0.3, 0.2, 0.25))
    s = build_spatial_student("test_frame2d", 3, spec).eval()
    own = s.net.input_spec
    assert s.renorm  # the student's own convention differs from the video model's
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        a, b = s(x), s(shuffle_frames(x, "clip", torch.Generator().manual_seed(0)))
        pix = x * torch.tensor(spec.std).view(1, 3, 1, 1, 1) + torch.tensor(spec.mean).view(1, 3, 1, 1, 1)
        ref = s.net((pix - torch.tensor(own.mean).view(1, 3, 1, 1, 1)) / torch.tensor(own.std).view(1, 3, 1, 1, 1))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, ref, atol=1e-5, rtol=1e-5)
    t = build_spatial_student("timm:test_resnet", 3, spec).eval()
    with torch.no_grad():
        assert t(x).shape == (2, 3)


def test_distill_score_with_split_and_with_labels(data):
    from vdgtool.data import build_dataset

    m = create_model("test_c3d", num_classes=3)
    ds = build_dataset([data["moving"]], m.input_spec, False, class_names=CLASSES)
    r = distill_score(m, ds, holdout=1 / 3, student="timm:test_resnet", student_pretrained=False, epochs=2,
                      batch_size=3, seed=0)
    assert r["n"] == 3 and r["student_train"]["n"] == 6  # one clip per class held out
    assert r["score"] >= 0 and 0 <= r["agreement"] <= 1 and min(r["per_clip"]["kl"]) >= 0
    # dataset static bias (Eq. 5): no video model at all; the colour cue makes the labels spatial
    rl = distill_score(None, ds, holdout=1 / 3, student="timm:test_resnet", student_pretrained=False, epochs=8,
                       lr=3e-3, batch_size=3, target="labels", spec=m.input_spec, protocol="fast")
    assert rl["target"] == "labels" and rl["acc_video"] is None
    assert (rl["protocol"], rl["student_train"]["optimizer"], rl["student_train"]["teacher"]) == ("fast", "adamw", "cached")
    chance = float(np.log(3))
    assert rl["score"] < chance  # better than a uniform guess: a spatial student can read the colour cue


# -- library entry point and CLI -------------------------------------------------------------------------
def test_dynamic_score_is_seeded(data):
    a = dynamic_score(data["c3d"], [data["moving"]], method="freeze", frame="random", seed=3, batch_size=4)
    b = dynamic_score(data["c3d"], [data["moving"]], method="freeze", frame="random", seed=3, batch_size=4)
    c = dynamic_score(data["c3d"], [data["moving"]], method="freeze", frame="random", seed=4, batch_size=4)
    assert a["per_clip"]["kl"] == b["per_clip"]["kl"] != c["per_clip"]["kl"]
    assert a["checkpoint"].endswith("c3d.pt")


def test_cli_score_json_table_and_errors(data, run_cli, tmp_path):
    code, out, err = run_cli("score", "--method", "shuffle", data["tsn"], "--data", data["moving"], "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["method"] == "shuffle" and r["permute"] == "batch" and r["n"] == 9 and r["score"] < 1e-9
    assert "per_clip" not in r and set(r["per_class"]) == set(CLASSES)
    code, out, err = run_cli("score", data["c3d"], "--data", data["static"], "--data", data["moving"])
    assert code == 0, err
    assert "score (nats)" in out and "agreement" in out and "class" in out
    code, out, err = run_cli("score", str(tmp_path / "nope.pt"), "--data", data["moving"])
    assert code == 1 and "does not exist" in err and "Traceback" not in err
    code, out, err = run_cli("score", "--method", "freeze", "--data", data["moving"])
    assert code == 1 and "no checkpoint" in err
    code, out, err = run_cli("score", data["c3d"], "--data", data["moving"], "--method", "nope")
    assert code == 2
    code, out, err = run_cli("score", data["c3d"], "--method", "distill", "--data", data["moving"], "--heldout",
                             data["static"], "--student-data", data["static"])
    assert code == 1 and "--student-data" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_distill_and_every_family(data, run_cli):
    code, out, err = run_cli("score", "--method", "distill", data["c3d"], "--data", data["moving"], "--student",
                             "test_frame2d", "--student-scratch", "--student-epochs", "2", "--holdout", "0.34", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["student"] == "test_frame2d" and r["n"] == 3 and r["score"] >= 0
    for name in ("test_r3d", "test_i3d", "test_tsm", "test_trn"):
        ck = _ckpt(data["dir"] / f"{name}.pt", name)
        for method in ("freeze", "shuffle"):
            code, out, err = run_cli("score", "--method", method, ck, "--data", data["moving"], "--json")
            assert code == 0, (name, err)
            assert json.loads(out)["score"] >= 0


# -- issue 14: recorded stores, the paper protocol, views, students --------------------------------------
def _run_ckpt(path, train, val, model_name="test_c3d"):
    """A checkpoint whose config records its stores, as `vdgtool train` writes it."""
    torch.manual_seed(0)
    m = create_model(model_name, num_classes=len(CLASSES))
    cfg = {"model": model_name, "class_names": CLASSES, "input_spec": m.input_spec.to_dict(), "model_kwargs": {},
           "data": [str(train)], "val": [str(val)], "scale_min": 0.6, "flip": False}
    save_checkpoint(str(path), {"model": m.state_dict(), "config": cfg})
    return str(path)


def test_score_eval_features_without_data_use_the_recorded_stores(data, run_cli, tmp_path):
    train, val = _store(tmp_path / "train.h5", seed=3), _store(tmp_path / "val.h5", n_per_class=2, seed=4)
    ck = _run_ckpt(tmp_path / "run.pt", train, val)
    code, out, err = run_cli("score", ck, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["data"] == [val] and r["data_source"] == "recorded validation store" and r["n"] == 6
    assert val in err and r["frame"] == "first"  # which store, on stderr; the release's frame
    code, out, err = run_cli("eval", ck, "--json")
    assert code == 0 and json.loads(out)["data"] == [val] and json.loads(out)["n"] == 6, err
    code, out, err = run_cli("features", ck, "-o", tmp_path / "f.h5", "--json")
    assert code == 0 and json.loads(out)["data"] == [val] and json.loads(out)["rows"] == 6, err
    os.remove(val)  # the validation store is gone: the training store
    code, out, err = run_cli("score", ck, "--json")
    assert code == 0 and json.loads(out)["data"] == [train] and "training store" in err
    os.remove(train)  # every recorded store is gone: one line naming --data
    for verb in (["score", ck], ["eval", ck], ["features", ck, "-o", tmp_path / "g.h5"]):
        code, out, err = run_cli(*verb)
        assert code == 1 and "--data" in err and "exists any more" in err and "Traceback" not in err, verb
        assert len(err.strip().splitlines()) == 1, err


def test_distill_paper_protocol_trains_on_the_runs_training_store(tmp_path):
    train, val = _store(tmp_path / "train.h5", seed=3), _store(tmp_path / "val.h5", n_per_class=1, seed=4)
    ck = _run_ckpt(tmp_path / "run.pt", train, val)
    kw = dict(method="distill", student="test_frame2d", student_pretrained=False, epochs=1, batch_size=3)
    r = dynamic_score(ck, [], **kw)
    st = r["student_train"]
    assert r["student_data"] == [train] and r["data"] == [val] and r["n"] == 3 and st["n"] == 9
    assert (r["protocol"], st["optimizer"], st["schedule"], st["teacher"], st["augment"], st["epochs"]) == \
        ("paper", "sgd", "step", "live", True, 1)
    assert (st["lr"], st["weight_decay"], st["step_size"], st["gamma"]) == (0.01, 1e-4, 10, 0.1)
    assert r["student"] == "test_frame2d" and r["student_init"] == "scratch" and r["score"] >= 0


def test_live_teacher_predicts_every_step_cached_teacher_once(data):
    from vdgtool.data import build_dataset
    from vdgtool.evaluate.dynamic import protocol_settings, train_student

    class Counting(torch.nn.Module):
        INPUTS = ("video",)

        def __init__(self, m):
            super().__init__()
            self.m, self.calls = m, 0

        def predict(self, batch):
            self.calls += 1
            return {"logits": self.m(batch["video"])}

        def input_specs(self):
            return {"video": self.m.input_spec}

    m = create_model("test_c3d", num_classes=3)
    ds = build_dataset([data["moving"]], m.input_spec, True, class_names=CLASSES)  # 9 augmented clips
    for protocol, calls in (("paper", 2 * 3), ("fast", 3)):  # 2 epochs x 3 batches, or one pass of 3 batches
        t = Counting(m)
        s = build_spatial_student("test_frame2d", 3, m.input_spec)
        info = train_student(s, t, ds, settings=protocol_settings(protocol, epochs=2), batch_size=3)
        assert t.calls == calls and info["protocol"] == protocol


def test_multi_view_score_is_the_kl_of_view_averaged_logits(data):
    from vdgtool.data import build_dataset
    from vdgtool.evaluate.predict import make_loader

    m = create_model("test_c3d", num_classes=3).eval()
    ds = build_dataset([data["moving"]], m.input_spec, False, class_names=CLASSES, num_clips=2)
    r = perturbation_score(m, ds, method="freeze", batch_size=9)
    rk = perturbation_score(m, ds, method="freeze", batch_size=9, views="kl")
    x = next(iter(make_loader(ds, 9, 0)))["video"]  # (9, 2, C, T, H, W)
    with torch.no_grad():
        lx = m(x.flatten(0, 1)).view(9, 2, -1)
        lt = m(x.flatten(0, 1)[:, :, :1].expand(-1, -1, x.shape[3], -1, -1)).view(9, 2, -1)
    np.testing.assert_allclose(r["per_clip"]["kl"], kl_divergence(lx.mean(1), lt.mean(1)).numpy(), rtol=1e-4)
    np.testing.assert_allclose(rk["per_clip"]["kl"], kl_divergence(lx, lt).mean(1).numpy(), rtol=1e-4)
    assert r["views"] == "logits" and rk["score"] >= r["score"]  # KL is jointly convex: averaging first is smaller


def test_student_imagenet_weights_from_a_local_file_and_refusals(tmp_path):
    import timm

    from vdgtool.errors import ConfigError
    from vdgtool.models.registry import InputSpec
    from vdgtool.models.students import student_init

    spec = InputSpec(num_frames=4, size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ref = timm.create_model("test_resnet", num_classes=1000)
    torch.save(ref.state_dict(), tmp_path / "imagenet.pt")
    s = build_spatial_student("timm:test_resnet", 3, spec, weights=str(tmp_path / "imagenet.pt"))
    k = "conv1.weight" if "conv1.weight" in ref.state_dict() else next(iter(ref.state_dict()))
    assert torch.equal(s.net.net.state_dict()[k], ref.state_dict()[k]) and s.net.net.get_classifier().out_features == 3
    f = build_spatial_student("frame2d:test_resnet", 3, spec, weights=str(tmp_path / "imagenet.pt"))
    assert torch.equal(f.net.backbone.state_dict()[k], ref.state_dict()[k])
    assert student_init(True, str(tmp_path / "imagenet.pt")).startswith("imagenet (file")
    assert student_init(False, None) == "scratch"
    with pytest.raises(ConfigError, match="student_pretrained=false"):
        build_spatial_student("test_frame2d", 3, spec, pretrained=True)
    with pytest.raises(ConfigError, match="does not exist"):
        build_spatial_student("timm:test_resnet", 3, spec, weights=str(tmp_path / "missing.pt"))
