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
from typing import NoReturn

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from depth_ros.kitti import KittiDrive, KittiFormatError
from depth_ros.ros.conversions import camera_to_camera_info, numpy_to_image
from depth_ros.ros.entry import end_process, run_node
from depth_ros.ros.qos import make_qos

NODE_NAME = "kitti_drive_publisher"

PARAMETERS: dict[str, object] = {
    "drive_path": "",
    "camera": 2,
    "rate_hz": 10.0,
    "loop": False,
    "frame_id": "camera_02_optical_frame",
    "stamp_source": "now",  # now | drive
    "reliability": "best_effort",
    "qos_depth": 1,
    "stamp_log_path": "",
    "wait_for_subscribers": 0,
    "settle_s": 1.0,  # after subscribers match, time for their side of the match to finish
}


class DrivePublisher(Node):
    """Publishes one drive frame per timer tick; ``published`` maps stamps to frame indices."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = self._param
        if not p("drive_path"):
            raise ValueError("parameter 'drive_path' is required (a KITTI drive directory)")
        if p("stamp_source") not in ("now", "drive"):
            raise ValueError(f"stamp_source must be 'now' or 'drive', got {p('stamp_source')!r}")
        if p("rate_hz") <= 0:
            raise ValueError(f"rate_hz must be > 0, got {p('rate_hz')}")
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
            self._stamp_log = open(p("stamp_log_path"), "w")  # closed in destroy_node
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


def main(args: list[str] | None = None) -> NoReturn:
    """Console-script entry point: ``kitti_drive_publisher --ros-args -p drive_path:=...``."""
    end_process(run_node(DrivePublisher, NODE_NAME, args, (KittiFormatError, ValueError)))


if __name__ == "__main__":
    sys.exit(main())
