"""depth_eval_node: scores published depth against ground-truth depth, paired by stamp.

Subscribes ``depth`` (a depth node's output) and ``groundtruth/depth`` (e.g. a bag's
``/kitti/camera2/depth_groundtruth``), each 32FC1 metres (NaN = none) or 16UC1 millimetres
(0 = none). Every pair with equal stamps (or within ``slop_s``) is scored with the metrics
``training/evaluate.py`` reports, per image, then averaged. The report (JSON at
``report_path``, a PNG of the last pair beside it, the table in the log) is written at
shutdown (Ctrl-C), on a message to ``~/write_report`` (std_msgs/Empty; also a std_srvs/Trigger
service of that name where std_srvs is installed), and once no message has arrived for
``idle_timeout_s`` (the end of a bag).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import rclpy.logging
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Empty

from depth_ros.online_eval import CROPS, EvalProtocol, OnlineDepthEvaluator
from depth_ros.ros.conversions import ConversionError, image_to_numpy
from depth_ros.ros.entry import run_node
from depth_ros.ros.parameters import (
    ParameterError,
    ParamSpec,
    declare_parameters,
    defaults,
    refuse,
)
from depth_ros.ros.qos import make_qos
from depth_ros.ros.rate_limit import RateLimitedWarner

NODE_NAME = "depth_eval_node"
# ~/write_report is private (the node's own name): launch files remap only the other two.
SUBSCRIBED_TOPICS: tuple[str, ...] = ("depth", "groundtruth/depth", "~/write_report")
PUBLISHED_TOPICS: tuple[str, ...] = ()

RELIABILITIES = ("best_effort", "reliable")

# Every parameter, declared with descriptors from this table (all read at start-up).
PARAMETER_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("report_path", "depth_eval.json", "the JSON report (the PNG goes beside it); "
              "relative: to the working directory", allowed="a file path"),
    ParamSpec("write_png", True, "write a PNG of the last pair beside the report"),
    ParamSpec("crop", "", "evaluation crop: empty (whole image), garg or eigen", choices=CROPS,
              allowed="'' (the whole image), 'garg' or 'eigen'"),
    ParamSpec("min_depth_m", 1e-3, "scored range, metres", minimum=0.0, above_minimum=True,
              maximum=1000.0),
    ParamSpec("max_depth_m", 80.0, "scored range, metres", minimum=0.0, above_minimum=True,
              maximum=1000.0),
    ParamSpec("slop_s", 0.0, "largest stamp difference of a pair, seconds; 0: equal stamps",
              minimum=0.0, maximum=10.0),
    ParamSpec("idle_timeout_s", 5.0, "write the report once nothing arrived for this long; "
              "0 = never", minimum=0.0, maximum=86400.0),
    ParamSpec("max_pending", 100, "unpaired images kept per stream", minimum=1,
              maximum=100000),
    ParamSpec("reliability", "reliable", "QoS reliability of both inputs",
              choices=RELIABILITIES),
    ParamSpec("qos_depth", 10, "QoS history depth of both inputs", minimum=1, maximum=1000),
    ParamSpec("warn_period_s", 5.0, "seconds between two warnings of one kind of problem",
              minimum=0.0, maximum=3600.0),
)
PARAMETERS: dict[str, object] = defaults(PARAMETER_SPECS)


def depth_image_metres(msg: Image) -> np.ndarray:
    """A 32FC1 (metres) or 16UC1 (millimetres, 0 = none) depth image as float32 metres with
    NaN for no data."""
    if msg.encoding == "32FC1":
        return np.array(image_to_numpy(msg), dtype=np.float32)
    if msg.encoding == "16UC1":
        millimetres = image_to_numpy(msg)
        depth = millimetres.astype(np.float32) / np.float32(1000.0)
        depth[millimetres == 0] = np.nan
        return depth
    raise ConversionError(f"depth encoding must be 32FC1 or 16UC1, got {msg.encoding!r}")


class DepthEvalNode(Node):
    """Pairs ``depth`` with ``groundtruth/depth`` by stamp and writes the metrics."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        values = declare_parameters(self, PARAMETER_SPECS)
        p = values.get
        if not p("report_path"):
            raise refuse(PARAMETER_SPECS[0], p("report_path"))
        if p("min_depth_m") >= p("max_depth_m"):
            raise ParameterError(f"parameters min_depth_m and max_depth_m: "
                                 f"{p('min_depth_m')!r} and {p('max_depth_m')!r} are not "
                                 "allowed together; min_depth_m must be below max_depth_m")
        protocol = EvalProtocol(str(p("crop")), float(p("min_depth_m")), float(p("max_depth_m")))
        self.evaluator = OnlineDepthEvaluator(protocol, int(round(p("slop_s") * 1e9)),
                                              int(p("max_pending")))
        self.report_path = Path(str(p("report_path"))).expanduser()
        self.png_path = self.report_path.with_suffix(".png") if p("write_png") else None
        self._warner = RateLimitedWarner(self.get_logger().warning, float(p("warn_period_s")))
        self._last_message = time.monotonic()
        self._written_frames = -1
        self.reports_written = 0
        qos = make_qos(str(p("reliability")), int(p("qos_depth")))
        self.create_subscription(Image, "depth", self._on_depth, qos)
        self.create_subscription(Image, "groundtruth/depth", self._on_groundtruth, qos)
        self.create_subscription(Empty, "~/write_report", lambda _: self.write_report(), 10)
        self._create_trigger_service()
        if p("idle_timeout_s") > 0:
            self.create_timer(min(0.5, float(p("idle_timeout_s")) / 2), self._check_idle)
        self.get_logger().info(f"pairing depth with groundtruth/depth (crop "
                               f"{protocol.crop or 'none'}, {protocol.min_depth_m:g}-"
                               f"{protocol.max_depth_m:g} m); report: {self.report_path}")

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _create_trigger_service(self) -> None:
        try:
            from std_srvs.srv import Trigger
        except ImportError:
            return  # pip installs may lack std_srvs: the ~/write_report topic still works

        def trigger(_request, response):
            self.write_report()
            response.success = True
            response.message = f"{self.evaluator.frames} frames -> {self.report_path}"
            return response

        self.create_service(Trigger, "~/write_report", trigger)

    def _on_depth(self, msg: Image) -> None:
        self._add(msg, "depth", self.evaluator.add_prediction)

    def _on_groundtruth(self, msg: Image) -> None:
        self._add(msg, "groundtruth", self.evaluator.add_groundtruth)

    def _add(self, msg: Image, what: str, add) -> None:
        self._last_message = time.monotonic()
        try:
            depth = depth_image_metres(msg)
            add(Time.from_msg(msg.header.stamp).nanoseconds, depth)
        except (ConversionError, ValueError) as exc:
            self._warner.warn(what, f"skipping a {what} image: {exc}")

    def _check_idle(self) -> None:
        idle = time.monotonic() - self._last_message
        frames = self.evaluator.frames
        if idle >= float(self._param("idle_timeout_s")) and frames and (
                frames != self._written_frames):
            self.get_logger().info(f"no depth for {idle:.1f} s: writing the report")
            self.write_report()

    def write_report(self) -> None:
        """Write the JSON (and PNG) report and log the table."""
        try:
            self.evaluator.write_report(self.report_path, self.png_path)
        except OSError as exc:
            rclpy.logging.get_logger(f"{NODE_NAME}_report").error(
                f"cannot write {self.report_path}: {exc}")
            return
        self._written_frames = self.evaluator.frames
        self.reports_written += 1
        summary = self.evaluator.summary()
        unmatched = summary["unmatched"]
        # After Ctrl-C the context is shut down and the node's logger cannot reach /rosout
        # (rclpy then drops the line): the final table goes to a console-only logger.
        logger = (self.get_logger() if self.context.ok()
                  else rclpy.logging.get_logger(f"{NODE_NAME}_report"))
        logger.info(
            "\n".join([f"wrote {self.report_path}", *self.evaluator.table(),
                       f"unpaired: {unmatched['groundtruth']} ground truth (frames without "
                       f"depth), {unmatched['predictions']} depth images"]))

    def finish(self) -> None:
        """Write the final report."""
        self.write_report()

    def destroy_node(self) -> None:
        """Write the final report, then destroy the node."""
        self.finish()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console-script entry point: ``depth_eval_node --ros-args -r depth:=... ``."""
    return run_node(DepthEvalNode, NODE_NAME, args, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
