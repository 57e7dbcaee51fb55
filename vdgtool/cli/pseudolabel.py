"""vdgtool pseudolabel: self-training rounds (the group's default command, ``rounds``) and ``select``."""

from __future__ import annotations

import click

from vdgtool.cli.common import (at_file_callback, device_option, emit, json_option, overwrite_option, resume_option,
                                seed_option, workers_option)


def _score_options(f):
    """--threshold and --score: the confidence rule shared by `rounds` and `select`."""
    f = click.option("--score", type=click.Choice(["conf", "margin", "entropy"]), default="conf", show_default=True,
                     help="conf = max p; margin = p(1) - p(2); entropy = 1 - H(p) / log K.")(f)
    return click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=0.9, show_default=True,
                        help="Keep videos whose score is at least this (every score lies in [0, 1]).")(f)


def _cap_option(f):
    return click.option("--cap-factor", type=click.FloatRange(0.0, min_open=True), default=1.0, show_default=True,
                        help="For --balance cap.")(f)


class DefaultCommandGroup(click.Group):
    """A group whose first argument is a subcommand or, when it names none, the first argument of the
    default command: with ``default_command = "rounds"``, ``vdgtool pseudolabel CKPT ...`` runs
    ``vdgtool pseudolabel rounds CKPT ...`` while ``vdgtool pseudolabel select PREDS ...`` stays a
    subcommand. Without a default command the group behaves as a plain click group. (A checkpoint
    path spelled like a subcommand needs a ``./`` in front.)
    """

    default_command: str | None = None

    def parse_args(self, ctx, args):
        if (self.default_command and args and args[0] not in self.commands
                and args[0] not in ctx.help_option_names):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group("pseudolabel", cls=DefaultCommandGroup)
def pseudolabel():
    """Pseudo-labels for a target pool: self-training rounds, or one selection.

    `vdgtool pseudolabel CKPT --source SRC --target POOL ...` (the `rounds` command) runs R rounds of
    predict the pool, select, train on source + selected pool rows from the previous checkpoint, and
    report. `select` keeps the videos of a predictions store (vdgtool eval -o) whose score passes a
    threshold, optionally balanced per predicted class, and writes them as a predictions store for
    training on source + selected pool rows.

    \b
    Examples:
      vdgtool pseudolabel runs/erm --source real_train.h5 --target anim_pool.h5 --val real_val.h5 \\
        --test anim_test.h5 -o runs/pl --rounds 3 --threshold 0.9 --balance fraction
      vdgtool eval runs/erm --data pool.h5 --clips 3 -o preds.h5
      vdgtool pseudolabel select preds.h5 -o selected.h5 --threshold 0.9 --balance fraction --fraction 0.2
    """


pseudolabel.default_command = "rounds"


@pseudolabel.command("rounds")
@click.argument("ckpt", metavar="CKPT_OR_RUN_DIR", type=click.Path())
@click.option("--source", multiple=True, required=True, type=click.Path(), callback=at_file_callback,
              help="Labelled source store(s) trained on in every round (repeatable).")
@click.option("--target", "pool", multiple=True, required=True, type=click.Path(), callback=at_file_callback,
              help="The unlabelled pool to pseudo-label (repeatable); its labels are never read for training.")
@click.option("--val", type=click.Path(), help="Source validation store: each round's best.pt and the source "
                                               "accuracy (never the target).")
@click.option("--test", "tests", multiple=True, type=click.Path(), callback=at_file_callback,
              help="Test store(s), only reported (repeatable). A pool sharing videos with them is refused "
                   "unless --transductive.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Output directory (round1/, round2/, ...).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Self-training rounds.")
@_score_options
@click.option("--balance", type=click.Choice(["none", "fraction", "cap"]), default="none", show_default=True,
              help="Per predicted class: fraction = top ceil(q_r * n_k) (CBST, q_r from --fraction); "
                   "cap = at most ceil(cap_factor * |S| / K).")
@click.option("--fraction", help="Schedule of q per round for --balance fraction (the last value repeats) "
                                 "[default: 0.2,0.4,0.6].")
@_cap_option
@click.option("--top-per-class", type=click.IntRange(min=1), default=None, help="At most N videos per class.")
@click.option("--views", type=click.IntRange(min=1), default=3, show_default=True,
              help="Clips per pool video whose softmax scores are averaged.")
@click.option("--accumulate/--no-accumulate", default=False, show_default=True,
              help="Keep the previous rounds' selections too (labels from the newest predictions).")
@click.option("--round-epochs", type=click.IntRange(min=1), default=5, show_default=True, help="Epochs per round.")
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), default=0.001, show_default=True,
              help="Learning rate of every round.")
@click.option("--pl-weight", type=click.FloatRange(0.0), default=1.0, show_default=True,
              help="Weight of the loss of pseudo-labelled clips.")
@click.option("--mix", type=click.Choice(["union", "balanced"]), default="union", show_default=True,
              help="union = one stream over source + selected rows; balanced = source and pool clips 1:1 per batch.")
@click.option("--ckpt-rule", type=click.Choice(["last", "val"]), default="last", show_default=True,
              help="The next round starts from last.pt, or from best.pt on --val.")
@click.option("--transductive", is_flag=True, help="Allow a pool that shares videos with --test (reported as such).")
@click.option("--method", help="Training method of the rounds [default: erm]; e.g. augsearch to keep searching.")
@click.option("--hp", multiple=True, help="NAME=VALUE hyper-parameter of --method (repeatable).")
@click.option("--train-config", type=click.Path(), help="JSON/TOML of further train options for every round "
                                                        "(keys as vdgtool train; e.g. optimizer, scale_min).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--amp", type=click.Choice(["auto", "off", "fp16", "bf16"]), default="auto", show_default=True)
@workers_option
@device_option
@seed_option
@resume_option
@overwrite_option
@json_option
def rounds_cmd(ckpt, source, pool, val, tests, output, rounds, threshold, score, balance, fraction, cap_factor,
               top_per_class, views, accumulate, round_epochs, lr, pl_weight, mix, ckpt_rule, transductive, method, hp,
               train_config, batch_size, amp, workers, device, seed, resume, overwrite, as_json):
    """Self-training rounds from CKPT: predict the pool, select, train on source + selected, report.

    Round r predicts --target with the round r-1 checkpoint (--views clips averaged), selects as
    `select` does (writing ROUND/preds.h5, selected.h5, selection.json), trains from that checkpoint
    on --source + the selected pool rows (others dropped; pool labels never reach a loss) for
    --round-epochs with CKPT's model and training options, and evaluates the new checkpoint on --val
    and every --test. One stdout row per round (round 0 = CKPT): selected, coverage, pseudo-label
    precision (a diagnostic read from the pool's labels after selecting), test and source accuracy.
    OUT/summary.json says inductive or transductive. --resume keeps finished rounds (ROUND/done).
    Round 1 selecting nothing exits 1; a later empty round stops the run with a warning.

    \b
    Examples:
      vdgtool pseudolabel runs/erm --source real_train.h5 --target anim_pool.h5 --val real_val.h5 \\
        --test anim_test.h5 -o runs/pl --rounds 3
      vdgtool pseudolabel runs/erm --source real_train.h5 --target anim_pool.h5 --val real_val.h5 \\
        -o runs/pl_cbst --balance fraction --fraction 0.2,0.4,0.6 --threshold 0
    """
    from vdgtool.adapt.rounds import run_rounds
    from vdgtool.cli.common import resolve_device
    from vdgtool.cli.train import _parse_kv
    from vdgtool.train.config import load_config_file

    overrides = load_config_file(train_config) if train_config else {}
    overrides = {k.replace("-", "_"): v for k, v in overrides.items()}

    def show(row):  # one stdout row per round as soon as it is done (the header with round 0)
        if not as_json:
            if row["round"] == 0:
                click.echo(_round_header(tests))
            click.echo(_round_line(row, tests))

    res = run_rounds(ckpt, source=list(source), pool=list(pool), out=output, val=val, tests=list(tests),
                     rounds=rounds, threshold=threshold, score=score, balance=balance, fraction=fraction,
                     cap_factor=cap_factor, top_per_class=top_per_class, views=views, accumulate=accumulate,
                     round_epochs=round_epochs, lr=lr, pl_weight=pl_weight, mix=mix, ckpt_rule=ckpt_rule,
                     transductive=transductive, method=method, hp=_parse_kv(hp, "--hp"), train_overrides=overrides,
                     seed=seed, device=resolve_device(device), batch_size=batch_size, workers=workers, amp=amp,
                     resume=resume, overwrite=overwrite, on_round=show)
    if as_json:
        emit(res, True)
    else:
        click.echo(f"{res['setting']}: {res['rounds_done']} rounds"
                   + (f" (stopped: {res['stopped']})" if res["stopped"] else "")
                   + f"; precision is a diagnostic (pool labels, never used); wrote {output}/summary.json", err=True)


def _round_header(tests) -> str:
    cols = ["round", "selected", "coverage %", "PL precision % (diag.)"]
    for t in tests:
        cols += [f"{_name(t)} top1 %", f"{_name(t)} mean-class %"]
    cols.append("source val top1 %")
    return "\t".join(cols)


def _round_line(row: dict, tests) -> str:
    vals = [row["round"], row.get("selected"), _pct(row.get("coverage")), _pct(row.get("precision"))]
    for t in tests:
        m = row.get(f"test:{t}") or {}
        vals += [_pct(m.get("top1")), _pct(m.get("mean_class"))]
    vals.append(_pct((row.get("source_val") or {}).get("top1")))
    return "\t".join("-" if v is None else str(v) for v in vals)


def _name(path: str) -> str:
    import os

    return os.path.splitext(os.path.basename(path))[0]


@pseudolabel.command("select")
@click.argument("preds", metavar="PREDS.h5", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Predictions store of the selected videos.")
@_score_options
@click.option("--balance", type=click.Choice(["none", "fraction", "cap"]), default="none", show_default=True,
              help="Per predicted class: fraction = the top ceil(q * n_k) (n_k = videos predicted k); "
                   "cap = at most ceil(cap_factor * |S| / K).")
@click.option("--fraction", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="q for --balance fraction (e.g. 0.2, 0.4, 0.6 in rounds 1, 2, 3).")
@_cap_option
@click.option("--top-per-class", type=click.IntRange(min=1), default=None, help="At most N videos per class.")
@click.option("--accumulate", "previous", type=click.Path(),
              help="A previous selected store of the same pool: keep its videos too (labels from PREDS).")
@overwrite_option
@json_option
def select_cmd(preds, output, threshold, score, balance, fraction, cap_factor, top_per_class, previous, overwrite,
               as_json):
    """Select pseudo-labelled videos from a predictions store.

    Rows of one video (several clips) are averaged first. The output holds one row per selected
    video: arrays probs (the pseudo-label is their argmax) and conf (the score); the conventions
    record the rule and the parent store; the ground-truth label column is withheld (-1). Prints
    per-class counts, coverage and, when PREDS has ground-truth labels, the pseudo-label precision
    (a diagnostic: labels are never used to select). An empty selection exits 1.

    \b
    Examples:
      vdgtool pseudolabel select preds.h5 -o sel.h5 --threshold 0.8
      vdgtool pseudolabel select preds.h5 -o sel.h5 --balance cap --score margin --threshold 0.5
      vdgtool pseudolabel select preds_r2.h5 -o sel_r2.h5 --accumulate sel_r1.h5
    """
    from vdgtool.adapt.pseudolabel import select_predictions

    d = select_predictions(preds, output, threshold=threshold, score=score, balance=balance, fraction=fraction,
                           cap_factor=cap_factor, top_per_class=top_per_class, accumulate=previous,
                           overwrite=overwrite)
    if as_json:
        emit(d, True)
    else:
        has_gt = d["precision"] is not None
        headers = ["class", "predicted", "score >= threshold", "selected"] + (["precision % (diagnostic)"] * has_gt)
        rows = [[r["class"], r["predicted"], r["above_threshold"], r["selected"]]
                + ([_pct(r.get("precision"))] * has_gt) for r in d["per_class"]]
        emit(d, False, rows, headers=headers)
        click.echo("")
        summary = [("pool videos", d["n_pool"]), ("selected", d["n_selected"]), ("coverage %", _pct(d["coverage"])),
                   (f"mean {score}", round(d["mean_conf"], 4))]
        if has_gt:
            summary.append(("precision % (diagnostic: ground truth, not used to select)", _pct(d["precision"])))
        emit(d, False, summary)
    click.echo(f"wrote {output}", err=True)


def _pct(v):
    return None if v is None else round(100.0 * v, 2)
