"""Optical flow: batched TV-L1 in torch, OpenCV backends, quantisation, .flo I/O. See docs/flow.md.

Names are imported on first use (PEP 562), so ``vdgtool.flow.params`` loads without torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "BACKENDS": "backends", "FlowBackend": "backends", "get_backend": "backends",
    "endpoint_error": "flo", "read_flo": "flo", "write_flo": "flo",
    "quantize_flow": "quantize", "dequantize_flow": "quantize", "to_network_input": "quantize",
    "store_to_network_input": "quantize",
    "TVL1Params": "params", "tvl1_flow": "tvl1",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'vdgtool.flow' has no attribute '{name}'")
    return getattr(importlib.import_module(f"vdgtool.flow.{_WHERE[name]}"), name)
