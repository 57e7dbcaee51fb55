"""``vdgtool eval`` and ``vdgtool features``: checkpoints over stores -> metrics, predictions, features."""

from __future__ import annotations

import os

import numpy as np
import torch

from vdgtool.errors import ConfigError, InputError
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


def _dataset(stores, spec, class_names, num_clips, num_crops, seed, flow_stores=None):
    """The test dataset a predictor reads: ``spec`` is a model's input spec or a method's input specs."""
    from vdgtool.data import build_dataset, build_for_inputs

    if isinstance(spec, dict) and spec and all(k in ("video", "rgb", "flow") for k in spec):
        return build_for_inputs(list(stores), spec, False, flow_stores=list(flow_stores or []) or None,
                                class_names=class_names, num_clips=num_clips, num_crops=num_crops, seed=seed)
    return build_dataset(list(stores), spec, False, class_names=class_names, num_clips=num_clips,
                         num_crops=num_crops, seed=seed)


def load_predictor(ckpt: str | None, device, model_name: str | None = None, weights: str | None = None,
                   num_classes: int | None = None):
    """(predictor, class_names, info): the whole method of a vdgtool checkpoint / run dir (all its networks;
    ``predict`` fuses multi-stream methods), or a registry model (+ optional local weights)."""
    from vdgtool.evaluate.predict import ModelPredictor
    from vdgtool.models import create_model
    from vdgtool.train.checkpoint import build_method_from_checkpoint

    if ckpt:
        method, cfg = build_method_from_checkpoint(ckpt, device=device)
        return method, list(cfg["class_names"]), {"checkpoint": ckpt, "model": cfg["model"],
                                                  "method": cfg.get("method", "erm"), "config": cfg}
    if not model_name:
        raise InputError("no checkpoint and no --model given", "pass CKPT or --model NAME")
    model = create_model(model_name, num_classes=num_classes or 1, weights=weights).to(device).eval()
    return ModelPredictor(model).eval(), None, {"model": model_name, "weights": weights}


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


def evaluate(ckpt: str, stores: list[str] | None = None, *, device="cpu", num_clips: int = 1, num_crops: int = 1,
             batch_size: int = 16, workers: int = 0, amp: str = "auto", seed: int = 0,
             fuse: str | None = None, fuse_data: list[str] | None = None, fusion: str = "softmax",
             predictions: str | None = None, confusion: str | None = None, overwrite: bool = False,
             flow_stores: list[str] | None = None, ensemble: list[str] | None = None,
             ensemble_rule: str = "maxconf") -> dict:
    refuse_output_in_inputs([predictions, confusion],
                            [ckpt, fuse, *stores, *(fuse_data or []), *(flow_stores or []), *(ensemble or [])])
    if ensemble and (fuse or flow_stores):
        raise ConfigError("--ensemble does not combine with --fuse or --flow", "evaluate the ensemble on its own")
    model, class_names, info = load_predictor(ckpt, device)
    stores, flow_stores, source = default_stores(stores, flow_stores, info, ckpt)
    ds = _dataset(stores, model.input_specs(), class_names, num_clips, num_crops, seed, flow_stores)
    p = predict_dataset(model, ds, device=device, batch_size=batch_size, workers=workers, amp=amp, desc="eval")
    scores = p["probs"]
    logits = p["logits"]
    if fuse:
        model2, classes2, _ = load_predictor(fuse, device)
        if classes2 != class_names:
            raise ConfigError(f"the fused checkpoints have different classes ({len(class_names)} vs {len(classes2)})",
                              "fuse two models trained on the same label space")
        ds2 = _dataset(fuse_data or stores, model2.input_specs(), class_names, num_clips, num_crops, seed)
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
    res.update({"checkpoint": ckpt, "data": list(stores), "data_source": source, "flow": list(flow_stores or []),
                "num_clips": num_clips,
                "num_crops": num_crops, "method": info.get("method"), "fused_with": fuse,
                "fusion": fusion if fuse else ("method" if p["streams"] else None), "classes": class_names})
    if confusion:
        res["confusion_png"] = plot_confusion(np.asarray(res["confusion"]), class_names, confusion,
                                              title=os.path.basename(str(ckpt)))
    if predictions:
        conv = {"model": info.get("model"), "checkpoint": os.path.abspath(ckpt), "num_clips": num_clips,
                "num_crops": num_crops, "fusion": res["fusion"], "fused_with": fuse, "scores": "probs"}
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
                     overwrite: bool = False, flow_stores: list[str] | None = None) -> dict:
    """Pooled clip features (averaged over test clips) of every video -> a feature store (a multi-stream
    method concatenates its streams' features)."""
    refuse_output_in_inputs(out, [ckpt, weights, *stores, *(flow_stores or [])])
    model, class_names, info = load_predictor(ckpt, device, model_name, weights)
    stores, flow_stores, source = default_stores(stores, flow_stores, info, ckpt)
    info = {k: v for k, v in info.items() if k != "config"}
    ds = _dataset(stores, model.input_specs(), class_names, num_clips, 1, seed, flow_stores)
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
