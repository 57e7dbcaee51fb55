"""vdgtool: a command-line toolkit and library for video domain generalization and adaptation."""

__version__ = "0.1.0"

__all__ = ["__version__"]
