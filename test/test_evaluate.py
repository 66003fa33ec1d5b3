"""training/evaluate.py: protocols, alignment of relative models, the CLI's table and JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_ros.inference import DepthEstimator
from depth_ros.kitti import find_drives
from depth_ros.metrics import depth_metrics, kitti_devkit_metrics
from depth_ros.readers import KittiRawFrames
from depth_ros.synthetic import write_synthetic_drive
from depth_ros.weights import DEFAULT_MONO_MODEL

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from test_estimator import tiny_metadata, tiny_model  # noqa: E402
from test_readers import write_nyu_mat  # noqa: E402

from training import evaluate as ev  # noqa: E402
from training.checkpoint import save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def engine_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_drives")
    write_synthetic_drive(root, num_frames=2, seed=3001, drive=1, progress=False,
                          stereo=False, lidar=False, width=414, height=125)
    return root


def test_lstsq_alignment_inverts_an_affine_inverse_depth():
    gt = np.array([[2.0, 4.0, 8.0], [16.0, 0.0, 5.0]])
    mask = gt > 0
    inverse = (1.0 / np.where(mask, gt, 1.0) - 0.05) / 0.02  # s = 0.02, t = 0.05
    depth = ev.align_to_groundtruth(inverse, gt, mask, "lstsq", inverse=True)
    np.testing.assert_allclose(depth[mask], gt[mask], rtol=1e-9)
    scaled = ev.align_to_groundtruth(3.0 * gt, gt, mask, "median", inverse=False)
    np.testing.assert_allclose(scaled[mask], gt[mask])
    assert ev.align_to_groundtruth(gt, gt, mask, "none", inverse=False) is gt


def test_engine_protocol_matches_the_metrics_of_each_frame(engine_root):
    estimator = DepthEstimator(DEFAULT_MONO_MODEL)
    reader = KittiRawFrames(find_drives(engine_root))
    results = ev.evaluate(estimator, reader, "engine", progress=False)
    per_frame = []
    for i in range(len(reader)):
        frame = reader.frame(i)
        pred = estimator.predict(frame.rgb, fx=float(frame.K[0, 0]))
        mask = (frame.depth > 1e-3) & (frame.depth < 80.0)
        per_frame.append((depth_metrics(pred, frame.depth, mask),
                          kitti_devkit_metrics(np.clip(pred, 1e-3, 80.0), frame.depth, mask)))
    model = results["model"]
    assert model["frames"] == 2
    assert model["abs_rel"] == pytest.approx(np.mean([m["abs_rel"] for m, _ in per_frame]))
    assert model["devkit_irmse"] == pytest.approx(np.mean([d["irmse"] for _, d in per_frame]))
    assert 0 <= model["sky_far"] <= 1
    assert model["abs_rel"] < 0.5  # a working model, not noise


def test_relative_model_is_aligned_per_frame(engine_root, tmp_path):
    meta = tiny_metadata("relative")
    save_checkpoint({"state_dict": tiny_model("relative").state_dict(),
                     "metadata": meta.to_dict()}, tmp_path / "rel.pt")
    estimator = DepthEstimator(tmp_path / "rel.pt")
    reader = KittiRawFrames(find_drives(engine_root))
    aligned = ev.evaluate(estimator, reader, "engine", progress=False)["model"]
    median = ev.evaluate(estimator, reader, "engine", align="median", progress=False)["model"]
    assert np.isfinite(aligned["abs_rel"]) and np.isfinite(median["abs_rel"])
    assert aligned["abs_rel"] != median["abs_rel"]


def test_cli_writes_the_table_and_json(engine_root, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert ev.main(["--model", str(DEFAULT_MONO_MODEL), "--data", str(engine_root),
                    "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "abs_rel" in printed and "irmse" in printed and "KITTI devkit" in printed
    saved = json.loads(out.read_text())
    assert saved["dataset"] == "engine" and saved["results"]["model"]["frames"] == 2


def test_nyu_protocol_uses_the_eigen_crop_and_10_m(tmp_path):
    write_nyu_mat(tmp_path / "nyu.mat", width=640, height=480)
    estimator = DepthEstimator(DEFAULT_MONO_MODEL)
    reader = ev.NyuLabeled(tmp_path / "nyu.mat")
    near = _Constant(reader, 3.0)
    results = ev.evaluate(estimator, near, "nyu", align="median", progress=False)["model"]
    assert results["frames"] == 2 and np.isfinite(results["abs_rel"])
    # Outside the Eigen crop nothing counts: garbage there leaves the scores as they were.
    edged = ev.evaluate(estimator, _Constant(reader, 3.0, border_m=500.0), "nyu",
                        align="median", progress=False)["model"]
    assert edged["abs_rel"] == pytest.approx(results["abs_rel"])
    # Only ground truth below 10 m inside the crop counts: with every pixel at ≥ 10 m,
    # nothing is left and the metrics are NaN.
    far = ev.evaluate(estimator, _Constant(reader, 12.0), "nyu", progress=False)["model"]
    assert np.isnan(far["abs_rel"])


class _Constant:
    """A reader whose ground truth is one depth everywhere."""

    def __init__(self, reader, depth_m: float, border_m: float | None = None) -> None:
        self.reader, self.depth_m, self.border_m = reader, depth_m, border_m

    def __len__(self) -> int:
        return len(self.reader)

    def frame(self, index: int):
        frame = self.reader.frame(index)
        frame.depth = np.full_like(frame.depth, self.depth_m)
        if self.border_m is not None:
            frame.depth[:45] = frame.depth[471:] = self.border_m
            frame.depth[:, :41] = frame.depth[:, 601:] = self.border_m
        return frame


@pytest.mark.parametrize("args, message", [
    (["--dataset", "kitti_eigen"], "kitti_eigen needs --split"),
    (["--dataset", "kitti_completion"], "kitti_completion needs --raw-root"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    assert ev.main(["--model", str(DEFAULT_MONO_MODEL), "--data", str(tmp_path), *args]) == 1
    assert message in capsys.readouterr().err


def test_fusion_model_without_lidar_is_an_error(engine_root):
    class Meta:
        kind, output = "fusion", "metric"

    class Fake:
        metadata = Meta()

    frame = KittiRawFrames(find_drives(engine_root)).frame(0)
    with pytest.raises(ev.EvaluationError, match="needs LiDAR"):
        ev.predict_frame(Fake(), frame, "auto")
