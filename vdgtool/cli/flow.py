"""vdgtool flow."""

from __future__ import annotations

import click

from vdgtool.cli.common import FiniteFloat, batch_job_options, device_option, emit, report_batch
from vdgtool.flow.params import TVL1Params

_D = TVL1Params()


@click.command("flow")
@click.argument("clip_store", required=False, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Flow store to write (.h5); with --pairs a .flo file (one pair) or a folder.")
@click.option("--pairs", nargs=2, multiple=True, type=click.Path(), metavar="IMG1 IMG2",
              help="Compute flow for an image pair instead of a store (repeatable).")
@click.option("--pairs-list", type=click.Path(), default=None,
              help="Text file with one 'IMG1 IMG2 [GT.flo]' per line.")
@click.option("--gt", multiple=True, type=click.Path(),
              help="Ground-truth .flo for each --pairs (in order): reports end-point error.")
@click.option("--backend", type=click.Choice(["torch", "opencv", "farneback", "dis"]), default="torch",
              show_default=True, help="torch: batched TV-L1; opencv: cv2 DualTVL1 (same parameters); "
                                      "farneback / dis: fast OpenCV methods.")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Flow between frames k*S and (k+1)*S (1 = consecutive frames).")
@click.option("--bound", type=FiniteFloat(min=0, min_open=True), default=20.0, show_default=True, help="Clip flow to +-bound (pixels).")
@click.option("--dtype", type=click.Choice(["uint8", "float16"]), default="uint8", show_default=True,
              help="uint8: clip to +-bound, linear to 0..255 (mmaction2/denseflow); float16: unquantised.")
@click.option("--tau", type=FiniteFloat(), default=_D.tau, show_default=True, help="TV-L1 time step.")
@click.option("--lambda", "lambda_", type=FiniteFloat(), default=_D.lambda_, show_default=True,
              help="TV-L1 data weight (smaller = smoother).")
@click.option("--theta", type=FiniteFloat(), default=_D.theta, show_default=True, help="TV-L1 coupling weight.")
@click.option("--scales", type=click.IntRange(min=1), default=_D.scales, show_default=True,
              help="Pyramid levels (capped so the coarsest is >= 16 px).")
@click.option("--zoom", type=FiniteFloat(), default=_D.zoom, show_default=True, help="Pyramid downsampling factor.")
@click.option("--warps", type=click.IntRange(min=1), default=_D.warps, show_default=True, help="Warps per pyramid level.")
@click.option("--epsilon", type=FiniteFloat(min=0), default=_D.epsilon, show_default=True, help="Stopping threshold.")
@click.option("--iterations", type=click.IntRange(min=1), default=_D.iterations, show_default=True,
              help="Max iterations per warp (per outer round).")
@click.option("--outer-iterations", type=click.IntRange(min=1), default=_D.outer_iterations, show_default=True,
              help="Rounds of (median filter, iterations) per warp, as OpenCV's outerIterations.")
@click.option("--median", type=click.IntRange(min=0), default=_D.median, show_default=True,
              help="Median filter size applied before each round (0 = off).")
@click.option("--presmooth", type=FiniteFloat(min=0), default=_D.presmooth, show_default=True,
              help="Gaussian sigma pre-smoothing both frames (torch backend; 0 = off).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Pairs solved at once (torch).")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the solver (faster on CPU and GPU; the first run per frame size takes 20-90 s, "
              "later runs reuse --compile-cache).")
@click.option("--compile-cache", type=click.Path(file_okay=False), default=None,
              help="Directory of compiled kernels that later runs and array tasks reuse (default: "
              "$VDGTOOL_COMPILE_CACHE or ~/.cache/vdgtool/torch-compile).")
@click.option("--dis-preset", type=click.Choice(["ultrafast", "fast", "medium"]), default="medium",
              show_default=True, help="Preset of the dis backend.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="CPU threads for torch and OpenCV (0 = library default).")
@device_option
@batch_job_options("videos")
def flow(clip_store, output, pairs, pairs_list, gt, backend, stride, bound, dtype, tau, lambda_, theta, scales,
         zoom, warps, epsilon, iterations, outer_iterations, median, presmooth, batch_size, compile_, compile_cache,
         dis_preset, threads, limit, strict, device, num_shards, shard_index, resume, overwrite, seed, as_json):
    """Optical flow of every video in a clip store, or of image pairs (.flo).

    CLIP_STORE (from `vdgtool extract`) -> flow store: per video a (T-1, H, W, 2) array of forward
    flow (u, v) between consecutive frames (or frames S apart with --stride), uint8 quantised with
    bound 20 as mmaction2/denseflow (or float16). The store records backend, parameters, bound,
    quantisation and the parent's frame size. Videos that fail are listed and skipped.

    \b
    Examples:
      vdgtool flow clips.h5 -o flow.h5 --batch-size 32 --threads 1
      vdgtool flow --pairs frame10.png frame11.png -o out.flo --gt gt.flo
      vdgtool flow --pairs-list pairs.txt -o flows/ --backend opencv
    """
    from vdgtool.errors import InputError
    from vdgtool.flow.backends import get_backend

    if threads:
        import cv2
        import torch

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    params = TVL1Params(tau=tau, lambda_=lambda_, theta=theta, scales=scales, zoom=zoom, warps=warps,
                        epsilon=epsilon, iterations=iterations, outer_iterations=outer_iterations, median=median,
                        presmooth=presmooth).validate()
    pair_mode = bool(pairs or pairs_list)
    if pair_mode and clip_store:
        raise click.UsageError("give either CLIP_STORE or --pairs/--pairs-list, not both")
    if not pair_mode and not clip_store:
        raise click.UsageError("missing CLIP_STORE (or --pairs IMG1 IMG2)")
    if gt and not pairs:
        raise click.UsageError("--gt goes with --pairs (a --pairs-list takes the .flo as a third column)")
    dev = None
    if backend == "torch":
        from vdgtool.cli.common import resolve_device

        dev = resolve_device(device)
    be = get_backend(backend, params=params, device=dev, batch_size=batch_size, compile=compile_,
                     preset=dis_preset, compile_cache=compile_cache)

    if pair_mode:
        from vdgtool.flow.pipeline import flow_pairs, read_pairs_list

        items = []
        if gt and len(gt) != len(pairs):
            raise InputError(f"{len(gt)} --gt file(s) for {len(pairs)} pair(s)", "give one --gt per --pairs")
        for i, (a, b) in enumerate(pairs):
            items.append((a, b, gt[i] if gt else None))
        if pairs_list:
            items += read_pairs_list(pairs_list)
        rows = flow_pairs(items, output, be)
        epes = [r["epe"] for r in rows if r["epe"] is not None]
        summary = {"backend": backend, "params": be.params(), "pairs": rows,
                   "mean_epe": sum(epes) / len(epes) if epes else None}
        if as_json:
            emit(summary, True)
        else:
            table = [(r["flo"], f"{r['width']}x{r['height']}", r["seconds"],
                      "" if r["epe"] is None else round(r["epe"], 3),
                      "" if r["epe_zero"] is None else round(r["epe_zero"], 3)) for r in rows]
            if epes:
                table.append(("mean", "", "", round(summary["mean_epe"], 3), ""))
            emit(summary, False, table, headers=("flow", "size", "s/pair", "EPE", "EPE zero flow"))
        return

    from vdgtool.flow.pipeline import compute_flow_store

    res = compute_flow_store(clip_store, output, be, stride=stride, bound=bound, dtype=dtype,
                             num_shards=num_shards, shard_index=shard_index, resume=resume, overwrite=overwrite,
                             limit=limit, seed=seed)
    d = res.to_dict()
    rows = [("store", d["store"]), ("videos", d["videos"]), ("flow fields", d["fields"]),
            ("bad inputs", d["errors"]), ("backend", d["backend"]), ("seconds", d["seconds"]),
            ("pairs/s", d["pairs_per_second"])]
    report_batch(d, rows, as_json, strict, key="key", failed="video(s) could not be processed")
