"""Training objectives, looked up by name (``vdgtool train --method NAME``)."""

from vdgtool.methods.base import (METHODS, HParam, Method, NonFiniteLoss, Progress, Stepper, get_method, list_methods,
                                  parse_hparams, register_method)

__all__ = ["METHODS", "HParam", "Method", "NonFiniteLoss", "Progress", "Stepper", "get_method", "list_methods",
           "parse_hparams", "register_method"]
