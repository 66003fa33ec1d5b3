"""mono_depth_node: camera Image + CameraInfo in, metric depth, its CameraInfo, an organised
PointCloud2 and a colourised depth image out.

Inference runs in a worker thread on the newest frame only; frames that arrive while it is
busy replace the waiting one and are counted as dropped, so latency never grows with a
backlog. A bad message is logged (rate-limited, per kind of problem) and skipped.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ros.inference import DepthEstimator, ModelLoadError
from depth_ros.ros.conversions import (
    ConversionError,
    camera_info_to_camera,
    depth_to_image,
    depth_to_pointcloud2,
    image_to_rgb,
    numpy_to_image,
)
from depth_ros.ros.entry import run_node
from depth_ros.ros.qos import make_qos
from depth_ros.ros.rate_limit import RateLimitedWarner
from depth_ros.viz import colorize_depth
from depth_ros.weights import DEFAULT_MONO_MODEL

NODE_NAME = "mono_depth_node"

# Every parameter with its default; config/mono_depth.yaml and the launch files are checked
# against this table by the tests.
PARAMETERS: dict[str, object] = {
    "model_path": "",  # empty: the bundled default model
    "backend": "auto",  # auto | onnxruntime | torch
    "num_threads": 0,  # inference threads, 0 = the runtime's choice
    "input_width": 0,  # network input size, 0 = the model's training size
    "input_height": 0,
    "min_depth_m": 0.0,  # output clipping range, 0 = the model's range
    "max_depth_m": 0.0,
    "depth_encoding": "32FC1",  # 32FC1 (metres, NaN invalid) | 16UC1 (millimetres, 0 invalid)
    "publish_points": True,
    "points_rgb": True,  # colour the cloud with the input image
    "publish_colored": True,
    "input_reliability": "best_effort",
    "input_depth": 1,
    "output_reliability": "reliable",
    "output_depth": 1,
    "warn_period_s": 5.0,
    "stats_period_s": 10.0,
}


@dataclass
class _Frame:
    image: Image
    camera_info: CameraInfo | None
    received: float


class _NewestSlot:
    """A one-item mailbox: put() replaces an unconsumed item and counts it as dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: _Frame | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: _Frame) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self) -> _Frame | None:
        """Block until an item arrives (returned) or the slot is closed (None)."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class MonoDepthNode(Node):
    """Monocular depth node; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = self._param
        model_path = p("model_path") or str(DEFAULT_MONO_MODEL)
        input_size = None
        if p("input_width") > 0 and p("input_height") > 0:
            input_size = (int(p("input_height")), int(p("input_width")))
        self.estimator = DepthEstimator(model_path, backend=p("backend"),
                                        num_threads=int(p("num_threads")), input_size=input_size)
        meta = self.estimator.metadata
        self.min_depth_m = float(p("min_depth_m")) or float(meta.min_depth_m)
        self.max_depth_m = float(p("max_depth_m")) or float(meta.max_depth_m)
        self.depth_encoding = p("depth_encoding")
        if self.depth_encoding not in ("32FC1", "16UC1"):
            raise ValueError(f"depth_encoding must be 32FC1 or 16UC1, got {self.depth_encoding!r}")

        self._warner = RateLimitedWarner(self.get_logger().warning, float(p("warn_period_s")))
        self._camera_info: CameraInfo | None = None
        self._camera_info_lock = threading.Lock()
        self._slot = _NewestSlot()
        self.frames_received = 0
        self.frames_published = 0
        self.latencies_ms: deque[float] = deque(maxlen=500)

        out_qos = make_qos(p("output_reliability"), int(p("output_depth")))
        in_qos = make_qos(p("input_reliability"), int(p("input_depth")))
        self.depth_pub = self.create_publisher(Image, "depth", out_qos)
        self.info_pub = self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
        self.points_pub = self.create_publisher(PointCloud2, "points", out_qos)
        self.colored_pub = self.create_publisher(Image, "depth/colored", out_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        self.create_subscription(Image, "image", self._on_image, in_qos)

        self._worker = threading.Thread(target=self._run_worker, name="depth_inference",
                                        daemon=True)
        self._worker.start()
        self.create_timer(float(p("stats_period_s")), self._log_stats)
        self.get_logger().info(
            f"model {model_path} ({meta.architecture}, {meta.output}) on "
            f"{self.estimator.backend_name}; depth {self.depth_encoding}, "
            f"range {self.min_depth_m:g}-{self.max_depth_m:g} m")

    def _param(self, name: str):
        return self.get_parameter(name).value

    # Subscriber callbacks: cheap, never raise, never block on inference.
    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._camera_info_lock:
            self._camera_info = msg

    def _on_image(self, msg: Image) -> None:
        self.frames_received += 1
        with self._camera_info_lock:
            info = self._camera_info
        self._slot.put(_Frame(msg, info, time.monotonic()))

    @property
    def frames_dropped(self) -> int:
        """Frames replaced by a newer one before inference reached them."""
        return self._slot.dropped

    @property
    def bad_inputs(self) -> dict[str, int]:
        """Counts of skipped messages by kind of problem."""
        return dict(self._warner.counts)

    def _run_worker(self) -> None:
        while (frame := self._slot.take()) is not None:
            try:
                self._process(frame)
            except ConversionError as exc:
                self._warner.warn("bad_image", f"skipping image: {exc}")
            except Exception as exc:  # one bad frame must never end the stream
                if not self.context.ok():
                    return  # shutting down (e.g. SIGINT): publishers are gone, nothing to warn
                self._warner.warn("processing_error",
                                  f"skipping frame after {type(exc).__name__}: {exc}")

    def _process(self, frame: _Frame) -> None:
        msg = frame.image
        rgb = image_to_rgb(msg)
        if frame.camera_info is None:
            self._warner.warn("no_camera_info",
                              "no CameraInfo received on 'camera_info' yet; skipping image")
            return
        try:
            camera = camera_info_to_camera(frame.camera_info)
        except ConversionError as exc:
            self._warner.warn("bad_camera_info", f"skipping image, bad CameraInfo: {exc}")
            return
        if (camera.width, camera.height) != (msg.width, msg.height):
            self._warner.warn(
                "size_mismatch",
                f"skipping image: CameraInfo is {camera.width}x{camera.height} but the image "
                f"is {msg.width}x{msg.height}")
            return

        depth = self.estimator.predict(rgb, fx=camera.fx)
        out_of_range = ~((depth >= self.min_depth_m) & (depth <= self.max_depth_m))
        depth[out_of_range] = np.nan

        header = msg.header
        self.depth_pub.publish(depth_to_image(depth, header, self.depth_encoding))
        info = frame.camera_info
        info.header = header
        self.info_pub.publish(info)
        if self._param("publish_points") and self.points_pub.get_subscription_count() > 0:
            colour = rgb if self._param("points_rgb") else None
            self.points_pub.publish(depth_to_pointcloud2(depth, camera.K, header, rgb=colour))
        if self._param("publish_colored") and self.colored_pub.get_subscription_count() > 0:
            colored = colorize_depth(depth, self.min_depth_m, self.max_depth_m)
            self.colored_pub.publish(numpy_to_image(colored, "rgb8", header))
        self.frames_published += 1
        self.latencies_ms.append((time.monotonic() - frame.received) * 1e3)

    def _log_stats(self) -> None:
        if not self.frames_received:
            return
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        self.get_logger().info(
            f"frames in {self.frames_received}, out {self.frames_published}, dropped "
            f"{self.frames_dropped}, bad {sum(self._warner.counts.values())}; latency ms "
            f"p50 {np.percentile(lat, 50):.1f} p90 {np.percentile(lat, 90):.1f}")

    def destroy_node(self) -> None:
        """Stop the worker before the publishers go away, then log the totals."""
        self._slot.close()
        self._worker.join(timeout=5.0)
        self._log_stats()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console-script entry point: ``mono_depth_node --ros-args --params-file ...``."""
    return run_node(MonoDepthNode, NODE_NAME, args, (ModelLoadError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
