"""vdgtool eval, vdgtool features (vdgtool collect lives in cli/collect.py)."""

from __future__ import annotations

import click

from vdgtool.cli.common import at_file_callback, decode_option, device_option, emit, json_option, overwrite_option, seed_option, workers_option


def _shot_list(ctx, param, value):
    """'1,5' -> '1,5' after checking every entry is a positive integer (the body splits it)."""
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise click.BadParameter(f"'{value}' is not a comma-separated list of positive shot counts (e.g. 1,5)")
    return ",".join(parts)


def _pct(v):
    return None if v is None or v != v else round(100.0 * v, 2)


@click.command("eval")
@click.argument("ckpt", metavar="CKPT_OR_RUN_DIR", required=False, type=click.Path())
@click.option("--model", "model_name", help="Registry model instead of a checkpoint (with --weights and --model-classes), "
                                           "e.g. i3d with pytorch-i3d's rgb_imagenet.pt.")
@click.option("--weights", type=click.Path(), help="Local weights of --model (loaded weights_only; its classifier is used).")
@click.option("--model-classes", type=click.Path(),
              help="Class list of --model's outputs, one per line in output order (e.g. the Kinetics-400 labels).")
@click.option("--class-map", type=click.Path(),
              help="CSV of model_class,target_class lines: restrict the argmax to the model classes mapped to the "
                   "data's classes (zero-shot testing of a Kinetics classifier); a data class that maps nowhere is refused.")
@click.option("--out-of-bound", type=click.Choice(["loop", "repeat_last"]), default=None,
              help="Clips longer than a video (short GIFs): loop or repeat_last  [default: the checkpoint's training "
                   "setting, else loop].")
@click.option("--data", multiple=True, type=click.Path(), callback=at_file_callback,
              help="Clip/flow store to evaluate on (repeatable; reported per domain). Default: the run's first "
                   "validation store, else its training store (recorded in the checkpoint; named on stderr).")
@click.option("--clips", "num_clips", type=click.IntRange(min=1), default=1, show_default=True,
              help="Test clips per video (few-shot: each clip is its own support example, query logits averaged).")
@click.option("--crops", "num_crops", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="Spatial crops per clip (3 = three-crop).")
@click.option("--flow", "flow_stores", multiple=True, type=click.Path(), callback=at_file_callback,
              help="Flow store(s) paired by video key with --data, for RGB + flow checkpoints (e.g. two-stream): "
                   "the method's own fused prediction, with each stream's accuracy beside it.")
@click.option("--fuse", type=click.Path(), help="Second checkpoint for two-run late fusion (e.g. a separate flow model).")
@click.option("--fuse-data", multiple=True, type=click.Path(),
              help="Stores for the --fuse model (e.g. the flow store of the same videos).")
@click.option("--fusion", type=click.Choice(["softmax", "logits"]), default="softmax", show_default=True,
              help="Late fusion: mean of softmax scores or sum of logits.")
@click.option("--ensemble", multiple=True, type=click.Path(),
              help="Further runs/checkpoints to ensemble with CKPT (repeatable; e.g. APN's four gamma models).")
@click.option("--ensemble-rule", type=click.Choice(["maxconf", "mean"]), default="maxconf", show_default=True,
              help="maxconf: per clip, the most confident member's prediction (docs/apn.md); mean: mean softmax.")
@click.option("-o", "--predictions", type=click.Path(),
              help="Write a prediction store (per-video logits and probabilities, keyed by video; readable with "
                   "vdgtool.stores and as ClipDataset(labels_from=...)).")
@click.option("--confusion", type=click.Path(), help="Write the confusion matrix as a PNG.")
@click.option("--few-shot", is_flag=True, help="N-way K-shot episodes on frozen features instead of classification.")
@click.option("--ways", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--shots", type=str, default="1,5", show_default=True, callback=_shot_list,
              help="Comma-separated shot counts.")
@click.option("--queries", type=click.IntRange(min=1), default=5, show_default=True,
              help="Query videos per class and episode (the DRL release: 5).")
@click.option("--episodes", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Episodes (the DRL release: 1000).")
@click.option("--fs-solver", type=click.Choice(["release", "fast"]), default="release", show_default=True,
              help="Few-shot classifier: release = the DRL code's (raw pooled features, nn.Linear, SGD lr 0.01 "
                   "momentum/dampening 0.9 wd 1e-3, 100 epochs of mini-batches of 4); fast = L2-normalised "
                   "view-averaged features, Adam, 100 full-batch steps.")
@click.option("--episodes-file", type=click.Path(),
              help="Episode list (JSON; written if absent, reused if present). With several --shots, "
                   "'{shots}' in the name is replaced.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--amp", type=click.Choice(["auto", "off", "bf16", "fp16"]), default="auto", show_default=True)
@workers_option
@device_option
@decode_option
@overwrite_option
@seed_option
@json_option
def eval_cmd(ckpt, model_name, weights, model_classes, class_map, out_of_bound, data, num_clips, num_crops, flow_stores,
             fuse, fuse_data, fusion, ensemble, ensemble_rule, predictions, confusion, few_shot, ways, shots, queries,
             episodes, fs_solver, episodes_file, batch_size, amp, workers, device, decode, overwrite, seed, as_json):
    """Evaluate a checkpoint (or run directory: best.pt) on clip stores.

    Prints top-1, top-5 and mean-class accuracy, per domain and per class; writes a prediction
    store with -o and a confusion-matrix PNG with --confusion. --few-shot runs N-way K-shot episodes
    (a new linear classifier per episode on frozen features; mean accuracy ± 95% CI). Without --data
    the run's recorded validation store is used. Instead of a
    checkpoint, --model NAME --weights FILE --model-classes FILE evaluates a classifier trained
    elsewhere; --class-map restricts it to the classes it shares with the data (zero-shot).

    \b
    Examples:
      vdgtool eval runs/erm
      vdgtool eval runs/erm --data real_test.h5 --data animated.h5 --clips 3 -o preds.h5
      vdgtool eval rgb.pt --data clips.h5 --fuse flow.pt --fuse-data flow.h5
      vdgtool eval runs/drl --data jester_val.h5 --few-shot --shots 1,5 --clips 10 --episodes-file eps_{shots}.json
      vdgtool eval runs/g0.001 --ensemble runs/g0.01 --ensemble runs/g0.1 --ensemble runs/g1 --data hmdb.h5
      vdgtool eval --model i3d --weights rgb_imagenet.pt --model-classes k400.txt --class-map k400_to_anigifs.csv \\
        --data anim_test.h5
    """
    from vdgtool.cli.common import resolve_device
    from vdgtool.errors import InputError

    if not ckpt and not model_name:
        raise InputError("no checkpoint given", "pass CKPT_OR_RUN_DIR, or --model NAME --weights FILE --model-classes FILE")
    if (weights or model_classes) and not model_name and ckpt:
        raise InputError("--weights / --model-classes go with --model, not with a checkpoint",
                         "drop them (a checkpoint records its weights and classes), or pass --model instead of CKPT")
    dev = resolve_device(device)
    if few_shot:
        if not ckpt:
            raise InputError("--few-shot needs a checkpoint", "pass CKPT_OR_RUN_DIR")
        return _few_shot(ckpt, data, ways, shots, queries, episodes, episodes_file, batch_size, workers, dev, amp,
                         seed, as_json, flow_stores, num_clips, int(num_crops), fs_solver)
    from vdgtool.evaluate.run import evaluate

    res = evaluate(ckpt, list(data), device=dev, num_clips=num_clips, num_crops=int(num_crops),
                   batch_size=batch_size, workers=workers, amp=amp, seed=seed, fuse=fuse,
                   fuse_data=list(fuse_data) or None, fusion=fusion, predictions=predictions, confusion=confusion,
                   overwrite=overwrite, flow_stores=list(flow_stores) or None, ensemble=list(ensemble) or None,
                   ensemble_rule=ensemble_rule,
                   model_name=model_name, weights=weights, model_classes=model_classes, class_map=class_map,
                   out_of_bound=out_of_bound, decode=decode)
    if as_json:
        emit(res, True)
        return
    rows = [("all", res["n"], _pct(res["top1"]), _pct(res["top5"]), _pct(res["mean_class"]))]
    rows += [(f"domain {d}", m["n"], _pct(m["top1"]), None, _pct(m["mean_class"])) for d, m in res["per_domain"].items()]
    for i, em in enumerate((res.get("ensemble") or {}).get("members", [])):
        rows.append((f"member {i} {em['checkpoint']}", res["n"], _pct(em["top1"]), None, None))
    for sname, sm in (res.get("streams") or {}).items():
        rows.append((f"stream {sname}", res["n"], _pct(sm["top1"]), _pct(sm["top5"]), _pct(sm["mean_class"])))
    emit(res, False, rows, headers=("subset", "videos", "top1 %", "top5 %", "mean class %"))
    click.echo("")
    emit(res, False, [(c, m["n"], _pct(m["acc"])) for c, m in res["per_class"].items()],
         headers=("class", "videos", "acc %"))
    if res.get("class_map"):
        cm = res["class_map"]
        click.echo(f"class map: argmax over the {cm['shared_classes']} classes shared with the data, of the model's "
                   f"{cm['model_classes']} ({cm['class_map']})", err=True)
    for k in ("predictions", "confusion_png"):
        if res.get(k):
            click.echo(f"wrote {res[k]}", err=True)


def _few_shot(ckpt, data, ways, shots, queries, episodes, episodes_file, batch_size, workers, dev, amp, seed,
              as_json, flow_stores=(), num_clips=1, num_crops=1, solver="release"):
    import numpy as np

    from vdgtool.evaluate.fewshot import few_shot
    from vdgtool.evaluate.predict import predict_dataset
    from vdgtool.evaluate.run import _dataset, default_stores, load_predictor

    model, _, info = load_predictor(ckpt, dev)
    stores, flows, _ = default_stores(list(data), list(flow_stores), info, ckpt)
    # every test view (clip x crop) of a video is kept: the release trains on each as a support example
    ds = _dataset(stores, model.input_specs(), None, num_clips, num_crops, seed, list(flows or []))
    p = predict_dataset(model, ds, device=dev, batch_size=batch_size, workers=workers, amp=amp, features=True,
                        keep_views=True, desc="features")
    results = []
    shot_list = [int(s) for s in str(shots).split(",") if s]
    for k in shot_list:
        ef = episodes_file.replace("{shots}", str(k)) if episodes_file else None
        if ef and len(shot_list) > 1 and "{shots}" not in episodes_file:
            base, ext = episodes_file.rsplit(".", 1) if "." in episodes_file else (episodes_file, "json")
            ef = f"{base}_{k}shot.{ext}"
        r = few_shot(p["features"], p["keys"], np.asarray(p["labels"]), ds.class_names, ways=ways, shots=k,
                     queries=queries, episodes=episodes, seed=seed, episodes_file=ef, solver=solver, device=dev)
        results.append({**r, "data": stores, "num_clips": num_clips, "num_crops": num_crops})
    emit(results, as_json, [(f"{r['ways']}-way {r['shots']}-shot", r["episodes"], r["queries"], r["views"],
                             r["solver"], _pct(r["acc"]), f"± {_pct(r['ci95'])}", r["episode_source"],
                             r["episodes_file"] or "") for r in results],
         headers=("setting", "episodes", "queries", "views", "solver", "acc %", "95% CI", "episodes", "episode file"))


@click.command("features")
@click.argument("ckpt", metavar="CKPT_OR_RUN_DIR", required=False, type=click.Path())
@click.option("--model", "model_name", help="Registry model instead of a checkpoint (with --weights or --pretrained).")
@click.option("--weights", type=click.Path(), help="Local weights for --model.")
@click.option("--data", multiple=True, type=click.Path(), callback=at_file_callback,
              help="Clip store (repeatable). Default: the checkpoint's first validation store, else its training store.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Feature store to write.")
@click.option("--flow", "flow_stores", multiple=True, type=click.Path(), callback=at_file_callback,
              help="Flow store(s) paired by video key with --data, for RGB + flow checkpoints (features concatenated).")
@click.option("--clips", "num_clips", type=click.IntRange(min=1), default=1, show_default=True,
              help="Clips averaged per video.")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="Stored precision (float16 halves the size at <=2.5e-4 relative error).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--amp", type=click.Choice(["auto", "off", "bf16", "fp16"]), default="auto", show_default=True)
@workers_option
@device_option
@decode_option
@overwrite_option
@seed_option
@json_option
def features(ckpt, model_name, weights, data, output, flow_stores, num_clips, dtype, batch_size, amp, workers, device,
             decode, overwrite, seed, as_json):
    """Extract pooled clip features of every video into a feature store, batched on the device.

    \b
    Examples:
      vdgtool features runs/erm --data ucf.h5 -o ucf_feats.h5 --clips 3
      vdgtool features runs/erm -o val_feats.h5       # the run's validation store
    """
    from vdgtool.cli.common import resolve_device
    from vdgtool.evaluate.run import extract_features

    res = extract_features(ckpt, list(data), output, model_name=model_name, weights=weights,
                           device=resolve_device(device), num_clips=num_clips, batch_size=batch_size, workers=workers,
                           amp=amp, dtype=dtype, seed=seed, overwrite=overwrite, flow_stores=list(flow_stores) or None,
                           decode=decode)
    emit(res, as_json)
