"""``vdgtool eval`` and ``vdgtool features``: checkpoints over stores -> metrics, predictions, features."""

from __future__ import annotations

import os

import numpy as np
import torch

from vdgtool.data.device_decode import setup_decode
from vdgtool.errors import ConfigError, InputError
from vdgtool.evaluate.classmap import ClassMapPredictor, build_class_map
from vdgtool.evaluate.metrics import plot_confusion, summarize
from vdgtool.evaluate.predict import predict_dataset
from vdgtool.stores.base import refuse_output_in_inputs
from vdgtool.stores.table import TableStoreWriter
from vdgtool.utils.log import get_logger
from vdgtool.utils.provenance import make_provenance

log = get_logger("eval")


def recorded_stores(cfg: dict, where: str = "the checkpoint") -> tuple[list[str], list[str], str]:
    """The stores a run recorded, for ``eval`` / ``features`` / ``score`` given no ``--data``.

    Its first validation store (``val[0]``, with the paired ``val_flow`` stores), else its training
    stores (``data`` + ``flow``). Returns (stores, flow_stores, which), ``which`` being "recorded
    validation store" or "recorded training store", and logs the choice on stderr. A run whose
    recorded stores are all gone (moved, deleted) gives a one-line :class:`InputError` naming ``--data``.
    """
    val, val_flow = list(cfg.get("val") or []), list(cfg.get("val_flow") or [])
    data, flow = list(cfg.get("data") or []), list(cfg.get("flow") or [])
    candidates = []
    if val:
        candidates.append(([val[0]], val_flow, "recorded validation store"))
    if data:
        candidates.append((data, flow, "recorded training store"))
    if not candidates:
        raise InputError(f"{where} records no stores and no --data was given", "pass --data STORE")
    for stores, flows, which in candidates:
        if all(os.path.exists(p) for p in stores + flows):
            log.info("no --data given: using the %s %s (recorded in %s)", which.replace("recorded ", "run's "),
                     ", ".join(stores + flows), where)
            return stores, flows, which
    gone = [p for stores, flows, _ in candidates for p in stores + flows if not os.path.exists(p)]
    raise InputError(f"none of the stores recorded in {where} exists any more ({', '.join(gone[:3])}"
                     f"{', ...' if len(gone) > 3 else ''})", "pass --data STORE")


def _dataset(stores, spec, class_names, num_clips, num_crops, seed, flow_stores=None, sampler_options=None):
    """The test dataset a predictor reads: ``spec`` is a model's input spec or a method's input specs."""
    from vdgtool.data import build_dataset, build_for_inputs

    if isinstance(spec, dict) and spec and all(k in ("video", "rgb", "flow") for k in spec):
        return build_for_inputs(list(stores), spec, False, flow_stores=list(flow_stores or []) or None,
                                class_names=class_names, num_clips=num_clips, num_crops=num_crops, seed=seed,
                                sampler_options=sampler_options)
    return build_dataset(list(stores), spec, False, class_names=class_names, num_clips=num_clips,
                         num_crops=num_crops, seed=seed, sampler_options=sampler_options)


def load_predictor(ckpt: str | None, device, model_name: str | None = None, weights: str | None = None,
                   num_classes: int | None = None, model_classes: list[str] | None = None):
    """(predictor, class_names, info): the whole method of a vdgtool checkpoint / run dir (all its networks;
    ``predict`` fuses multi-stream methods), or a registry model (+ optional local weights).

    A registry model with ``model_classes`` (its output names, in order) gets that many outputs, and its
    weights must carry a classifier of that size (a zero-shot evaluation needs the trained head)."""
    from vdgtool.evaluate.predict import ModelPredictor
    from vdgtool.models import create_model
    from vdgtool.train.checkpoint import build_method_from_checkpoint

    if ckpt:
        method, cfg = build_method_from_checkpoint(ckpt, device=device)
        names = list(cfg["class_names"])
        if model_classes is not None and list(model_classes) != names:
            raise ConfigError(f"--model-classes lists {len(model_classes)} classes but {ckpt} was trained on "
                              f"{len(names)} others (or in another order)",
                              "drop --model-classes: a vdgtool checkpoint records its class names")
        return method, names, {"checkpoint": ckpt, "model": cfg["model"], "method": cfg.get("method", "erm"),
                               "out_of_bound": cfg.get("out_of_bound", "loop"), "config": cfg}
    if not model_name:
        raise InputError("no checkpoint and no --model given", "pass CKPT or --model NAME")
    if model_classes is not None:
        num_classes = len(model_classes)
        if weights:
            _check_head(model_name, weights, num_classes)
    model = create_model(model_name, num_classes=num_classes or 1, weights=weights).to(device).eval()
    return ModelPredictor(model).eval(), (list(model_classes) if model_classes is not None else None), \
        {"model": model_name, "weights": weights, "method": None, "out_of_bound": "loop"}


def _check_head(model_name: str, weights: str, num_classes: int) -> None:
    """Refuse weights whose classifier is missing or has another number of outputs than the class list."""
    from vdgtool.models import create_model
    from vdgtool.models.weights import load_state_dict_safely

    probe = create_model(model_name, num_classes=num_classes)
    sd = probe.adapt_state_dict(dict(load_state_dict_safely(weights)))
    head = [k for k in probe.classifier_keys() if k.endswith("weight")]
    have = [k for k in head if k in sd]
    if not have:
        raise ConfigError(f"{weights} holds no classifier for model {model_name}: its predictions would be random",
                          "pass the weights of a trained classifier (e.g. pytorch-i3d rgb_imagenet.pt)")
    n = int(sd[have[0]].shape[0])
    if n != num_classes:
        raise ConfigError(f"the classifier of {weights} has {n} outputs but --model-classes lists {num_classes} "
                          "classes", "pass the class list of those weights, in output order")


def load_model(ckpt: str | None, device, model_name: str | None = None, weights: str | None = None,
               num_classes: int | None = None):
    """A model from a vdgtool checkpoint/run dir (its main network), or a registry model (+ local weights)."""
    from vdgtool.models import create_model
    from vdgtool.train.checkpoint import build_from_checkpoint

    if ckpt:
        model, cfg = build_from_checkpoint(ckpt, device=device)
        return model, cfg["class_names"], {"checkpoint": ckpt, "model": cfg["model"]}
    if not model_name:
        raise InputError("no checkpoint and no --model given", "pass CKPT or --model NAME")
    model = create_model(model_name, num_classes=num_classes or 1, weights=weights).to(device).eval()
    return model, None, {"model": model_name, "weights": weights}


def default_stores(stores, flow_stores, info: dict, ckpt) -> tuple[list[str], list[str] | None, str]:
    """``stores`` as given, or (none given) the run's recorded ones: (stores, flow_stores, data_source)."""
    if stores:
        return list(stores), flow_stores, "given"
    if not info.get("config"):
        raise InputError("no --data given and no checkpoint to take the stores from", "pass --data STORE")
    rec, flows, which = recorded_stores(info["config"], str(ckpt))
    return rec, (flow_stores or flows or None), which


def _store_classes(stores: list[str]) -> list[str]:
    from vdgtool.stores import open_store

    out: list[str] = []
    for p in stores:
        out += [c for c in open_store(p, kind=("clips", "flow")).classes if c not in out]
    return out


def evaluate(ckpt: str | None, stores: list[str] | None = None, *, device="cpu", num_clips: int = 1, num_crops: int = 1,
             batch_size: int = 16, workers: int = 0, amp: str = "auto", seed: int = 0,
             fuse: str | None = None, fuse_data: list[str] | None = None, fusion: str = "softmax",
             predictions: str | None = None, confusion: str | None = None, overwrite: bool = False,
             flow_stores: list[str] | None = None, model_name: str | None = None, weights: str | None = None,
             model_classes: str | list[str] | None = None, class_map: str | None = None,
             out_of_bound: str | None = None, ensemble: list[str] | None = None,
             ensemble_rule: str = "maxconf", decode: str = "auto") -> dict:
    """Accuracy of a checkpoint (or a registry model with ``weights`` and ``model_classes``) on ``stores``.

    ``class_map``: restrict the predictor to the model classes mapped to the data's classes (the
    zero-shot setting, see vdgtool.evaluate.classmap). ``out_of_bound``: padding of clips longer than a
    video (default: what the checkpoint was trained with, else ``loop``). ``stores`` empty: the run's
    recorded stores (``default_stores``). ``ensemble``: further checkpoints combined with ``ckpt`` by
    ``ensemble_rule`` (vdgtool.evaluate.ensemble). ``decode``: where JPEG clips are decoded (auto, cpu, cuda;
    vdgtool.data.device_decode)."""
    from vdgtool.video.manifest import read_class_list

    refuse_output_in_inputs([predictions, confusion],
                            [ckpt, fuse, weights, class_map, *(stores or []), *(fuse_data or []), *(flow_stores or []),
                             *(ensemble or [])])
    if ensemble and (fuse or flow_stores):
        raise ConfigError("--ensemble does not combine with --fuse or --flow", "evaluate the ensemble on its own")
    if ensemble and (model_name or class_map):
        raise ConfigError("--ensemble combines vdgtool checkpoints only", "drop --model / --class-map")
    if isinstance(model_classes, str):
        model_classes = read_class_list(model_classes)
    if model_name and ckpt:
        raise ConfigError("both a checkpoint and --model were given", "pass one: CKPT, or --model NAME --weights FILE")
    if model_name and model_classes is None:
        raise ConfigError(f"--model {model_name} has no class names for its outputs",
                          "pass --model-classes FILE (the class list of its weights, in output order)")
    model, class_names, info = load_predictor(ckpt, device, model_name, weights, model_classes=model_classes)
    stores, flow_stores, source = default_stores(stores, flow_stores, info, ckpt)
    refuse_output_in_inputs([predictions, confusion], [*stores, *(flow_stores or [])])  # the recorded ones too
    oob = out_of_bound or info.get("out_of_bound") or "loop"
    mapped = None
    if class_map:
        model_names = class_names
        class_names, groups = build_class_map(class_map, model_names, _store_classes(stores))
        model = ClassMapPredictor(model, groups).to(device).eval()
        mapped = {"class_map": os.path.abspath(class_map), "model_classes": len(model_names),
                  "shared_classes": len(class_names)}
    ds = _dataset(stores, model.input_specs(), class_names, num_clips, num_crops, seed, flow_stores,
                  sampler_options={"out_of_bound": oob})
    setup_decode(decode, device, {"--data": ds})
    p = predict_dataset(model, ds, device=device, batch_size=batch_size, workers=workers, amp=amp, desc="eval")
    scores = p["probs"]
    logits = p["logits"]
    if fuse:
        model2, classes2, _ = load_predictor(fuse, device)
        if classes2 != class_names:
            raise ConfigError(f"the fused checkpoints have different classes ({len(class_names)} vs {len(classes2)})",
                              "fuse two models trained on the same label space")
        ds2 = _dataset(fuse_data or stores, model2.input_specs(), class_names, num_clips, num_crops, seed,
                       sampler_options={"out_of_bound": oob})
        setup_decode(decode, device, {"--fuse-data": ds2})
        p2 = predict_dataset(model2, ds2, device=device, batch_size=batch_size, workers=workers, amp=amp,
                             desc="eval (fused)")
        pos = {k: i for i, k in enumerate(p2["keys"])}
        missing = [k for k in p["keys"] if k not in pos]
        if missing:
            raise InputError(f"{len(missing)} videos (e.g. {missing[0]}) have no counterpart in the fused stream's "
                             "store", "fuse stores extracted from the same videos (e.g. clips and their flow)")
        order = np.array([pos[k] for k in p["keys"]])
        if fusion == "softmax":
            scores = (p["probs"] + p2["probs"][order]) / 2
            logits = np.log(np.clip(scores, 1e-12, None))
        elif fusion == "logits":
            logits = p["logits"] + p2["logits"][order]
            scores = torch.from_numpy(logits).softmax(-1).numpy()
        else:
            raise ConfigError(f"unknown fusion '{fusion}'", "use softmax or logits")
    ens = None
    if ensemble:  # runs trained separately (e.g. APN's four gammas): evaluate/ensemble.py
        from vdgtool.evaluate.ensemble import combine, member_predictions

        members = [{"checkpoint": ckpt, "probs": p["probs"]}] + member_predictions(
            list(ensemble), stores, p["keys"], class_names, device=device, num_clips=num_clips,
            num_crops=num_crops, batch_size=batch_size, workers=workers, amp=amp, seed=seed)
        scores, chosen = combine([m["probs"] for m in members], ensemble_rule)
        logits = np.log(np.clip(scores, 1e-12, None))
        ens = {"rule": ensemble_rule, "members": [
            {"checkpoint": m["checkpoint"], "top1": summarize(m["probs"], p["labels"], p["domains"], class_names,
                                                              ds.domains)["top1"],
             "chosen": None if chosen is None else int(np.sum(chosen == i))} for i, m in enumerate(members)]}
    res = summarize(scores, p["labels"], p["domains"], class_names, ds.domains)
    if ens:
        res["ensemble"] = ens
    if p["streams"] and not fuse:  # a multi-stream method: each stream's accuracy beside the fused one
        res["streams"] = {}
        for name, probs in p["streams"].items():
            sm = summarize(probs, p["labels"], p["domains"], class_names, ds.domains)
            res["streams"][name] = {"top1": sm["top1"], "top5": sm["top5"], "mean_class": sm["mean_class"],
                                    "per_domain": sm["per_domain"]}
    res.update({"checkpoint": ckpt, "model": info.get("model"), "weights": info.get("weights"), "data": list(stores),
                "data_source": source,                "flow": list(flow_stores or []), "num_clips": num_clips, "num_crops": num_crops,
                "method": info.get("method"), "fused_with": fuse, "out_of_bound": oob,
                "fusion": fusion if fuse else ("method" if p["streams"] else None), "classes": class_names,
                "class_map": mapped})
    if confusion:
        res["confusion_png"] = plot_confusion(np.asarray(res["confusion"]), class_names, confusion,
                                              title=os.path.basename(str(ckpt or model_name)))
    if predictions:
        conv = {"model": info.get("model"), "checkpoint": os.path.abspath(ckpt) if ckpt else None,
                "weights": os.path.abspath(weights) if weights else None, "num_clips": num_clips,
                "num_crops": num_crops, "fusion": res["fusion"], "fused_with": fuse, "scores": "probs",
                "out_of_bound": oob, "class_map": mapped["class_map"] if mapped else None}
        if ens:
            conv["ensemble"] = {"rule": ens["rule"], "members": [m["checkpoint"] for m in ens["members"]]}
        with TableStoreWriter(predictions, "predictions", classes=class_names, domains=ds.domains,
                              conventions=conv, provenance=make_provenance(seed=seed, parents=list(stores)),
                              overwrite=overwrite) as w:
            w.append({"logits": logits.astype(np.float32), "probs": scores.astype(np.float32)},
                     key=p["keys"], video=p["index"], clip=np.zeros(len(p["keys"]), np.int32), label=p["labels"],
                     domain=p["domains"])
        res["predictions"] = predictions
    return res


def extract_features(ckpt: str | None, stores: list[str] | None, out: str, *, model_name: str | None = None,
                     weights: str | None = None, device="cpu", num_clips: int = 1, batch_size: int = 16,
                     workers: int = 0, amp: str = "auto", dtype: str = "float16", seed: int = 0,
                     overwrite: bool = False, flow_stores: list[str] | None = None, decode: str = "auto") -> dict:
    """Pooled clip features (averaged over test clips) of every video -> a feature store (a multi-stream
    method concatenates its streams' features)."""
    refuse_output_in_inputs(out, [ckpt, weights, *stores, *(flow_stores or [])])
    model, class_names, info = load_predictor(ckpt, device, model_name, weights)
    stores, flow_stores, source = default_stores(stores, flow_stores, info, ckpt)
    info = {k: v for k, v in info.items() if k != "config"}
    ds = _dataset(stores, model.input_specs(), class_names, num_clips, 1, seed, flow_stores)
    setup_decode(decode, device, {"--data": ds})
    p = predict_dataset(model, ds, device=device, batch_size=batch_size, workers=workers, amp=amp, features=True,
                        desc="features")
    conv = {**info, "layer": "pooled (forward_features)", "num_clips": num_clips, "dtype": dtype,
            "input_spec": next(iter(model.input_specs().values())).to_dict(),
            "input_specs": {k: v.to_dict() for k, v in model.input_specs().items()},
            "num_features": int(p["features"].shape[1])}
    with TableStoreWriter(out, "features", classes=ds.class_names, domains=ds.domains, conventions=conv,
                          provenance=make_provenance(seed=seed, parents=list(stores)), overwrite=overwrite) as w:
        w.append({"features": p["features"].astype(dtype)}, key=p["keys"], video=p["index"],
                 clip=np.zeros(len(p["keys"]), np.int32), label=p["labels"], domain=p["domains"])
    return {"store": out, "rows": len(p["keys"]), "dim": int(p["features"].shape[1]), "dtype": dtype,
            "data": list(stores), "data_source": source}
