"""Provenance recorded in every output: command line, versions, seed, parents, time."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from importlib import metadata
from typing import Any, Iterable

_CMDLINE: list[str] | None = None

_TRACKED = ("torch", "torchvision", "numpy", "h5py", "opencv-python-headless", "opencv-python",
            "decord", "av", "timm", "Pillow", "simplejpeg", "torchcodec")


def set_command_line(argv: list[str]) -> None:
    """Called by the CLI with the invoking argv so library outputs can record it."""
    global _CMDLINE
    _CMDLINE = list(argv)


def command_line() -> str:
    argv = _CMDLINE if _CMDLINE is not None else sys.argv
    return " ".join(shlex.quote(a) for a in argv)


def versions() -> dict[str, str]:
    from vdgtool import __version__

    out = {"vdgtool": __version__, "python": platform.python_version()}
    for name in _TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def make_provenance(seed: int | None = None, parents: Iterable[str] = (), **extra: Any) -> dict:
    """A JSON-serialisable provenance record."""
    rec = {
        "command": command_line(),
        "versions": versions(),
        "seed": seed,
        "parents": [os.path.abspath(p) for p in parents],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
    rec.update(extra)
    return rec


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_default)


def _default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)
