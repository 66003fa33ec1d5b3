"""Inference: ``DepthEstimator``, its backends (TensorRT, onnxruntime, torch) and the LiDAR fit
that makes relative models metric."""

from depth_ros.inference.alignment import ScaleShiftFit, robust_scale_shift
from depth_ros.inference.backends import ModelLoadError, OnnxRuntimeBackend, TorchBackend
from depth_ros.inference.estimator import (
    BACKENDS,
    METRIC,
    RELATIVE,
    DepthEstimator,
    DepthPrediction,
)
from depth_ros.inference.preprocessing import resize_rgb
from depth_ros.inference.selection import AUTO_ORDER, BackendUnavailable

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "METRIC",
    "RELATIVE",
    "BackendUnavailable",
    "DepthEstimator",
    "DepthPrediction",
    "ModelLoadError",
    "OnnxRuntimeBackend",
    "ScaleShiftFit",
    "TorchBackend",
    "resize_rgb",
    "robust_scale_shift",
]
