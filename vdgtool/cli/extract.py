"""vdgtool extract."""

from __future__ import annotations

import click

from vdgtool.cli.common import FiniteFloat, batch_job_options, report_batch, workers_option
from vdgtool.video.decode import FRAME_LIMIT, MAX_PIXELS


@click.command("extract")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Clip store to write (.h5).")
@click.option("--size", default="128", show_default=True,
              help="Frame size: short side (128) or WIDTHxHEIGHT (160x120); 0 keeps the source size.")
@click.option("--fps", type=FiniteFloat(min=0, min_open=True), default=None, help="Resample to this frame rate by timestamps.")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True, help="Keep every N-th frame (when no --fps).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Store at most this many frames per video.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=MAX_PIXELS, show_default=True,
              help="Refuse (report and skip) a source whose frames have more pixels (checked before decoding).")
@click.option("--frame-limit", type=click.IntRange(min=1), default=FRAME_LIMIT, show_default=True,
              help="Refuse (report and skip) a video that would give more stored frames than this.")
@click.option("--encoding", type=click.Choice(["jpeg", "raw"]), default="jpeg", show_default=True,
              help="Frame encoding in the store (see docs/stores.md: jpeg is ~8x smaller, raw is exact).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=90, show_default=True)
@click.option("--decoder", type=click.Choice(["auto", "decord", "pyav", "torchcodec"]), default="auto",
              show_default=True, help="Video reader: auto = decord, then PyAV for files it cannot read; torchcodec "
              "(pip install 'vdgtool[torchcodec]'; NVDEC with --device cuda) falls back to them per file.")
@click.option("--device", default="cpu", show_default=True,
              help="Where torchcodec decodes: cpu, cuda, cuda:1 (the other readers decode on the CPU).")
@click.option("--resize", type=click.Choice(["decoder", "area"]), default="decoder", show_default=True,
              help="decoder: scale inside the decoder (bilinear, faster); area: decode at full size, then "
              "OpenCV's area filter.")
@click.option("--domain", default=None, help="Domain name (default: the folder name, or the CSV's column).")
@click.option("--classes", "classes_file", type=click.Path(), default=None,
              help="Class list file (one name per line) fixing the class order / naming integer labels.")
@click.option("--data-prefix", default=None, help="Folder that relative paths of an mmaction list refer to.")
@workers_option
@batch_job_options("videos")
def extract(input_path, output, size, fps, stride, max_frames, max_pixels, frame_limit, encoding, jpeg_quality,
            decoder, device, resize, domain, classes_file, data_prefix, limit, strict, workers, num_shards, shard_index, resume, overwrite,
            seed, as_json):
    """Decode videos and GIFs into a clip store.

    INPUT is a folder tree ROOT/<class>/<video>, a CSV manifest (path,label[,domain]), an
    mmaction list (`path label` or `frame_dir total_frames label`), or a single video or GIF
    (a one-video store); `-` reads a CSV or list from stdin (relative paths from the working
    directory or --data-prefix). Formats: mp4, avi, webm, mkv, mov, animated GIF, and frame folders.
    Unreadable files, FIFOs and sources above --max-pixels / --frame-limit are reported and skipped.

    \b
    Example:
      vdgtool extract data/ucf101 -o ucf.h5 --size 128 --fps 25 --workers 8
      sbatch --array=0-15 --wrap 'vdgtool extract list.txt -o ucf.$SLURM_ARRAY_TASK_ID.h5'
      find data -name '*.mp4' | awk -F/ '{print $0","$(NF-1)}' | vdgtool extract - -o s.h5
    """
    from vdgtool.video.decode import DecodeOptions, check_decoders, decoder_chain, parse_size
    from vdgtool.video.extract import extract as run
    from vdgtool.video.manifest import load_manifest, load_manifest_stream

    decoders = decoder_chain(decoder)
    check_decoders(decoders)  # one line before any input is read
    if input_path == "-":
        man = load_manifest_stream(click.open_file("-", encoding="utf-8"), domain=domain, classes_file=classes_file,
                                   data_prefix=data_prefix)
    else:
        man = load_manifest(input_path, domain=domain, classes_file=classes_file, data_prefix=data_prefix)
    opts = DecodeOptions(size=parse_size(size), fps=fps, stride=stride, max_frames=max_frames, max_pixels=max_pixels,
                         frame_limit=frame_limit, resize=resize, device=device)
    res = run(man, output, opts=opts, encoding=encoding, jpeg_quality=jpeg_quality, workers=workers, decoders=decoders,
              num_shards=num_shards, shard_index=shard_index, resume=resume, overwrite=overwrite, seed=seed,
              limit=limit, inputs=[input_path])
    d = res.to_dict()
    rows = [("store", d["store"]), ("videos", d["videos"]), ("frames", d["frames"]), ("bad inputs", d["errors"]),
            ("decoders", ", ".join(f"{k}: {v}" for k, v in d["decoders"].items()))]
    report_batch(d, rows, as_json, strict, failed="input(s) could not be decoded")
