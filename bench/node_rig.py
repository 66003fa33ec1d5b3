"""What the node benchmarks share: KITTI-size camera frames, a depth node as its own process,
and an in-process rclpy client that plays the camera and times the depth that comes back.

Latency is measured as a camera driver's subscriber would see it: from the moment the client
publishes an image (its header stamp) to the moment the node's depth with that stamp reaches
the client, both on the client's clock. The node runs in another process, so the figure
includes both transport hops. Imported by bench/bench_node_latency.py and
bench/bench_overload.py (run from the repository root).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depth_ros.geometry import PinholeCamera
from depth_ros.kitti import KittiDrive
from depth_ros.ros.launching import node_command, ros_environment, stop_process
from depth_ros.share import find_config
from depth_ros.synthetic import write_synthetic_drive

KITTI_WIDTH, KITTI_HEIGHT = 1216, 352
FRAME_ID = "camera_02_optical_frame"
NAMESPACE = "/bench"
CACHE = Path("outputs/bench/drive_1216x352")


def use_own_domain() -> int:
    """Put this process (and the node it starts) in a ROS domain of its own, before rclpy
    starts: another run on the machine must not see these topics. Returns the domain id."""
    domain = int(os.environ.get("ROS_DOMAIN_ID") or 215 + os.getpid() % 17)
    os.environ.update(ros_environment(domain))
    return domain


def kitti_frames(count: int = 6, cache: Path = CACHE) -> tuple[list[np.ndarray], PinholeCamera]:
    """``count`` rendered 1216×352 street frames (an engine drive, cached) and their camera."""
    drive_dir = write_synthetic_drive(cache, num_frames=count, seed=4242, width=KITTI_WIDTH,
                                      height=KITTI_HEIGHT, stereo=False, lidar=False)
    drive = KittiDrive(drive_dir)
    return [drive.rgb(i) for i in range(len(drive))], drive.camera_model()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (the figures depend on what else runs)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class NodeProcess:
    """A depth node started as its own process (console script), logging to a file."""

    executable: str
    log_path: Path
    params: dict[str, object] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def __enter__(self) -> NodeProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        config = find_config(self.executable.removesuffix("_node") + ".yaml")
        cmd = node_command(self.executable, config, params=self.params,
                           remaps={"__ns": NAMESPACE})
        self.proc = subprocess.Popen(cmd, stdout=self.log_path.open("w"),
                                     stderr=subprocess.STDOUT, env=dict(os.environ))
        return self

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class CameraClient:
    """Publishes frames as a camera would and records when each one's depth comes back.

    Args:
        camera: the intrinsics sent on ``camera_info``.
        outputs: the node's outputs to subscribe to (a node computes ``points`` and
            ``depth/colored`` only while somebody subscribes, as RViz would).
    """

    def __init__(self, camera: PinholeCamera, outputs: tuple[str, ...] = ("depth",)) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from depth_ros.ros.qos import make_qos

        self._rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bench_camera", namespace=NAMESPACE,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.camera = camera
        # A camera driver's QoS (REP 2003 sensor data); the node's inputs match it.
        camera_qos = make_qos("best_effort", 1)
        self.image_pub = self.node.create_publisher(Image, "image", camera_qos)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", camera_qos)
        self.sent: dict[int, float] = {}  # stamp (ns) -> perf_counter at publish
        self.received: dict[int, float] = {}  # stamp (ns) -> perf_counter at depth arrival
        self.extra_outputs = {topic: 0 for topic in outputs if topic != "depth"}
        self.diagnostics: list[dict[str, str]] = []
        self.node.create_subscription(Image, "depth", self._on_depth, make_qos("reliable", 10))
        kinds = {"points": PointCloud2, "depth/colored": Image}
        for topic in self.extra_outputs:
            # Best effort, depth 1: only to make the node produce them; never a backlog here.
            self.node.create_subscription(kinds[topic], topic,
                                          lambda _msg, t=topic: self._count(t),
                                          make_qos("best_effort", 1))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                      make_qos("reliable", 10))
        self._last_ns = 0

    def _on_depth(self, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.received.setdefault(stamp, time.perf_counter())

    def _count(self, topic: str) -> None:
        self.extra_outputs[topic] += 1

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith(": depth"):
                self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def send(self, rgb: np.ndarray) -> int:
        """Publish one frame and its CameraInfo stamped now; returns the stamp (ns)."""
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header

        from depth_ros.ros.conversions import camera_to_camera_info, numpy_to_image

        stamp = max(time.time_ns(), self._last_ns + 1)  # unique even within a tick
        self._last_ns = stamp
        header = Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
                        frame_id=FRAME_ID)
        image = numpy_to_image(rgb, "rgb8", header)
        self.info_pub.publish(camera_to_camera_info(self.camera, header))
        self.sent[stamp] = time.perf_counter()
        self.image_pub.publish(image)
        return stamp

    def spin_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Process callbacks until done() or the timeout; returns done()."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=min(0.005, max(0.0, deadline
                                                                - time.perf_counter())))
        return done()

    def wait_for_node(self, timeout_s: float = 120.0) -> bool:
        """Until the node subscribes to ``image`` and publishes ``depth``."""
        return self.spin_until(lambda: self.node.count_subscribers("image") > 0
                               and self.node.count_publishers("depth") > 0, timeout_s)

    def warm_up(self, frames: list[np.ndarray], timeout_s: float = 60.0) -> bool:
        """Send frames until one comes back (discovery, the model's first run); then forget
        them."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            stamp = self.send(frames[0])
            if self.spin_until(lambda s=stamp: s in self.received, 2.0):
                self.spin_until(lambda: False, 0.5)
                self.sent.clear()
                self.received.clear()
                return True
        return False

    def latencies(self) -> list[tuple[float, float]]:
        """(send time relative to the first send, latency) in seconds, of answered frames."""
        if not self.sent:
            return []
        start = min(self.sent.values())
        return sorted((self.sent[s] - start, self.received[s] - self.sent[s])
                      for s in self.received if s in self.sent)

    def close(self) -> None:
        """Destroy the node and its context."""
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.context)


def percentiles_ms(values_s: list[float] | np.ndarray) -> dict[str, float]:
    """p50 and p90 in milliseconds (NaN without values)."""
    values = np.asarray(values_s, dtype=np.float64) * 1e3
    if values.size == 0:
        return {"p50": float("nan"), "p90": float("nan")}
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90))}
