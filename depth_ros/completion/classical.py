"""``ClassicalCompletion``: IP-Basic behind ``DepthEstimator``'s interface, so the fusion node
and ``training/evaluate.py`` can run it where they would run a fusion network."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_ros.completion.ip_basic import EMPTY_M, check_options, ip_basic
from depth_ros.models.metadata import ModelMetadata

# What model_path says for the classical predictor (the node logs and depth/info name it).
CLASSICAL_MODEL_NAME = "classical"
# KITTI's rectified camera: IP-Basic's kernels are in pixels, chosen for this resolution.
KITTI_HEIGHT, KITTI_WIDTH, KITTI_FX = 375, 1242, 721.5377


@dataclass(frozen=True)
class CompletionPrediction:
    """One frame's answer, with the fields of ``depth_ros.inference.DepthPrediction`` (which
    this layer cannot import): ``depth`` metres (NaN where nothing), ``kind`` ``metric``,
    ``fit`` None (nothing to fit), ``backend``."""

    depth: np.ndarray
    kind: str
    fit: None
    backend: str


class ClassicalCompletion:
    """IP-Basic (Ku et al. 2018) with ``DepthEstimator``'s ``predict`` contract.

    The image is not used: the answer comes from the LiDAR alone, at the camera's own
    resolution (resize policy ``native``). Without LiDAR (``sparse_depth`` None or empty)
    the answer is NaN everywhere.

    Args:
        max_depth_m, variant, extrapolate, blur: see ``ip_basic``; the defaults are the
            published ones.
    """

    backend_family = "classical"
    resize_policy = "native"

    def __init__(self, max_depth_m: float = 100.0, variant: str = "fast",
                 extrapolate: bool = True, blur: str = "gaussian") -> None:
        check_options(max_depth_m, variant, blur)
        self.options = {"max_depth_m": float(max_depth_m), "variant": variant,
                        "extrapolate": bool(extrapolate), "blur": blur}
        self.model_path = Path(CLASSICAL_MODEL_NAME)
        self.input_size = (KITTI_HEIGHT, KITTI_WIDTH)
        self.skipped_backends: list[tuple[str, str]] = []
        self._metadata = ModelMetadata(
            architecture="ip_basic", kind="fusion", output="metric", stride=1,
            train_input_height=KITTI_HEIGHT, train_input_width=KITTI_WIDTH,
            min_depth_m=EMPTY_M, max_depth_m=float(max_depth_m), train_focal_px=KITTI_FX,
            train_data="none: classical image processing (Ku, Harakeh, Waslander 2018), "
                       "kernels chosen for KITTI's 1242x375 camera",
            version="1", model_kwargs=dict(self.options))

    @property
    def metadata(self) -> ModelMetadata:
        """Metadata as a model file would carry it (kind ``fusion``, output ``metric``)."""
        return self._metadata

    @property
    def backend_name(self) -> str:
        """What runs: ``ip_basic[fast,cpu]``."""
        return f"ip_basic[{self.options['variant']},cpu]"

    def predict_detailed(self, rgb: np.ndarray, sparse_depth: np.ndarray | None = None,
                         fx: float | None = None) -> CompletionPrediction:
        """``predict``'s depth with its kind, as ``DepthEstimator.predict_detailed``."""
        return CompletionPrediction(self.predict(rgb, sparse_depth, fx), "metric", None,
                                    self.backend_name)

    def predict(self, rgb: np.ndarray, sparse_depth: np.ndarray | None = None,
                fx: float | None = None) -> np.ndarray:
        """Dense depth (float32 H×W metres, NaN where nothing was filled) from the LiDAR.

        ``rgb`` (H×W×3 uint8) is checked but not used; ``fx`` is accepted for the contract
        and not needed (completion keeps the LiDAR's metres at any focal length).
        """
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
                or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ValueError(f"rgb must be H×W×3 uint8, got {getattr(rgb, 'dtype', type(rgb))} "
                             f"{getattr(rgb, 'shape', '')}")
        if fx is not None and not (math.isfinite(fx) and fx > 0):
            raise ValueError(f"fx must be a positive focal length in pixels, got {fx}")
        if sparse_depth is None:
            return np.full(rgb.shape[:2], np.nan, np.float32)
        if not isinstance(sparse_depth, np.ndarray) or sparse_depth.shape != rgb.shape[:2]:
            raise ValueError(f"sparse_depth must be an H×W array matching rgb {rgb.shape[:2]}, "
                             f"got {getattr(sparse_depth, 'shape', type(sparse_depth))}")
        dense = ip_basic(sparse_depth, **self.options)
        dense[dense <= 0] = np.nan
        return dense
