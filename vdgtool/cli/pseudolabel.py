"""vdgtool pseudolabel (a group: ``select`` today; the self-training rounds form is the default command)."""

from __future__ import annotations

import click

from vdgtool.cli.common import emit, json_option, overwrite_option


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
    """Pseudo-labels for a target pool: select confident predictions (and self-training rounds).

    `select` keeps the videos of a predictions store (vdgtool eval -o) whose score passes a
    threshold, optionally balanced per predicted class, and writes them as a predictions store for
    training on source + selected pool rows.

    \b
    Example:
      vdgtool eval runs/erm --data pool.h5 --clips 3 -o preds.h5
      vdgtool pseudolabel select preds.h5 -o selected.h5 --threshold 0.9 --balance fraction --fraction 0.2
    """


@pseudolabel.command("select")
@click.argument("preds", metavar="PREDS.h5", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Predictions store of the selected videos.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=0.9, show_default=True,
              help="Keep videos whose score is at least this (every score lies in [0, 1]).")
@click.option("--score", type=click.Choice(["conf", "margin", "entropy"]), default="conf", show_default=True,
              help="conf = max p; margin = p(1) - p(2); entropy = 1 - H(p) / log K.")
@click.option("--balance", type=click.Choice(["none", "fraction", "cap"]), default="none", show_default=True,
              help="Per predicted class: fraction = the top ceil(q * n_k) (n_k = videos predicted k); "
                   "cap = at most ceil(cap_factor * |S| / K).")
@click.option("--fraction", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="q for --balance fraction (e.g. 0.2, 0.4, 0.6 in rounds 1, 2, 3).")
@click.option("--cap-factor", type=click.FloatRange(0.0, min_open=True), default=1.0, show_default=True,
              help="For --balance cap.")
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
