"""The ROS part of the demo: a bag replayed through both depth nodes, each in its own process,
and a collector here that keeps what they publish and scores it against the bag's ground truth.

Processes::

    depth_ros_bag_play (--restamp) ─► /kitti/camera2/{image_raw,camera_info,depth_groundtruth},
                                      /kitti/velo/pointcloud
    mono_depth_node   (namespace /mono)   ─► /mono/depth, /mono/points
    fusion_depth_node (namespace /fusion) ─► /fusion/depth, /fusion/depth/confidence,
                                             /fusion/points
    this process: DemoCollector ◄── camera images, ground truth, both nodes' depth and points,
                                    the fusion node's confidence

The player stamps each message with the time it sends it, as a live driver does, so the age of
a depth image when it arrives here is the end-to-end latency through its node.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image, PointCloud2

from depth_ros.bags.topics import BagTopics
from depth_ros.online_eval import EvalProtocol, OnlineDepthEvaluator
from depth_ros.ros.conversions import image_to_numpy, image_to_rgb, pointcloud2_to_array
from depth_ros.ros.launching import node_command, stop_process
from depth_ros.ros.qos import make_qos
from depth_ros.share import find_config

STARTUP_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 5.0
NODES = ("mono", "fusion")
CAMERA = 2
# Every other pixel in each direction: a quarter of the points, still 116k per cloud. Full
# clouds (7.4 MB each, two nodes at 10 Hz) would cost the 2-core machine a frame rate.
POINTS_DECIMATION = 2
# One inference thread per node: two nodes, the player and this collector share the machine,
# and two onnxruntime pools of one thread per core each would oversubscribe two cores.
INFERENCE_THREADS = 1
# Nodes whose model has a confidence output (depth/confidence), and the min_confidence they
# run with: points below it are left out of their cloud, and the demo reports the share of
# pixels at or above it.
CONFIDENCE_NODES = ("fusion",)
MIN_CONFIDENCE = 0.5


@dataclass
class NodeOutput:
    """What one depth node published, as the collector saw it."""

    depths: dict[int, np.ndarray] = field(default_factory=dict)  # stamp ns -> metres
    latencies_ms: list[float] = field(default_factory=list)
    receive_times_s: list[float] = field(default_factory=list)
    points: np.ndarray | None = None  # one cloud (x, y, z) from the middle of the run
    # stamp ns -> share of the confidence image's finite pixels ≥ MIN_CONFIDENCE
    confidence_shares: dict[int, float] = field(default_factory=dict)
    evaluator: OnlineDepthEvaluator = field(
        default_factory=lambda: OnlineDepthEvaluator(EvalProtocol(max_depth_m=80.0)))


@dataclass
class DemoRun:
    """Everything the collector kept."""

    images: dict[int, np.ndarray]  # stamp ns -> camera RGB
    groundtruth: dict[int, np.ndarray]  # stamp ns -> metres, NaN = no data
    outputs: dict[str, NodeOutput]
    node_logs: dict[str, Path]
    confidence_nodes: tuple[str, ...] = CONFIDENCE_NODES
    min_confidence: float = MIN_CONFIDENCE


class DemoCollector(Node):
    """Subscribes to the camera, the ground truth and both nodes' depth and points."""

    def __init__(self, topics: BagTopics, points_after: int) -> None:
        super().__init__("depth_ros_demo_collector")
        qos = make_qos("reliable", 10)
        self.images: dict[int, np.ndarray] = {}
        self.groundtruth: dict[int, np.ndarray] = {}
        self.outputs = {name: NodeOutput() for name in NODES}
        self._points_after = points_after
        self.create_subscription(Image, topics.image(CAMERA), self._on_image, qos)
        self.create_subscription(Image, topics.groundtruth(CAMERA), self._on_groundtruth, qos)
        self._qos = qos
        self._points_subscriptions = {}
        for name in NODES:
            self.create_subscription(Image, f"/{name}/depth",
                                     lambda msg, n=name: self._on_depth(n, msg), qos)
        for name in CONFIDENCE_NODES:
            self.create_subscription(Image, f"/{name}/depth/confidence",
                                     lambda msg, n=name: self._on_confidence(n, msg), qos)

    def _on_image(self, msg: Image) -> None:
        self.images[Time.from_msg(msg.header.stamp).nanoseconds] = image_to_rgb(msg).copy()

    def _on_groundtruth(self, msg: Image) -> None:
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        self.groundtruth[stamp] = np.array(image_to_numpy(msg), np.float32)

    def _on_depth(self, name: str, msg: Image) -> None:
        stamp = Time.from_msg(msg.header.stamp)
        output = self.outputs[name]
        output.latencies_ms.append((self.get_clock().now() - stamp).nanoseconds / 1e6)
        output.receive_times_s.append(time.monotonic())
        # Only a copy here: scoring in the callback would hold up the next messages and
        # show up as latency. score() pairs and scores everything after the run.
        output.depths[stamp.nanoseconds] = np.array(image_to_numpy(msg), np.float32)
        # One cloud from the middle of the run (the first frames show the start of the
        # street). The nodes publish clouds only while subscribed: subscribing for that one
        # cloud keeps ~4 MB a frame off the wire and out of this process the rest of the time.
        if len(output.depths) == self._points_after and name not in self._points_subscriptions:
            self._points_subscriptions[name] = self.create_subscription(
                PointCloud2, f"/{name}/points", lambda m, n=name: self._on_points(n, m),
                self._qos)

    def _on_confidence(self, name: str, msg: Image) -> None:
        # One number a frame, computed here (a 1242×375 comparison is cheap); the image is
        # not kept.
        confidence = image_to_numpy(msg)
        finite = np.isfinite(confidence)
        share = float((confidence[finite] >= MIN_CONFIDENCE).mean()) if finite.any() else 0.0
        self.outputs[name].confidence_shares[Time.from_msg(msg.header.stamp).nanoseconds] = share

    def score(self) -> None:
        """Pair every node's depth with the ground truth by stamp and score the pairs."""
        for output in self.outputs.values():
            # In stamp order, each prediction right after its ground truth: nothing waits
            # long enough to be evicted, however long the run.
            for stamp in sorted(self.groundtruth.keys() | output.depths.keys()):
                if stamp in self.groundtruth:
                    output.evaluator.add_groundtruth(stamp, self.groundtruth[stamp])
                if stamp in output.depths:
                    output.evaluator.add_prediction(stamp, output.depths[stamp])

    def _on_points(self, name: str, msg: PointCloud2) -> None:
        output = self.outputs[name]
        if output.points is None:
            output.points = pointcloud2_to_array(msg, ("x", "y", "z"), skip_nans=True)


def _node_commands(drive_dir: Path, topics: BagTopics, models: dict[str, str], backend: str
                   ) -> dict[str, list[str]]:
    inputs = {"image": topics.image(CAMERA), "camera_info": topics.camera_info(CAMERA)}
    mono = node_command("mono_depth_node", find_config("mono_depth.yaml"),
                        params={"model_path": models["mono"], "backend": backend,
                                "points_decimation": POINTS_DECIMATION,
                                "num_threads": INFERENCE_THREADS},
                        remaps={"__ns": "/mono", **inputs})
    fusion = node_command(
        "fusion_depth_node", find_config("fusion_depth.yaml"),
        params={"model_path": models["fusion"], "backend": backend,
                "points_decimation": POINTS_DECIMATION, "num_threads": INFERENCE_THREADS,
                "min_confidence": MIN_CONFIDENCE,
                "calibration_path": str(drive_dir / "calib_velo_to_cam.txt"),
                "cam_to_cam_path": str(drive_dir / "calib_cam_to_cam.txt"),
                "calibration_camera": CAMERA},
        remaps={"__ns": "/fusion", "lidar/points": topics.pointcloud, **inputs})
    return {"mono": mono, "fusion": fusion}


def run_demo(drive_dir: Path, bag_dir: Path, out: Path, rate: float, models: dict[str, str],
             backend: str, env: dict[str, str]) -> DemoRun:
    """Start both nodes, play the bag through them, collect the outputs, stop everything."""
    topics = BagTopics()
    played = [topics.image(CAMERA), topics.camera_info(CAMERA), topics.pointcloud,
              topics.groundtruth(CAMERA)]
    # Subscriptions on the played topics: mono 2, fusion 3, the collector 2.
    subscriptions = 7
    play_cmd = node_command("depth_ros_bag_play")
    play_cmd = [*play_cmd[:play_cmd.index("--ros-args")], str(bag_dir), "--restamp",
                "--rate", str(rate), "--wait-for-subscribers", str(subscriptions),
                "--no-progress", "--topics", *played]
    commands = _node_commands(drive_dir, topics, models, backend)
    logs = {name: out / f"{name}_depth_node.log" for name in NODES}
    logs["player"] = out / "bag_play.log"
    frames = len(list((drive_dir / f"image_0{CAMERA}" / "data").glob("*.png")))

    rclpy.init()
    collector = DemoCollector(topics, points_after=frames // 2)
    executor = SingleThreadedExecutor()
    executor.add_node(collector)
    procs: dict[str, subprocess.Popen] = {}
    files = {name: path.open("w") for name, path in logs.items()}
    try:
        for name in NODES:
            procs[name] = subprocess.Popen(commands[name], env=env, stdout=files[name],
                                           stderr=subprocess.STDOUT)

        def nodes_ready() -> bool:
            _check_alive(procs, logs)
            return all(collector.count_publishers(f"/{n}/depth") > 0 for n in NODES)

        if not _spin_until(executor, nodes_ready, STARTUP_TIMEOUT_S):
            raise RuntimeError(f"the depth nodes did not come up in {STARTUP_TIMEOUT_S:.0f} s; "
                               f"see {logs['mono']} and {logs['fusion']}")
        procs["player"] = subprocess.Popen(play_cmd, env=env, stdout=files["player"],
                                           stderr=subprocess.STDOUT)

        def played_all() -> bool:
            _check_alive({n: procs[n] for n in NODES}, logs)
            return procs["player"].poll() is not None

        if not _spin_until(executor, played_all, STARTUP_TIMEOUT_S + frames / (10.0 * rate)):
            raise RuntimeError(f"the bag did not finish playing; see {logs['player']}")
        if procs["player"].returncode != 0:
            raise RuntimeError(f"depth_ros_bag_play exited with code "
                               f"{procs['player'].returncode}:\n"
                               f"{logs['player'].read_text()[-2000:]}")
        _spin_until(executor, lambda: all(len(collector.outputs[n].depths) >= len(
            collector.images) for n in NODES), DRAIN_TIMEOUT_S)
    finally:
        for proc in reversed(list(procs.values())):
            stop_process(proc)
        for handle in files.values():
            handle.close()
        executor.shutdown()
        collector.destroy_node()
        rclpy.try_shutdown()
    collector.score()
    return DemoRun(images=collector.images, groundtruth=collector.groundtruth,
                   outputs=collector.outputs, node_logs=logs)


def _check_alive(procs: dict[str, subprocess.Popen], logs: dict[str, Path]) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}:\n"
                               f"{logs[name].read_text()[-2000:]}")


def _spin_until(executor: SingleThreadedExecutor, done: Callable[[], bool],
                timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        executor.spin_once(timeout_sec=0.05)
    return done()
