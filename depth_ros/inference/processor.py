"""``FrameProcessor``: what a depth node does with one frame, without ROS.

The node is an adapter (messages in, this, messages out); the policy lives here so it is
tested in-process with any estimator: the estimator call (an empty sparse input for a fusion
model without LiDAR), range clipping of metric depth, 32FC1 metres or 16UC1 millimetres,
relative inverse depth kept as 32FC1, the LiDAR fit's bookkeeping (what to log when the fit
or the output's kind changes, the ``depth/info`` content), the confidence map and
``min_confidence``, and which outputs are built: the organised cloud's depth, intrinsics and
colours (decimated), the colourised depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from depth_ros.inference.estimator import METRIC, RELATIVE
from depth_ros.viz import colorize_depth

DEPTH_ENCODINGS = ("32FC1", "16UC1")
DEPTH_UNITS = {"32FC1": "metres", "16UC1": "millimetres"}
UNITS = {METRIC: "metres", RELATIVE: "affine-invariant inverse depth (larger is nearer)"}
COLORED_RANGES = ("fixed", "auto")


@dataclass(frozen=True)
class ProcessorOptions:
    """The node's output policy (live parameters replace it as a whole).

    ``min_depth_m``/``max_depth_m``: the published range of metric depth (outside: no
    estimate); ``min_confidence``: cloud points of lower confidence are NaN.
    """

    min_depth_m: float
    max_depth_m: float
    depth_encoding: str = "32FC1"
    points_decimation: int = 1
    points_rgb: bool = True
    colored_range: str = "fixed"
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_depth_m) and math.isfinite(self.max_depth_m)
                and 0 < self.min_depth_m < self.max_depth_m):
            raise ValueError(f"the range {self.min_depth_m:g}-{self.max_depth_m:g} m is empty; "
                             "min_depth_m must be above 0 and below max_depth_m")
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth_encoding must be one of {DEPTH_ENCODINGS}, got "
                             f"{self.depth_encoding!r}")
        if self.points_decimation < 1:
            raise ValueError(f"points_decimation must be >= 1, got {self.points_decimation}")
        if self.colored_range not in COLORED_RANGES:
            raise ValueError(f"colored_range must be one of {COLORED_RANGES}, got "
                             f"{self.colored_range!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")


@dataclass(frozen=True)
class CloudData:
    """What the organised cloud is made of: depth (metres, NaN = no point), the intrinsics of
    that (possibly decimated) image, and the colours (H×W×3 uint8) or None."""

    depth: np.ndarray
    K: np.ndarray
    rgb: np.ndarray | None


@dataclass
class FrameOutput:
    """One frame's outputs as arrays and plain data.

    Attributes:
        depth: float32 H×W as published in 32FC1 (metres clipped to the range, NaN = no
            estimate; or relative inverse depth).
        kind: ``metric`` or ``relative_inverse_depth``.
        encoding: the encoding of ``depth_image`` (relative depth is always 32FC1).
        depth_image: the array to publish on ``depth``: ``depth`` itself (32FC1) or uint16
            millimetres (16UC1, 0 = no estimate).
        confidence: float32 H×W in [0, 1] when the model gives one, else None.
        cloud: the cloud's data when asked for and the depth is metric, else None.
        colored: rgb8 colourised depth when asked for, else None.
        info: the ``depth/info`` content; ``info_changed`` when it differs from the last.
        fit: the LiDAR fit's figures (relative models given LiDAR), else None.
        logs: (level, text) lines to log: ``info`` or ``warning``.
    """

    depth: np.ndarray
    kind: str
    encoding: str
    depth_image: np.ndarray
    confidence: np.ndarray | None = None
    cloud: CloudData | None = None
    colored: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    info_changed: bool = False
    fit: dict[str, float | int | bool] | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)


def decimated_intrinsics(K: np.ndarray, step: int) -> np.ndarray:  # noqa: N803
    """Intrinsics of the image made of every ``step``-th pixel (``image[::step, ::step]``).

    Pixel (i, j) of that image is pixel (step·i, step·j) of the original, so
    (step·i − cx) / fx = (i − cx/step) / (fx/step): every entry is divided by the step.
    """
    k = np.array(K, dtype=np.float64)
    k[:2] /= step
    return k


def depth_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """REP 118 16UC1 of depth in metres: millimetres rounded to the nearest (ties to even),
    saturated at 65535, 0 ("no data") where the depth is NaN, infinite or not positive."""
    depth = np.asarray(depth_m)
    # float64 so the product is exact enough to round the float32 depth itself; a float32
    # product is 1 mm off on ~0.1 % of pixels of a KITTI-size frame.
    with np.errstate(over="ignore"):  # absurd finite depths overflow, then saturate below
        millimetres = np.multiply(depth, 1000.0, dtype=np.float64)
    np.rint(millimetres, out=millimetres)
    np.clip(millimetres, 0.0, 65535.0, out=millimetres)
    # NaN survives the clip and +inf (REP 118 "too far") has no 16UC1 value: both become 0
    # through a multiply by the mask, which unlike a masked write has no per-pixel branch.
    keep = (depth > 0) & (depth < np.inf)
    with np.errstate(invalid="ignore"):  # NaN's cast value is discarded by the mask
        encoded = millimetres.astype("<u2")
    encoded *= keep
    return encoded


class FrameProcessor:
    """A depth node's frame policy around an injected estimator (``DepthEstimator``,
    ``ClassicalCompletion`` or anything with ``predict_detailed`` and ``metadata``).

    Args:
        estimator: what turns an image (and sparse depth) into a prediction.
        options: the output policy; replace ``processor.options`` to change it live.
        model_name: the model's name for ``depth/info`` and log lines.
    """

    def __init__(self, estimator: Any, options: ProcessorOptions, model_name: str) -> None:
        self.estimator = estimator
        self.options = options
        self.model_name = model_name
        self.output_kind = "unknown"
        self.last_fit: dict[str, float | int | bool] | None = None
        self._info: dict[str, Any] | None = None
        self._said_once: set[str] = set()
        self._input_key: tuple[int, int, float] | None = None

    @property
    def classical(self) -> bool:
        """Whether the estimator completes LiDAR without a network (IP-Basic)."""
        return getattr(self.estimator, "backend_family", "") == "classical"

    def process(self, rgb: np.ndarray, K: np.ndarray,  # noqa: N803
                sparse_depth: np.ndarray | None = None, lidar: bool = False,
                want_points: bool = False, want_colored: bool = False) -> FrameOutput:
        """Run the estimator on one frame and build what is wanted.

        Args:
            rgb: H×W×3 uint8.
            K: 3×3 intrinsics of ``rgb``.
            sparse_depth: H×W LiDAR depth in metres (0 = no return), or None.
            lidar: whether a cloud came with the frame (for ``depth/info``).
            want_points, want_colored: build the cloud's data / the colourised depth.
        """
        options = self.options  # one snapshot: a live change applies from the next frame
        logs: list[tuple[str, str]] = []
        meta = self.estimator.metadata
        if sparse_depth is None and meta.kind == "fusion":
            # A fusion model without LiDAR degrades to mono: an empty sparse input.
            sparse_depth = np.zeros(rgb.shape[:2], dtype=np.float32)
        if self.classical and not (sparse_depth > 0).any():
            self._once(logs, "classical_no_lidar", "classical completion (IP-Basic) has no "
                       "LiDAR return in this frame: its depth is empty (NaN) until one comes")
        fx = float(K[0][0])
        prediction = self.estimator.predict_detailed(rgb, sparse_depth=sparse_depth, fx=fx)
        self._note_input(rgb.shape[0], rgb.shape[1], fx, logs)  # after: fx was checked
        kind = prediction.kind
        fit = self._note_fit(prediction.fit, logs)
        depth = prediction.depth
        encoding = "32FC1"
        if kind == METRIC:
            outside = ~((depth >= options.min_depth_m) & (depth <= options.max_depth_m))
            depth = depth.copy() if not depth.flags.writeable else depth
            depth[outside] = np.nan
            encoding = options.depth_encoding
        self._note_kind(kind, encoding, logs)
        confidence = getattr(prediction, "confidence", None)
        if confidence is not None:
            confidence = np.asarray(confidence, dtype=np.float32)
        out = FrameOutput(depth=depth, kind=kind, encoding=encoding,
                          depth_image=depth_millimetres(depth) if encoding == "16UC1"
                          else depth, confidence=confidence, fit=fit, logs=logs)
        out.info = {"kind": kind, "units": DEPTH_UNITS[encoding] if kind == METRIC
                    else UNITS[kind], "encoding": encoding, "model": self.model_name,
                    "backend": self.estimator.backend_name, "lidar": bool(lidar)}
        out.info_changed = out.info != self._info
        self._info = out.info
        if want_points:
            if kind == METRIC:
                out.cloud = self._cloud(depth, rgb, K, confidence, options)
            else:
                self._once(logs, "relative_points", "no 'points' while depth is relative: "
                           "inverse depth of unknown scale has no 3-D points")
        if want_colored:
            out.colored = self.colorize(depth, kind, options)
        return out

    def _note_input(self, height: int, width: int, fx: float,
                    logs: list[tuple[str, str]]) -> None:
        """A line with the network size when the camera's resolution or focal changes (a
        ``canonical`` model's input follows both)."""
        describe = getattr(self.estimator, "describe_input", None)
        if describe is None or self._input_key == (height, width, fx):
            return
        self._input_key = (height, width, fx)
        logs.append(("info", describe(height, width, fx)))

    def _once(self, logs: list[tuple[str, str]], key: str, text: str) -> None:
        if key not in self._said_once:
            self._said_once.add(key)
            logs.append(("warning", text))

    def _note_fit(self, fit: Any, logs: list[tuple[str, str]]) -> dict | None:
        """The fit's figures; a line when it first succeeds or fails, or changes between."""
        if fit is None:
            return None
        values = {"scale": float(fit.scale), "shift": float(fit.shift),
                  "inlier_fraction": float(fit.inlier_fraction),
                  "rms_relative_residual": float(fit.rms_relative_residual),
                  "points": int(fit.points), "ok": bool(fit.ok)}
        if self.last_fit is None or self.last_fit["ok"] != values["ok"]:
            figures = (f"{fit.points} LiDAR points, scale {fit.scale:.4g}, shift "
                       f"{fit.shift:.4g}, inliers {100 * fit.inlier_fraction:.0f} %")
            if fit.ok:
                logs.append(("info", f"scale-and-shift fit ok: {figures}"))
            else:
                logs.append(("warning", f"scale-and-shift fit FAILED ({fit.reason}), depth "
                                        f"stays relative: {figures}"))
        self.last_fit = values
        return values

    def _note_kind(self, kind: str, encoding: str, logs: list[tuple[str, str]]) -> None:
        """A line when the output's kind changes (relative is a warning)."""
        if kind == self.output_kind:
            return
        if kind == RELATIVE:
            logs.append(("warning", f"publishing RELATIVE depth on 'depth': model "
                         f"{self.model_name} predicts affine-invariant inverse depth (larger "
                         "is nearer) and no LiDAR is there to make it metric; see "
                         "'depth/info'"))
            if self.options.depth_encoding != "32FC1":
                self._once(logs, "relative_16uc1", "relative depth has no millimetres: "
                           "publishing it as 32FC1 despite depth_encoding 16UC1")
        else:
            logs.append(("info", f"publishing metric depth ({encoding}, "
                                 f"{DEPTH_UNITS[encoding]})"))
        self.output_kind = kind

    @staticmethod
    def _cloud(depth: np.ndarray, rgb: np.ndarray, K: np.ndarray,  # noqa: N803
               confidence: np.ndarray | None, options: ProcessorOptions) -> CloudData:
        """The organised cloud's data, of every points_decimation-th pixel; points below
        min_confidence are NaN."""
        if confidence is not None and options.min_confidence > 0:
            # NaN confidence is not >= anything: dropped too.
            depth = np.where(confidence >= options.min_confidence, depth,
                             np.float32(np.nan)).astype(np.float32, copy=False)
        colour = rgb if options.points_rgb else None
        step = options.points_decimation
        if step == 1:
            return CloudData(depth, np.asarray(K, dtype=np.float64), colour)
        if colour is not None:
            colour = np.ascontiguousarray(colour[::step, ::step])
        return CloudData(np.ascontiguousarray(depth[::step, ::step]),
                         decimated_intrinsics(K, step), colour)

    @staticmethod
    def colorize(depth: np.ndarray, kind: str, options: ProcessorOptions) -> np.ndarray:
        """rgb8 colours of the depth (near red, far blue), fixed or per-frame range."""
        if kind != METRIC:
            # Colours follow inverse depth; the reciprocal of relative inverse depth is a
            # pseudo-depth that colorize_depth maps back linearly in it, scale-free.
            with np.errstate(divide="ignore", invalid="ignore"):
                pseudo = np.where(depth > 0, 1.0 / depth, np.nan).astype(np.float32)
            return colorize_depth(pseudo)
        if options.colored_range == "auto":
            return colorize_depth(depth)
        return colorize_depth(depth, options.min_depth_m, options.max_depth_m)
