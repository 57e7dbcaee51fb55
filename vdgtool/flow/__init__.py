"""Optical flow: batched TV-L1 in torch, OpenCV backends, quantisation, .flo I/O. See docs/flow.md."""

from vdgtool.flow.backends import BACKENDS, FlowBackend, get_backend
from vdgtool.flow.flo import endpoint_error, read_flo, write_flo
from vdgtool.flow.quantize import dequantize_flow, quantize_flow, store_to_network_input, to_network_input
from vdgtool.flow.tvl1 import TVL1Params, tvl1_flow

__all__ = ["BACKENDS", "FlowBackend", "get_backend", "endpoint_error", "read_flo", "write_flo", "quantize_flow",
           "dequantize_flow", "to_network_input", "store_to_network_input", "TVL1Params", "tvl1_flow"]
