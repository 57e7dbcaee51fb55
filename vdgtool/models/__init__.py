"""Video model registry.

>>> from vdgtool.models import create_model, list_models
>>> m = create_model("test_c3d", num_classes=5)        # x: (B, C, T, H, W), normalised per m.input_spec

See docs/models.md for the table of models, input conventions and how to register a model.
"""

from vdgtool.models.base import VideoModel
from vdgtool.models.registry import InputSpec, create_model, list_models, model_info, register_model
from vdgtool.models.weights import load_state_dict_safely

__all__ = ["InputSpec", "VideoModel", "create_model", "list_models", "load_state_dict_safely", "model_info",
           "register_model"]
