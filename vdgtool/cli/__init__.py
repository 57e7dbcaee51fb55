"""The ``vdgtool`` command line. Each verb lives in its own module and is imported lazily."""

from __future__ import annotations

import importlib

import click

from vdgtool import __version__

#: verb -> "module:attribute". Only verbs that work are listed here.
COMMANDS: dict[str, str] = {
    "flow": "vdgtool.cli.flow:flow",
    "toydata": "vdgtool.cli.toydata:toydata",
    "extract": "vdgtool.cli.extract:extract",
    "store": "vdgtool.cli.store:store",
    "synth-video": "vdgtool.cli.synth_video:synth_video",
    "train": "vdgtool.cli.train:train",
    "score": "vdgtool.cli.score:score",
    "eval": "vdgtool.cli.eval:eval_cmd",
    "features": "vdgtool.cli.eval:features",
    "collect": "vdgtool.cli.collect:collect_cmd",
    "pseudolabel": "vdgtool.cli.pseudolabel:pseudolabel",
    "plot": "vdgtool.cli.plot:plot",
    "sweep": "vdgtool.cli.sweep:sweep",
    "completion": "vdgtool.cli.completion:completion",
    "augsearch": "vdgtool.cli.augsearch:augsearch",
}


class UserError(click.ClickException):
    """A vdgtool error shown as one line on stderr with exit code 1 (a traceback only with --debug)."""

    exit_code = 1

    def show(self, file=None):
        click.echo(f"vdgtool: error: {self.message}", err=True)


class LazyGroup(click.Group):
    def invoke(self, ctx):
        from vdgtool.errors import VdgError

        try:
            return super().invoke(ctx)
        except VdgError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            raise UserError(str(exc)) from exc

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        mod, attr = target.split(":")
        return getattr(importlib.import_module(mod), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="vdgtool")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr; no progress bars.")
@click.option("-v", "--verbose", count=True, help="More log output on stderr.")
@click.option("--debug", is_flag=True, envvar="VDGTOOL_DEBUG", help="Show tracebacks for errors.")
@click.option("--check", is_flag=True, envvar="VDGTOOL_CHECK",
              help="Verify each video's checksum when a store is read (slower; `store verify` checks all).")
@click.pass_context
def cli(ctx, quiet, verbose, debug, check):
    """vdgtool: video domain generalization and adaptation from the shell.

    Subcommands exchange versioned HDF5 stores (clips, flow, features, predictions).
    Data products go to files; stdout carries a table or, with --json, JSON; logs and
    progress go to stderr. Every option can also be set as VDGTOOL_<VERB>_<OPTION>.

    \b
    Example:
      vdgtool toydata demo/ && vdgtool extract demo/real -o real.h5 && vdgtool store info real.h5
    """
    from vdgtool.utils.log import setup_logging

    setup_logging(verbose=verbose, quiet=quiet)
    if check:  # read by every store reader, DataLoader workers included
        import os

        os.environ["VDGTOOL_CHECK"] = "1"
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None):
    """Console entry point: maps vdgtool errors to exit code 1 with a one-line message."""
    from vdgtool.cli.common import run_cli

    return run_cli(cli, argv)


__all__ = ["cli", "main", "COMMANDS"]
