"""Self-training rounds (``vdgtool pseudolabel CKPT ...``; Ani-GIFs, spec §1.3).

Round r = 1..R, from ckpt_0 = the given checkpoint:

1. **predict** the pool with ckpt_{r-1} (softmax averaged over ``views`` clips): ``OUT/round{r}/preds.h5``;
2. **select** (``vdgtool.adapt.selection.select``: threshold, ``balance`` fraction / cap, top-per-class,
   ``accumulate``; the fraction schedule's q_r for round r): ``OUT/round{r}/selected.h5`` and
   ``selection.json`` (per-class counts, coverage, pseudo-label precision when the pool has labels, a
   diagnostic that is never used to select);
3. **train** from ckpt_{r-1} (``--init``, "retrain further") on source + the selected pool rows (the
   other pool rows are dropped; the pool's own labels are never read: ``TrainConfig.pool/pseudo``),
   ``round_epochs`` at ``lr``, validated on the source validation store (``best.pt``);
   ckpt_r = ``last.pt`` (``ckpt_rule="last"``) or ``best.pt`` (``"val"``);
4. **report**: ckpt_r evaluated (1 clip) on the source validation store and every test store.

Round 0 is the starting checkpoint's report. ``OUT/round{r}/done`` holds the round's row; a run
resumed with ``resume=True`` keeps finished rounds and redoes an unfinished one from its start (every
step is a function of the seed, so the result is the same). The training configuration of every round
is the starting checkpoint's (model, input size, optimiser, augmentation, classes) with the data, init,
epochs and lr of the round; ``train_overrides`` replaces any field.

Inductive by default: a pool sharing a video (same source file, or same key where a store records
no source) with a test store is refused unless ``transductive=True``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Callable, Sequence

import numpy as np

from vdgtool.errors import ConfigError, InputError
from vdgtool.utils.log import get_logger

log = get_logger("pseudolabel")

#: TrainConfig fields a round never inherits from the starting checkpoint's run
_ROUND_RESETS = ("data", "val", "target", "flow", "target_flow", "val_flow", "pool", "pseudo", "train_domains",
                 "weights", "init", "flow_weights", "flow_init", "output", "logger", "max_steps_per_epoch",
                 "save_every", "classes_file", "target_classes", "target_batch_size", "milestones")


def _video_ids(path: str) -> set[str]:
    from vdgtool.stores import open_store

    st = open_store(path, kind=("clips", "flow"))
    keys = [str(k) for k in st.meta["key"]]
    src = [str(s) for s in st.meta.get("source", [""] * len(keys))]
    return {("src:" + os.path.realpath(s)) if s else ("key:" + k) for k, s in zip(keys, src)}


def shared_videos(pool: Sequence[str], tests: Sequence[str]) -> tuple[int, str | None]:
    """(how many pool videos are also in a test store, one example) by source file (key without one)."""
    pool_ids: set[str] = set()
    for p in pool:
        pool_ids |= _video_ids(p)
    test_ids: set[str] = set()
    for t in tests:
        test_ids |= _video_ids(t)
    both = sorted(pool_ids & test_ids)
    return len(both), (both[0].split(":", 1)[1] if both else None)


def _round_config(ckpt_cfg: dict, *, source, pool, val, selected, init, out_dir, epochs, lr, seed, pl_weight,
                  mix, classes_file, method, hp, overrides) -> "TrainConfig":  # noqa: F821
    from vdgtool.train.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in ckpt_cfg.items() if k in names and k not in _ROUND_RESETS}
    base["pretrained"] = False  # the weights come from --init
    if method and method != base.get("method", "erm"):
        base["method"], base["hp"] = method, {}
    elif not method:
        base["method"], base["hp"] = "erm", {}
    base["hp"] = {**(base.get("hp") or {}), **(hp or {})}
    base.update({"data": list(source), "pool": list(pool), "pseudo": selected, "val": [val] if val else [],
                 "init": init, "output": out_dir, "epochs": int(epochs), "lr": float(lr), "seed": int(seed),
                 "pl_weight": float(pl_weight), "mix": mix, "classes_file": classes_file,
                 "warmup_epochs": 0.0})
    base.update(overrides or {})
    return TrainConfig.from_dict(base)


def _report(ckpt: str, val: str | None, tests: Sequence[str], device, views: int, batch_size: int, workers: int,
            amp: str, seed: int) -> dict:
    from vdgtool.evaluate.run import evaluate

    row: dict = {}
    for role, stores in (("source_val", [val] if val else []), *((f"test:{t}", [t]) for t in tests)):
        if not stores:
            continue
        r = evaluate(ckpt, stores, device=device, num_clips=1, batch_size=batch_size, workers=workers, amp=amp,
                     seed=seed)
        row[role] = {"top1": r["top1"], "mean_class": r["mean_class"], "videos": int(r.get("n", 0) or 0)}
    return row


def run_rounds(ckpt: str, *, source: Sequence[str], pool: Sequence[str], out: str, val: str | None = None,
               tests: Sequence[str] = (), rounds: int = 3, threshold: float = 0.9, score: str = "conf",
               balance: str = "none", fraction: str | Sequence[float] | None = None, cap_factor: float = 1.0,
               top_per_class: int | None = None, views: int = 3, accumulate: bool = False, round_epochs: int = 5,
               lr: float = 0.001, pl_weight: float = 1.0, mix: str = "union", ckpt_rule: str = "last",
               transductive: bool = False, method: str | None = None, hp: dict | None = None,
               train_overrides: dict | None = None, seed: int = 0, device="cpu", batch_size: int = 16,
               workers: int = 0, amp: str = "auto", resume: bool = False, overwrite: bool = False,
               on_round: Callable[[dict], None] | None = None) -> dict:
    """Run ``rounds`` self-training rounds; returns the summary (also written to ``OUT/summary.json``).

    ``on_round(row)`` is called with each round's row as soon as it is done (round 0 first)."""
    from vdgtool.adapt.pseudolabel import read_predictions, select_table, write_selection
    from vdgtool.adapt.selection import confidence, parse_schedule, schedule_value
    from vdgtool.evaluate.run import evaluate
    from vdgtool.train.checkpoint import _training_checkpoint
    from vdgtool.train.engine import train
    from vdgtool.utils.provenance import make_provenance

    if int(rounds) < 1:
        raise ConfigError(f"--rounds {rounds} must be at least 1", "pass --rounds 1 or more")
    if not source:
        raise ConfigError("no source store", "pass --source SRC.h5 (the labelled training data)")
    if not pool:
        raise ConfigError("no pool store", "pass --target POOL.h5 (the unlabelled videos to pseudo-label)")
    if ckpt_rule == "val" and not val:
        raise ConfigError("--ckpt-rule val picks each round's best.pt on the source validation store, but no --val "
                          "was given", "pass --val SRC_VAL.h5, or use --ckpt-rule last")
    if fraction is not None and balance != "fraction":
        raise ConfigError("--fraction without --balance fraction has no effect", "add --balance fraction")
    schedule = parse_schedule(fraction if fraction is not None else "0.2,0.4,0.6") if balance == "fraction" else ()
    for s in (*source, *pool, *tests, *([val] if val else [])):
        if not os.path.exists(s):
            raise InputError(f"store {s} does not exist", "check the path")
    n_shared, example = shared_videos(pool, tests) if tests else (0, None)
    if n_shared and not transductive:
        raise InputError(f"the pool shares {n_shared} videos with the test stores (e.g. {example}): training on "
                         "their pseudo-labels would be transductive",
                         "pass a pool disjoint from the test set (an inductive split), or --transductive")
    setting = "transductive" if n_shared or transductive else "inductive"

    if os.path.exists(os.path.join(out, "summary.json")) and not (resume or overwrite):
        raise InputError(f"{out} holds a finished pseudolabel run", "pass --resume to keep it, or --overwrite")
    if overwrite and not resume and os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)

    ck, ckpt_cfg = _training_checkpoint(ckpt)
    class_names = list(ckpt_cfg["class_names"])
    classes_file = os.path.join(out, "classes.txt")
    with open(classes_file, "w") as f:
        f.write("\n".join(class_names) + "\n")
    del ck
    opts = {"threshold": threshold, "score": score, "balance": balance, "fraction_schedule": list(schedule) or None,
            "cap_factor": cap_factor, "top_per_class": top_per_class, "views": views, "accumulate": accumulate,
            "round_epochs": round_epochs, "lr": lr, "pl_weight": pl_weight, "mix": mix, "ckpt_rule": ckpt_rule,
            "method": method or "erm", "hp": hp or {}, "train_overrides": train_overrides or {}}
    ev = dict(device=device, views=views, batch_size=batch_size, workers=workers, amp=amp, seed=seed)

    rows: list[dict] = []
    r0_path = os.path.join(out, "round0.json")
    if resume and os.path.exists(r0_path):
        with open(r0_path) as f:
            row0 = json.load(f)
    else:
        row0 = {"round": 0, "checkpoint": os.path.abspath(ckpt), "selected": None, "coverage": None,
                "precision": None, **_report(ckpt, val, tests, **{k: v for k, v in ev.items()})}
        _write_json(r0_path, row0)
    rows.append(row0)
    if on_round:
        on_round(row0)
    prev_ckpt, prev_selected = ckpt, None
    stopped = None
    for r in range(1, int(rounds) + 1):
        rdir = os.path.join(out, f"round{r}")
        done = os.path.join(rdir, "done")
        if resume and os.path.exists(done):
            with open(done) as f:
                row = json.load(f)
            rows.append(row)
            if on_round:
                on_round(row)
            prev_ckpt, prev_selected = row["checkpoint"], row["selected_store"]
            continue
        if os.path.isdir(rdir):
            shutil.rmtree(rdir)  # an unfinished round starts again (every step is seeded)
        os.makedirs(rdir)
        # 1. predict
        preds = os.path.join(rdir, "preds.h5")
        evaluate(prev_ckpt, list(pool), device=device, num_clips=views, batch_size=batch_size, workers=workers,
                 amp=amp, seed=seed, predictions=preds)
        # 2. select
        table = read_predictions(preds)
        if table.classes != class_names:
            raise ConfigError(f"the predictions of {prev_ckpt} have classes {table.classes[:3]}... but the run has "
                              f"{class_names[:3]}...", "start from a checkpoint of the source's label space")
        q = schedule_value(schedule, r) if schedule else None
        rule = {"threshold": threshold, "score": score, "balance": balance, "fraction": q, "cap_factor": cap_factor,
                "top_per_class": top_per_class}
        sel = select_table(table, previous=prev_selected if accumulate else None, **rule)
        if not len(sel):
            best = float(confidence(table.probs, score).max())
            if r == 1:
                shutil.rmtree(rdir)
                raise InputError(f"round 1 selects no pool video: none reaches {score} >= {threshold:g} (the highest "
                                 f"{score} is {best:.3f})",
                                 f"lower --threshold (e.g. --threshold {max(0.0, np.floor(best * 100) / 100):.2f})")
            log.warning("round %d selects no pool video (highest %s %.3f < %g): stopping after round %d", r, score,
                        best, threshold, r - 1)
            stopped = f"round {r} selected nothing (highest {score} {best:.3f})"
            shutil.rmtree(rdir)
            break
        selected = os.path.join(rdir, "selected.h5")
        write_selection(table, sel, selected, extra_conventions={"round": r, "views": views,
                                                                 "checkpoint": os.path.abspath(prev_ckpt)})
        summary = sel.summary(table.classes, table.labels if table.has_labels else None)
        summary.update({"round": r, "fraction": q, "store": selected, "parent": preds})
        _write_json(os.path.join(rdir, "selection.json"), summary)
        # 3. train
        cfg = _round_config(ckpt_cfg, source=source, pool=pool, val=val, selected=selected, init=prev_ckpt,
                            out_dir=os.path.join(rdir, "train"), epochs=round_epochs, lr=lr, seed=seed + r,
                            pl_weight=pl_weight, mix=mix, classes_file=classes_file, method=method, hp=hp,
                            overrides={"device": str(device), "batch_size": batch_size, "workers": workers,
                                       "amp": amp, **(train_overrides or {})})
        tsum = train(cfg)
        new_ckpt = os.path.join(rdir, "train", "checkpoints", "best.pt" if ckpt_rule == "val" else "last.pt")
        # 4. report
        row = {"round": r, "checkpoint": new_ckpt, "selected_store": selected, "selected": len(sel),
               "pool": int(sel.n_pool), "coverage": sel.coverage, "precision": summary.get("precision"),
               "fraction": q, "per_class_selected": {c["class"]: c["selected"] for c in summary["per_class"]},
               "train_loss": (tsum.get("final") or {}).get("train_loss"),
               **_report(new_ckpt, val, tests, **ev)}
        _write_json(done, row)
        rows.append(row)
        if on_round:
            on_round(row)
        prev_ckpt, prev_selected = new_ckpt, selected
    result = {"setting": setting, "checkpoint": os.path.abspath(ckpt), "source": list(source), "pool": list(pool),
              "val": val, "tests": list(tests), "rounds": int(rounds), "rounds_done": len(rows) - 1,
              "stopped": stopped, "final_checkpoint": prev_ckpt, "options": opts, "rows": rows, "classes": class_names,
              "precision_note": "pseudo-label precision reads the pool's ground truth after selecting: a diagnostic "
                                "only, never used to select or train",
              "provenance": make_provenance(seed=seed, parents=[ckpt, *source, *pool, *tests])}
    _write_json(os.path.join(out, "summary.json"), result)
    return result


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


__all__ = ["run_rounds", "shared_videos"]
