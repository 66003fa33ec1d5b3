"""fusion_depth_node: camera Image + CameraInfo + LiDAR PointCloud2 in; the same outputs as
mono_depth_node.

Clouds of any layout are read (x, y, z as float32 or float64 among any other fields,
organised or not; NaN/inf points dropped), paired with images by nearest stamp within
``sync_slop_s`` (``depth_ros.ros.sync``: newest pair only, unpaired inputs counted and
warned about), moved into the camera's optical frame by the extrinsics (``lidar_to_camera``
or a KITTI ``calibration_path``) and projected with the running camera's intrinsics into a
z-buffered sparse depth image. A fusion model takes it as input; a relative model is fitted
to it (scale and shift per frame) and so becomes metric; a mono metric model ignores it.

While no cloud has arrived for ``lidar_timeout_s`` the node serves images alone (a fusion
model degrades to mono; a relative model's output is relative and ``depth/info`` says so).
"""

from __future__ import annotations

import sys
import time
from typing import NoReturn

import numpy as np
from sensor_msgs.msg import Image, PointCloud2

from depth_ros.geometry import PinholeCamera
from depth_ros.inference import ModelLoadError
from depth_ros.ros.conversions import ConversionError, pointcloud2_to_array
from depth_ros.ros.depth_node_base import (
    BASE_PARAMETERS,
    BASE_PUBLISHED_TOPICS,
    DepthJob,
    DepthNodeBase,
)
from depth_ros.ros.diagnostics import DepthReport
from depth_ros.ros.entry import end_process, run_node
from depth_ros.ros.extrinsics import (
    BODY_TO_OPTICAL,
    finite_points,
    load_extrinsics,
    sparse_depth_image,
)
from depth_ros.ros.sync import NearestStampSync, SyncCounts
from depth_ros.weights import DEFAULT_FUSION_MODEL

NODE_NAME = "fusion_depth_node"

# Every parameter with its default; config/fusion_depth.yaml is checked against this table.
PARAMETERS: dict[str, object] = {
    **BASE_PARAMETERS,
    "sync_slop_s": 0.05,  # largest |image stamp - cloud stamp| of a pair
    "lidar_timeout_s": 1.0,  # no cloud for this long: serve images alone; 0 = always wait
    # LiDAR -> camera optical frame, 4x4 row-major; default: axes only (REP 103 body frame)
    "lidar_to_camera": [float(v) for v in BODY_TO_OPTICAL.ravel()],
    "calibration_path": "",  # KITTI calib_velo_to_cam.txt; wins over lidar_to_camera
    "cam_to_cam_path": "",  # KITTI calib_cam_to_cam.txt; empty: beside calibration_path
    "calibration_camera": 2,  # which rectified KITTI camera the images come from
}

SUBSCRIBED_TOPICS: tuple[str, ...] = ("image", "camera_info", "lidar/points")
PUBLISHED_TOPICS: tuple[str, ...] = BASE_PUBLISHED_TOPICS


def _stamp_ns(msg: Image | PointCloud2) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class FusionDepthNode(DepthNodeBase):
    """Camera + LiDAR depth node; see the module docstring."""

    # Pairing is reported as unpaired counts; serving without LiDAR as the output's kind.
    NOT_INPUT_PROBLEMS = frozenset({"unpaired_image", "unpaired_cloud", "no_lidar"})

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, PARAMETERS, DEFAULT_FUSION_MODEL, **kwargs)

    def setup_inputs(self) -> None:
        """Load the extrinsics, set up pairing, subscribe to ``image`` and ``lidar/points``."""
        p = self.param
        self.lidar_to_camera, source = load_extrinsics(
            p("lidar_to_camera"), p("calibration_path"), p("cam_to_cam_path"),
            int(p("calibration_camera")))
        slop = float(p("sync_slop_s"))
        self.lidar_timeout_s = float(p("lidar_timeout_s"))
        if self.lidar_timeout_s < 0:
            raise ValueError(f"lidar_timeout_s must be >= 0, got {self.lidar_timeout_s}")
        self.sync = NearestStampSync(slop_s=slop)
        self._last_cloud_time: float | None = None
        # The grace period starts with the first image, not with the node: a node started
        # long before its sensors must still wait for the first cloud.
        self._first_image_time: float | None = None
        meta = self.estimator.metadata
        if meta.kind == "mono" and meta.output == "metric":
            self.get_logger().warning("a mono metric model does not use the LiDAR; give a "
                                      "fusion or relative model to fusion_depth_node")
        self.get_logger().info(f"extrinsics from {source}; pairing within {slop:g} s")
        self.create_subscription(Image, "image", self._on_image, self.input_qos)
        self.create_subscription(PointCloud2, "lidar/points", self._on_cloud, self.input_qos)

    @property
    def sync_counts(self) -> SyncCounts:
        """The synchroniser's counts (pairs, unpaired and out-of-order inputs)."""
        return self.sync.counts

    def lidar_active(self) -> bool:
        """Whether a cloud arrived within lidar_timeout_s (or the first image is younger)."""
        if self.lidar_timeout_s == 0:
            return True
        now = time.monotonic()
        if self._first_image_time is None:
            self._first_image_time = now
        last = self._last_cloud_time if self._last_cloud_time is not None else (
            self._first_image_time)
        return now - last <= self.lidar_timeout_s

    def _on_image(self, msg: Image) -> None:
        self.stats.add("image")
        job = DepthJob(msg, self.latest_camera_info(), time.monotonic())
        if not self.lidar_active():
            self.warner.warn("no_lidar", f"no valid cloud on 'lidar/points' for "
                             f"{self.lidar_timeout_s:g} s: serving images without LiDAR")
            self.submit(job)
            return
        before = SyncCounts(**self.sync.counts.as_dict())
        pair = self.sync.add_image(_stamp_ns(msg), job)
        self._account(before, msg)
        if pair is not None:
            self._submit_pair(pair.image, pair.cloud)

    def _on_cloud(self, msg: PointCloud2) -> None:
        self.stats.add("cloud")
        try:
            points = finite_points(pointcloud2_to_array(msg, ("x", "y", "z")))
        except ConversionError as exc:
            self.warner.warn("bad_cloud", f"skipping cloud: {exc}")
            return
        if len(points) == 0:
            self.warner.warn("empty_cloud", "skipping cloud: no finite x/y/z point in it "
                             f"({msg.width}x{msg.height} points)")
            return
        self._last_cloud_time = time.monotonic()
        before = SyncCounts(**self.sync.counts.as_dict())
        pair = self.sync.add_cloud(_stamp_ns(msg), points)
        self._account(before, msg)
        if pair is not None:
            self._submit_pair(pair.image, pair.cloud)

    def _submit_pair(self, job: DepthJob, points: np.ndarray) -> None:
        job.points = points
        job.received = time.monotonic()  # latency counts from the completed pair
        self.submit(job)

    def _account(self, before: SyncCounts, msg: Image | PointCloud2) -> None:
        """Turn what the last sync call gave up into stats and rate-limited warnings."""
        after = self.sync.counts
        slop = self.sync.slop_s
        stamp = _stamp_ns(msg) / 1e9
        for kind, new in (("image", after.unpaired_images - before.unpaired_images),
                          ("cloud", after.unpaired_clouds - before.unpaired_clouds)):
            if new > 0:
                self.stats.add(f"unpaired_{kind}", new)
                other = "cloud" if kind == "image" else "image"
                self.warner.warn(f"unpaired_{kind}",
                                 f"{new} {kind}(s) found no {other} within sync_slop_s="
                                 f"{slop:g} s (latest {type(msg).__name__} stamp "
                                 f"{stamp:.3f} s); total unpaired {kind}s: "
                                 f"{getattr(after, f'unpaired_{kind}s')}")
        for kind in ("image", "cloud"):
            if getattr(after, f"out_of_order_{kind}s") > getattr(before,
                                                                 f"out_of_order_{kind}s"):
                self.warner.warn(f"out_of_order_{kind}",
                                 f"dropping {kind} stamped {stamp:.3f} s: not newer than the "
                                 f"previous {kind}")
        if after.resets > before.resets:
            self.get_logger().warning(f"stamps jumped back in time (to {stamp:.3f} s): "
                                      "pairing starts afresh")

    def sparse_depth(self, job: DepthJob, camera: PinholeCamera) -> np.ndarray | None:
        """The paired cloud projected into this image (z-buffered), or None without one."""
        if job.points is None:
            return None
        sparse = sparse_depth_image(job.points, self.lidar_to_camera, camera.K, camera.width,
                                    camera.height)
        if not (sparse > 0).any():
            self.warner.warn("no_lidar_in_view",
                             f"none of {len(job.points)} LiDAR points lands in the image: "
                             "check lidar_to_camera / calibration_path")
        return sparse

    def report(self) -> DepthReport:
        """The base report with the cloud rate and pairing counts."""
        report = super().report()
        counts = self.sync.counts
        report.lidar = True
        report.cloud_rate_hz = self.stats.rate_hz("cloud")
        report.unpaired_images = counts.unpaired_images
        report.unpaired_clouds = counts.unpaired_clouds
        return report


def main(args: list[str] | None = None) -> NoReturn:
    """Console-script entry point: ``fusion_depth_node --ros-args --params-file ...``."""
    end_process(run_node(FusionDepthNode, NODE_NAME, args, (ModelLoadError, ValueError)))


if __name__ == "__main__":
    sys.exit(main())
