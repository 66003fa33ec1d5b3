"""The ROS part of the demo: the node and the camera in their own processes, the collector here.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image, PointCloud2

from depth_ros.kitti import KittiDrive
from depth_ros.ros.conversions import image_to_numpy, pointcloud2_to_array
from depth_ros.ros.launching import find_config, node_command, stop_process
from depth_ros.ros.qos import make_qos

STARTUP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 5.0


@dataclass
class DemoResult:
    """What the collector saw."""

    model: str
    frames_published: int = 0
    fps_in: float = 0.0
    depths: dict[int, np.ndarray] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    points: np.ndarray | None = None
    first_receive_s: float = 0.0
    last_receive_s: float = 0.0


class DepthCollector(Node):
    """Keeps every depth image (copied out of the message), its latency and one point cloud."""

    def __init__(self) -> None:
        super().__init__("depth_ros_demo_collector")
        qos = make_qos("reliable", 10)
        self.create_subscription(Image, "depth", self._on_depth, qos)
        self.create_subscription(PointCloud2, "points", self._on_points, qos)
        self.received: dict[int, np.ndarray] = {}  # stamp in nanoseconds -> depth
        self.latencies_ms: list[float] = []
        self.points: np.ndarray | None = None
        self.receive_times: list[float] = []

    def _on_depth(self, msg: Image) -> None:
        # The camera stamps frames with the time it publishes them: now - stamp is the
        # end-to-end latency through the node (one clock, one machine).
        stamp = Time.from_msg(msg.header.stamp)
        self.latencies_ms.append((self.get_clock().now() - stamp).nanoseconds / 1e6)
        self.received[stamp.nanoseconds] = np.array(image_to_numpy(msg), np.float32)
        self.receive_times.append(time.monotonic())

    def _on_points(self, msg: PointCloud2) -> None:
        if self.points is None:
            self.points = pointcloud2_to_array(msg, ("x", "y", "z"), skip_nans=True)


def _read_stamp_log(path: Path) -> dict[int, int]:
    """'index stamp_ns' lines written by kitti_drive_publisher -> {stamp_ns: index}."""
    if not path.is_file():
        return {}
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {int(stamp): int(index) for index, stamp in pairs}


def run_demo(drive_dir: Path, out: Path, rate_hz: float, model_path: str, backend: str,
             env: dict[str, str]) -> DemoResult:
    """Start the node, play the drive through it, collect the outputs, stop everything."""
    node_log, camera_log = out / "mono_depth_node.log", out / "kitti_drive_publisher.log"
    stamp_log = out / "published_stamps.txt"
    stamp_log.unlink(missing_ok=True)
    node_cmd = node_command("mono_depth_node", find_config("mono_depth.yaml"),
                            params={"model_path": model_path, "backend": backend})
    camera_cmd = node_command("kitti_drive_publisher", find_config("kitti_drive_publisher.yaml"),
                              params={"drive_path": str(drive_dir), "rate_hz": float(rate_hz),
                                      "stamp_log_path": str(stamp_log),
                                      "wait_for_subscribers": 1})
    rclpy.init()
    collector = DepthCollector()
    executor = SingleThreadedExecutor()
    executor.add_node(collector)
    procs: list[subprocess.Popen] = []
    try:
        with node_log.open("w") as nlog, camera_log.open("w") as clog:
            procs.append(subprocess.Popen(node_cmd, env=env, stdout=nlog,
                                          stderr=subprocess.STDOUT))

            def node_ready() -> bool:
                if procs[0].poll() is not None:
                    raise RuntimeError(f"mono_depth_node exited with code {procs[0].returncode}:"
                                       f"\n{node_log.read_text()[-2000:]}")
                return collector.count_publishers("depth") > 0

            if not _spin_until(executor, node_ready, STARTUP_TIMEOUT_S):
                raise RuntimeError(f"mono_depth_node did not come up in {STARTUP_TIMEOUT_S:.0f} "
                                   f"s; see {node_log}")
            procs.append(subprocess.Popen(camera_cmd, env=env, stdout=clog,
                                          stderr=subprocess.STDOUT))
            frames = len(KittiDrive(drive_dir))

            def camera_done() -> bool:
                if procs[1].poll() is not None:
                    raise RuntimeError(f"kitti_drive_publisher exited with code "
                                       f"{procs[1].returncode}:\n{camera_log.read_text()[-2000:]}")
                return "published all" in camera_log.read_text()

            if not _spin_until(executor, camera_done, STARTUP_TIMEOUT_S + frames / rate_hz):
                raise RuntimeError(f"the drive did not finish playing; see {camera_log}")
            published = _read_stamp_log(stamp_log)
            _spin_until(executor, lambda: len(collector.received) >= len(published),
                        DRAIN_TIMEOUT_S)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        executor.shutdown()
        collector.destroy_node()
        rclpy.try_shutdown()

    depths = {published[s]: d for s, d in collector.received.items() if s in published}
    first_stamp = min(published) if published else 0
    last_stamp = max(published) if published else 0
    result = DemoResult(model=model_path or "bundled default", frames_published=len(published),
                        fps_in=(len(published) - 1) / max((last_stamp - first_stamp) / 1e9, 1e-9)
                        if len(published) > 1 else 0.0,
                        depths=depths, latencies_ms=list(collector.latencies_ms),
                        points=collector.points)
    if collector.receive_times:
        result.first_receive_s = collector.receive_times[0]
        result.last_receive_s = collector.receive_times[-1]
    return result


def _spin_until(executor: SingleThreadedExecutor, done, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        executor.spin_once(timeout_sec=0.05)
    return done()
