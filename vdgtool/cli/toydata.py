"""vdgtool toydata."""

from __future__ import annotations

import click

from vdgtool.cli.common import FiniteFloat, emit, json_option, overwrite_option, seed_option

#: --kind -> "module:function"; each generator takes (out_dir, *, size, frames, videos_per_class, bias,
#: seed, fps, speed, overwrite) and returns a summary with a "domains" table (name -> videos, format,
#: manifest). Imported lazily, so adding a kind costs nothing at start-up.
TOY_KINDS: dict[str, str] = {
    "motion": "vdgtool.video.toydata:make_toy_dataset",
    "image-to-video": "vdgtool.video.toydata_i2v:make_i2v_toy",
}


@click.command("toydata")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(sorted(TOY_KINDS)), default="motion", show_default=True,
              help="Which toy: motion = real mp4 vs animated GIF, classes are motion directions; "
                   "image-to-video = labelled stills (source) vs GIFs in another style (target pool + test "
                   "split), classes are a shape and a motion.")
@click.option("--size", type=click.IntRange(16, 1024), default=64, show_default=True, help="Frame side in pixels.")
@click.option("--frames", type=click.IntRange(2, 1024), default=16, show_default=True, help="Frames per clip.")
@click.option("--videos-per-class", type=click.IntRange(1, 100_000), default=32, show_default=True,
              help="Clips per class and domain.")
@click.option("--bias", type=FiniteFloat(0, 1), default=0.7, show_default=True,
              help="motion: probability that a real clip's background hue matches its class (the spatial "
                   "shortcut); image-to-video: probability that a target video shows its class's shape.")
@click.option("--fps", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--speed", type=click.IntRange(min=1), default=None,
              help="Object speed in pixels per frame (default: size/16; image-to-video: size/32).")
@overwrite_option
@seed_option
@json_option
def toydata(out_dir, kind, size, frames, videos_per_class, bias, fps, speed, overwrite, seed, as_json):
    """Generate the built-in two-domain action dataset (real mp4 vs animated GIF).

    Classes are motion directions of a textured object; the real domain has a background-colour
    shortcut correlated with the class (--bias), the animated domain has none. Writes
    OUT_DIR/{real,animated}/<class>/<clip> and OUT_DIR/{real,animated}.csv.

    --kind image-to-video: a class is a shape and a motion. Photo-like stills
    OUT_DIR/images/<class>/*.png (the input of `vdgtool synth-video`) and smooth-shaded GIFs
    OUT_DIR/{target_train,target_test}/<class>/*.gif in which the object moves; with probability
    1 - bias a target video hides the shape (only its motion tells the class). Manifests
    OUT_DIR/{images,target_train,target_test}.csv; OUT_DIR/toy.json says which target videos show
    their shape. See docs/cfb.md.

    \b
    Example:
      vdgtool toydata demo/ --videos-per-class 16 --bias 0.7 --seed 0
      vdgtool toydata i2v/ --kind image-to-video --size 32 --frames 16 --videos-per-class 30
    """
    import importlib
    import os

    mod, fn = TOY_KINDS[kind].split(":")
    make = getattr(importlib.import_module(mod), fn)
    os.makedirs(out_dir, exist_ok=True)
    s = make(out_dir, size=size, frames=frames, videos_per_class=videos_per_class, bias=bias,
                         seed=seed, fps=fps, speed=speed, overwrite=overwrite)
    if as_json:
        emit(s, True)
    else:
        emit(s, False, [(d, v["videos"], v["format"], v["manifest"]) for d, v in s["domains"].items()],
             headers=("domain", "videos", "format", "manifest"))
