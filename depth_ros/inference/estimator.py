"""``DepthEstimator``: one call from a camera image to metric depth, whatever the backend.

Pre-processing (resize to the network size, [0, 1] float NCHW) and post-processing (resize
back, focal-length rescaling, clipping) live here, so every backend gives the same answer.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import cv2
import numpy as np

from depth_ros.inference.backends import ModelLoadError, OnnxRuntimeBackend, TorchBackend
from depth_ros.models.metadata import ModelMetadata

LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "torch")
# "default": resize to the fixed network size (area/bilinear), resize the output back
# bilinearly; "depth_anything_v2": the official Depth Anything V2 ``infer_image`` steps.
PREPROCESSING = ("default", "depth_anything_v2")
_SUFFIX_OF_BACKEND = {"onnxruntime": ".onnx", "torch": ".pt"}


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an image: area averaging when shrinking (no aliasing), bilinear otherwise.

    Training data goes through this too, so the network sees the same filtering at run time.
    """
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    shrinking = width <= rgb.shape[1] and height <= rgb.shape[0]
    return cv2.resize(rgb, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def depth_anything_v2_input_size(height: int, width: int, target: tuple[int, int] = (518, 518),
                                 multiple: int = 14) -> tuple[int, int]:
    """Network (height, width) of Depth Anything V2's ``infer_image`` for an image.

    Its ``Resize(keep_aspect_ratio=True, ensure_multiple_of=14, resize_method="lower_bound")``:
    one scale for both axes, the larger of target/size, so that both sides reach at least the
    target; each side is then rounded to the nearest multiple (half to even, as ``np.round``),
    or rounded up where rounding would fall below the target.
    """
    scale = max(target[0] / height, target[1] / width)

    def constrain(value: float, minimum: int) -> int:
        rounded = int(np.round(value / multiple) * multiple)
        return rounded if rounded >= minimum else int(np.ceil(value / multiple) * multiple)

    return constrain(scale * height, target[0]), constrain(scale * width, target[1])


def resize_bilinear_align_corners(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an H×W float array with ``align_corners=True`` (corner samples map to
    corner samples), as ``F.interpolate`` does it, in numpy (no torch at run time)."""

    def taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        step = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        src = np.arange(size_out, dtype=np.float64) * step
        low = np.minimum(np.floor(src).astype(np.intp), size_in - 1)
        high = np.minimum(low + 1, size_in - 1)
        return low, high, (src - low).astype(np.float32)

    image = np.asarray(image, dtype=np.float32)
    low, high, frac = taps(image.shape[0], height)
    rows = image[low] * (1 - frac)[:, None] + image[high] * frac[:, None]
    low, high, frac = taps(image.shape[1], width)
    return rows[:, low] * (1 - frac)[None] + rows[:, high] * frac[None]


def round_to_stride(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(height, width) rounded to the nearest multiples of ``stride`` (at least one stride)."""
    return tuple(max(stride, int(round(v / stride)) * stride) for v in size)


def fit_scale_shift(inverse_depth: np.ndarray, depth_m: np.ndarray, iterations: int = 3
                    ) -> tuple[float, float]:
    """Robust least-squares (s, t) with ``s · inverse_depth + t ≈ 1 / depth_m``.

    Points are 1-D arrays of matching samples. Each iteration refits on the points whose
    residual is within 3 median absolute residuals, so a few bad LiDAR returns (through
    glass, on edges) do not bend the fit.
    """
    x = np.asarray(inverse_depth, dtype=np.float64)
    y = 1.0 / np.asarray(depth_m, dtype=np.float64)
    keep = np.ones(x.shape, dtype=bool)
    s, t = 1.0, 0.0
    for _ in range(iterations):
        if keep.sum() < 2:
            break
        a = np.stack([x[keep], np.ones(keep.sum())], axis=1)
        (s, t), *_ = np.linalg.lstsq(a, y[keep], rcond=None)
        residual = np.abs(s * x + t - y)
        keep = residual <= 3.0 * max(np.median(residual[keep]), 1e-12)
    return float(s), float(t)


class DepthEstimator:
    """Monocular (or camera + LiDAR) depth from a model file.

    Args:
        model_path: an exported ``.onnx`` model or a weights-only ``.pt`` checkpoint.
        backend: ``auto`` (onnxruntime for ``.onnx``, torch for ``.pt``), ``onnxruntime`` or
            ``torch``. A backend that needs the other file type uses the sibling file with
            the same stem (``model.onnx`` ↔ ``model.pt``).
        num_threads: inference threads; 0 = the runtime's default.
        input_size: network input (height, width), rounded to the model's stride; default:
            the size the model was trained at. With ``preprocess="depth_anything_v2"`` the
            smallest size: each frame keeps its aspect ratio and both sides reach at least
            this (official ``input_size=518`` is (518, 518)).
        preprocess: ``default`` (fixed network size, area/bilinear resizing) or
            ``depth_anything_v2``, which reproduces the official Depth Anything V2
            ``infer_image``: per-frame size from ``depth_anything_v2_input_size``, bicubic
            resizing of the [0, 1] image in float64, and the output resized back bilinearly
            with aligned corners.

    Raises:
        ModelLoadError: the model file is missing, unreadable or not a depth_ros model.
    """

    def __init__(self, model_path: str | os.PathLike, backend: str = "auto",
                 num_threads: int = 0, input_size: tuple[int, int] | None = None,
                 preprocess: str = "default") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess must be one of {PREPROCESSING}, got {preprocess!r}")
        self.preprocess = preprocess
        path = Path(model_path)
        if backend == "auto":
            backend = "onnxruntime" if path.suffix == ".onnx" else "torch"
        wanted_suffix = _SUFFIX_OF_BACKEND[backend]
        if path.suffix != wanted_suffix:
            sibling = path.with_suffix(wanted_suffix)
            if not sibling.is_file():
                raise ModelLoadError(f"backend {backend!r} needs a {wanted_suffix} file; "
                                     f"{sibling} (beside {path}) does not exist")
            LOG.info("backend %s: using %s for %s", backend, sibling, path)
            path = sibling
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        self.model_path = path
        self._backend = (OnnxRuntimeBackend(path, num_threads) if backend == "onnxruntime"
                         else TorchBackend(path, num_threads))
        meta = self._backend.metadata
        wanted = input_size if input_size is not None else meta.train_input_size
        if len(wanted) != 2 or min(wanted) <= 0:
            raise ValueError(f"input_size must be (height, width) > 0, got {input_size}")
        self.input_size = round_to_stride(tuple(int(v) for v in wanted), meta.stride)
        if self.input_size != tuple(wanted):
            LOG.info("input size %s rounded to %s (stride %d)", tuple(wanted),
                     self.input_size, meta.stride)
        LOG.info("DepthEstimator: %s (%s %s, %s) via %s at %dx%d", path, meta.architecture,
                 meta.kind, meta.output, self.backend_name, self.input_size[1],
                 self.input_size[0])

    @property
    def metadata(self) -> ModelMetadata:
        """The model's metadata."""
        return self._backend.metadata

    @property
    def backend_name(self) -> str:
        """``onnxruntime`` or ``torch``."""
        return self._backend.name

    def _validate(self, rgb: np.ndarray, sparse_depth: np.ndarray | None,
                  fx: float | None) -> None:
        if not isinstance(rgb, np.ndarray):
            raise ValueError(f"rgb must be a numpy array, got {type(rgb).__name__}")
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be H×W×3 uint8, got {rgb.dtype} {rgb.shape}")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ValueError(f"rgb is empty: shape {rgb.shape}")
        if sparse_depth is not None and (not isinstance(sparse_depth, np.ndarray)
                                         or sparse_depth.shape != rgb.shape[:2]):
            raise ValueError(f"sparse_depth must be an H×W array matching rgb {rgb.shape[:2]}, "
                             f"got {getattr(sparse_depth, 'shape', type(sparse_depth))}")
        if fx is not None and not (math.isfinite(fx) and fx > 0):
            raise ValueError(f"fx must be a positive focal length in pixels, got {fx}")

    def network_size(self, image_height: int, image_width: int) -> tuple[int, int]:
        """The network input (height, width) for an image of this size."""
        if self.preprocess == "depth_anything_v2":
            return depth_anything_v2_input_size(image_height, image_width, self.input_size,
                                                self.metadata.stride)
        return self.input_size

    def _run(self, rgb: np.ndarray, sparse_depth: np.ndarray | None) -> np.ndarray:
        """The network's output at the input image's size (float32 H×W)."""
        height, width = self.network_size(rgb.shape[0], rgb.shape[1])
        if self.preprocess == "depth_anything_v2":
            image = cv2.resize(rgb / 255.0, (width, height), interpolation=cv2.INTER_CUBIC)
            image = image.astype(np.float32)
        else:
            image = resize_rgb(rgb, width, height).astype(np.float32) * np.float32(1 / 255)
        image = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
        sparse = None
        if self.metadata.kind == "fusion" and sparse_depth is not None:
            sparse = cv2.resize(sparse_depth.astype(np.float32), (width, height),
                                interpolation=cv2.INTER_NEAREST_EXACT)[None, None]
        out = self._backend.run(image, sparse)[0, 0]
        if self.preprocess == "depth_anything_v2":
            return resize_bilinear_align_corners(out, rgb.shape[0], rgb.shape[1])
        return cv2.resize(out, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)

    def predict(self, rgb: np.ndarray, sparse_depth: np.ndarray | None = None,
                fx: float | None = None) -> np.ndarray:
        """Depth in metres (float32 H×W, NaN where there is no estimate) for an RGB image.

        Args:
            rgb: H×W×3 uint8 RGB.
            sparse_depth: H×W metres, 0 (or NaN) where there is no LiDAR return; fusion
                models take it as input and relative models are fitted to it.
            fx: the camera's horizontal focal length in pixels at ``rgb``'s resolution;
                metric depth is rescaled from the training focal length to it.
        """
        self._validate(rgb, sparse_depth, fx)
        meta = self.metadata
        out = self._run(rgb, sparse_depth)
        if meta.output == "relative":
            depth = self._align_relative(out, sparse_depth)
        else:
            depth = out
            if fx is not None:
                net_fx = fx * self.network_size(*rgb.shape[:2])[1] / rgb.shape[1]
                depth = depth * np.float32(net_fx / meta.train_focal_px)
        depth = np.clip(depth, meta.min_depth_m, meta.max_depth_m).astype(np.float32)
        depth[~np.isfinite(out)] = np.nan
        return depth

    def predict_relative(self, rgb: np.ndarray) -> np.ndarray:
        """The raw network output at ``rgb``'s size (affine-invariant inverse depth for
        relative models; metres at the training focal length for metric ones)."""
        self._validate(rgb, None, None)
        return self._run(rgb, None)

    def _align_relative(self, inverse_depth: np.ndarray,
                        sparse_depth: np.ndarray | None) -> np.ndarray:
        if sparse_depth is None:
            raise ValueError("this model predicts relative depth: pass sparse_depth (LiDAR) "
                             "to make it metric, or call predict_relative()")
        valid = np.isfinite(sparse_depth) & (sparse_depth > 0) & np.isfinite(inverse_depth)
        if valid.sum() < 2:
            return np.full(inverse_depth.shape, np.nan, dtype=np.float32)
        s, t = fit_scale_shift(inverse_depth[valid], sparse_depth[valid])
        inv = s * inverse_depth + t
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(inv > 0, 1.0 / inv, np.nan).astype(np.float32)
