"""Inference: ``DepthEstimator`` and its backends (onnxruntime, torch)."""

from depth_ros.inference.backends import ModelLoadError, OnnxRuntimeBackend, TorchBackend
from depth_ros.inference.estimator import BACKENDS, DepthEstimator, resize_rgb

__all__ = [
    "BACKENDS",
    "DepthEstimator",
    "ModelLoadError",
    "OnnxRuntimeBackend",
    "TorchBackend",
    "resize_rgb",
]
