"""A completion model (resize policy ``native``, a ``confidence`` output) through
``DepthEstimator`` on onnxruntime and torch, and through ``training/evaluate.py`` (the band
above the LiDAR, the confidence statistics and the calibration figure)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_ros.inference import DepthEstimator
from depth_ros.models import ModelMetadata, create_model
from depth_ros.models.checkpoints import load_weights_only
from training import evaluate as ev
from training.checkpoint import save_checkpoint
from training.confidence_eval import ConfidenceStats, above_scan_mask, calibration_png
from training.export import export_onnx

KWARGS = {"widths": [4, 8, 8, 8], "dilations": [1, 2], "head_init_std": 0.05}
HEIGHT, WIDTH = 75, 250  # not multiples of the stride (32): padded, then cropped back


@pytest.fixture(scope="module")
def completion_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random fusion_spn as model.onnx + model.pt (native policy, two outputs)."""
    directory = tmp_path_factory.mktemp("spn")
    torch.manual_seed(0)
    model = create_model("fusion_spn", **KWARGS).eval()
    meta = ModelMetadata("fusion_spn", "fusion", "metric", 32, 64, 96, 0.1, 100.0, 700.0,
                         model_kwargs=KWARGS, resize_policy="native",
                         outputs="depth,confidence")
    save_checkpoint({"state_dict": model.state_dict(), "metadata": meta.to_dict()},
                    directory / "model.pt")
    return export_onnx(model, meta, directory / "model.onnx", 64, 96)


def frame() -> tuple[np.ndarray, np.ndarray]:
    """A random image and a LiDAR-like scan of a smooth surface (every 4th row from row 30,
    70 % of the columns, 5–35 m from left to right)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    sparse = np.zeros((HEIGHT, WIDTH), np.float32)
    rows = np.arange(30, HEIGHT, 4)
    keep = rng.random((len(rows), WIDTH)) < 0.7
    surface = 5.0 + 30.0 * np.arange(WIDTH) / WIDTH
    sparse[rows] = np.where(keep, surface[None, :], 0.0)
    return rgb, sparse


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_native_policy_runs_at_the_camera_size_and_keeps_the_scan(completion_model: Path,
                                                                   backend: str) -> None:
    estimator = DepthEstimator(completion_model, backend=backend, num_threads=1)
    assert estimator.resize_policy == "native"
    assert estimator.network_size(HEIGHT, WIDTH) == (96, 256)
    rgb, sparse = frame()
    prediction = estimator.predict_detailed(rgb, sparse, fx=700.0)
    assert prediction.depth.shape == (HEIGHT, WIDTH)
    assert prediction.confidence is not None
    assert prediction.confidence.shape == (HEIGHT, WIDTH)
    assert 0.0 <= np.nanmin(prediction.confidence) and np.nanmax(prediction.confidence) <= 1.0
    # The network saw the scan unresampled (at fx = train_focal_px the metres are unchanged):
    # the returns come back nearly as they went in (trust 0.99 before training).
    has = sparse > 0
    assert np.median(np.abs(prediction.depth[has] - sparse[has])) < 0.03
    # predict() is the same depth.
    np.testing.assert_array_equal(estimator.predict(rgb, sparse, fx=700.0), prediction.depth)


def test_native_output_is_the_padded_network_output_cropped(completion_model: Path) -> None:
    rgb, sparse = frame()
    estimator = DepthEstimator(completion_model, backend="onnxruntime", num_threads=1)
    out = estimator.predict_detailed(rgb, sparse, fx=700.0)
    model = create_model("fusion_spn", **KWARGS).eval()
    model.load_state_dict(load_weights_only(completion_model.with_suffix(".pt"))["state_dict"])
    image = np.pad(rgb, ((0, 96 - HEIGHT), (0, 256 - WIDTH), (0, 0)), mode="edge")
    scan = np.pad(sparse, ((0, 96 - HEIGHT), (0, 256 - WIDTH)))
    with torch.no_grad():
        depth, confidence = model(
            torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32) / 255),
            torch.from_numpy(scan[None, None]))
    np.testing.assert_allclose(out.depth, depth[0, 0, :HEIGHT, :WIDTH].numpy(), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(out.confidence, confidence[0, 0, :HEIGHT, :WIDTH].numpy(),
                               atol=1e-5)


def test_backends_agree_and_focal_length_scales_like_the_scan(completion_model: Path) -> None:
    rgb, sparse = frame()
    by_ort = DepthEstimator(completion_model, backend="onnxruntime", num_threads=1)
    by_torch = DepthEstimator(completion_model, backend="torch", num_threads=1)
    a = by_ort.predict_detailed(rgb, sparse, fx=700.0)
    b = by_torch.predict_detailed(rgb, sparse, fx=700.0)
    np.testing.assert_allclose(a.depth, b.depth, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
    # Another camera: a native model takes its scale from the LiDAR, so fx changes nothing
    # (no focal normalisation that would push far returns past the depth range).
    np.testing.assert_array_equal(by_ort.predict(rgb, sparse, fx=1400.0),
                                  by_ort.predict(rgb, sparse, fx=700.0))
    far = np.where(sparse > 0, np.float32(90.0), np.float32(0.0))
    kept = by_ort.predict(rgb, far, fx=300.0)
    assert np.median(np.abs(kept[far > 0] - 90.0)) < 0.03


def test_nan_lidar_is_no_return(completion_model: Path) -> None:
    rgb, sparse = frame()
    estimator = DepthEstimator(completion_model, backend="onnxruntime", num_threads=1)
    with_nan = np.where(sparse > 0, sparse, np.nan).astype(np.float32)
    np.testing.assert_array_equal(estimator.predict(rgb, with_nan),
                                  estimator.predict(rgb, sparse))


# --- evaluation ------------------------------------------------------------------------------


def test_above_scan_mask_follows_each_columns_top_return() -> None:
    sparse = np.zeros((10, 20), np.float32)
    sparse[6, :10] = 5.0
    sparse[3, 10:] = 5.0
    above = above_scan_mask(sparse, half_width=0)
    assert above[:6, :10].all() and not above[6:, :10].any()
    assert above[:3, 10:].all() and not above[3:, 10:].any()
    # With neighbours counted, a column's top is the highest within half_width columns.
    wide = above_scan_mask(sparse, half_width=2)
    assert not wide[3:, 8:10].any() and wide[:3, 8].all()
    assert above_scan_mask(np.zeros((4, 5), np.float32)).all()


def test_confidence_stats_pool_pixels_into_bins() -> None:
    stats = ConfidenceStats(threshold=0.05, bins=2)
    gt = np.full((2, 2), 10.0)
    pred = np.array([[10.1, 10.2], [13.0, 15.0]])  # 1 %, 2 %, 30 %, 50 % off
    confidence = np.array([[0.9, 0.8], [0.2, 0.6]])
    stats.add(confidence, pred, gt, gt > 0)
    summary = stats.summary()
    assert summary["abs_rel_confident"] == pytest.approx((0.01 + 0.02 + 0.5) / 3)
    assert summary["abs_rel_rest"] == pytest.approx(0.3)
    assert summary["confident_share"] == pytest.approx(0.75)
    high = summary["bins"][1]
    assert high["pixels"] == 3 and high["accuracy"] == pytest.approx(2 / 3)
    assert high["mean_confidence"] == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    # ECE: |mean conf − accuracy| weighted by the bins' shares.
    expected = 0.25 * abs(0.2 - 0.0) + 0.75 * abs((0.9 + 0.8 + 0.6) / 3 - 2 / 3)
    assert summary["ece"] == pytest.approx(expected)


def test_calibration_png_is_written(tmp_path: Path) -> None:
    stats = ConfidenceStats(0.05)
    rng = np.random.default_rng(1)
    gt = rng.uniform(2, 50, (40, 60))
    pred = gt * (1 + rng.normal(0, 0.05, gt.shape))
    stats.add(rng.random(gt.shape), pred, gt, gt > 0)
    path = tmp_path / "calibration.png"
    calibration_png(path, stats.summary(), "test")
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (560, 640, 3)


def test_engine_protocol_scores_bands_confidence_and_other_models(completion_model: Path,
                                                                   tmp_path: Path) -> None:
    from depth_ros.synthetic import write_synthetic_drive

    write_synthetic_drive(tmp_path / "drives", num_frames=1, seed=1000, drive=1,
                          progress=False, stereo=False, width=250, height=75)
    png = tmp_path / "calibration.png"
    code = ev.main(["--model", str(completion_model), "--dataset", "engine", "--data",
                    str(tmp_path / "drives"), "--compare", str(completion_model),
                    "--calibration-png", str(png), "--json", str(tmp_path / "r.json"),
                    "--error-png", str(tmp_path / "errors.png"), "--no-progress"])
    assert code == 0 and png.is_file()
    import cv2

    errors = cv2.imread(str(tmp_path / "errors.png"))
    # one frame: camera, depth and ratio panels stacked, at 0.4 of their size
    assert errors is not None and errors.shape[0] == round(3 * 75 * 0.4)
    import json

    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert {"model", "ip_basic", "compare_model", "model@above_scan", "model@in_scan",
            "ip_basic@in_scan", "compare_model@in_scan"} <= set(results)
    # The compared model is the same file: the same figures.
    assert results["compare_model"]["abs_rel"] == pytest.approx(results["model"]["abs_rel"])
    assert results["compare_model@in_scan"]["rmse"] == pytest.approx(
        results["model@in_scan"]["rmse"])
    assert results["model"]["input_dev_m"] < 0.03
    confidence = results["confidence"]
    assert sum(b["pixels"] for b in confidence["bins"]) > 0
    assert 0.0 <= confidence["confident_share"] <= 1.0
