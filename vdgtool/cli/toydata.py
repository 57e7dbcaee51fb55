"""vdgtool toydata."""

from __future__ import annotations

import click

from vdgtool.cli.common import FiniteFloat, emit, json_option, overwrite_option, seed_option

#: --kind -> "module:function"; each generator takes keyword options among (size, frames,
#: videos_per_class, bias, seed, fps, speed, overwrite) after out_dir, and returns a summary with a
#: "domains" table (name -> videos, format, manifest). It gets only the options its signature names; an
#: option given on the command line that the kind does not take is an error. Imported lazily, so adding
#: a kind costs nothing at start-up.
TOY_KINDS: dict[str, str] = {
    "motion": "vdgtool.video.toydata:make_toy_dataset",
    "image-to-video": "vdgtool.video.toydata_i2v:make_i2v_toy",
    "temporal": "vdgtool.video.toydata_temporal:make_temporal_toy",
}


@click.command("toydata")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(sorted(TOY_KINDS)), default="motion", show_default=True,
              help="Which toy: motion = real mp4 vs animated GIF, classes are motion directions; "
                   "image-to-video = labelled stills (source) vs GIFs in another style (target pool + test "
                   "split), classes are a shape and a motion; temporal = classes are ordered pairs of "
                   "sub-motions, targets shift onset / tempo / drop one.")
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
@click.pass_context
def toydata(ctx, out_dir, kind, size, frames, videos_per_class, bias, fps, speed, overwrite, seed, as_json):
    """Generate a built-in toy dataset.

    --kind motion (default): real mp4 vs animated GIF. Classes are motion directions of a textured
    object; the real domain has a background-colour shortcut correlated with the class (--bias), the
    animated domain has none. Writes OUT_DIR/{real,animated}/<class>/<clip> and OUT_DIR/{real,animated}.csv.

    --kind temporal: classes are ordered pairs of sub-motions (both orders of each pair, so a bag of
    frames cannot tell them apart). A canonical textured source domain and cartoon-style targets: a
    no-shift control, an onset shift, a tempo change and the absence of one sub-motion (all mp4). Writes
    OUT_DIR/<domain>/<split>/<class>/<clip> and OUT_DIR/<domain>_<split>.csv (source_train, source_val,
    then <target>_val and <target>_test). See docs/apn.md.

    --kind image-to-video: a class is a shape and a motion. Photo-like stills
    OUT_DIR/images/<class>/*.png (the input of `vdgtool synth-video`) and smooth-shaded GIFs
    OUT_DIR/{target_train,target_test}/<class>/*.gif in which the object moves; with probability
    1 - bias a target video hides the shape (only its motion tells the class). Manifests
    OUT_DIR/{images,target_train,target_test}.csv; OUT_DIR/toy.json says which target videos show
    their shape. See docs/cfb.md.

    \b
    Examples:
      vdgtool toydata demo/ --videos-per-class 16 --bias 0.7 --seed 0
      vdgtool toydata i2v/ --kind image-to-video --size 32 --frames 16 --videos-per-class 30
      vdgtool toydata temporal/ --kind temporal --size 32 --videos-per-class 32 --seed 0
    """
    import importlib
    import inspect
    import os

    from click.core import ParameterSource

    mod, fn = TOY_KINDS[kind].split(":")
    make = getattr(importlib.import_module(mod), fn)
    given = dict(size=size, frames=frames, videos_per_class=videos_per_class, bias=bias, seed=seed, fps=fps,
                 speed=speed, overwrite=overwrite)
    takes = set(inspect.signature(make).parameters)
    for name in sorted(set(given) - takes):
        if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None):
            raise click.UsageError(f"--{name.replace('_', '-')} does not apply to --kind {kind}")
    os.makedirs(out_dir, exist_ok=True)
    s = make(out_dir, **{k: v for k, v in given.items() if k in takes})
    if as_json:
        emit(s, True)
    else:
        emit(s, False, [(d, v["videos"], v["format"], v["manifest"]) for d, v in s["domains"].items()],
             headers=("domain", "videos", "format", "manifest"))
