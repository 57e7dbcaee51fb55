"""Logging and progress bars, always on stderr."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

LOGGER_NAME = "vdgtool"
_QUIET = False


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time (so redirections and test runners see the logs)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """vdgtool's log level on stderr; ``-v`` also lets FFmpeg / decord print their own lines (silenced
    otherwise, in worker processes too: vdgtool reports one line per bad file instead)."""
    import os

    global _QUIET
    _QUIET = quiet
    if verbose and not quiet:
        os.environ["VDGTOOL_NATIVE_LOGS"] = "1"
    elif quiet:
        os.environ.pop("VDGTOOL_NATIVE_LOGS", None)
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    if not any(getattr(h, "_vdgtool", False) for h in logger.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("vdgtool: %(message)s"))
        h._vdgtool = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.propagate = False


def progress(iterable=None, total=None, desc=None, unit="it", **kw):
    """tqdm on stderr; off with -q or when stderr is not a terminal."""
    disable = _QUIET or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable,
                dynamic_ncols=True, **kw)
