"""What every depth node shares: parameters, QoS, the inference worker, the outputs and the
diagnostics. ``mono_depth_node`` and ``fusion_depth_node`` only add their inputs.

Inference runs in one worker thread on the newest job only (an image, or an image paired
with a LiDAR cloud): a job that arrives while the worker is busy replaces the waiting one,
which is counted as dropped, so latency never grows with a backlog. A bad message is logged
(rate-limited, per kind of problem), counted and skipped; the next good one is served.

What is done with a frame is ``depth_ros.inference.processor.FrameProcessor``'s (ROS-free,
the estimator injected): this module turns messages into its inputs and its outputs into
messages, all with the input image's header: ``depth`` (32FC1 metres, NaN = no estimate, or
16UC1 millimetres), ``depth/camera_info``, ``depth/confidence`` (32FC1, 0-1, models with a
confidence output), ``points`` (organised PointCloud2, optionally decimated and coloured),
``depth/colored`` (rgb8), ``depth/info`` (latched std_msgs/String JSON saying whether
``depth`` is metric or relative inverse depth) and ``/diagnostics``.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header, String

from depth_ros.completion import CLASSICAL_MODEL_NAME, ClassicalCompletion
from depth_ros.errors import DepthRosError
from depth_ros.geometry import PinholeCamera
from depth_ros.inference import BackendUnavailable, DepthEstimator, ModelLoadError
from depth_ros.inference.estimator import BACKENDS
from depth_ros.inference.processor import (
    COLORED_RANGES,
    DEPTH_ENCODINGS,
    DEPTH_UNITS,
    FrameOutput,
    FrameProcessor,
    ProcessorOptions,
)
from depth_ros.ros.conversions import (
    ConversionError,
    camera_info_to_camera,
    depth_to_pointcloud2,
    image_to_rgb,
    numpy_to_image,
)
from depth_ros.ros.diagnostics import DepthReport, NodeStats, diagnostic_array
from depth_ros.ros.log_bridge import forward_core_logs
from depth_ros.ros.parameters import (
    ParameterError,
    ParamSpec,
    ParamValue,
    declare_parameters,
    defaults,
    watch_live_parameters,
)
from depth_ros.ros.qos import latched_qos, make_qos
from depth_ros.ros.rate_limit import RateLimitedWarner

RELIABILITIES = ("best_effort", "reliable")
STATS_WINDOW_S = 5.0  # rates, latency percentiles and drop shares are over this window
STALE_AFTER_S = 3.0  # diagnostics warn when no input came for this long

# Parameters of every depth node: one table, declared with descriptors (``parameters.py``);
# each node module extends it, and its config/*.yaml is checked against it by the tests. Live
# ones are applied when changed (``ros2 param set``); the rest are read-only.
BASE_PARAMETER_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("model_path", "", "the model file: a .onnx bundle or a .pt checkpoint; empty: "
              "the node's bundled default model; 'classical': IP-Basic completion of the LiDAR "
              "(no network, no GPU; fusion_depth_node only)",
              allowed="a file path, 'classical', or empty"),
    ParamSpec("backend", "auto", "inference backend; auto tries the fastest that runs here",
              choices=BACKENDS),
    ParamSpec("num_threads", 0, "inference threads; 0 = the runtime's choice",
              minimum=0, maximum=1024),
    ParamSpec("input_width", 0, "network input width; 0 (with input_height 0) = the model's "
              "training size", minimum=0, maximum=16384),
    ParamSpec("input_height", 0, "network input height; 0 (with input_width 0) = the model's "
              "training size", minimum=0, maximum=16384),
    ParamSpec("min_depth_m", 0.0, "published range, metres (outside: no estimate); 0 = the "
              "model's range", minimum=0.0, maximum=1000.0),
    ParamSpec("max_depth_m", 0.0, "published range, metres (outside: no estimate); 0 = the "
              "model's range", minimum=0.0, maximum=1000.0),
    ParamSpec("depth_encoding", "32FC1", "32FC1: metres, NaN = no estimate; 16UC1: "
              "millimetres, 0 = no estimate", choices=DEPTH_ENCODINGS),
    ParamSpec("publish_points", True, "publish the organised PointCloud2 on 'points' (while "
              "subscribed)", live=True),
    ParamSpec("points_rgb", True, "colour the points with the camera image", live=True),
    ParamSpec("points_decimation", 1, "cloud of every d-th pixel in both directions",
              minimum=1, maximum=64, live=True),
    ParamSpec("publish_colored", True, "publish colourised depth (rgb8) on 'depth/colored' "
              "(while subscribed)", live=True),
    ParamSpec("colored_range", "fixed", "colour scale: fixed = min/max_depth_m, auto = 2nd-98th "
              "percentile of each frame", choices=COLORED_RANGES, live=True),
    ParamSpec("min_confidence", 0.0, "points whose confidence (models with a confidence "
              "output) is below this are NaN in 'points'; 0 keeps every point",
              minimum=0.0, maximum=1.0, live=True),
    ParamSpec("input_reliability", "best_effort", "QoS reliability of the inputs",
              choices=RELIABILITIES),
    ParamSpec("input_depth", 1, "QoS history depth of the inputs", minimum=1, maximum=1000),
    ParamSpec("output_reliability", "reliable", "QoS reliability of the outputs",
              choices=RELIABILITIES),
    ParamSpec("output_depth", 1, "QoS history depth of the outputs", minimum=1, maximum=1000),
    ParamSpec("warn_period_s", 5.0, "seconds between two warnings of one kind of problem",
              minimum=0.0, maximum=3600.0, live=True),
    ParamSpec("stats_period_s", 10.0, "seconds between two log lines of frame counts and "
              "latency", minimum=0.0, above_minimum=True, maximum=86400.0),
    ParamSpec("diagnostics_period_s", 1.0, "seconds between two /diagnostics messages",
              minimum=0.0, above_minimum=True, maximum=3600.0),
)
BASE_PARAMETERS: dict[str, object] = defaults(BASE_PARAMETER_SPECS)

# Outputs of every depth node (relative names; /diagnostics is absolute by convention).
# ``depth/confidence`` only while the model has a confidence output (fusion models).
BASE_PUBLISHED_TOPICS: tuple[str, ...] = (
    "depth", "depth/camera_info", "depth/info", "depth/confidence", "points", "depth/colored",
    "/diagnostics")


@dataclass
class DepthJob:
    """One unit of inference work: an image, its CameraInfo and optionally LiDAR points.

    ``points`` are N×3 finite coordinates in the LiDAR frame; ``received`` is when the job
    became complete (time.monotonic()), the start of its latency.
    """

    image: Image
    camera_info: CameraInfo | None
    received: float
    points: np.ndarray | None = None


class NewestSlot:
    """A one-item mailbox: put() replaces an unconsumed item and counts it as dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Leave item for the consumer; True when it replaced one not yet taken."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self) -> Any:
        """Block until an item arrives (returned) or the slot is closed (None)."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake the consumer; take() returns None from now on once empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def check_depth_node_values(values: dict[str, ParamValue]) -> None:
    """Checks between parameters of a depth node, made before the model loads."""
    width, height = values["input_width"], values["input_height"]
    if (width > 0) != (height > 0):
        raise ParameterError(f"parameters input_width and input_height: {width} and {height} "
                             "are not allowed together; give both (> 0) or neither (0)")
    low, high = values["min_depth_m"], values["max_depth_m"]
    if low > 0 and high > 0 and low >= high:
        raise ParameterError(f"parameters min_depth_m and max_depth_m: {low:g} and {high:g} "
                             "are not allowed together; min_depth_m must be below max_depth_m")


def wind_down_logger(node: Node):
    """The node's logger while its context is up; after Ctrl-C (context shut down by rclpy's
    signal handler) a console-only logger (``<node logger>.exit``) instead, since the node's
    own would try its /rosout publisher and rcl would print "Failed to publish log message to
    rosout: publisher's context is invalid" under the line."""
    logger = node.get_logger()
    if node.context.ok():
        return logger
    return rclpy.logging.get_logger(f"{logger.name}.exit")


def copy_camera_info(info: CameraInfo, header: Header) -> CameraInfo:
    """A copy of a CameraInfo with another header (the cached input is never modified)."""
    return CameraInfo(header=header, height=info.height, width=info.width,
                      distortion_model=info.distortion_model, d=info.d, k=info.k, r=info.r,
                      p=info.p, binning_x=info.binning_x, binning_y=info.binning_y,
                      roi=info.roi)


def make_estimator(model_path: str, backend: str, num_threads: int,
                   input_size: tuple[int, int] | None) -> DepthEstimator | ClassicalCompletion:
    """The node's estimator: ``classical`` is IP-Basic, anything else a model file.

    Raises one-line errors: ``ModelLoadError`` (the file), ``BackendUnavailable`` naming the
    ``backend`` parameter.
    """
    if model_path == CLASSICAL_MODEL_NAME:
        return ClassicalCompletion()
    try:
        return DepthEstimator(model_path, backend=backend, num_threads=num_threads,
                              input_size=input_size)
    except ModelLoadError:
        raise  # names the file and what is wrong with it
    except DepthRosError as exc:  # BackendUnavailable, TensorRTUnavailable
        raise BackendUnavailable(f"parameter backend: {backend!r} cannot run here: "
                                 f"{exc}") from exc


class DepthNodeBase(Node, abc.ABC):
    """A depth node without inputs: subclasses subscribe and call ``submit(job)``.

    ``NOT_INPUT_PROBLEMS``: warning keys that are reported on their own, not as bad inputs.

    Args:
        node_name: the node's default name.
        parameters: the table of every parameter (``BASE_PARAMETER_SPECS`` and the node's own).
        default_model: the model used when ``model_path`` is empty.
    """

    NOT_INPUT_PROBLEMS: frozenset[str] = frozenset()

    def __init__(self, node_name: str, parameters: Sequence[ParamSpec], default_model: Path,
                 **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        # Every value is checked before the model loads: a bad one costs one line, at once.
        values = declare_parameters(self, parameters)
        check_depth_node_values(values)
        p = values.get
        self.model_path = p("model_path") or str(default_model)
        input_size = None
        if p("input_width") > 0:
            input_size = (int(p("input_height")), int(p("input_width")))
        # The backend choice and a TensorRT engine build ("building one now, expect minutes")
        # are logged by the core through Python logging: shown in this node's log.
        forward_core_logs(self.get_logger())
        self.estimator = make_estimator(self.model_path, p("backend"), int(p("num_threads")),
                                        input_size)
        meta = self.estimator.metadata
        low = float(p("min_depth_m")) or float(meta.min_depth_m)
        high = float(p("max_depth_m")) or float(meta.max_depth_m)
        if not 0 < low < high:
            raise ParameterError(
                f"parameters min_depth_m and max_depth_m: the range {low:g}-{high:g} m is "
                f"empty (0 takes the model's {meta.min_depth_m:g}-{meta.max_depth_m:g} m); "
                "min_depth_m must be below max_depth_m")
        self.processor = FrameProcessor(self.estimator, ProcessorOptions(
            min_depth_m=low, max_depth_m=high, depth_encoding=p("depth_encoding"),
            points_decimation=int(p("points_decimation")), points_rgb=bool(p("points_rgb")),
            colored_range=p("colored_range"), min_confidence=float(p("min_confidence"))),
            Path(self.model_path).name)
        self.warner = RateLimitedWarner(self.get_logger().warning, float(p("warn_period_s")))
        watch_live_parameters(self, parameters, self._apply_live_parameters)
        self.stats = NodeStats(window_s=STATS_WINDOW_S)
        self._slot = NewestSlot()
        self._camera_info: CameraInfo | None = None
        self._camera_info_lock = threading.Lock()
        self._info_json: str | None = None  # last published depth/info
        self._logged_received = 0

        self.input_qos = make_qos(p("input_reliability"), int(p("input_depth")))
        out_qos = make_qos(p("output_reliability"), int(p("output_depth")))
        self.depth_pub = self.create_publisher(Image, "depth", out_qos)
        self.info_pub = self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
        self.depth_info_pub = self.create_publisher(String, "depth/info", latched_qos())
        self.points_pub = self.create_publisher(PointCloud2, "points", out_qos)
        self.colored_pub = self.create_publisher(Image, "depth/colored", out_qos)
        # Advertised by every node (one interface to remap); messages come only from models
        # with a confidence output.
        self.confidence_pub = self.create_publisher(Image, "depth/confidence", out_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics",
                                                     make_qos("reliable", 10))
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                 self.input_qos)

        encoding = p("depth_encoding")
        self.get_logger().info(
            f"model {self.model_path} ({meta.architecture}, {meta.kind}, {meta.output}) on "
            f"{self.estimator.backend_name}; depth {encoding} ({DEPTH_UNITS[encoding]}), "
            f"range {low:g}-{high:g} m")
        self.setup_inputs()
        # Started last: a node that failed to build has no thread keeping it alive.
        self._worker = threading.Thread(target=self._run_worker, name="depth_inference",
                                        daemon=True)
        self._worker.start()
        self.create_timer(float(p("stats_period_s")), self._log_stats)
        self.create_timer(float(p("diagnostics_period_s")), self.publish_diagnostics)

    @abc.abstractmethod
    def setup_inputs(self) -> None:
        """Check the node's own parameters and subscribe to its inputs (besides
        camera_info); called at the end of construction, before the worker starts."""

    def param(self, name: str) -> Any:
        """A parameter's current value."""
        return self.get_parameter(name).value

    def _apply_live_parameters(self, values: dict[str, ParamValue]) -> None:
        """Apply checked ``ros2 param set`` values; the publish switches are read per frame."""
        policy = {name: values[name] for name in ("points_rgb", "points_decimation",
                                                  "colored_range", "min_confidence")
                  if name in values}
        if policy:
            # One new immutable options object: the worker reads a whole old or new one.
            self.processor.options = dataclasses.replace(self.processor.options, **policy)
        if "warn_period_s" in values:
            self.warner.period_s = float(values["warn_period_s"])
        changed = ", ".join(f"{name} {value}" for name, value in sorted(values.items()))
        self.get_logger().info(f"parameters changed: {changed}")

    @property
    def output_kind(self) -> str:
        """``metric``, ``relative_inverse_depth`` or ``unknown`` (nothing published yet)."""
        return self.processor.output_kind

    @property
    def last_fit(self) -> dict[str, float | int | bool] | None:
        """The last LiDAR fit's figures (relative models given LiDAR), else None."""
        return self.processor.last_fit

    # Subscriber side: cheap, never raises, never blocks on inference.
    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._camera_info_lock:
            self._camera_info = msg

    def latest_camera_info(self) -> CameraInfo | None:
        """The newest CameraInfo received (None before the first)."""
        with self._camera_info_lock:
            return self._camera_info

    def submit(self, job: DepthJob) -> None:
        """Hand a job to the worker; a job still waiting is replaced and counted dropped."""
        if self._slot.put(job):
            self.stats.add("dropped")

    @property
    def frames_dropped(self) -> int:
        """Jobs replaced by a newer one before inference reached them."""
        return self._slot.dropped

    @property
    def bad_inputs(self) -> dict[str, int]:
        """Counts of skipped or degraded inputs by kind of problem."""
        return {key: count for key, count in self.warner.counts.items()
                if key not in self.NOT_INPUT_PROBLEMS}

    # Worker side.
    def _run_worker(self) -> None:
        while (job := self._slot.take()) is not None:
            try:
                self._process(job)
            except ConversionError as exc:
                self.warner.warn("bad_image", f"skipping image: {exc}")
            except Exception as exc:  # one bad frame must never end the stream
                if not self.context.ok():
                    return  # shutting down (e.g. SIGINT): publishers are gone, nothing to warn
                self.warner.warn("processing_error",
                                 f"skipping frame after {type(exc).__name__}: {exc}")

    def sparse_depth(self, job: DepthJob, camera: PinholeCamera) -> np.ndarray | None:
        """The job's LiDAR as an H×W depth image (0 = none) in the camera, or None."""
        return None

    def _camera_for(self, job: DepthJob) -> PinholeCamera | None:
        msg = job.image
        if job.camera_info is None:
            self.warner.warn("no_camera_info",
                             "no CameraInfo received on 'camera_info' yet; skipping image")
            return None
        try:
            camera = camera_info_to_camera(job.camera_info)
        except ConversionError as exc:
            self.warner.warn("bad_camera_info", f"skipping image, bad CameraInfo: {exc}")
            return None
        if (camera.width, camera.height) != (msg.width, msg.height):
            self.warner.warn(
                "size_mismatch",
                f"skipping image: CameraInfo is {camera.width}x{camera.height} but the image "
                f"is {msg.width}x{msg.height}")
            return None
        return camera

    def _process(self, job: DepthJob) -> None:
        rgb = image_to_rgb(job.image)
        camera = self._camera_for(job)
        if camera is None:
            return
        sparse = self.sparse_depth(job, camera)
        started = time.monotonic()
        out = self.processor.process(
            rgb, camera.K, sparse, lidar=job.points is not None,
            want_points=(self.param("publish_points")
                         and self.points_pub.get_subscription_count() > 0),
            want_colored=(self.param("publish_colored")
                          and self.colored_pub.get_subscription_count() > 0))
        inference_s = time.monotonic() - started
        self._publish(job, out)
        self.stats.add_output(time.monotonic() - job.received, inference_s)

    def _publish(self, job: DepthJob, out: FrameOutput) -> None:
        """The processor's outputs as messages, all with the input image's header."""
        logger = self.get_logger()
        for level, text in out.logs:
            # rclpy loggers refuse two severities from one call site: two calls.
            if level == "warning":
                logger.warning(text)
            else:
                logger.info(text)
        if out.info_changed:
            self.depth_info_pub.publish(String(data=json.dumps(out.info, sort_keys=True)))
        header = job.image.header
        self.depth_pub.publish(numpy_to_image(out.depth_image, out.encoding, header))
        self.info_pub.publish(copy_camera_info(job.camera_info, header))
        if out.confidence is not None:
            self.confidence_pub.publish(numpy_to_image(out.confidence, "32FC1", header))
        if out.cloud is not None:
            cloud = out.cloud
            self.points_pub.publish(depth_to_pointcloud2(cloud.depth, cloud.K, header,
                                                         rgb=cloud.rgb))
        if out.colored is not None:
            self.colored_pub.publish(numpy_to_image(out.colored, "rgb8", header))

    # Reporting.
    def report(self) -> DepthReport:
        """The diagnostics snapshot; nodes with LiDAR add their pairing counts."""
        stats = self.stats
        p50, p90, p99 = stats.latency_ms()
        return DepthReport(
            backend=self.estimator.backend_name, model=Path(self.model_path).name,
            output_kind=self.output_kind, input_rate_hz=stats.rate_hz("image"),
            output_rate_hz=stats.rate_hz("published"), latency_ms=(p50, p90, p99),
            inference_ms=stats.inference_ms(),
            frames_received=stats.total("image"), frames_published=stats.total("published"),
            frames_dropped=self.frames_dropped, dropped_in_window=stats.in_window("dropped"),
            received_in_window=stats.in_window("image"),
            seconds_since_input=stats.seconds_since("image"), bad_inputs=self.bad_inputs,
            fit=self.last_fit)

    def publish_diagnostics(self) -> None:
        """Publish the node's DiagnosticStatus on /diagnostics."""
        stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(diagnostic_array(
            # The fully qualified name: several depth nodes (one per camera) share /diagnostics.
            self.report(), f"{self.get_fully_qualified_name()}: depth",
            self.estimator.backend_name, stamp,
            stale_after_s=STALE_AFTER_S))

    def _log_stats(self, final: bool = False) -> None:
        report = self.report()
        if not report.frames_received or (report.frames_received == self._logged_received
                                          and not final):
            return  # nothing came since the last line
        self._logged_received = report.frames_received
        wind_down_logger(self).info(
            f"frames in {report.frames_received}, out {report.frames_published}, dropped "
            f"{report.frames_dropped}, bad {sum(report.bad_inputs.values())}; "
            f"{report.input_rate_hz:.1f} Hz in, {report.output_rate_hz:.1f} Hz out; latency "
            f"ms p50 {report.latency_ms[0]:.1f} p90 {report.latency_ms[1]:.1f}")

    def finish(self) -> None:
        """Stop the worker before the publishers go away, then log the totals (once)."""
        worker = getattr(self, "_worker", None)
        if worker is not None:  # None: construction failed part-way, nothing ran
            self._slot.close()
            worker.join(timeout=5.0)
            self._log_stats(final=True)
            self._worker = None

    def destroy_node(self) -> None:
        """Stop the worker and log the totals, then destroy the node."""
        self.finish()
        super().destroy_node()
