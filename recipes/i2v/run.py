#!/usr/bin/env python
"""MM 2024 image-to-video pipeline: images -> synth-video -> flow -> train --method cfb (arms) -> eval -> table.

    python recipes/i2v/run.py OUT                          # the toy (toydata --kind image-to-video), all arms, 3 seeds
    python recipes/i2v/run.py OUT --benchmark e2h --images e2h_source.csv --pool e2h_target.csv \\
        --depth midas_maps/ --weights rgb_imagenet.pt --flow-weights flow_imagenet.pt --device cuda
    python recipes/i2v/run.py OUT --arms rgb_only          # recipes/image_to_video.sh: the RGB-only arm

Arms (``--arms``, comma-separated; default all): ``rgb_only`` (SO(RGB): ``--method erm``, source videos
only), ``rgb_srcflow`` (SO(RGB+flow): cfb with the bank off), ``bank`` (+ CFB, random 1/N), ``bank_pace``
(+ video pace), and the controls ``ctl_shuffled`` (bank classes permuted), ``ctl_oracle`` (bank by true
target labels: the ceiling; needs labelled target videos) and ``ctl_mean`` (Mean-N retrieval).

Per-benchmark settings come from ``recipes/i2v/benchmarks.toml`` (lr, batch, epochs, milestones,
lambda1, lambda2, N, warm-up); the toy's from ``[toy]`` below. Training goes through ``vdgtool sweep``
(one directory per arm and seed under OUT/runs; running again skips finished runs and resumes
interrupted ones). Model selection: none, the last epoch is reported (as the paper); the target is
never used to select. Accuracies are given on the pool the method adapts on (transductive, the paper's
protocol) and, when a held-out split is given (the toy always has one), on it (inductive).

The toy shares the warm-up: per seed one SO(RGB+flow) run of ``warm_epochs`` (``runs/warm``), from which
every two-stream arm continues for ``epochs`` more (``--init``, constant lr, the bank first built at the
end of its first epoch): the arms differ only from the bank's start, which is what they compare, and
the CPU pays the warm-up once. ``rgb_only`` runs ``warm_epochs + epochs`` epochs from scratch. On real
benchmarks every arm runs the paper's full schedule from the pretrained weights (``--shared-warmup``
forces the toy's scheme).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ARMS = ("rgb_only", "rgb_srcflow", "bank", "bank_pace", "ctl_shuffled", "ctl_oracle", "ctl_mean")
ARM_HP = {"rgb_srcflow": {"bank": "off"}, "bank": {}, "bank_pace": {"lambda_pace": None},
          "ctl_shuffled": {"bank": "shuffled"}, "ctl_oracle": {"bank": "oracle"}, "ctl_mean": {"retrieval": "mean"}}
# the toy (docs/cfb.md "Calibration", sized for ~20 min on 2 loaded CPU cores)
TOY = {"videos_per_class": 20, "size": 32, "frames": 16, "bias": 0.7, "clip_len": 8, "eval_frames": 8,
       "model": "test_i3d", "model_args": {"variant": "st-i2v", "dropout": 0.5, "bn_momentum": 0.1},
       "optimizer": "adamw", "lr": 0.005, "batch_size": 12, "warm_epochs": 15, "epochs": 6, "bank_size": 8,
       "lambda_local": 1.0, "lambda_pace": 0.2, "schedule": "constant"}


def sh(*args, quiet=False, cwd=None):
    print("+", " ".join(str(a) for a in args), file=sys.stderr, flush=True)
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL if quiet else None, cwd=cwd)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def write_spec(path: str, seeds, train: dict, arms: list[dict], run_name: str = "{arm}/seed{seed}") -> str:
    lines = [f"seeds = {toml_value(list(seeds))}", f"run_name = {toml_value(run_name)}", "", "[train]"]
    lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in train.items()]
    for a in arms:
        lines += ["", "[[arms]]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in a.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# -- data -------------------------------------------------------------------------------------------
def toy_data(d: str, seed: int, t: dict) -> dict:
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(f"{d}/test_flow.h5"):
        sh("vdgtool", "-q", "toydata", f"{d}/toy", "--kind", "image-to-video", "--size", t["size"], "--frames",
           t["frames"], "--videos-per-class", t["videos_per_class"], "--bias", t["bias"], "--seed", seed,
           "--overwrite")
        synth(f"{d}/toy/images", d, "none", t["size"], seed)
        target(f"{d}/toy/target_train.csv", f"{d}/pool.h5", t["size"])
        target(f"{d}/toy/target_test.csv", f"{d}/test.h5", t["size"])
    return {"source": f"{d}/source.h5", "pool": f"{d}/pool.h5", "test": f"{d}/test.h5"}


def synth(images: str, d: str, depth: str, size, seed: int, classes: str | None = None) -> None:
    extra = ["--classes", classes] if classes else []
    sh("vdgtool", "-q", "synth-video", images, "-o", f"{d}/source.h5", "--preset", "mm2024", "--depth", depth,
       "--size", size, "--frames", 16, "--seed", seed, "--overwrite", *extra)
    sh("vdgtool", "-q", "flow", f"{d}/source.h5", "-o", f"{d}/source_flow.h5", "--overwrite", quiet=True)


def target(manifest: str, store: str, size, classes: str | None = None) -> None:
    extra = ["--classes", classes] if classes else []
    sh("vdgtool", "-q", "extract", manifest, "-o", store, "--size", size, "--encoding", "raw", "--overwrite", *extra)
    sh("vdgtool", "-q", "flow", store, "-o", store[:-3] + "_flow.h5", "--overwrite", quiet=True)


# -- runs -------------------------------------------------------------------------------------------
def settings(args) -> dict:
    if args.benchmark == "toy":
        return dict(TOY)
    with open(os.path.join(HERE, "benchmarks.toml"), "rb") as f:
        bt = tomllib.load(f)
    c, b = bt["common"], bt[args.benchmark]
    return {"model": "i3d", "model_args": {"variant": c["i3d_variant"], "dropout": c["dropout"],
                                           "freeze_before": c["freeze_before"], "bn_momentum": c["bn_momentum"]},
            "clip_len": c["clip_len"], "eval_frames": c["eval_frames"], "size": c["crop"],
            "optimizer": c["optimizer"], "momentum": c["momentum"], "weight_decay": c["weight_decay"],
            "gamma": c["gamma"], "lr": b["lr"], "batch_size": b["batch_size"], "epochs": b["epochs"],
            "milestones": b["milestones"], "schedule": "step", "warmup": c["warmup_epochs"],
            "bank_size": c["bank_size"], "lambda_local": b["lambda_local"], "lambda_pace": b["lambda_pace"],
            "warm_epochs": 0}


def train_options(s: dict, data: dict, args) -> dict:
    o = {"data": data["source"], "flow": data["source"][:-3] + "_flow.h5", "target": data["pool"],
         "target-flow": data["pool"][:-3] + "_flow.h5", "model": s["model"], "model-arg": s["model_args"],
         "flow-model-arg": {k: v for k, v in s["model_args"].items()}, "num-frames": s["clip_len"],
         "size": s["size"], "batch-size": s["batch_size"], "optimizer": s["optimizer"], "lr": s["lr"],
         "schedule": s["schedule"], "workers": args.workers, "device": args.device}
    for k in ("momentum", "weight_decay", "gamma", "milestones"):
        if k in s:
            o[k.replace("_", "-")] = s[k]
    if args.weights:
        o["weights"] = args.weights
    if args.flow_weights:
        o["flow-weights"] = args.flow_weights
    if args.benchmark == "toy":
        o["scale-min"] = 0.6
    return o


def cfb_hp(s: dict, arm: str, warmup: int) -> dict:
    hp = {"warmup": warmup, "bank_size": s["bank_size"], "eval_frames": s["eval_frames"],
          "lambda_local": s["lambda_local"], "lambda_pace": 0.0}
    for k, v in ARM_HP[arm].items():
        hp[k] = s["lambda_pace"] if k == "lambda_pace" else v
    return hp


def run_arms(out: str, s: dict, data: dict, args) -> None:
    base = train_options(s, data, args)
    shared = args.benchmark == "toy" or args.shared_warmup
    warm_epochs = s["warm_epochs"] if shared else 0
    sweep = ["vdgtool", "sweep", "run", "-o", "runs", "--jobs", args.jobs]
    streams = {k: base.pop(k) for k in ("flow", "target", "target-flow", "flow-model-arg")}
    stage1 = []
    if "rgb_only" in args.arms:
        stage1.append({"name": "rgb_only", "method": "erm", "epochs": warm_epochs + s["epochs"]})
    two = [a for a in args.arms if a != "rgb_only"]
    if shared and two:
        stage1.append({"name": "warm", "method": "cfb", "epochs": warm_epochs, **streams,
                       "hp": cfb_hp(s, "rgb_srcflow", 1)})
    if stage1:
        sh(*sweep, write_spec(os.path.join(out, "stage1.toml"), args.seeds, base, stage1), cwd=out)
    if two:
        arms = []
        for a in two:
            arm = {"name": a, "method": "cfb", "epochs": s["epochs"], **streams,
                   "hp": cfb_hp(s, a, 1 if shared else s["warmup"])}
            if shared:
                arm["init"] = "runs/warm/seed{seed}/checkpoints/last.pt"
            arms.append(arm)
        sh(*sweep, write_spec(os.path.join(out, "stage2.toml"), args.seeds, base, arms), cwd=out)


def evaluate(out: str, data: dict, args) -> None:
    """``vdgtool eval`` of every run's last checkpoint on the pool and the test split, in this process
    (the library call behind the verb: one interpreter start for all of them)."""
    from vdgtool.evaluate.run import evaluate as eval_checkpoint
    from vdgtool.runtime import resolve_device

    device = resolve_device(args.device)
    for arm in args.arms:
        for seed in args.seeds:
            run = os.path.join(out, "runs", arm, f"seed{seed}")
            for split in ("pool", "test"):
                dst = os.path.join(run, f"eval_{split}.json")
                if split not in data or os.path.exists(dst):
                    continue
                store = os.path.join(out, data[split])
                flow = [store[:-3] + "_flow.h5"] if arm != "rgb_only" else None
                print(f"+ vdgtool eval {run}/checkpoints/last.pt --data {store}" + (f" --flow {flow[0]}" if flow else ""),
                      file=sys.stderr, flush=True)
                res = eval_checkpoint(os.path.join(run, "checkpoints", "last.pt"), [store], device=device,
                                      flow_stores=flow, workers=args.workers)
                with open(dst + ".partial", "w") as f:
                    json.dump(res, f, default=str)
                os.replace(dst + ".partial", dst)


# -- the table --------------------------------------------------------------------------------------
def mean_se(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else float("nan")
    return m, se


def fmt(xs, pct=True):
    m, se = mean_se(xs)
    if m is None:
        return "–"
    k = 100 if pct else 1
    return f"{k * m:.1f} ± {k * se:.1f}" if se == se else f"{k * m:.1f}"


def events(run: str) -> list[dict]:
    p = os.path.join(run, "results.jsonl")
    if not os.path.exists(p):
        return []
    return [r for r in (json.loads(x) for x in open(p)) if r.get("event") == "cfb_bank"]


def table(out: str, args) -> str:
    rows = ["| arm | pool fused | pool RGB | pool flow | test fused | test RGB | test flow |",
            "|---|---|---|---|---|---|---|"]
    bank_rows = ["| arm | purity, first build | pseudo-label acc., first build | purity, last build | "
                 "pseudo-label acc., last build | pool fused: first build → one epoch with the bank | "
                 "pace-head acc. (last epoch) |", "|---|---|---|---|---|---|---|"]
    for arm in args.arms:
        cells = {}
        pur0, acc0, pur1, acc1, before, after, pace = ([] for _ in range(7))
        for seed in args.seeds:
            run = os.path.join(out, "runs", arm, f"seed{seed}")
            for split in ("pool", "test"):
                p = os.path.join(run, f"eval_{split}.json")
                if not os.path.exists(p):
                    continue
                r = json.load(open(p))
                cells.setdefault((split, "fused"), []).append(r["top1"])
                for st in ("rgb", "flow"):
                    v = r.get("streams", {}).get(st, {}).get("top1")
                    cells.setdefault((split, st), []).append(v if v is not None else
                                                             (r["top1"] if st == "rgb" and arm == "rgb_only" else None))
            ev = events(run)
            if ev:
                pur0.append(ev[0]["matched_purity"])
                acc0.append(ev[0]["pseudo_label_accuracy"])
                pur1.append(ev[-1]["matched_purity"])
                acc1.append(ev[-1]["pseudo_label_accuracy"])
                if len(ev) > 1:
                    before.append(ev[0].get("pool_fused"))
                    after.append(ev[1].get("pool_fused"))
            res = os.path.join(run, "results.jsonl")
            if os.path.exists(res):
                last = [json.loads(x) for x in open(res) if '"event"' not in x]
                if last and "train_pace_acc" in last[-1]:
                    pace.append(last[-1]["train_pace_acc"])
        rows.append(f"| {arm} | " + " | ".join(fmt(cells.get((sp, st), [])) for sp in ("pool", "test")
                                               for st in ("fused", "rgb", "flow")) + " |")
        if pur0:
            step = f"{fmt(before)} → {fmt(after)}" if before else "–"
            bank_rows.append(f"| {arm} | {fmt(pur0)} | {fmt(acc0)} | {fmt(pur1)} | {fmt(acc1)} | {step} | "
                             f"{fmt(pace)} |")
    return "\n".join(rows) + "\n\n" + "\n".join(bank_rows) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--benchmark", default="toy", choices=("toy", "e2h", "s2u", "b2u"))
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--images", help="source images (ROOT/<class>/<image> or a manifest); real benchmarks")
    ap.add_argument("--pool", help="target videos (manifest): the unlabelled pool, also the test set (paper)")
    ap.add_argument("--test", help="optional held-out target videos (inductive numbers)")
    ap.add_argument("--classes", help="class list (default: the benchmark's recipes/i2v/<bench>_classes.txt)")
    ap.add_argument("--depth", default="none", help="synth-video --depth: none, a folder of maps or a depth model")
    ap.add_argument("--weights", help="rgb_imagenet.pt (pytorch-i3d)")
    ap.add_argument("--flow-weights", help="flow_imagenet.pt (pytorch-i3d)")
    ap.add_argument("--size", default="256", help="frame size of the extracted stores (real benchmarks)")
    ap.add_argument("--shared-warmup", action="store_true", help="the toy's shared warm-up on a real benchmark")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the data (toy and synth-video)")
    ap.add_argument("--epochs", type=int, help="override: epochs of the arms (after the shared warm-up)")
    ap.add_argument("--warm-epochs", type=int, help="override: epochs of the toy's shared warm-up")
    ap.add_argument("--videos-per-class", type=int, help="override: toy stills / pool / test videos per class")
    args = ap.parse_args(argv)
    args.arms = [a for a in args.arms.split(",") if a]
    bad = [a for a in args.arms if a not in ARMS]
    if bad:
        ap.error(f"unknown arm {bad[0]!r}; arms: {', '.join(ARMS)}")
    args.seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    d = os.path.join(out, "data")
    s = settings(args)
    for k in ("epochs", "warm_epochs", "videos_per_class"):
        if getattr(args, k) is not None:
            s[k] = getattr(args, k)
    if args.benchmark == "toy":
        paths = toy_data(d, args.data_seed, s)
    else:
        if not (args.images and args.pool):
            ap.error(f"--benchmark {args.benchmark} needs --images and --pool (see recipes/i2v/README.md)")
        classes = args.classes or os.path.join(HERE, f"{args.benchmark}_classes.txt")
        if not os.path.exists(classes):
            ap.error(f"no class list {classes}: pass --classes (B→U: UCF101's classInd.txt)")
        os.makedirs(d, exist_ok=True)
        if not os.path.exists(f"{d}/pool_flow.h5"):
            synth(args.images, d, args.depth, 384, args.data_seed, classes)
            target(args.pool, f"{d}/pool.h5", args.size, classes)
            if args.test:
                target(args.test, f"{d}/test.h5", args.size, classes)
        paths = {"source": f"{d}/source.h5", "pool": f"{d}/pool.h5"}
        if args.test:
            paths["test"] = f"{d}/test.h5"
    rel = {k: os.path.relpath(v, out) for k, v in paths.items()}
    run_arms(out, s, rel, args)
    evaluate(out, rel, args)
    text = table(out, args)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
