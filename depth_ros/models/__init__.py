"""Depth models behind one registry: ``create_model(name, **kwargs)``, ``list_models()``.

Building blocks: ``layers`` (convolutions, normalisation), ``encoders`` (multi-scale feature
lists), ``decoders``, ``heads``; full models: ``mono_cnn``. Importing this package does not
import torch (see ``registry``).
"""

from depth_ros.models.metadata import MetadataError, ModelMetadata, read_onnx_metadata
from depth_ros.models.registry import create_model, list_models, register_model

__all__ = [
    "MetadataError",
    "ModelMetadata",
    "create_model",
    "list_models",
    "read_onnx_metadata",
    "register_model",
]
