"""vdgtool store info|ls|verify|merge."""

from __future__ import annotations

import click

from vdgtool.cli.common import at_file_callback, emit, json_option, overwrite_option


@click.group("store")
def store():
    """Inspect, check and merge stores (clips, flow, features, predictions).

    \b
    Examples:
      vdgtool store info real.h5
      vdgtool store ls real.h5 --paths | head
      vdgtool store verify real.h5
      vdgtool store merge ucf.*.h5 -o ucf.h5
    """


@store.command("info")
@click.argument("path", type=click.Path())
@json_option
def info_cmd(path, as_json):
    """Summary of a store: kind, counts, classes, domains, conventions and provenance."""
    from vdgtool.stores.tools import info

    d = info(path)
    if as_json:
        emit(d, True)
        return
    rows = [("kind", f"{d['kind']} (schema {d['schema']})"), ("size", f"{d['size_mb']} MB")]
    if "videos" in d:
        fpv = d["frames_per_video"]
        rows += [("videos", d["videos"]), ("frames", d["frames"]),
                 ("frames/video", f"{fpv.get('min')}..{fpv.get('max')} (mean {fpv.get('mean')})" if fpv else "-"),
                 ("bad inputs", d["bad_inputs"]), ("decoders", _kv(d["decoders"])), ("extras", ", ".join(d["extras"]))]
    else:
        rows += [("rows", d["rows"]), ("arrays", _kv({k: "x".join(map(str, v)) for k, v in d["arrays"].items()}))]
    rows += [("classes", f"{len(d['classes'])}: " + ", ".join(d["classes"][:8]) + (" ..." if len(d["classes"]) > 8 else "")),
             ("domains", ", ".join(d["domains"]))]
    if d.get("per_domain"):
        rows.append(("videos/domain", _kv(d["per_domain"])))
    conv = {k: v for k, v in d["conventions"].items() if v is not None}
    rows.append(("conventions", _kv(conv)))
    prov = d["provenance"]
    rows += [("command", prov.get("command", "")), ("seed", prov.get("seed")),
             ("created", prov.get("created", "")), ("vdgtool", prov.get("versions", {}).get("vdgtool", ""))]
    emit(d, False, rows)


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


@store.command("ls")
@click.argument("path", type=click.Path())
@click.option("--paths", "paths_only", is_flag=True,
              help="Print only the source file of each video, one per line (with --errors: of each bad input).")
@click.option("--errors", "errors_only", is_flag=True, help="Only the table of inputs that could not be used.")
@json_option
def ls_cmd(path, paths_only, errors_only, as_json):
    """One row per video (key, class, domain, frames, fps, size, decoder) and the table of bad inputs.

    \b
    Examples:
      vdgtool store ls ucf.h5
      vdgtool store ls ucf.h5 --errors --paths > retry.txt     # the inputs extract had to skip
      vdgtool store ls ucf.h5 --json | jq '.rows[] | select(.frames < 16) | .key'
    """
    from vdgtool.stores.listing import list_store

    d = list_store(path)
    if errors_only:
        d["rows"] = []
    if as_json:
        emit(d, True)
        return
    if paths_only:
        for r in d["errors"] if errors_only else d["rows"]:
            if r.get("source"):
                click.echo(r["source"])
        return
    if d["rows"]:
        cols = [c for c in d["rows"][0] if c != "source"]
        emit(d, False, [[r[c] for c in cols] for r in d["rows"]], headers=cols)
    if d["errors"]:
        if d["rows"]:
            click.echo("")
        click.echo(f"{len(d['errors'])} input(s) could not be used:")
        emit(d, False, [(e["key"], e["source"], e["reason"]) for e in d["errors"]], headers=("key", "source", "reason"))
    elif errors_only:
        click.echo("no bad inputs")


@store.command("verify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(), callback=at_file_callback)
@click.option("--no-decode", is_flag=True, help="Only check structure, metadata and conventions (no data read).")
@json_option
def verify_cmd(paths, no_decode, as_json):
    """Check integrity: checksums, structure, metadata and conventions; every video readable. Exit 1 if a
    problem is found (see docs/stores.md, "What store verify checks")."""
    from vdgtool.errors import StoreError
    from vdgtool.stores.tools import verify

    results = [verify(p, decode=not no_decode) for p in paths]
    if as_json:
        emit(results if len(results) > 1 else results[0], True)
    else:
        emit(results, False, [(r["path"], r["kind"], r["checked"], "ok" if r["ok"] else "; ".join(r["problems"][:5]))
                              for r in results], headers=("store", "kind", "checked", "status"))
    bad = [r for r in results if not r["ok"]]
    if bad:
        raise StoreError(f"{len(bad)} store(s) failed verification ({bad[0]['problems'][0]})",
                         "re-create the damaged store(s) with --resume or from scratch")


@store.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(), callback=at_file_callback)
@click.option("-o", "--output", required=True, type=click.Path(), help="Merged store to write.")
@click.option("--allow-partial", is_flag=True, help="Merge even if some shard indices are missing.")
@overwrite_option
@json_option
def merge_cmd(shards, output, allow_partial, overwrite, as_json):
    """Merge shard stores (from --num-shards/--shard-index or SLURM arrays) into one store.

    Refuses a missing shard, a shard given twice and shards that overlap or disagree on conventions.
    """
    from vdgtool.stores.tools import allow_partial_merge, merge

    fn = allow_partial_merge if allow_partial else merge
    d = fn(list(shards), output, overwrite=overwrite)
    emit(d, as_json)
