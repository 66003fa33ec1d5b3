"""The demo's report without ROS: the LiDAR bands it scores each node in and the table it
prints (``make demo``'s output, copied into docs/demo.md)."""

from __future__ import annotations

import numpy as np

from depth_ros.demo import _band_summary, report_table
from depth_ros.metrics import MIN_BAND_PIXELS, above_scan_mask, band_metrics, see_through_mask
from depth_ros.online_eval import EvalProtocol, OnlineDepthEvaluator


def _frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth 10 m everywhere, a scan on rows 20-39, and a prediction that is exact in
    the scan's rows and 20 % too far above them."""
    gt = np.full((40, 60), 10.0, np.float32)
    sparse = np.zeros_like(gt)
    sparse[20::4, ::2] = 10.0
    pred = gt.copy()
    pred[:20] = 12.0
    return gt, sparse, pred


def test_band_metrics_score_above_and_inside_the_scan_apart() -> None:
    gt, sparse, pred = _frame()
    above = above_scan_mask(sparse)
    assert above[:20].all() and not above[20:].any()
    bands = band_metrics(pred, gt, above)
    assert abs(bands["above_scan"]["abs_rel"] - 0.2) < 1e-6
    assert bands["in_scan"]["abs_rel"] == 0.0
    # A band with too little ground truth is left out.
    sparse_low = np.zeros_like(gt)
    sparse_low[-1, :] = 10.0  # the scan's top is the last row: nothing below it but that row
    assert 60 < MIN_BAND_PIXELS
    assert set(band_metrics(pred, gt, above_scan_mask(sparse_low))) == {"above_scan"}


class _Output:
    """What the demo's collector keeps for a node, for the frames of the test."""

    def __init__(self, depths: dict[int, np.ndarray]) -> None:
        self.depths = depths
        self.evaluator = OnlineDepthEvaluator(EvalProtocol(max_depth_m=80.0))


def test_band_summary_averages_the_answered_frames_only() -> None:
    gt, sparse, pred = _frame()
    above = {1: above_scan_mask(sparse), 2: above_scan_mask(sparse)}
    gt_nan = np.where(gt > 0, gt, np.nan)
    summary = _band_summary(_Output({1: pred}), {1: gt_nan, 2: gt_nan}, above)
    assert summary["above_scan"]["frames"] == summary["in_scan"]["frames"] == 1
    assert summary["above_scan"]["abs_rel"] == 0.2 and summary["in_scan"]["abs_rel"] == 0.0
    assert summary["above_scan"]["rmse"] == 2.0
    assert _band_summary(_Output({}), {1: gt_nan}, {1: above[1]}) == {}


def test_report_table_has_a_row_per_node_and_the_confidence_line() -> None:
    node = {"frames_out": 20, "frames_dropped": 10, "fps_out": 6.8, "latency_ms_median": 225.4,
            "abs_rel": 0.195, "delta1": 0.768, "rmse": 5.01,
            "bands": {"in_scan": {"frames": 20, "abs_rel": 0.191, "rmse": 3.72},
                      "above_scan": {"frames": 20, "abs_rel": 0.2, "rmse": 6.63}}}
    summary = {"frames_in": 30, "models": {"fusion": "/x/fusion_spn_synthetic_fast.onnx"},
               "nodes": {"mono": {**node, "bands": {}},
                         "fusion": {**node, "confidence": {"frames": 20, "min_confidence": 0.5,
                                                           "share_at_or_above_min": 0.688}}}}
    table = report_table(summary).splitlines()
    assert table[0].startswith("| node | model | frames out / in | dropped |")
    fusion_row = next(line for line in table if line.startswith("| `fusion` |"))
    assert "`fusion_spn_synthetic_fast`" in fusion_row and "| 20 / 30 | 10 |" in fusion_row
    assert "| 0.191 / 3.72 m (20) | 0.200 / 6.63 m (20) |" in fusion_row
    mono_row = next(line for line in table if line.startswith("| `mono` |"))
    assert mono_row.endswith("| — | — |")
    assert table[-1] == ("`/fusion/depth/confidence`: 20 frames received, 68.8 % of their "
                         "pixels ≥ min_confidence 0.5")


def test_see_through_mask_flags_background_returns_beside_nearer_ones() -> None:
    scan = np.zeros((20, 30), np.float32)
    scan[::2, :15] = 10.0  # a wall on the left
    scan[::2, 15:] = 40.0  # the street behind it on the right
    scan[6, 10] = 40.0  # one return through the wall
    flagged = see_through_mask(scan)
    # Within 3 px (the 7×7 window) of a 10 m return, a 40 m return is seen past the wall.
    assert flagged[6, 10] and flagged[0, 15:18].all() and not flagged[0, 18:].any()
    assert not flagged[scan == 10.0].any() and not flagged[scan == 0].any()
    # A return 9 % farther than its neighbour is not an edge; 11 % is.
    step = np.zeros((5, 5), np.float32)
    step[2, 1], step[2, 3] = 10.0, 10.9
    assert not see_through_mask(step).any()
    step[2, 3] = 11.1
    assert see_through_mask(step)[2, 3]
