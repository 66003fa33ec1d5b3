"""``DepthEstimator``: one call from a camera image to depth, whatever the backend.

Pre-processing (resize to the network size, [0, 1] float NCHW) and post-processing (resize
back, focal-length rescaling, clipping, the LiDAR fit of relative models) live here, so every
backend gives the same answer. Which backend runs is ``selection``'s business.

The network size follows the model's resize policy: ``fixed`` (the training size whatever the
camera), ``canonical`` (each frame resized so its focal length is the training one, aspect
ratio kept, padded to the stride, tiled beyond the maximum size: Metric3D's canonical camera)
or ``native`` (the camera's own pixels, padded to the stride).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from depth_ros.geometry import resize_sparse_depth
from depth_ros.inference.alignment import (
    DEFAULT_MIN_POINTS,
    ScaleShiftFit,
    robust_scale_shift,
)
from depth_ros.inference.preprocessing import (
    CanonicalPlan,
    canonical_plan,
    depth_anything_v2_input_size,
    resize_bilinear_align_corners,
    resize_rgb,
    round_down_to_stride,
    round_to_stride,
    tile_weights,
)
from depth_ros.inference.selection import (
    BackendOptions,
    open_auto,
    open_named,
    parse_device,
)
from depth_ros.models.metadata import RESIZE_POLICIES, ModelMetadata

LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
# TensorRT precisions a DepthEstimator builds (INT8 needs calibration data: training/export.py).
PRECISIONS = ("fp16", "fp32")
# "default": resize to the fixed network size (area/bilinear), resize the output back
# bilinearly; "depth_anything_v2": the official Depth Anything V2 ``infer_image`` steps.
PREPROCESSING = ("default", "depth_anything_v2")
# ``DepthPrediction.kind``: metres, or a relative model's affine-invariant inverse depth.
METRIC = "metric"
RELATIVE = "relative_inverse_depth"


@dataclass(frozen=True)
class DepthPrediction:
    """One frame's answer with what it means.

    Attributes:
        depth: float32 H×W at the input image's size, NaN where there is no estimate;
            metres when ``kind`` is ``metric``, else the model's affine-invariant inverse
            depth (larger is nearer; never passed off as metres).
        kind: ``metric`` or ``relative_inverse_depth``.
        fit: for relative models given LiDAR, the scale-and-shift fit and its quality
            (``fit.ok`` False: the fit failed and ``depth`` is relative); None otherwise.
        backend: what ran the network (``DepthEstimator.backend_name``).
        confidence: float32 H×W in [0, 1] for models with a ``confidence`` output (the
            probability that the pixel's depth is within the model's relative-error
            threshold; NaN where ``depth`` is NaN), else None.
    """

    depth: np.ndarray
    kind: str
    fit: ScaleShiftFit | None
    backend: str
    confidence: np.ndarray | None = None


class DepthEstimator:
    """Monocular (or camera + LiDAR) depth from a model file.

    Args:
        model_path: an exported ``.onnx`` model or a weights-only ``.pt`` checkpoint. A
            backend that needs the other file type uses the sibling file with the same stem
            (``model.onnx`` ↔ ``model.pt``).
        backend: ``auto`` (the fastest that starts here, see ``selection``: TensorRT,
            onnxruntime on a GPU, torch on a GPU, onnxruntime, torch), ``tensorrt``,
            ``onnxruntime`` or ``torch``.
        num_threads: CPU inference threads; 0 = the runtime's default.
        input_size: network input (height, width), rounded to the model's stride; default:
            the size the model was trained at. ``fixed`` models only (``canonical`` ones size
            each frame by its focal length, ``native`` ones run at the camera's pixels).
            With ``preprocess="depth_anything_v2"`` the smallest size: each frame keeps its
            aspect ratio and both sides reach at least this (official ``input_size=518`` is
            (518, 518)).
        preprocess: ``default`` (fixed network size, area/bilinear resizing) or
            ``depth_anything_v2``, which reproduces the official Depth Anything V2
            ``infer_image``: per-frame size from ``depth_anything_v2_input_size``, bicubic
            resizing of the [0, 1] image in float64, and the output resized back bilinearly
            with aligned corners.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``: where torch runs, which
            onnxruntime providers are used, which options ``auto`` considers.
        providers: onnxruntime execution providers in order of preference (names, or
            ``(name, options)`` pairs); implies the onnxruntime backend. Default: TensorRT
            and CUDA where the installed build offers them (and ``device`` allows), then CPU.
        precision: TensorRT engine precision, ``fp16`` (default) or ``fp32``.
        engine_cache: TensorRT engine cache directory (default ``$DEPTH_ROS_ENGINE_CACHE``
            or ``~/.cache/depth_ros/engines``).
        min_fit_points: relative models: fewest LiDAR points for a scale-and-shift fit.
        resize_policy: override the model's resize policy: ``fixed`` or ``canonical`` (for
            a model trained for the other, e.g. to measure what the policy is worth);
            ``native`` models stay native. Default: the metadata's.
        max_input_size: ``canonical``: the largest network input (height, width), rounded
            down to the stride (two strides at least); larger frames run in overlapping
            tiles. Default: the metadata's ``max_input_size`` (none: no limit).

    Attributes:
        model_path: the file the backend runs (``.onnx`` or ``.pt``).
        input_size: the network (height, width).
        skipped_backends: ``auto``: (option, reason) for each faster option that did not run.

    Raises:
        ModelLoadError: the model file is missing, unreadable or not a depth_ros model.
        BackendUnavailable: no backend (or not the one asked for) can run here.
        TensorRTUnavailable: ``backend="tensorrt"`` without TensorRT 10 and a CUDA device.
    """

    def __init__(self, model_path: str | os.PathLike, backend: str = "auto",
                 num_threads: int = 0, input_size: tuple[int, int] | None = None,
                 preprocess: str = "default", device: str = "auto",
                 providers: list | None = None, precision: str = "fp16",
                 engine_cache: str | os.PathLike | None = None,
                 min_fit_points: int = DEFAULT_MIN_POINTS, resize_policy: str | None = None,
                 max_input_size: tuple[int, int] | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess must be one of {PREPROCESSING}, got {preprocess!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        parse_device(device)  # a bad name fails here, before any model is loaded
        if providers is not None:
            if backend == "auto":
                backend = "onnxruntime"  # naming execution providers chooses onnxruntime
            elif backend != "onnxruntime":
                raise ValueError(f"providers are onnxruntime's; backend is {backend!r}")
        _check_size("input_size", input_size)
        _check_size("max_input_size", max_input_size)
        if resize_policy is not None and resize_policy not in RESIZE_POLICIES:
            raise ValueError(f"resize_policy must be one of {RESIZE_POLICIES}, got "
                             f"{resize_policy!r}")
        options = BackendOptions(num_threads=num_threads,
                                 providers=None if providers is None else tuple(providers),
                                 precision=precision, engine_cache=engine_cache,
                                 input_size=None if input_size is None else
                                 tuple(int(v) for v in input_size))
        if backend == "auto":
            opened, skipped = open_auto(model_path, device, options)
        else:
            opened, skipped = open_named(backend, model_path, device, options), []
        self._setup(opened, input_size, preprocess, min_fit_points, resize_policy,
                    max_input_size)
        self.skipped_backends = skipped

    @classmethod
    def from_backend(cls, backend, input_size: tuple[int, int] | None = None,
                     preprocess: str = "default",
                     min_fit_points: int = DEFAULT_MIN_POINTS, resize_policy: str | None = None,
                     max_input_size: tuple[int, int] | None = None) -> DepthEstimator:
        """An estimator around a backend already open (e.g. a model in memory on a GPU, as
        training/pseudo_label.py's teachers): the same pre- and post-processing.

        ``backend`` has ``name``, ``metadata``, ``model_path`` and ``run(image, sparse)``
        (``depth_ros.inference.backends``' interface); ``description`` is optional.
        """
        if preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess must be one of {PREPROCESSING}, got {preprocess!r}")
        _check_size("input_size", input_size)
        _check_size("max_input_size", max_input_size)
        estimator = cls.__new__(cls)
        estimator._setup(backend, input_size, preprocess, min_fit_points, resize_policy,
                         max_input_size)
        estimator.skipped_backends = []
        return estimator

    def _setup(self, backend, input_size: tuple[int, int] | None, preprocess: str,
               min_fit_points: int, resize_policy: str | None = None,
               max_input_size: tuple[int, int] | None = None) -> None:
        """What every estimator holds, from its open backend."""
        self._backend = backend
        self.preprocess = preprocess
        self.min_fit_points = int(min_fit_points)
        self.model_path = Path(self._backend.model_path)
        meta = self._backend.metadata
        policy = resize_policy or meta.resize_policy
        if resize_policy is not None and "native" in (policy, meta.resize_policy) \
                and policy != meta.resize_policy:
            raise ValueError(f"resize_policy {policy!r}: {self.model_path.name} is a "
                             f"{meta.resize_policy!r} model; only fixed and canonical trade")
        if policy == "canonical" and preprocess != "default":
            raise ValueError(f"preprocess {preprocess!r} sizes frames itself; the canonical "
                             "resize policy needs preprocess 'default'")
        self._resize_policy = policy
        self._max_input_size = None
        wanted_max = max_input_size if max_input_size is not None else meta.max_input_size
        if wanted_max is not None:
            # Two strides at least: tiles of one stride could not overlap on the stride grid.
            self._max_input_size = tuple(max(2 * meta.stride, v) for v in
                                         round_down_to_stride(wanted_max, meta.stride))
        self._plan_cache: tuple[tuple, CanonicalPlan] | None = None
        self._warned_no_fx = False
        wanted = input_size if input_size is not None else meta.train_input_size
        self.input_size = round_to_stride(tuple(int(v) for v in wanted), meta.stride)
        if self.input_size != tuple(wanted):
            LOG.info("input size %s rounded to %s (stride %d)", tuple(wanted),
                     self.input_size, meta.stride)
        if policy == "canonical":
            if input_size is not None:
                LOG.warning("%s sizes each frame by its focal length (resize policy "
                            "canonical): input_size %s is not used", self.model_path.name,
                            input_size)
            limit = "no size limit"
            if self._max_input_size is not None:
                limit = f"tiled beyond {self._max_input_size[1]}x{self._max_input_size[0]}"
            LOG.info("DepthEstimator: %s (%s %s, %s) via %s, each frame resized to the "
                     "canonical focal length %.1f px, padded to a multiple of %d, %s",
                     self.model_path, meta.architecture, meta.kind, meta.output,
                     self.backend_name, meta.train_focal_px, meta.stride, limit)
        elif policy == "native":
            if input_size is not None:
                LOG.warning("%s runs at each camera's own resolution (resize policy native): "
                            "input_size %s is not used", self.model_path.name, input_size)
            LOG.info("DepthEstimator: %s (%s %s, %s) via %s at the camera's resolution, "
                     "padded to a multiple of %d", self.model_path, meta.architecture,
                     meta.kind, meta.output, self.backend_name, meta.stride)
        else:
            LOG.info("DepthEstimator: %s (%s %s, %s) via %s at %dx%d", self.model_path,
                     meta.architecture, meta.kind, meta.output, self.backend_name,
                     self.input_size[1], self.input_size[0])
        if meta.output == "relative":
            LOG.info("%s predicts relative inverse depth: with LiDAR (sparse_depth) each frame "
                     "is made metric by a robust scale-and-shift fit; without it the output is "
                     "relative inverse depth (predict_detailed says which)", self.model_path.name)

    @property
    def metadata(self) -> ModelMetadata:
        """The model's metadata."""
        return self._backend.metadata

    @property
    def backend_name(self) -> str:
        """What runs the network, with its device: ``tensorrt[cuda:0,fp16]``,
        ``onnxruntime[CUDAExecutionProvider]``, ``onnxruntime[CPUExecutionProvider]``,
        ``torch[cuda:0]``, ``torch[cpu]``."""
        return str(getattr(self._backend, "description", self._backend.name))

    @property
    def backend_family(self) -> str:
        """``tensorrt``, ``onnxruntime`` or ``torch``."""
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

    @property
    def resize_policy(self) -> str:
        """The resize policy in use (the model's unless overridden): ``fixed``,
        ``canonical`` or ``native``."""
        return self._resize_policy

    @property
    def max_input_size(self) -> tuple[int, int] | None:
        """``canonical``: the largest network input (height, width), or None (no limit)."""
        return self._max_input_size

    def assumed_fx(self, image_width: int) -> float:
        """The focal length assumed for a frame without one: the training camera's
        horizontal field of view, ``train_focal_px · width / train_input_width``."""
        meta = self.metadata
        return meta.train_focal_px * image_width / meta.train_input_width

    def canonical_plan(self, image_height: int, image_width: int,
                       fx: float | None) -> CanonicalPlan:
        """How a frame of this size and focal length runs under the ``canonical`` policy
        (``fx`` None: ``assumed_fx``)."""
        key = (image_height, image_width, fx)
        if self._plan_cache is None or self._plan_cache[0] != key:
            focal = self.assumed_fx(image_width) if fx is None else fx
            plan = canonical_plan(image_height, image_width, focal,
                                  self.metadata.train_focal_px, self.metadata.stride,
                                  self._max_input_size)
            self._plan_cache = (key, plan)
        return self._plan_cache[1]

    def describe_input(self, image_height: int, image_width: int,
                       fx: float | None = None) -> str:
        """One line: the network size a frame of this size (and focal length) runs at."""
        frame = f"{image_width}x{image_height}"
        if self.resize_policy == "canonical":
            plan = self.canonical_plan(image_height, image_width, fx)
            focal = "" if fx is None else f" (fx {fx:.1f})"
            text = (f"{frame} frames{focal} run at the canonical focal "
                    f"{self.metadata.train_focal_px:.1f} px: resized to "
                    f"{plan.resized[1]}x{plan.resized[0]}, network input "
                    f"{plan.padded[1]}x{plan.padded[0]}")
            if plan.num_tiles > 1:
                text += (f" in {len(plan.cols)}x{len(plan.rows)} overlapping tiles of "
                         f"{plan.tile[1]}x{plan.tile[0]}")
            return text
        height, width = self.network_size(image_height, image_width)
        return f"{frame} frames run at {width}x{height} (resize policy {self.resize_policy})"

    def network_size(self, image_height: int, image_width: int,
                     fx: float | None = None) -> tuple[int, int]:
        """The network input (height, width) for an image of this size: ``native``: the
        image's own size padded up to the stride; ``canonical``: the frame resized to the
        canonical focal length (``fx``, else ``assumed_fx``), padded, or one tile of it."""
        if self.resize_policy == "canonical":
            return self.canonical_plan(image_height, image_width, fx).tile
        if self.resize_policy == "native":
            stride = self.metadata.stride
            return (-(-image_height // stride) * stride, -(-image_width // stride) * stride)
        if self.preprocess == "depth_anything_v2":
            return depth_anything_v2_input_size(image_height, image_width, self.input_size,
                                                self.metadata.stride)
        return self.input_size

    def _network_fx(self, fx: float, image_height: int, image_width: int) -> float:
        """The focal length at the network input: resized frames scale it, padded ones
        (``native``) keep it; ``canonical``: by the scale actually used, so the rounding of
        the resized size is corrected for."""
        if self.resize_policy == "native":
            return fx
        if self.resize_policy == "canonical":
            return fx * self.canonical_plan(image_height, image_width, fx).scale
        return fx * self.network_size(image_height, image_width)[1] / image_width

    def _run_canonical(self, rgb: np.ndarray, sparse_depth: np.ndarray | None,
                       fx: float | None) -> list[np.ndarray]:
        """``canonical`` models: resize to the canonical focal, pad to the stride (image
        edge-replicated, LiDAR 'no return'), run whole or tile by tile (outputs blended
        with ramps across the overlaps), crop the pad off, resize back."""
        image_h, image_w = rgb.shape[:2]
        plan = self.canonical_plan(image_h, image_w, fx)
        (height, width), (pad_h, pad_w) = plan.resized, plan.padded
        pad = ((0, pad_h - height), (0, pad_w - width))
        image = resize_rgb(rgb, width, height)
        image = np.pad(image, (*pad, (0, 0)), mode="edge").astype(np.float32)
        image *= np.float32(1 / 255)
        image = image.transpose(2, 0, 1)[None]
        sparse = None
        if self.metadata.kind == "fusion" and sparse_depth is not None:
            sparse = np.pad(resize_sparse_depth(sparse_depth, width, height), pad)[None, None]
        if plan.num_tiles == 1:
            outputs = self._backend_outputs(np.ascontiguousarray(image), sparse)
            outputs = [out[0, 0] for out in outputs]
        else:
            outputs = self._run_tiles(image, sparse, plan)
        return [cv2.resize(np.ascontiguousarray(out[:height, :width]), (image_w, image_h),
                           interpolation=cv2.INTER_LINEAR) for out in outputs]

    def _run_tiles(self, image: np.ndarray, sparse: np.ndarray | None,
                   plan: CanonicalPlan) -> list[np.ndarray]:
        """The padded frame's outputs from overlapping tiles, blended (NaN stays NaN
        only where every tile covering the pixel says NaN)."""
        tile_h, tile_w = plan.tile
        row_weights = tile_weights(plan.rows, tile_h)
        col_weights = tile_weights(plan.cols, tile_w)
        sums: list[np.ndarray] = []
        totals: list[np.ndarray] = []
        for top, w_row in zip(plan.rows, row_weights, strict=True):
            for left, w_col in zip(plan.cols, col_weights, strict=True):
                window = (slice(None), slice(None), slice(top, top + tile_h),
                          slice(left, left + tile_w))
                tile_sparse = None if sparse is None else np.ascontiguousarray(sparse[window])
                outputs = self._backend_outputs(np.ascontiguousarray(image[window]),
                                                tile_sparse)
                weight = w_row[:, None] * w_col[None, :]
                if not sums:
                    sums = [np.zeros(plan.padded, np.float32) for _ in outputs]
                    totals = [np.zeros(plan.padded, np.float32) for _ in outputs]
                for out, acc, total in zip(outputs, sums, totals, strict=True):
                    out = out[0, 0]
                    good = np.isfinite(out)
                    acc[window[2:]] += np.where(good, out * weight, 0)
                    total[window[2:]] += np.where(good, weight, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return [np.where(total > 0, acc / total, np.nan).astype(np.float32)
                    for acc, total in zip(sums, totals, strict=True)]

    def _run_native(self, rgb: np.ndarray, sparse_depth: np.ndarray | None
                    ) -> list[np.ndarray]:
        """``native`` models: the frame padded to the stride (image edge-replicated, LiDAR
        padded with 'no return'; nothing resized), every output cropped back."""
        image_h, image_w = rgb.shape[:2]
        height, width = self.network_size(image_h, image_w)
        pad = ((0, height - image_h), (0, width - image_w))
        image = np.pad(rgb, (*pad, (0, 0)), mode="edge").astype(np.float32)
        image *= np.float32(1 / 255)
        image = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
        sparse = None
        if self.metadata.kind == "fusion" and sparse_depth is not None:
            clean = np.where(np.isfinite(sparse_depth) & (sparse_depth > 0), sparse_depth, 0)
            sparse = np.pad(clean.astype(np.float32), pad)[None, None]
        outputs = self._backend_outputs(image, sparse)
        return [np.ascontiguousarray(out[0, 0, :image_h, :image_w]) for out in outputs]

    def _backend_outputs(self, image: np.ndarray, sparse: np.ndarray | None
                         ) -> list[np.ndarray]:
        run_outputs = getattr(self._backend, "run_outputs", None)
        if run_outputs is None or len(self.metadata.output_names) == 1:
            # One output (or a backend that offers only run()): the plain call.
            return [self._backend.run(image, sparse)]
        return run_outputs(image, sparse)

    def _run(self, rgb: np.ndarray, sparse_depth: np.ndarray | None,
             fx: float | None = None) -> np.ndarray:
        """The network's output at the input image's size (float32 H×W)."""
        return self._run_outputs(rgb, sparse_depth, fx)[0]

    def _run_outputs(self, rgb: np.ndarray, sparse_depth: np.ndarray | None,
                     fx: float | None = None) -> list[np.ndarray]:
        """Every network output at the input image's size (float32 H×W each): the depth,
        then the confidence where the model has one."""
        if self.resize_policy == "native":
            return self._run_native(rgb, sparse_depth)
        if self.resize_policy == "canonical":
            return self._run_canonical(rgb, sparse_depth, fx)
        height, width = self.network_size(rgb.shape[0], rgb.shape[1])
        if self.preprocess == "depth_anything_v2":
            image = cv2.resize(rgb / 255.0, (width, height), interpolation=cv2.INTER_CUBIC)
            image = image.astype(np.float32)
        else:
            image = resize_rgb(rgb, width, height).astype(np.float32) * np.float32(1 / 255)
        image = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
        sparse = None
        if self.metadata.kind == "fusion" and sparse_depth is not None:
            # Point by point, as in training: nearest-pixel resampling drops most returns.
            sparse = resize_sparse_depth(sparse_depth, width, height)[None, None]
        results = []
        for out in self._backend_outputs(image, sparse):
            out = out[0, 0]
            if self.preprocess == "depth_anything_v2":
                results.append(resize_bilinear_align_corners(out, rgb.shape[0], rgb.shape[1]))
            else:
                results.append(cv2.resize(out, (rgb.shape[1], rgb.shape[0]),
                                          interpolation=cv2.INTER_LINEAR))
        return results

    def predict_detailed(self, rgb: np.ndarray, sparse_depth: np.ndarray | None = None,
                         fx: float | None = None) -> DepthPrediction:
        """Depth for an RGB image, with its kind and (relative models) the LiDAR fit.

        Metric models: metres (``kind`` ``metric``, ``fit`` None), rescaled to ``fx``.
        Relative models with LiDAR: a robust scale-and-shift fit of the inverse depth to the
        LiDAR points (``robust_scale_shift``); if it is ``ok``, metres (``kind`` ``metric``),
        else the relative inverse depth (``kind`` ``relative_inverse_depth``) with the failed
        fit. Without LiDAR: the relative inverse depth, ``fit`` None.

        Args:
            rgb: H×W×3 uint8 RGB.
            sparse_depth: H×W metres, 0 (or NaN) where there is no LiDAR return; fusion
                models take it as input and relative models are fitted to it.
            fx: the camera's horizontal focal length in pixels at ``rgb``'s resolution;
                metric depth is rescaled from the training focal length to it. ``canonical``
                models size the network input by it; without it they assume the training
                camera's field of view (``assumed_fx``, warned once).
        """
        self._validate(rgb, sparse_depth, fx)
        meta = self.metadata
        fx = self._focal_or_assumed(fx, rgb.shape[1])
        # Native (completion) models take their metric scale from the LiDAR at the camera's
        # own pixels: no focal-length normalisation (it would push far returns past the
        # model's depth range and clip them).
        net_fx = (None if fx is None or self.resize_policy == "native"
                  else self._network_fx(fx, *rgb.shape[:2]))
        if meta.kind == "fusion" and sparse_depth is not None and net_fx is not None:
            # The network reads LiDAR as it learned depth: at its training focal length.
            sparse_depth = sparse_depth * np.float32(meta.train_focal_px / net_fx)
        out, *extra = self._run_outputs(rgb, sparse_depth, fx)
        invalid = ~np.isfinite(out)
        if meta.output == "relative":
            return self._make_metric(out.astype(np.float32), invalid, sparse_depth)
        depth = out
        if net_fx is not None:
            depth = depth * np.float32(net_fx / meta.train_focal_px)
        depth = np.clip(depth, meta.min_depth_m, meta.max_depth_m).astype(np.float32)
        depth[invalid] = np.nan
        confidence = None
        if meta.has_confidence and extra:
            confidence = np.clip(extra[meta.output_names.index("confidence") - 1], 0.0,
                                 1.0).astype(np.float32)
            confidence[invalid] = np.nan
        return DepthPrediction(depth, METRIC, None, self.backend_name, confidence)

    def predict(self, rgb: np.ndarray, sparse_depth: np.ndarray | None = None,
                fx: float | None = None) -> np.ndarray:
        """Depth in metres (float32 H×W, NaN where there is no estimate) for an RGB image.

        As ``predict_detailed``, metres only: a relative model needs ``sparse_depth``
        (``ValueError`` without it), and a frame whose LiDAR fit fails is all NaN.
        """
        prediction = self.predict_detailed(rgb, sparse_depth, fx)
        if prediction.kind == METRIC:
            return prediction.depth
        if prediction.fit is None:
            raise ValueError("this model predicts relative depth: pass sparse_depth (LiDAR) "
                             "to make it metric, or call predict_detailed()/predict_relative()")
        LOG.debug("no metric depth for this frame: %s", prediction.fit.reason)
        return np.full(rgb.shape[:2], np.nan, dtype=np.float32)

    def predict_relative(self, rgb: np.ndarray, fx: float | None = None) -> np.ndarray:
        """The raw network output at ``rgb``'s size (affine-invariant inverse depth for
        relative models; metres at the training focal length for metric ones); ``fx``
        sizes the input of ``canonical`` models."""
        self._validate(rgb, None, fx)
        return self._run(rgb, None, self._focal_or_assumed(fx, rgb.shape[1]))

    def _focal_or_assumed(self, fx: float | None, image_width: int) -> float | None:
        """``fx``; for ``canonical`` models without one, ``assumed_fx`` (warned once)."""
        if fx is not None or self.resize_policy != "canonical":
            return fx
        if not self._warned_no_fx:
            self._warned_no_fx = True
            LOG.warning("%s: no focal length (fx) given: assuming the training camera's "
                        "horizontal field of view (fx = %.1f px for a %d px wide frame); "
                        "metric depth is only right if the camera matches it; pass fx",
                        self.model_path.name, self.assumed_fx(image_width), image_width)
        return self.assumed_fx(image_width)

    def _make_metric(self, inverse_depth: np.ndarray, invalid: np.ndarray,
                     sparse_depth: np.ndarray | None) -> DepthPrediction:
        """A relative model's output, made metric by the LiDAR fit where that works."""
        inverse_depth[invalid] = np.nan
        if sparse_depth is None:
            return DepthPrediction(inverse_depth, RELATIVE, None, self.backend_name)
        with np.errstate(invalid="ignore"):
            points = (sparse_depth > 0) & ~invalid  # NaN > 0 is False: no return
        fit = robust_scale_shift(inverse_depth[points], sparse_depth[points],
                                 min_points=self.min_fit_points)
        if not fit.ok:
            return DepthPrediction(inverse_depth, RELATIVE, fit, self.backend_name)
        meta = self.metadata
        depth = fit.apply(inverse_depth)
        finite = np.isfinite(depth)
        depth[finite] = np.clip(depth[finite], meta.min_depth_m, meta.max_depth_m)
        return DepthPrediction(depth, METRIC, fit, self.backend_name)


def _check_size(name: str, size: tuple[int, int] | None) -> None:
    """One clear error for a (height, width) argument that is not two positive numbers."""
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise ValueError(f"{name} must be (height, width) > 0, got {size}")
