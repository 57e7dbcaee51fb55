"""Shared CLI plumbing: option decorators, output, error mapping."""

from __future__ import annotations

import json
import os
import sys
import traceback

import click

from vdgtool.errors import InputError, VdgError


def run_cli(group: click.Group, argv=None):
    """Run the CLI: exit 0 ok, 1 error (one line: cause; remedy), 2 usage error, 130 interrupted.

    With ``--json``, an error is also printed on stdout as ``{"error": CAUSE, "remedy": REMEDY}`` unless the
    command already printed its JSON document (stdout then holds exactly one document, which reports the
    problem itself, as ``store verify`` and ``--strict`` batch runs do).
    """
    from vdgtool.utils.provenance import set_command_line

    args = list(sys.argv[1:] if argv is None else argv)
    set_command_line(["vdgtool"] + args)
    debug = "--debug" in args or os.environ.get("VDGTOOL_DEBUG") not in (None, "", "0")
    as_json = "--json" in args
    _STATE["emitted"] = False

    def fail(code: int, cause: str, remedy: str | None, prefix: str = "error") -> None:
        line = f"{cause}; {remedy}" if remedy else cause
        click.echo(printable(f"vdgtool: {prefix}: {line}"), err=True)  # file names may hold non-UTF-8 bytes
        if as_json and not _STATE["emitted"]:
            click.echo(json.dumps({"error": cause, "remedy": remedy, "exit_code": code}))
        sys.exit(code)

    try:
        group.main(args=args, prog_name="vdgtool", auto_envvar_prefix="VDGTOOL", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("vdgtool: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:  # usage errors: exit 2 (ClickException itself: 1)
        orig = e.__cause__ if isinstance(e.__cause__, VdgError) else None
        if orig is not None:  # a vdgtool error re-raised by the group as a one-line UserError
            fail(1, orig.cause, orig.remedy)
        e.show()
        if as_json and not _STATE["emitted"]:
            click.echo(json.dumps({"error": " ".join(e.format_message().split()),
                                   "remedy": "see vdgtool --help or vdgtool VERB --help", "exit_code": e.exit_code}))
        sys.exit(e.exit_code)
    except VdgError as e:
        if debug:
            traceback.print_exc()
        fail(1, e.cause, e.remedy)
    except KeyboardInterrupt:
        click.echo("vdgtool: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `vdgtool ... | head`
        sys.exit(0)
    except (OSError, MemoryError) as e:  # the environment: permissions, full disk, no memory
        if debug:
            traceback.print_exc()
        cause, remedy = os_error_text(e)
        fail(1, cause, remedy)
    except Exception as e:  # unexpected: still one line unless --debug
        if debug:
            traceback.print_exc()
        msg = " ".join(str(e).split()) or e.__class__.__name__
        fail(1, f"{e.__class__.__name__}: {msg}", "re-run with --debug for a traceback and report it",
             prefix="internal error")
    sys.exit(0)


_STATE = {"emitted": False}


def os_error_text(e: BaseException) -> tuple[str, str]:
    """(cause, remedy) for an OS error that reached the CLI (a file the user named, the disk, memory)."""
    import errno

    if isinstance(e, MemoryError):
        return ("out of memory", "use smaller inputs or batches (--batch-size, --size, --max-frames, fewer --workers)")
    code = getattr(e, "errno", None)
    name = getattr(e, "filename", None)
    what = f"{name}: " if name else ""
    text = getattr(e, "strerror", None) or " ".join(str(e).split())
    remedies = {
        errno.ENOSPC: "free space on that disk or write the output elsewhere (-o)",
        errno.EDQUOT: "free space within your quota or write the output elsewhere (-o)",
        errno.EACCES: "check the permissions of that path, or choose another one",
        errno.EPERM: "check the permissions of that path, or choose another one",
        errno.EROFS: "the file system is read-only; write the output elsewhere (-o)",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "check the path: a part of it is a file, not a folder",
        errno.EISDIR: "pass a file, not a folder",
        errno.ENAMETOOLONG: "use a shorter path",
        errno.EMFILE: "raise the open-file limit (ulimit -n) or use fewer --workers",
        errno.EFBIG: "write to a file system that allows larger files",
    }
    return f"{what}{text}", remedies.get(code, "check the paths, permissions and free space, then re-run")


def emitted_json() -> bool:
    """Whether this command printed its JSON document already (run_cli then prints no error document)."""
    return _STATE["emitted"]


def json_clean(obj):
    """``obj`` with NaN / inf floats as None (JSON has no NaN), numpy scalars as Python numbers."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    return obj


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinities (click's FloatRange lets them through)."""

    name = "float"

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout instead of a table.")(f)


def seed_option(f):
    return click.option("--seed", type=int, default=0, show_default=True,
                        help="Random seed (recorded in every output).")(f)


def overwrite_option(f):
    return click.option("--overwrite", is_flag=True, help="Replace an existing output.")(f)


def resume_option(f):
    return click.option("--resume", is_flag=True, help="Continue an interrupted run where it stopped.")(f)


def _slurm_num_shards() -> int:
    from vdgtool.utils.env import shard_defaults

    return shard_defaults()[0]


def _slurm_shard_index() -> int:
    from vdgtool.utils.env import shard_defaults

    return shard_defaults()[1]


def shard_options(f):
    # callables: SLURM variables are read when the command runs, not when the module is imported
    f = click.option("--shard-index", type=click.IntRange(min=0), default=_slurm_shard_index,
                     show_default="SLURM_ARRAY_TASK_ID or 0", help="Which shard this process writes.")(f)
    f = click.option("--num-shards", type=click.IntRange(min=1), default=_slurm_num_shards,
                     show_default="SLURM_ARRAY_TASK_COUNT or 1",
                     help="Split the input into this many shards (merge with `vdgtool store merge`).")(f)
    return f


def workers_option(f):
    return click.option("--workers", "-j", type=click.IntRange(min=0), default=0, show_default=True,
                        help="Parallel worker processes (0 = in the main process).")(f)


def device_option(f):
    return click.option("--device", default="auto", show_default=True,
                        help="torch device: auto (CUDA when available), cpu, cuda, cuda:1 ...")(f)


def decode_option(f):
    return click.option("--decode", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                        help="Where JPEG clips are decoded: auto (on the GPU with nvJPEG when the device is CUDA), "
                             "cpu (the loader workers), cuda (the GPU).")(f)


def emit(result, as_json: bool, table_rows=None, headers=None, title: str | None = None) -> None:
    """Print a result: JSON (machine-readable) or a tabulate table (humans)."""
    from vdgtool.utils.provenance import dumps

    if as_json:
        text = json.dumps(json_clean(json.loads(dumps(result))), indent=2, allow_nan=False)
        _STATE["emitted"] = True
        click.echo(text)
        return
    from tabulate import tabulate

    if title:
        click.echo(printable(title))
    if table_rows is None:
        table_rows = [(k, _short(v)) for k, v in (result.items() if isinstance(result, dict) else [])]
        headers = headers or ()
    rows = [[printable(c) for c in r] for r in table_rows]
    click.echo(tabulate(rows, headers=[printable(h) for h in headers or ()], floatfmt=".4g"))


def printable(v):
    """A string that any terminal can print: file-name bytes that are not UTF-8 shown as \\xNN escapes."""
    if not isinstance(v, str):
        return v
    try:
        v.encode("utf-8")
        return v
    except UnicodeEncodeError:
        return v.encode("utf-8", "surrogateescape" if _only_escapes(v) else "backslashreplace").decode(
            "utf-8", "backslashreplace")


def _only_escapes(v: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in v)


def report_batch(d: dict, rows: list, as_json: bool, strict: bool, *, key: str = "source",
                 failed: str = "input(s) could not be used") -> None:
    """Summary of a batch verb (extract, flow, synth-video): finished work, resume count, skipped items.

    Skipped (bad) items are listed in the summary and kept in the store's /errors; ``--strict`` turns
    them into exit 1 after the good items have been written.
    """
    if as_json:
        emit(d, True)
    else:
        if d.get("resumed_from"):
            rows.append(("already done (resume)", d["resumed_from"]))
        rows += [("skipped", f"{e.get(key)}: {e['reason']}") for e in d.get("bad_inputs", [])]
        emit(d, False, rows)
    if d.get("errors") and not d.get("videos") and not d.get("resumed_from"):
        raise InputError(f"none of the {d['errors']} input(s) could be used (listed in the summary and in the "
                         "store's /errors)", "fix the inputs or check the input path and options")
    if strict and d.get("errors"):
        raise InputError(f"{d['errors']} {failed} (listed in the summary and in the store's /errors)",
                         "fix or remove them, or run without --strict")


def _short(v):
    if isinstance(v, (list, tuple)):
        s = ", ".join(str(x) for x in v)
        return s if len(s) < 100 else s[:97] + "..."
    if isinstance(v, dict):
        return json.dumps(v)[:100]
    return v


def resolve_device(name: str):
    """See vdgtool.runtime.resolve_device (imported lazily: no torch import for --help)."""
    from vdgtool.runtime import resolve_device as resolve

    return resolve(name)


def batch_job_options(what: str = "inputs"):
    """Options every batch verb (extract, flow, synth-video, ...) shares: limit, strict, sharding, resume,
    overwrite, seed, JSON output."""

    def deco(f):
        for d in (json_option, seed_option, overwrite_option, resume_option, shard_options):
            f = d(f)
        f = click.option("--strict", is_flag=True, help=f"Exit 1 if any of the {what} could not be processed.")(f)
        f = click.option("--limit", type=click.IntRange(min=1), default=None,
                         help=f"Only the first N {what} (of this shard).")(f)
        return f

    return deco


def expand_at_files(values) -> tuple[str, ...]:
    """``@FILE`` entries -> the paths listed in FILE (one per line; blank lines and '#' comments skipped).

    Relative paths in a list are taken as written (relative to the working directory), so the output of
    ``vdgtool store ls --paths`` or ``find`` can be passed on as is; ``@-`` reads the list from stdin.
    """
    out: list[str] = []
    for v in values or ():
        v = str(v)
        if not v.startswith("@") or len(v) == 1:
            out.append(v)
            continue
        name = v[1:]
        try:
            f = click.open_file(name, encoding="utf-8")
            with f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise click.BadParameter(f"cannot read the list {name} ({exc.strerror or exc})") from None
        got = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not got:
            raise click.BadParameter(f"the list {name} names no path")
        out += got
    return tuple(out)


def at_file_callback(ctx, param, value):
    """click callback: accept ``@FILE`` (a list of paths) wherever a verb takes several paths."""
    if value is None:
        return value
    return expand_at_files(value)
