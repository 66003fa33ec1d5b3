"""Depth models behind one registry: ``create_model(name, **kwargs)``, ``list_models()``.

Building blocks: ``layers`` (convolutions, normalisation), ``encoders`` (multi-scale feature
lists: ResNet, pre-activation ResNet, MobileNet), ``hybrid`` (CNN + transformer encoder),
``sparse`` (normalised-convolution LiDAR encoder), ``attention`` (masked and cross-modal
attention), ``decoders`` (U-Net, coarse-to-fine ASPP), ``heads``; full models: ``mono_cnn``,
``mono_c2f`` (``mono_{resnet,mobilenet,hybrid}_c2f``), ``fusion`` (``fusion_attention``),
``depth_anything_v2`` (DINOv2 ``vit`` + ``dpt`` head; ``load_depth_anything_v2`` reads the
official weights).
Importing this package does not import torch (see ``registry``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from depth_ros.models.metadata import MetadataError, ModelMetadata, read_onnx_metadata
from depth_ros.models.registry import create_model, list_models, register_model

if TYPE_CHECKING:
    from depth_ros.models.depth_anything_v2 import DepthAnythingV2

__all__ = [
    "MetadataError",
    "ModelMetadata",
    "create_model",
    "list_models",
    "load_depth_anything_v2",
    "read_onnx_metadata",
    "register_model",
]


def load_depth_anything_v2(checkpoint: str | os.PathLike | Mapping[str, Any],
                           encoder: str | None = None,
                           max_depth: float | None = None) -> DepthAnythingV2:
    """Depth Anything V2 from its released weights; see
    ``depth_ros.models.depth_anything_v2.load_depth_anything_v2`` (imported here on first
    call, so that importing this package does not import torch)."""
    from depth_ros.models.depth_anything_v2 import load_depth_anything_v2 as load

    return load(checkpoint, encoder=encoder, max_depth=max_depth)
