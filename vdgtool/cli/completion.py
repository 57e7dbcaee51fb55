"""vdgtool completion."""

from __future__ import annotations

import click


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell):
    """Print the shell-completion script for bash, zsh or fish (verbs, options, choices and paths).

    \b
    Add to ~/.bashrc (or ~/.zshrc with zsh):
      eval "$(vdgtool completion bash)"
    fish:
      vdgtool completion fish > ~/.config/fish/completions/vdgtool.fish
    """
    from click.shell_completion import get_completion_class

    from vdgtool.cli import cli

    cls = get_completion_class(shell)
    click.echo(cls(cli, {}, "vdgtool", "_VDGTOOL_COMPLETE").source())
