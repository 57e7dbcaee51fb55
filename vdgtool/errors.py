"""Typed, user-facing errors.

Library code raises these; the CLI maps them to a one-line message and exit code 1
(no traceback unless ``--debug``). ``str(err)`` is always a single line: the cause,
then the remedy.
"""

from __future__ import annotations

import importlib


class VdgError(Exception):
    """Base class of every error a user can fix. ``cause`` says what is wrong, ``remedy`` what to do."""

    def __init__(self, cause: str, remedy: str | None = None):
        self.cause = " ".join(str(cause).split())
        self.remedy = " ".join(str(remedy).split()) if remedy else None
        super().__init__(self.cause if not self.remedy else f"{self.cause}; {self.remedy}")


class InputError(VdgError):
    """Bad input file, folder, manifest or option value."""


class DecodeError(InputError):
    """A video, GIF or image that cannot be decoded."""


class StoreError(VdgError):
    """A store of the wrong kind, a newer schema, or a damaged/incomplete store."""


class ConventionMismatch(StoreError):
    """A consumer disagrees with the conventions recorded in a store (frame size, flow bound, ...)."""


class CheckpointError(VdgError):
    """A checkpoint that is missing, damaged, or cannot be loaded safely."""


class ConfigError(VdgError):
    """Inconsistent options or configuration (unknown model/method, class mismatch, ...)."""


class MissingDependencyError(VdgError):
    """An optional dependency (an extra) is not installed."""


def require(module: str, extra: str, what: str | None = None):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{what or module} needs the Python package '{module.split('.')[0]}' ({exc})",
            f"install it with: pip install 'vdgtool[{extra}]'",
        ) from exc
