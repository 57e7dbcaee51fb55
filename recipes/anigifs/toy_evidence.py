#!/usr/bin/env python
"""Real -> animated on the built-in toy (the toy fallback of the Ani-GIFs recipes): ERM, RDA, augsearch,
pseudo-label rounds 1-3 (with and without class balance) and augsearch followed by pseudo-labels.

    python recipes/anigifs/toy_evidence.py OUT [--biases 0.7 0.8] [--seeds 0 1 2]   # the README table
    python recipes/anigifs/toy_evidence.py OUT --seeds 0 --biases 0.7 --epochs 4      # a quick look

Data of seed S at bias b (`vdgtool toydata`, 32 px, 8 frames):
  toydata(S):        real -> real_train (labelled source),  animated -> anim_pool (the unlabelled pool)
  toydata(S + 1000): real -> real_val (model selection),    animated -> anim_test (reported only)
  toydata(S + 2000): real -> real_test (in-domain accuracy)
The pool and the test GIFs are different videos: pseudo-labelling here is inductive.
Model selection: best.pt on real_val for every arm and every round (`--ckpt-rule val`); never the target.
Also reported: last.pt (a fixed budget, no selection), and with --last the rounds from last.pt with
`--ckpt-rule last`.
Runs are resumable: a finished run (its `done` / `summary.json`) is kept when the script is run again.
Writes OUT/table.md (mean +- SE over seeds) and OUT/results.json (every number, every seed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys


def sh(*args):
    subprocess.run(["vdgtool", "-q", *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def make_data(d, seed, bias, vpc, size, frames):
    if os.path.exists(os.path.join(d, "real_test.h5")):
        return
    for off, part, n in ((0, "train", vpc), (1000, "val", vpc // 2), (2000, "test", vpc // 2)):
        sh("toydata", f"{d}/{part}", "--seed", seed + off, "--bias", bias, "--videos-per-class", n, "--size", size,
           "--frames", frames, "--overwrite")
    for src, name in (("train/real", "real_train"), ("train/animated", "anim_pool"), ("val/real", "real_val"),
                      ("val/animated", "anim_test"), ("test/real", "real_test")):
        sh("extract", f"{d}/{src}", "-o", f"{d}/{name}.h5", "--size", size, "--encoding", "raw", "--overwrite")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--biases", nargs="+", type=float, default=[0.7, 0.8])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--vpc", type=int, default=24, help="training clips per class and domain (4 classes)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-epochs", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.8, help="pseudo-label confidence threshold (no balance)")
    ap.add_argument("--candidates", type=int, default=12)
    ap.add_argument("--search-set", type=int, default=32)
    ap.add_argument("--last", action="store_true",
                    help="also pseudo-label rounds from last.pt with --ckpt-rule last (fixed budget, no selection)")
    ap.add_argument("--max-T", type=int, default=6, help="|T| of augsearch, identity included (searches = max_T - 1)")
    args = ap.parse_args()

    from vdgtool.adapt.rounds import run_rounds
    from vdgtool.evaluate.run import evaluate
    from vdgtool.train.config import TrainConfig
    from vdgtool.train.engine import train

    common = dict(model="test_c3d", optimizer="adamw", lr=args.lr, batch_size=16, flip=False, scale_min=0.6,
                  size=args.size, epochs=args.epochs, workers=0, device="cpu")
    # --no-flip: the classes are motion directions (a flip swaps move_left / move_right)
    warm = max(1, args.epochs // 4)
    aug_hp = {"warmup": warm, "search_every": 1, "max_T": args.max_T}
    arms = {"erm": ("erm", {}), "rda": ("rda", aug_hp),
            "augsearch": ("augsearch", {**aug_hp, "candidates": args.candidates, "search_set": str(args.search_set)})}
    cbst = dict(threshold=0.0, balance="fraction", fraction="0.2,0.4,0.6")
    # (start run, its checkpoint, each round's checkpoint rule, selection rule)
    pl_arms = {"pl": ("erm", "best", "val", dict(threshold=args.threshold)),
               "pl_cbst": ("erm", "best", "val", cbst),
               "augsearch+pl_cbst": ("augsearch", "best", "val", cbst)}
    if args.last:
        pl_arms.update({"pl_cbst@last": ("erm", "last", "last", cbst),
                        "augsearch+pl_cbst@last": ("augsearch", "last", "last", cbst)})
    results: dict = {}
    for bias in args.biases:
        for seed in args.seeds:
            d = os.path.join(args.out, f"bias{bias}", f"seed{seed}")
            os.makedirs(d, exist_ok=True)
            make_data(d, seed, bias, args.vpc, args.size, args.frames)
            st = {n: os.path.join(d, f"{n}.h5") for n in ("real_train", "anim_pool", "real_val", "anim_test",
                                                          "real_test")}
            res = results.setdefault(str(bias), {}).setdefault(str(seed), {})
            for arm, (method, hp) in arms.items():
                run = os.path.join(d, arm)
                if not os.path.exists(os.path.join(run, "done")):
                    print(f"[bias {bias} seed {seed}] {arm}", file=sys.stderr, flush=True)
                    train(TrainConfig(data=[st["real_train"]], val=[st["real_val"]], output=run, method=method,
                                      hp=hp, seed=seed, **common), overwrite=True)
                row = {}
                for tag in ("best", "last"):
                    ck = os.path.join(run, "checkpoints", f"{tag}.pt")
                    sfx = "" if tag == "best" else "@last"
                    row.update({k + sfx: evaluate(ck, [st[k]], seed=seed)["top1"]
                                for k in ("anim_test", "real_test", "real_val")})
                if method == "augsearch":
                    with open(os.path.join(run, "results.jsonl")) as f:
                        ev = [json.loads(x) for x in f if '"augsearch"' in x]
                    row["T"] = [f"{e['op']}@{e['level']}" for e in ev]
                    row["search_seconds"] = [e.get("seconds") for e in ev]
                res[arm] = row
            for arm, (start, which, ckpt_rule, rule) in pl_arms.items():
                out = os.path.join(d, arm)
                if not os.path.exists(os.path.join(out, "summary.json")):
                    print(f"[bias {bias} seed {seed}] {arm}", file=sys.stderr, flush=True)
                s = run_rounds(os.path.join(d, start, "checkpoints", f"{which}.pt"), source=[st["real_train"]],
                               pool=[st["anim_pool"]], out=out, val=st["real_val"],
                               tests=[st["anim_test"], st["real_test"]], rounds=args.rounds, views=3,
                               round_epochs=args.round_epochs, lr=args.lr / 2, ckpt_rule=ckpt_rule, seed=seed,
                               batch_size=16, resume=True,
                               train_overrides={"optimizer": "adamw", "flip": False, "scale_min": 0.6}, **rule)
                res[arm] = {"setting": s["setting"], "rounds": [
                    {"round": r["round"], "selected": r["selected"], "coverage": r["coverage"],
                     "precision": r["precision"], "anim_test": r[f"test:{st['anim_test']}"]["top1"],
                     "real_test": r[f"test:{st['real_test']}"]["top1"], "real_val": r["source_val"]["top1"]}
                    for r in s["rows"]]}
            with open(os.path.join(args.out, "results.json"), "w") as f:
                json.dump(results, f, indent=1)
    table(results, args)


def _mse(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = sum(xs) / len(xs)
    se = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else float("nan")
    return f"{m:.3f} ± {se:.3f}"


def table(results, args):
    lines = []
    for bias, per_seed in results.items():
        seeds = list(per_seed)
        lines += [f"### bias {bias} ({len(seeds)} seeds: {', '.join(seeds)})", "",
                  "| arm | animated test top-1 | real test top-1 | real val top-1 (selection) | PL selected | "
                  "PL precision (diagnostic) |", "|---|---|---|---|---|---|"]
        for sfx in ("", "@last"):
            for arm in ("erm", "rda", "augsearch"):
                rs = [per_seed[s][arm] for s in seeds if f"anim_test{sfx}" in per_seed[s].get(arm, {})]
                if not rs:
                    continue
                lines.append(f"| {arm}{sfx or ' (best.pt)'} | {_mse([r.get('anim_test' + sfx) for r in rs])} | "
                             f"{_mse([r.get('real_test' + sfx) for r in rs])} | "
                             f"{_mse([r.get('real_val' + sfx) for r in rs])} | | |")
        for arm in ("pl", "pl_cbst", "augsearch+pl_cbst", "pl_cbst@last", "augsearch+pl_cbst@last"):
            for k in range(1, args.rounds + 1):
                rs = [r for s in seeds for r in per_seed[s].get(arm, {}).get("rounds", []) if r["round"] == k]
                if not rs:
                    continue
                lines.append(f"| {arm} round {k} | {_mse([r['anim_test'] for r in rs])} | "
                             f"{_mse([r['real_test'] for r in rs])} | {_mse([r['real_val'] for r in rs])} | "
                             f"{_mse([r['selected'] for r in rs])} | {_mse([r['precision'] for r in rs])} |")
        lines.append("")
        for s in seeds:
            if "augsearch" in per_seed[s]:
                lines.append(f"* seed {s}, augsearch T in order: {', '.join(per_seed[s]['augsearch']['T']) or '(none)'}")
        lines.append("")
    text = "\n".join(lines)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
