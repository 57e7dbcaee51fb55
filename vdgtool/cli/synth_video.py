"""vdgtool synth-video."""

from __future__ import annotations

import click

from vdgtool.cli.common import FiniteFloat, batch_job_options, device_option, report_batch
from vdgtool.video.decode import MAX_PIXELS


def _range(ctx, param, text):
    """LOW,HIGH -> (low, high); checked while parsing, so a bad range is a usage error (exit 2)."""
    if text is None:
        return None
    import math

    try:
        lo, hi = (float(x) for x in str(text).split(","))
    except ValueError:
        raise click.BadParameter(f"'{text}' is not LOW,HIGH (e.g. 1,2)") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise click.BadParameter(f"'{text}' is not a finite LOW,HIGH range (e.g. 1,2)")
    return lo, hi


@click.command("synth-video")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Clip store to write (.h5).")
@click.option("--depth", default="none", show_default=True,
              help="none (constant depth), a folder of depth maps (<key>.png 16-bit inverse depth as MiDaS "
                   "writes, or .npy), or a transformers depth model (a save_pretrained folder or a hub id); "
                   "prefix maps: / model: to force one reading.")
@click.option("--mode", type=click.Choice(["depth", "crop2d"]), default="depth", show_default=True,
              help="depth: 3-D camera motion over a depth-lifted image; crop2d: 2-D pan/zoom crop baseline.")
@click.option("--preset", type=click.Choice(["mm2024", "depthstillation"]), default="mm2024", show_default=True,
              help="Motion preset: mm2024 (16 frames, 1-2 deg, 0.01-0.02, 384x384) or depthstillation "
                   "(5-10 deg, 0.1-0.2, source size, 2 frames).")
@click.option("--frames", type=click.IntRange(1, 1024), default=None, help="Frames per video (default: the preset's).")
@click.option("--size", default=None,
              help="Output size: 384 (square, as the MM 2024 code), WIDTHxHEIGHT (640x480) or source "
                   "(default: the preset's).")
@click.option("--trajectory", type=click.Choice(["random", "constant"]), default="random", show_default=True,
              help="random: a new random motion every step; constant: one motion repeated (constant velocity).")
@click.option("--rot-range", default=None, callback=_range, help="Per-axis rotation per step in degrees, LOW,HIGH (random signs).")
@click.option("--trans-range", default=None, callback=_range,
              help="Per-axis translation per step, LOW,HIGH (random signs); in crop2d the pan/zoom fraction.")
@click.option("--fill", type=click.Choice(["telea", "torch", "none"]), default="telea", show_default=True,
              help="Hole filling: OpenCV Telea inpainting (as the paper's code) or a fast torch push-pull fill.")
@click.option("--redepth", is_flag=True, help="With a depth network: re-estimate depth on every generated frame "
                                              "(as the MM 2024 code; slower) instead of warping it.")
@click.option("--save-flow", is_flag=True, help="Store the exact synthetic flow t->t+1 as extras/flow (float16).")
@click.option("--save-depth", is_flag=True, help="Store the depth of every frame as extras/depth (float16).")
@click.option("--fps", type=FiniteFloat(min=0, min_open=True), default=8.0, show_default=True,
              help="Frame rate recorded for the videos.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=MAX_PIXELS, show_default=True,
              help="Report and skip an image whose header claims more pixels (decompression bombs).")
@click.option("--domain", default="synthetic", show_default=True, help="Domain name (a CSV column overrides it).")
@click.option("--classes", "classes_file", type=click.Path(), default=None,
              help="Class list file (one name per line) fixing the class order / naming integer labels.")
@click.option("--encoding", type=click.Choice(["raw", "jpeg"]), default="raw", show_default=True,
              help="Frame encoding in the store.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=90, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, None), default=8, show_default=True,
              help="Images rendered together (same size) in one torch batch.")
@device_option
@batch_job_options("images")
def synth_video(input_path, output, depth, mode, preset, frames, size, trajectory, rot_range, trans_range, fill,
                redepth, save_flow, save_depth, fps, max_pixels, domain, classes_file, encoding, jpeg_quality, batch_size, limit,
                strict, device, num_shards, shard_index, resume, overwrite, seed, as_json):
    """Turn labelled still images into short videos (depth-based camera motion, or a 2-D crop baseline).

    INPUT is a folder tree ROOT/<class>/<image> or a CSV manifest (path,label[,domain]). Each image
    becomes one video in a clip store (the schema `extract` writes), with the camera trajectory in
    extras/trajectory and, with --save-flow, the exact flow between frames in extras/flow. Depth
    maps are looked up as DIR/<key without extension>.png|.npy (key = path relative to ROOT).

    \b
    Example:
      vdgtool synth-video stanford40/ -o s40_synth.h5 --depth maps/ --preset mm2024 --save-flow
    """
    from vdgtool.cli.common import resolve_device
    from vdgtool.synth.pipeline import SynthOptions, synth_video as run
    from vdgtool.video.manifest import load_manifest

    man = load_manifest(input_path, domain=domain, classes_file=classes_file)
    opts = SynthOptions(mode=mode, preset=preset, frames=frames, size=size if size is not None else "preset",
                        trajectory=trajectory, rot_deg=rot_range, trans=trans_range, fill=fill,
                        save_flow=save_flow, save_depth=save_depth, fps=fps, redepth=redepth, max_pixels=max_pixels)
    res = run(man, output, depth=depth, opts=opts, device=resolve_device(device), batch_size=batch_size,
              num_shards=num_shards, shard_index=shard_index, resume=resume, overwrite=overwrite, seed=seed,
              encoding=encoding, jpeg_quality=jpeg_quality, limit=limit, inputs=[input_path])
    d = res.to_dict()
    rows = [("store", d["store"]), ("videos", d["videos"]), ("frames", d["frames"]), ("bad inputs", d["errors"]),
            ("seconds", d["seconds"]), ("render frames/s", d["render_frames_per_s"])]
    report_batch(d, rows, as_json, strict)
