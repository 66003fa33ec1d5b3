"""kitti_drive_publisher: plays a KITTI raw drive's camera as a live camera would.

Publishes ``image`` (rgb8) and ``camera_info`` at ``rate_hz``, stamped with the current time
(``stamp_source: now``, as a live driver does, so that subscribers can measure latency) or with
the drive's own timestamps (``stamp_source: drive``). ``stamp_log_path`` records which frame got
which stamp (one ``index stamp_ns`` line per frame), so outputs can be scored against the drive's
ground truth afterwards; ``wait_for_subscribers`` holds playback until that many subscribers of
``image`` have matched, so that no frame is lost to discovery.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from depth_ros.kitti import KittiDrive, KittiFormatError
from depth_ros.ros.conversions import camera_to_camera_info, numpy_to_image
from depth_ros.ros.entry import run_node
from depth_ros.ros.parameters import (
    ParameterError,
    ParamSpec,
    declare_parameters,
    defaults,
    refuse,
    watch_live_parameters,
)
from depth_ros.ros.qos import make_qos

NODE_NAME = "kitti_drive_publisher"

# Every parameter, declared with descriptors from this table. loop, wait_for_subscribers and
# settle_s are read at each tick (live); the rest at start-up (read-only).
PARAMETER_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("drive_path", "", "the KITTI raw drive directory (required)",
              allowed="a KITTI drive directory (required)"),
    ParamSpec("camera", 2, "which KITTI camera to play", minimum=0, maximum=3),
    ParamSpec("rate_hz", 10.0, "frames per second", minimum=0.0, above_minimum=True,
              maximum=1000.0),
    ParamSpec("loop", False, "start again after the last frame", live=True),
    ParamSpec("frame_id", "camera_02_optical_frame", "frame_id of the published headers"),
    ParamSpec("stamp_source", "now", "now: the current time, like a live driver; drive: the "
              "drive's timestamps.txt", choices=("now", "drive")),
    ParamSpec("reliability", "best_effort", "QoS reliability of the outputs",
              choices=("best_effort", "reliable")),
    ParamSpec("qos_depth", 1, "QoS history depth of the outputs", minimum=1, maximum=1000),
    ParamSpec("stamp_log_path", "", "write 'index stamp_ns' per published frame; empty: none",
              allowed="a file path, or empty"),
    ParamSpec("wait_for_subscribers", 0, "hold playback until this many image subscribers "
              "match", minimum=0, maximum=1000, live=True),
    ParamSpec("settle_s", 1.0, "after subscribers match, time for their side of the match to "
              "finish, seconds", minimum=0.0, maximum=60.0, live=True),
)
PARAMETERS: dict[str, object] = defaults(PARAMETER_SPECS)


class DrivePublisher(Node):
    """Publishes one drive frame per timer tick; ``published`` maps stamps to frame indices."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        values = declare_parameters(self, PARAMETER_SPECS)
        watch_live_parameters(self, PARAMETER_SPECS, lambda _: None)  # read at each tick
        p = values.get
        if not p("drive_path"):
            raise refuse(PARAMETER_SPECS[0], p("drive_path"))
        self.drive = KittiDrive(p("drive_path"), camera=int(p("camera")))
        self.camera = self.drive.camera_model()
        self._drive_stamps = self.drive.timestamps() if p("stamp_source") == "drive" else None
        qos = make_qos(p("reliability"), int(p("qos_depth")))
        self.image_pub = self.create_publisher(Image, "image", qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self.next_index = 0
        self.finished = False
        self.published: dict[int, int] = {}  # stamp in nanoseconds -> frame index
        self._stamp_log = None
        if p("stamp_log_path"):
            try:
                self._stamp_log = open(p("stamp_log_path"), "w")  # closed in destroy_node
            except OSError as exc:
                raise ParameterError(f"parameter stamp_log_path: cannot write "
                                     f"{p('stamp_log_path')!r}: {exc.strerror}") from exc
        self._ready_since: float | None = None
        self._timer = self.create_timer(1.0 / float(p("rate_hz")), self.publish_next)
        self.get_logger().info(f"playing {len(self.drive)} frames of {self.drive.path} at "
                               f"{p('rate_hz'):g} Hz")

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _subscribers_ready(self) -> bool:
        wanted = int(self._param("wait_for_subscribers"))
        if wanted <= 0:
            return True
        if self.image_pub.get_subscription_count() < wanted:
            self._ready_since = None
            return False
        now = time.monotonic()
        if self._ready_since is None:
            self._ready_since = now
            self.get_logger().info(f"{wanted} subscriber(s) matched; starting playback")
        return now - self._ready_since >= float(self._param("settle_s"))

    def publish_next(self) -> None:
        """Publish the next frame (and its CameraInfo with the same header)."""
        if self.next_index == 0 and not self._subscribers_ready():
            return
        if self.next_index >= len(self.drive):
            if not self._param("loop"):
                if not self.finished:
                    self.get_logger().info(f"published all {len(self.drive)} frames")
                self.finished = True
                return
            self.next_index = 0
        index = self.next_index
        self.next_index += 1
        rgb = self.drive.rgb(index)
        if self._drive_stamps is not None:
            stamp = Time(nanoseconds=int(round(self._drive_stamps[index] * 1e9)))
        else:
            stamp = self.get_clock().now()
        header = Header(stamp=stamp.to_msg(), frame_id=self._param("frame_id"))
        self.published[stamp.nanoseconds] = index
        if self._stamp_log is not None:
            self._stamp_log.write(f"{index} {stamp.nanoseconds}\n")
            self._stamp_log.flush()
        self.info_pub.publish(camera_to_camera_info(self.camera, header))
        self.image_pub.publish(numpy_to_image(np.ascontiguousarray(rgb), "rgb8", header))

    def finish(self) -> None:
        """Close the stamp log (idempotent)."""
        if self._stamp_log is not None:
            self._stamp_log.close()
            self._stamp_log = None

    def destroy_node(self) -> None:
        """Close the stamp log, then destroy the node."""
        self.finish()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console-script entry point: ``kitti_drive_publisher --ros-args -p drive_path:=...``."""
    return run_node(DrivePublisher, NODE_NAME, args, (KittiFormatError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
