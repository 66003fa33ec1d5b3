"""Relative models made metric: the robust scale-and-shift fit, its quality figures and failure
cases, and ``DepthEstimator.predict_detailed`` end to end on a freshly exported relative model."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_ros.inference import (
    METRIC,
    RELATIVE,
    DepthEstimator,
    ScaleShiftFit,
    robust_scale_shift,
)
from depth_ros.inference.alignment import fit_scale_shift
from depth_ros.models import ModelMetadata, create_model

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from training.checkpoint import save_checkpoint  # noqa: E402
from training.export import export_onnx  # noqa: E402

SCALE, SHIFT = 0.2, 0.02  # inverse depth (1/m) = SCALE · relative + SHIFT: 4.5 m to 50 m


def lidar_samples(n: int, outlier_fraction: float, noise: float = 1e-3, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(relative inverse depth, LiDAR depth in metres, outlier mask): depth noise relative to
    depth, and gross outliers anywhere from 1 to 80 m (glass, edges, the ego vehicle)."""
    rng = np.random.default_rng(seed)
    relative = rng.uniform(0.01, 1.0, n)
    depth = 1.0 / (SCALE * relative + SHIFT) * (1 + rng.normal(0.0, noise, n))
    outliers = rng.random(n) < outlier_fraction
    depth[outliers] = rng.uniform(1.0, 80.0, int(outliers.sum()))
    return relative, depth, outliers


@pytest.mark.parametrize("outlier_fraction", [0.0, 0.3, 0.45])
def test_fit_recovers_scale_and_shift_through_gross_outliers(outlier_fraction: float) -> None:
    relative, depth, outliers = lidar_samples(5000, outlier_fraction)
    fit = robust_scale_shift(relative, depth)
    assert fit.ok, fit.reason
    assert fit.reason == ""
    assert fit.scale == pytest.approx(SCALE, rel=1e-3)
    assert fit.shift == pytest.approx(SHIFT, rel=1e-3)
    assert fit.points == 5000
    # Nearly every clean point is an inlier (2.5 σ keeps ~98.8 %), a few outliers land on the
    # line by chance.
    clean = 1.0 - outliers.mean()
    assert clean * 0.97 <= fit.inlier_fraction <= clean + 0.03
    assert fit.inliers == round(fit.inlier_fraction * fit.points)
    # The inlier scatter is the depth noise (1e-3 relative), not the outliers'.
    assert 0.7e-3 < fit.rms_relative_residual < 1.2e-3
    assert fit.rms_residual < 2e-3 * (SCALE + SHIFT)
    assert 0 < fit.scale_error < 1e-3


def test_thirty_percent_outliers_give_about_seventy_percent_inliers() -> None:
    relative, depth, _ = lidar_samples(3000, 0.3, seed=3)
    fit = robust_scale_shift(relative, depth)
    assert fit.ok and abs(fit.inlier_fraction - 0.7) < 0.03
    assert abs(fit.scale / SCALE - 1) < 1e-3 and abs(fit.shift / SHIFT - 1) < 1e-3


def test_plain_least_squares_is_bent_by_the_same_outliers() -> None:
    """The outliers of these tests matter: without the robust steps the fit is far off."""
    relative, depth, _ = lidar_samples(5000, 0.3)
    s, t = np.polyfit(relative, 1.0 / depth, 1)
    assert abs(s / SCALE - 1) > 0.1 or abs(t / SHIFT - 1) > 0.1


def test_exact_points_give_the_exact_fit_and_the_same_fit_every_time() -> None:
    relative, depth, _ = lidar_samples(500, 0.0, noise=0.0)
    fit = robust_scale_shift(relative, depth)
    assert fit.ok and fit.inlier_fraction == 1.0
    assert fit.scale == pytest.approx(SCALE, rel=1e-9) and fit.shift == pytest.approx(SHIFT,
                                                                                      rel=1e-9)
    noisy, noisy_depth, _ = lidar_samples(500, 0.3)
    assert robust_scale_shift(noisy, noisy_depth) == robust_scale_shift(noisy, noisy_depth)


def test_invalid_lidar_samples_are_ignored() -> None:
    relative, depth, _ = lidar_samples(400, 0.0, noise=0.0)
    depth[:100] = 0.0  # no return
    depth[100:150] = np.nan
    depth[150:160] = -3.0
    relative[160:170] = np.inf
    fit = robust_scale_shift(relative, depth)
    assert fit.ok and fit.points == 230
    assert fit.scale == pytest.approx(SCALE, rel=1e-9)


@pytest.mark.parametrize(("case", "reason"), [
    ("too_few", "fewer than the 20 needed"),
    ("empty", "0 usable LiDAR points"),
    ("one_depth", "span too little depth"),
    ("one_depth_exact", "every LiDAR point is at the same depth"),
    ("constant_prediction", "the same at every LiDAR point"),
    ("inverted", "no positive scale"),
    ("garbage", "rms around the fit"),
])
def test_degenerate_data_is_a_failed_fit_with_a_reason(case: str, reason: str) -> None:
    rng = np.random.default_rng(1)
    relative, depth, _ = lidar_samples(2000, 0.0)
    if case == "too_few":
        relative, depth = relative[:19], depth[:19]
    elif case == "empty":
        depth = np.zeros_like(depth)
    elif case == "one_depth":  # a wall: every return at 10 m (+ LiDAR noise)
        depth = 10.0 * (1 + rng.normal(0.0, 1e-3, depth.size))
    elif case == "one_depth_exact":
        depth = np.full_like(depth, 10.0)
    elif case == "constant_prediction":
        relative = np.full_like(relative, 0.3)
    elif case == "inverted":  # nearer where the model says farther: no positive scale
        depth = 1.0 / (0.5 - 0.4 * relative)
    elif case == "garbage":  # returns unrelated to the image
        depth = rng.uniform(1.0, 80.0, depth.size)
    fit = robust_scale_shift(relative, depth)
    assert isinstance(fit, ScaleShiftFit)
    assert not fit.ok
    assert reason in fit.reason
    if case in ("too_few", "empty"):
        assert math.isnan(fit.scale) and fit.inliers == 0 and fit.inlier_fraction == 0.0


def test_min_points_is_a_parameter() -> None:
    relative, depth, _ = lidar_samples(30, 0.0)
    assert robust_scale_shift(relative, depth).ok
    fit = robust_scale_shift(relative, depth, min_points=50)
    assert not fit.ok and "fewer than the 50 needed" in fit.reason


def test_mismatched_samples_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="same number of samples"):
        robust_scale_shift(np.ones(10), np.ones(11))


def test_apply_gives_metres_and_nan_where_the_fit_is_not_positive() -> None:
    fit = ScaleShiftFit(0.5, -0.1, 10, 10, 1.0, 0.0, 0.0, 0.0, True)
    depth = fit.apply(np.array([[1.0, 0.4], [0.2, np.nan]]))
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth[0], [1 / 0.4, 10.0], rtol=1e-6)
    assert np.isnan(depth[1]).all()  # 0.5 · 0.2 − 0.1 = 0, and NaN in


def test_fit_scale_shift_keeps_its_tuple_interface() -> None:
    relative, depth, _ = lidar_samples(1000, 0.3)
    s, t = fit_scale_shift(relative, depth)
    assert s == pytest.approx(SCALE, rel=1e-3) and t == pytest.approx(SHIFT, rel=1e-3)
    # Two points are enough for evaluation (no quality gate there).
    s, t = fit_scale_shift(np.array([0.1, 0.9]), 1.0 / (SCALE * np.array([0.1, 0.9]) + SHIFT))
    assert s == pytest.approx(SCALE) and t == pytest.approx(SHIFT)


# --- DepthEstimator.predict_detailed on a relative model -------------------------------------

NET_H, NET_W = 64, 128


@pytest.fixture(scope="module")
def relative_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rel.onnx (exported with training/export.py's exporter) + rel.pt of a tiny relative
    mono_cnn (ReLU inverse-depth head)."""
    base = tmp_path_factory.mktemp("relative")
    kwargs = {"base_channels": 8, "output": "relative"}
    meta = ModelMetadata(architecture="mono_cnn", kind="mono", output="relative", stride=32,
                         train_input_height=NET_H, train_input_width=NET_W, min_depth_m=0.5,
                         max_depth_m=80.0, train_focal_px=74.4, model_kwargs=kwargs)
    torch.manual_seed(0)
    model = create_model("mono_cnn", **kwargs)
    with torch.no_grad():  # move BatchNorm statistics off their defaults
        for _ in range(3):
            model.train()(torch.rand(2, 3, NET_H, NET_W))
    model.eval()
    save_checkpoint({"state_dict": model.state_dict(), "metadata": meta.to_dict()},
                    base / "rel.pt")
    return export_onnx(model, meta, base / "rel.onnx", NET_H, NET_W)


def scene_image(height: int = 96, width: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 255, height)[:, None, None]
    cols = np.linspace(0, 255, width)[None, :, None]
    image = 0.6 * rows + 0.3 * cols * np.array([1.0, 0.4, 0.2]) + rng.normal(0, 25, (height,
                                                                                   width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def lidar_from(truth: np.ndarray, outlier_fraction: float = 0.2, seed: int = 0
               ) -> np.ndarray:
    """Sparse depth as a spinning LiDAR sees a scene: every 4th row (a beam), every 3rd
    column, none in the top third; 1 cm noise and a share of wrong returns."""
    rng = np.random.default_rng(seed)
    sparse = np.zeros_like(truth)
    rows = np.arange(truth.shape[0] // 3, truth.shape[0], 4)
    sparse[rows[:, None], np.arange(0, truth.shape[1], 3)[None]] = 1.0
    hit = sparse > 0
    sparse[hit] = truth[hit] + rng.normal(0.0, 0.01, int(hit.sum()))
    wrong = hit & (rng.random(truth.shape) < outlier_fraction)
    sparse[wrong] = rng.uniform(1.0, 80.0, int(wrong.sum()))
    return sparse.astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_relative_model_with_lidar_gives_metric_depth(relative_bundle: Path,
                                                      backend: str) -> None:
    estimator = DepthEstimator(relative_bundle, backend=backend)
    assert estimator.metadata.output == "relative"
    rgb = scene_image()
    relative = estimator.predict_relative(rgb)
    assert np.ptp(relative) > 0.05 * np.abs(relative).max()  # the network is not constant
    # Ground truth: the model is right up to inverse depth = s · relative + t, with s and t
    # chosen so that the scene spans 3 m (largest relative value) to 60 m (smallest).
    s = (1 / 3 - 1 / 60) / float(relative.max() - relative.min())
    t = 1 / 60 - s * float(relative.min())
    truth = (1.0 / (s * relative + t)).astype(np.float32)
    sparse = lidar_from(truth)
    prediction = estimator.predict_detailed(rgb, sparse_depth=sparse)
    assert prediction.kind == METRIC
    assert prediction.backend == estimator.backend_name
    assert prediction.backend.startswith(backend + "[")
    fit = prediction.fit
    assert fit is not None and fit.ok
    assert fit.points == int((sparse > 0).sum()) > 500
    assert 0.7 < fit.inlier_fraction < 0.85  # 20 % wrong returns, a few land on the line
    assert fit.scale == pytest.approx(s, rel=1e-2) and fit.shift == pytest.approx(t, abs=1e-3)
    depth = prediction.depth
    assert depth.shape == rgb.shape[:2] and depth.dtype == np.float32
    inside = (truth >= 0.5) & (truth <= 80.0)
    abs_rel = np.abs(depth[inside] - truth[inside]) / truth[inside]
    assert np.isfinite(depth[inside]).all()
    assert abs_rel.mean() < 0.005 and abs_rel.max() < 0.05
    # predict() gives the same metres.
    np.testing.assert_array_equal(estimator.predict(rgb, sparse_depth=sparse), depth)


@pytest.mark.slow
def test_relative_model_without_lidar_says_relative(relative_bundle: Path) -> None:
    estimator = DepthEstimator(relative_bundle)
    rgb = scene_image()
    prediction = estimator.predict_detailed(rgb)
    assert prediction.kind == RELATIVE and prediction.fit is None
    np.testing.assert_array_equal(prediction.depth, estimator.predict_relative(rgb))
    with pytest.raises(ValueError, match="relative depth"):
        estimator.predict(rgb)


@pytest.mark.slow
@pytest.mark.parametrize("lidar", ["few_points", "no_returns", "garbage"])
def test_failed_fit_publishes_relative_never_fake_metres(relative_bundle: Path,
                                                         lidar: str) -> None:
    estimator = DepthEstimator(relative_bundle, min_fit_points=50)
    rgb = scene_image()
    relative = estimator.predict_relative(rgb)
    sparse = np.zeros(rgb.shape[:2], np.float32)
    if lidar == "few_points":
        sparse[60, 10:200:5] = 12.0  # 38 returns < 50
    elif lidar == "garbage":
        sparse[::3, ::3] = np.random.default_rng(0).uniform(1, 80, sparse[::3, ::3].shape)
    prediction = estimator.predict_detailed(rgb, sparse_depth=sparse)
    assert prediction.kind == RELATIVE
    assert prediction.fit is not None and not prediction.fit.ok and prediction.fit.reason
    np.testing.assert_array_equal(prediction.depth, relative)
    assert np.isnan(estimator.predict(rgb, sparse_depth=sparse)).all()


def test_metric_model_prediction_has_no_fit(tmp_path: Path) -> None:
    kwargs = {"base_channels": 8}
    meta = ModelMetadata(architecture="mono_cnn", kind="mono", output="metric", stride=32,
                         train_input_height=NET_H, train_input_width=NET_W, min_depth_m=0.5,
                         max_depth_m=80.0, train_focal_px=74.4, model_kwargs=kwargs)
    torch.manual_seed(0)
    save_checkpoint({"state_dict": create_model("mono_cnn", **kwargs).state_dict(),
                     "metadata": meta.to_dict()}, tmp_path / "metric.pt")
    estimator = DepthEstimator(tmp_path / "metric.pt")
    rgb = scene_image(64, 128)
    sparse = np.full(rgb.shape[:2], 7.0, np.float32)
    prediction = estimator.predict_detailed(rgb, sparse_depth=sparse, fx=200.0)
    assert prediction.kind == METRIC and prediction.fit is None
    np.testing.assert_array_equal(prediction.depth, estimator.predict(rgb, sparse, fx=200.0))
    assert prediction.backend == "torch[cpu]"
