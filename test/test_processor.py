"""The depth nodes' frame policy in-process (``FrameProcessor``, no ROS), with stand-in
estimators: clipping, 32FC1 and 16UC1, the LiDAR fit's bookkeeping, decimated clouds,
confidence and min_confidence, which outputs are built when, classical completion."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np
import pytest

from depth_ros.completion import ClassicalCompletion
from depth_ros.inference.estimator import METRIC, RELATIVE
from depth_ros.inference.processor import (
    FrameProcessor,
    ProcessorOptions,
    decimated_intrinsics,
    depth_millimetres,
)

H, W = 6, 8
K = np.array([[100.0, 0.0, 4.0], [0.0, 90.0, 3.0], [0.0, 0.0, 1.0]])
RGB = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)


@dataclass
class Prediction:
    depth: np.ndarray
    kind: str
    fit: SimpleNamespace | None
    backend: str
    confidence: np.ndarray | None = None


class StandIn:
    """An estimator that answers with given arrays and records what it was asked."""

    backend_name = "stand_in[cpu]"

    def __init__(self, depth, kind=METRIC, fit=None, confidence=None, model_kind="mono"):
        self.metadata = SimpleNamespace(kind=model_kind, min_depth_m=0.1, max_depth_m=80.0)
        self.answers = [(np.asarray(depth, np.float32), kind, fit, confidence)]
        self.calls = []

    def predict_detailed(self, rgb, sparse_depth=None, fx=None):
        self.calls.append({"sparse": sparse_depth, "fx": fx})
        depth, kind, fit, confidence = self.answers[-1]
        return Prediction(depth.copy(), kind, fit, self.backend_name, confidence)


def fit(ok: bool, points: int = 40) -> SimpleNamespace:
    """The fields of ``ScaleShiftFit`` the processor reads."""
    return SimpleNamespace(scale=2.0, shift=0.5, inlier_fraction=0.9 if ok else 0.2,
                         rms_relative_residual=0.01, points=points, ok=ok,
                         reason="" if ok else "too few inliers")


def ramp() -> np.ndarray:
    return np.linspace(0.05, 100.0, H * W, dtype=np.float32).reshape(H, W)


def options(**kw) -> ProcessorOptions:
    return ProcessorOptions(**{"min_depth_m": 1.0, "max_depth_m": 50.0, **kw})


def test_metric_depth_is_clipped_to_the_range_as_nan():
    out = FrameProcessor(StandIn(ramp()), options(), "m.onnx").process(RGB, K)
    depth = ramp()
    inside = (depth >= 1.0) & (depth <= 50.0)
    np.testing.assert_array_equal(out.depth[inside], depth[inside])
    assert np.isnan(out.depth[~inside]).all() and (~inside).sum() == 25
    assert out.kind == METRIC and out.encoding == "32FC1" and out.depth_image is out.depth


def test_16uc1_is_rounded_millimetres_with_zero_for_no_estimate():
    depth = np.full((H, W), 2.0005, np.float32)
    depth[0, 0] = 60.0  # outside the range
    depth[0, 1] = np.nan
    out = FrameProcessor(StandIn(depth), options(depth_encoding="16UC1"), "m.onnx").process(
        RGB, K)
    assert out.encoding == "16UC1" and out.depth_image.dtype == np.uint16
    assert out.depth_image[0, 0] == 0 and out.depth_image[0, 1] == 0
    assert out.depth_image[3, 3] == 2000  # 2.0005 f32 is 2.000499... m
    assert json.loads(json.dumps(out.info))["units"] == "millimetres"
    np.testing.assert_array_equal(depth_millimetres(np.array([[0.0015, -1.0, np.inf, 70.0]])),
                                  [[2, 0, 0, 65535]])


def test_relative_depth_stays_32fc1_and_says_so_once():
    inverse = np.full((H, W), 0.3, np.float32)
    processor = FrameProcessor(StandIn(inverse, kind=RELATIVE), options(depth_encoding="16UC1"),
                               "r.onnx")
    first = processor.process(RGB, K, want_points=True)
    assert first.encoding == "32FC1" and first.depth_image.dtype == np.float32
    np.testing.assert_array_equal(first.depth, inverse)  # never clipped as if metres
    assert first.cloud is None and first.info["kind"] == RELATIVE and first.info_changed
    warnings = [text for level, text in first.logs if level == "warning"]
    assert len(warnings) == 3  # relative depth, no millimetres, no points
    second = processor.process(RGB, K, want_points=True)
    assert second.logs == [] and not second.info_changed


def test_fit_bookkeeping_logs_changes_of_outcome_only():
    standin = StandIn(ramp(), kind=METRIC, fit=fit(True))
    processor = FrameProcessor(standin, options(), "r.onnx")
    out = processor.process(RGB, K, np.ones((H, W), np.float32), lidar=True)
    assert out.fit == {"scale": 2.0, "shift": 0.5, "inlier_fraction": 0.9,
                       "rms_relative_residual": 0.01, "points": 40, "ok": True}
    assert any(text.startswith("scale-and-shift fit ok: 40 LiDAR points") for _, text in out.logs)
    assert out.info["lidar"] is True
    standin.answers.append((ramp(), METRIC, fit(True, points=41), None))
    assert processor.process(RGB, K, np.ones((H, W), np.float32), lidar=True).logs == []
    assert processor.last_fit["points"] == 41
    standin.answers.append((np.full((H, W), 0.3), RELATIVE, fit(False), None))
    failed = processor.process(RGB, K, np.ones((H, W), np.float32), lidar=True)
    assert failed.kind == RELATIVE and processor.output_kind == RELATIVE
    assert ("warning", "scale-and-shift fit FAILED (too few inliers), depth stays relative: "
            "40 LiDAR points, scale 2, shift 0.5, inliers 20 %") in failed.logs


def test_focal_length_and_sparse_depth_reach_the_estimator():
    mono, fusion = StandIn(ramp()), StandIn(ramp(), model_kind="fusion")
    FrameProcessor(mono, options(), "m").process(RGB, K)
    FrameProcessor(fusion, options(), "f").process(RGB, K)
    assert mono.calls[0] == {"sparse": None, "fx": 100.0}
    # A fusion model without LiDAR gets an empty sparse input (it degrades to mono).
    assert fusion.calls[0]["sparse"].shape == (H, W) and not fusion.calls[0]["sparse"].any()


@pytest.mark.parametrize("want_points,want_colored", [(False, False), (True, False),
                                                      (False, True), (True, True)])
def test_outputs_are_built_only_when_wanted(want_points, want_colored):
    out = FrameProcessor(StandIn(ramp()), options(), "m").process(
        RGB, K, want_points=want_points, want_colored=want_colored)
    assert (out.cloud is not None) == want_points
    assert (out.colored is not None) == want_colored
    if want_colored:
        assert out.colored.shape == (H, W, 3) and out.colored.dtype == np.uint8


@pytest.mark.parametrize("step", [1, 2, 3])
def test_cloud_is_decimated_with_matching_intrinsics(step):
    processor = FrameProcessor(StandIn(ramp()), options(points_decimation=step), "m")
    cloud = processor.process(RGB, K, want_points=True).cloud
    np.testing.assert_array_equal(cloud.depth, processor.process(RGB, K).depth[::step, ::step])
    np.testing.assert_array_equal(cloud.rgb, RGB[::step, ::step])
    np.testing.assert_allclose(cloud.K, decimated_intrinsics(K, step))
    processor.options = replace(processor.options, points_rgb=False)  # a live change
    assert processor.process(RGB, K, want_points=True).cloud.rgb is None


def test_decimated_intrinsics_divide_focal_lengths_and_principal_point():
    k = np.array([[700.0, 0, 600.0], [0, 710.0, 180.0], [0, 0, 1]])
    np.testing.assert_allclose(decimated_intrinsics(k, 4),
                               [[175.0, 0, 150.0], [0, 177.5, 45.0], [0, 0, 1]])
    assert k[0, 0] == 700.0  # the input is not modified


def test_confidence_is_passed_on_and_min_confidence_drops_cloud_points():
    confidence = np.linspace(0.0, 1.0, H * W, dtype=np.float32).reshape(H, W)
    depth = np.full((H, W), 10.0, np.float32)
    processor = FrameProcessor(StandIn(depth, confidence=confidence),
                               options(min_confidence=0.5), "f")
    out = processor.process(RGB, K, want_points=True)
    np.testing.assert_array_equal(out.confidence, confidence)
    low = confidence < 0.5
    assert np.isnan(out.cloud.depth[low]).all() and low.sum() == 24
    np.testing.assert_array_equal(out.cloud.depth[~low], 10.0)
    assert not np.isnan(out.depth).any()  # the depth image keeps every pixel
    processor.options = replace(processor.options, min_confidence=0.0)
    assert not np.isnan(processor.process(RGB, K, want_points=True).cloud.depth).any()


def test_no_confidence_output_is_none():
    out = FrameProcessor(StandIn(ramp()), options(min_confidence=0.9), "m").process(
        RGB, K, want_points=True)
    assert out.confidence is None and np.isfinite(out.cloud.depth).sum() == 23


@pytest.mark.parametrize("bad", [dict(min_depth_m=5.0, max_depth_m=5.0),
                                 dict(depth_encoding="8UC1"), dict(points_decimation=0),
                                 dict(colored_range="log"), dict(min_confidence=1.5)])
def test_bad_options_are_one_clear_error(bad):
    with pytest.raises(ValueError, match="must"):
        options(**bad)


def test_classical_completion_fills_from_lidar_and_warns_once_without():
    rng = np.random.default_rng(0)
    sparse = np.zeros((64, 96), np.float32)
    rows, cols = rng.integers(0, 64, 400), rng.integers(0, 96, 400)
    sparse[rows, cols] = rng.uniform(5.0, 20.0, 400)
    rgb = np.zeros((64, 96, 3), np.uint8)
    k = np.array([[80.0, 0, 48.0], [0, 80.0, 32.0], [0, 0, 1]])
    processor = FrameProcessor(ClassicalCompletion(), ProcessorOptions(0.1, 100.0), "classical")
    assert processor.classical
    out = processor.process(rgb, k, sparse, lidar=True)
    assert out.kind == METRIC and np.isfinite(out.depth).mean() > 0.5
    assert np.nanmin(out.depth) >= 5.0 - 1e-3 and np.nanmax(out.depth) <= 20.0 + 1e-3
    empty = processor.process(rgb, k, None)
    assert np.isnan(empty.depth).all()
    assert [level for level, text in empty.logs if "IP-Basic" in text] == ["warning"]
    assert not any("IP-Basic" in text for _, text in processor.process(rgb, k, None).logs)
