"""Online evaluation: pairing by stamp, the metrics against depth_ros.metrics computed
directly (as training/evaluate.py composes them), and depth_eval_node with real rclpy."""

from __future__ import annotations

import json
import subprocess
import time

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from std_msgs.msg import Empty, Header

from depth_ros.metrics import depth_metrics, eval_crop_mask, kitti_devkit_metrics
from depth_ros.online_eval import EvalProtocol, OnlineDepthEvaluator
from depth_ros.ros.conversions import depth_to_image, numpy_to_image
from depth_ros.ros.depth_eval_node import DepthEvalNode, depth_image_metres
from depth_ros.ros.launching import node_command, ros_environment, stop_process
from depth_ros.ros.qos import make_qos

HEIGHT, WIDTH = 60, 90
BASE_NS = 1_317_042_120_000_000_000


def _pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth with holes (0) and far pixels, and a noisy prediction with NaN holes."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(2.0, 90.0, (HEIGHT, WIDTH)).astype(np.float32)
    gt[rng.random(gt.shape) < 0.3] = 0.0
    pred = (gt * rng.uniform(0.8, 1.25, gt.shape) + rng.uniform(0, 3, gt.shape)).astype(
        np.float32)
    pred[rng.random(gt.shape) < 0.05] = np.nan
    return pred, gt


def _direct(pred: np.ndarray, gt: np.ndarray, crop: str | None = None, lo: float = 1e-3,
            hi: float = 80.0) -> dict[str, float]:
    """depth_ros.metrics called directly, the way training/evaluate.py calls them."""
    mask = (gt > 0) & eval_crop_mask(*gt.shape, crop)
    in_range = mask & (gt > lo) & (gt < hi)
    out = depth_metrics(pred, gt, mask=in_range, min_depth=lo, max_depth=hi)
    devkit = kitti_devkit_metrics(np.clip(pred, lo, hi), gt, mask=in_range)
    out.update({f"devkit_{k}": v for k, v in devkit.items()})
    return out


def _assert_metrics_equal(got: dict, expected: dict) -> None:
    assert set(expected) <= set(got)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


# --- the ROS-free evaluator --------------------------------------------------------------


@pytest.mark.parametrize("crop", [None, "garg"])
def test_pairs_in_any_order_and_scores_as_evaluate_does(crop):
    evaluator = OnlineDepthEvaluator(EvalProtocol(crop=crop or "", max_depth_m=50.0))
    pairs = [_pair(seed) for seed in range(4)]
    # Ground truth first for 0 and 1, prediction first for 2 and 3; 4 never gets a partner.
    assert evaluator.add_groundtruth(BASE_NS, pairs[0][1]) is None
    assert evaluator.add_groundtruth(BASE_NS + 100, pairs[1][1]) is None
    assert evaluator.add_prediction(BASE_NS + 200, pairs[2][0]) is None
    evaluator.add_prediction(BASE_NS + 100, pairs[1][0])
    evaluator.add_prediction(BASE_NS, pairs[0][0])
    evaluator.add_groundtruth(BASE_NS + 200, pairs[2][1])
    evaluator.add_prediction(BASE_NS + 300, pairs[3][0])
    evaluator.add_groundtruth(BASE_NS + 300, pairs[3][1])
    evaluator.add_groundtruth(BASE_NS + 400, pairs[0][1])
    summary = evaluator.summary()
    assert summary["frames"] == 4 and summary["unmatched"] == {"predictions": 0,
                                                               "groundtruth": 1}
    expected = [_direct(p, g, crop, 1e-3, 50.0) for p, g in pairs]
    for i, row in enumerate(summary["per_image"]):
        assert row["stamp_ns"] == BASE_NS + 100 * i
        _assert_metrics_equal(row, expected[i])
    for key in ("abs_rel", "rmse", "a1", "devkit_mae", "devkit_irmse"):
        assert summary["metrics"][key] == pytest.approx(np.mean([e[key] for e in expected]))
    assert 0.05 < summary["metrics"]["abs_rel"] < 0.5


def test_slop_pairs_the_nearest_and_old_items_are_dropped():
    evaluator = OnlineDepthEvaluator(slop_ns=5_000_000, max_pending=2)
    pred, gt = _pair(7)
    evaluator.add_groundtruth(BASE_NS, gt)
    evaluator.add_groundtruth(BASE_NS + 4_000_000, gt * 2)
    evaluator.add_prediction(BASE_NS + 3_000_000, pred * 2)  # nearer the second
    assert evaluator.frames == 1 and evaluator.per_image[0][0] == BASE_NS + 4_000_000
    evaluator.add_prediction(BASE_NS + 20_000_000, pred)  # beyond the slop of the first
    for k in range(3):  # pending predictions: at most 2 kept
        evaluator.add_prediction(BASE_NS + 10**9 * (k + 1), pred)
    assert evaluator.summary()["unmatched"] == {"predictions": 4, "groundtruth": 1}


def test_bad_pairs_and_protocols_are_errors():
    evaluator = OnlineDepthEvaluator()
    evaluator.add_groundtruth(BASE_NS, np.ones((4, 6)))
    with pytest.raises(ValueError, match="6×4"):
        evaluator.add_prediction(BASE_NS, np.ones((5, 6)))
    with pytest.raises(ValueError, match="crop"):
        EvalProtocol(crop="nyu_wrong")
    with pytest.raises(ValueError, match="min_depth_m"):
        EvalProtocol(min_depth_m=5.0, max_depth_m=1.0)


def test_report_is_strict_json_with_a_picture(tmp_path):
    evaluator = OnlineDepthEvaluator()
    pred, gt = _pair(3)
    evaluator.add_groundtruth(BASE_NS, gt)
    evaluator.add_prediction(BASE_NS, pred)
    evaluator.add_groundtruth(BASE_NS + 1, np.zeros_like(gt))  # nothing to score: NaN
    evaluator.add_prediction(BASE_NS + 1, pred)
    evaluator.write_report(tmp_path / "r.json", tmp_path / "r.png")
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["per_image"][1]["abs_rel"] is None and data["frames"] == 2
    assert data["metrics"]["abs_rel"] == pytest.approx(_direct(pred, gt)["abs_rel"])
    picture = cv2.imread(str(tmp_path / "r.png"))
    assert picture.shape == (3 * HEIGHT, WIDTH, 3) and picture.std() > 10
    assert evaluator.table()[0] == "2 frames" and "abs_rel" in evaluator.table()[1]


def test_16uc1_depth_is_millimetres_with_zero_for_none():
    depth = np.array([[1.2344, np.nan], [0.0, 60.0]], dtype=np.float32)
    back = depth_image_metres(depth_to_image(depth, Header(), "16UC1"))
    assert back[0, 0] == pytest.approx(1.234) and back[1, 1] == pytest.approx(60.0)
    assert np.isnan(back[0, 1]) and np.isnan(back[1, 0])
    with pytest.raises(ValueError, match="32FC1 or 16UC1"):
        depth_image_metres(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


# --- depth_eval_node with real rclpy -----------------------------------------------------


def _header(stamp_ns: int) -> Header:
    header = Header(frame_id="camera_02_optical_frame")
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return header


class Publisher:
    """A node publishing depth and ground truth into ``namespace``, in its own context or in
    ``context`` (then the context is the caller's to shut down)."""

    def __init__(self, namespace: str, context: Context | None = None) -> None:
        self.owns_context = context is None
        self.context = Context() if context is None else context
        if self.owns_context:
            rclpy.init(context=self.context)
        self.node = rclpy.create_node("eval_test_publisher", namespace=namespace,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = make_qos("reliable", 10)
        from sensor_msgs.msg import Image

        self.depth = self.node.create_publisher(Image, "depth", qos)
        self.gt = self.node.create_publisher(Image, "groundtruth/depth", qos)
        self.trigger = self.node.create_publisher(Empty, "depth_eval_node/write_report", 10)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        if self.owns_context:
            rclpy.shutdown(context=self.context)


def _spin_until(executors, done, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done():
        for executor in executors:
            executor.spin_once(timeout_sec=0.02)
    return done()


@pytest.mark.ros
def test_node_scores_published_pairs_and_writes_on_request(tmp_path):
    ns = "/t_eval_inproc"
    context = Context()
    rclpy.init(context=context)
    report = tmp_path / "eval.json"
    node = DepthEvalNode(context=context, namespace=ns, parameter_overrides=[
        Parameter("report_path", value=str(report)), Parameter("idle_timeout_s", value=0.0)])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    # One context, one DDS participant: deleting one of two participants that talk over TCP
    # while the other lives can deadlock in Fast DDS 3.2 (depth_ros.ros.fastdds_tcp).
    pub = Publisher(ns, context=context)
    executors = [executor, pub.executor]
    pairs = [_pair(seed) for seed in range(10, 14)]
    try:
        # Both sides of every match (the publishers' and the node's): nothing is lost.
        assert _spin_until(executors, lambda: all(s.get_publisher_count() >= 1
                                                  for s in node.subscriptions
                                                  if s.topic_name != "/parameter_events")
                           and pub.gt.get_subscription_count() >= 1
                           and pub.depth.get_subscription_count() >= 1
                           and pub.trigger.get_subscription_count() >= 1, 30)
        for i, (pred, gt) in enumerate(pairs):
            stamp = BASE_NS + i * 100_000_000
            pub.gt.publish(depth_to_image(gt, _header(stamp)))
            if i == 2:
                continue  # a frame the depth node dropped
            encoding = "16UC1" if i == 3 else "32FC1"
            pub.depth.publish(depth_to_image(pred, _header(stamp), encoding))
        pub.depth.publish(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8",
                                         _header(BASE_NS)))  # bad: warned, skipped
        assert _spin_until(executors, lambda: node.evaluator.frames == 3, 30)
        pub.trigger.publish(Empty())
        assert _spin_until(executors, lambda: node.reports_written >= 1, 30)
    finally:
        pub.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    data = json.loads(report.read_text())
    assert data["frames"] == 3
    assert data["unmatched"] == {"predictions": 0, "groundtruth": 1}
    # Frame 3 went as 16UC1: score what the node saw (millimetres, 0 = none).
    pred3 = depth_image_metres(depth_to_image(pairs[3][0], Header(), "16UC1"))
    expected = [_direct(*pairs[0]), _direct(*pairs[1]), _direct(pred3, pairs[3][1])]
    stamps = [BASE_NS, BASE_NS + 100_000_000, BASE_NS + 300_000_000]
    for row, want, stamp in zip(data["per_image"], expected, stamps, strict=True):
        assert row["stamp_ns"] == stamp
        _assert_metrics_equal(row, want)
    assert data["metrics"]["devkit_rmse"] == pytest.approx(
        np.mean([e["devkit_rmse"] for e in expected]))
    assert report.with_suffix(".png").is_file()


@pytest.mark.ros
@pytest.mark.slow
def test_node_process_writes_when_idle_and_at_shutdown(tmp_path):
    ns = "/t_eval_proc"
    report = tmp_path / "idle.json"
    log = tmp_path / "node.log"
    proc = subprocess.Popen(
        node_command("depth_eval_node", params={"report_path": str(report),
                                                "idle_timeout_s": 1.0, "crop": "garg"},
                     remaps={"__ns": ns}),
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=ros_environment())
    pub = Publisher(ns)
    pairs = [_pair(seed) for seed in range(20, 22)]
    try:
        assert _spin_until([pub.executor], lambda: pub.gt.get_subscription_count() >= 1
                           and pub.depth.get_subscription_count() >= 1, 60), log.read_text()
        time.sleep(2.0)  # the node's side of the match (see ros/bag_play.py MATCH_SETTLE_S)
        for i, (pred, gt) in enumerate(pairs):
            stamp = BASE_NS + i * 100_000_000
            pub.depth.publish(depth_to_image(pred, _header(stamp)))
            pub.gt.publish(depth_to_image(gt, _header(stamp)))
        assert _spin_until([pub.executor], lambda: "wrote" in log.read_text(), 30), (
            log.read_text())
        first = json.loads(report.read_text())
    finally:
        rc = stop_process(proc)
        pub.close()
    assert rc == 0, log.read_text()
    assert first["frames"] == 2 and first["protocol"]["crop"] == "garg"
    _assert_metrics_equal(first["per_image"][0], _direct(*pairs[0], crop="garg"))
    text = log.read_text()
    assert "no depth for" in text and text.count("wrote ") == 2  # idle, then shutdown
    assert "KITTI devkit" in text
