"""vdgtool augsearch: training with the worst-case augmentation search (forwards to train), and the
vulnerability table of a checkpoint (--eval-only)."""

from __future__ import annotations

import click

from vdgtool.cli.common import emit, json_option, overwrite_option, resume_option
from vdgtool.cli.train import config_options

METHODS = ("augsearch", "rda")


@click.command("augsearch")
@click.argument("ckpt", metavar="[CKPT_OR_RUN_DIR]", required=False, type=click.Path())
@config_options
@click.option("--config", "config_file", type=click.Path(), help="JSON/TOML file of train options (flags override it).")
@click.option("--eval-only", is_flag=True,
              help="Do not train: print CKPT's accuracy on --data under every (op, level) of the set, worst first.")
@click.option("--ops", help="Transformation set (pil10, autoaugment, gif, or a union such as pil10+quantize); "
                            "training: the same as --hp ops=; --eval-only default: the set CKPT was trained with, "
                            "else pil10.")
@click.option("--clips", "num_clips", type=click.IntRange(min=1), default=1, show_default=True,
              help="--eval-only: test clips per video.")
@click.option("--crops", "num_crops", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="--eval-only: spatial crops per clip.")
@click.option("--top", type=click.IntRange(min=1), help="--eval-only: print only the N worst rows (--json has all).")
@resume_option
@overwrite_option
@json_option
@click.pass_context
def augsearch(ctx, ckpt, eval_only, ops, num_clips, num_crops, top, config_file, resume, overwrite, as_json, **kw):
    """Train with the worst-case augmentation search, or measure a model's vulnerability to each transformation.

    Training (`vdgtool train --method augsearch` with the same options): T = {identity}; after
    --hp warmup epochs and every --hp search_every epochs the (op, level) with the highest error on a
    fixed class-stratified search set (--hp search_set, candidates) joins T until |T| = max_T; each
    clip trains on one member of T with the same parameters on every frame. One `augsearch` event per
    search in RUN/results.jsonl; T is in every checkpoint and in RUN/done. `--method rda` runs the
    random control (a random (op, level) per clip, same grid and schedule).

    --eval-only: CKPT's accuracy on --data under every (op, level) of the set, worst first, with the
    clean (identity) accuracy; nothing is written.

    \b
    Examples:
      vdgtool augsearch --data real_train.h5 --val real_val.h5 --val anim_test.h5 --model i3d \\
        --weights rgb_imagenet.pt --hp search_set=256 -o runs/augsearch
      vdgtool augsearch --method rda --data real_train.h5 --val real_val.h5 -o runs/rda
      vdgtool augsearch runs/erm --data anim_test.h5 --eval-only --ops gif --top 20
    """
    from vdgtool.errors import ConfigError

    if eval_only:
        return _eval_only(ckpt, ops, num_clips, num_crops, top, as_json, kw)
    if ckpt:
        raise ConfigError(f"a checkpoint ({ckpt}) is read only with --eval-only",
                          "add --eval-only to measure it, or pass --init CKPT to fine-tune from it")
    from vdgtool.cli.train import emit_train_summary, resolve_config
    from vdgtool.train.engine import train as run

    kw["method"] = kw.get("method") or "augsearch"
    if kw["method"] not in METHODS:
        raise ConfigError(f"vdgtool augsearch trains {' or '.join(METHODS)}, not --method {kw['method']}",
                          f"use vdgtool train --method {kw['method']}")
    if ops:
        kw["hp"] = tuple(kw.get("hp") or ()) + (f"ops={ops}",)
    cfg = resolve_config(ctx, kw, config_file, resume)
    summary = run(cfg, resume=resume, overwrite=overwrite)
    state = summary.get("method_state") or {}
    extra = [(f"T[{i + 1}]", f"{e['op']} level {e['level']} ({e['value']}), error {e['fitness_err']:.3f} vs "
                             f"identity {e['identity_err']:.3f}") for i, e in enumerate(state.get("events") or [])]
    emit_train_summary(summary, as_json, extra)


def _eval_only(ckpt, ops, num_clips, num_crops, top, as_json, kw):
    from vdgtool.cli.common import resolve_device
    from vdgtool.errors import ConfigError
    from vdgtool.evaluate.vulnerability import vulnerability

    if not ckpt:
        raise ConfigError("--eval-only needs a checkpoint", "pass CKPT_OR_RUN_DIR before the options")
    if not kw.get("data"):
        raise ConfigError("--eval-only needs the clips to measure on", "pass --data STORE (repeatable)")
    res = vulnerability(ckpt, list(kw["data"]), ops=ops, device=resolve_device(kw.get("device") or "auto"),
                        num_clips=num_clips, num_crops=int(num_crops), batch_size=kw.get("batch_size") or 16,
                        workers=kw.get("workers") or 0, amp=kw.get("amp") or "auto", seed=kw.get("seed") or 0,
                        out_of_bound=kw.get("out_of_bound"))
    if as_json:
        emit(res, True)
        return
    rows = res["rows"][:top] if top else res["rows"]

    def pct(v):
        return None if v is None or v != v else round(100.0 * v, 2)

    table = [(i + 1, r["op"], r["level"], r["value"], round(r["magnitude"], 3), pct(r["accuracy"]),
              round(r["mean_ce"], 4), pct(-r["drop"])) for i, r in enumerate(rows)]
    emit(res, False, table, headers=("rank", "op", "level", "value", "magnitude", "acc %", "mean CE", "Δ acc (pts)"),
         title=f"{res['videos']} videos, set {res['ops']} ({res['grid_points']} (op, level) points); identity "
               f"accuracy {pct(res['identity_accuracy'])} %; worst first")
