"""vdgtool plot curves|features."""

from __future__ import annotations

import click

from vdgtool.cli.common import at_file_callback, emit, json_option, seed_option


@click.group("plot")
def plot():
    """Figures for papers and for watching runs (PNG; needs the plot extra: pip install 'vdgtool[plot]').

    \b
    Examples:
      vdgtool plot curves runs/sweep/*/ -o curves.png
      vdgtool plot features src_feats.h5 tgt_feats.h5 --by domain -o tsne.png
    """


@plot.command("curves")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(), callback=at_file_callback)
@click.option("-o", "--output", required=True, type=click.Path(), help="PNG to write.")
@click.option("--metric", type=click.Choice(["top1", "mean_class"]), default="top1", show_default=True)
@click.option("--title", default=None, help="Figure title.")
@json_option
def curves_cmd(run_dirs, output, metric, title, as_json):
    """Training loss and validation accuracy per store over epochs (one colour per run).

    RUN_DIR is a run directory (or @FILE, a list of them); runs still training are drawn up to their
    last finished epoch.
    """
    from vdgtool.evaluate.collect import find_runs
    from vdgtool.evaluate.plots import plot_curves

    res = plot_curves(find_runs(list(run_dirs)), output, metric=metric, title=title)
    emit(res, as_json)


@plot.command("features")
@click.argument("stores", nargs=-1, required=True, type=click.Path(), callback=at_file_callback)
@click.option("-o", "--output", required=True, type=click.Path(), help="PNG to write.")
@click.option("--by", type=click.Choice(["domain", "class"]), default="domain", show_default=True,
              help="Colour the points by domain or by class (the marker tells the stores apart).")
@click.option("--embedding", type=click.Choice(["tsne", "umap", "pca"]), default="tsne", show_default=True,
              help="t-SNE (scikit-learn), UMAP (needs umap-learn) or PCA.")
@click.option("--max-points", type=click.IntRange(min=3), default=3000, show_default=True,
              help="Random subsample (split evenly over the stores) to keep t-SNE quick.")
@click.option("--title", default=None, help="Figure title.")
@seed_option
@json_option
def features_cmd(stores, output, by, embedding, max_points, title, seed, as_json):
    """A 2-D embedding of feature stores (from `vdgtool features`): source vs target, or classes.

    \b
    Example:
      vdgtool features runs/erm --data real.h5 -o real_f.h5 && vdgtool features runs/erm --data anim.h5 -o anim_f.h5
      vdgtool plot features real_f.h5 anim_f.h5 --by domain -o tsne.png
    """
    from vdgtool.evaluate.plots import plot_features

    res = plot_features(list(stores), output, by=by, method=embedding, max_points=max_points, seed=seed, title=title)
    emit(res, as_json)
