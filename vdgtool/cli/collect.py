"""vdgtool collect."""

from __future__ import annotations

import click

from vdgtool.cli.common import at_file_callback


@click.command("collect")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(), callback=at_file_callback)
@click.option("--select", "rule", type=click.Choice(["val", "last", "oracle"]), default="val", show_default=True,
              help="Model selection: best epoch on the source validation store, last epoch, or each store's own "
                   "best (oracle: an upper bound that peeks at the labels).")
@click.option("--compare-selection", is_flag=True, help="All three selection rules side by side.")
@click.option("--source", help="Source validation store for --select val (default: the first --val of each run).")
@click.option("--target", help="Select every column on this store for --select oracle (default: each its own).")
@click.option("--group-by", default="auto", show_default=True,
              help="Comma-separated config keys that define a row; auto = every option that differs between runs.")
@click.option("--ignore", default="", help="Comma-separated options to average over knowingly (e.g. data).")
@click.option("--metric", type=click.Choice(["top1", "mean_class"]), default="top1", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "latex", "csv", "json"]), default="table",
              show_default=True, help="Output form (markdown / latex carry the caption; csv is one line per cell).")
@click.option("--digits", type=click.IntRange(0, 6), default=2, show_default=True, help="Decimals of the percentages.")
@click.option("--done-only", is_flag=True, help="Leave out runs without a done marker (default: include, marked *).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def collect_cmd(run_dirs, rule, compare_selection, source, target, group_by, ignore, metric, fmt, digits, done_only,
                as_json):
    """Gather runs (seeds, methods, hyper-parameters) into one table of mean ± SE over seeds.

    RUN_DIR is a run directory, a directory of runs (a sweep) or @FILE (a list of them). Every option
    that differs between the runs defines a group (runs with another --hp or --init are never averaged
    together); the caption states the metric, the model-selection rule and the grouping.

    \b
    Examples:
      vdgtool collect runs/sweep --select val --format markdown
      vdgtool collect runs/erm_s* runs/drl_s* --compare-selection --format latex > table.tex
      vdgtool collect @runs.txt --group-by method,hparams.lam --format csv
    """
    from vdgtool.evaluate.collect import collect
    from vdgtool.evaluate.tables import render

    res = collect(list(run_dirs), rule, source, target, group_by, ignore=[k for k in ignore.split(",") if k],
                  metric=metric, compare=compare_selection, done_only=done_only)
    unfinished = sum(r["unfinished"] for r in res["rows"])
    if unfinished:
        click.echo(f"vdgtool: warning: {unfinished} unfinished run(s) included (marked *; --done-only leaves "
                   "them out)", err=True)
    if res["skipped_unfinished"]:
        click.echo(f"vdgtool: left out {len(res['skipped_unfinished'])} unfinished run(s)", err=True)
    click.echo(render(res, "json" if as_json else fmt, digits))
