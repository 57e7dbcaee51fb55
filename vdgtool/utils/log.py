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
    global _QUIET
    _QUIET = quiet
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
