"""fusion_depth_node: camera Image + CameraInfo + LiDAR PointCloud2 in; the same outputs as
mono_depth_node.

Clouds of any layout are read (x, y, z as float32 or float64 among any other fields,
organised or not; NaN/inf points dropped), paired with images by nearest stamp within
``sync_slop_s`` (``depth_ros.sensors.sync``: newest pair only, unpaired inputs counted and
warned about; a single stray stamp is held aside instead of moving the time line, a real
jump is followed once the next message agrees), moved into the camera's optical frame by the
extrinsics and projected with the running camera's intrinsics into a z-buffered sparse depth
image.

Extrinsics, first found: a KITTI ``calibration_path``; ``lidar_to_camera`` when it is not
the axes-only default; TF (``use_tf``, where ``tf2_ros`` is importable), from each cloud's
``frame_id`` to the camera's (the newest image's, else CameraInfo's), cached once found, the
cloud dropped with a rate-limited warning until then (``depth_ros.sensors.tf_lookup``); else the
axes-only default, with a warning. The node says at start which one it uses.

A fusion model takes the sparse depth as input (and publishes its confidence on
``depth/confidence``; ``min_confidence`` drops points from the cloud); a relative model is
fitted to it (scale and shift per frame) and so becomes metric; a mono metric model ignores
it. ``model_path: classical`` completes the LiDAR with IP-Basic, no network (no GPU needed).

While no cloud has arrived for ``lidar_timeout_s`` the node serves images alone (a fusion
model degrades to mono; a relative model's output is relative and ``depth/info`` says so).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import Image, PointCloud2

from depth_ros.geometry import PinholeCamera
from depth_ros.ros.conversions import ConversionError, pointcloud2_to_array
from depth_ros.ros.depth_node_base import (
    BASE_PARAMETER_SPECS,
    BASE_PUBLISHED_TOPICS,
    DepthJob,
    DepthNodeBase,
)
from depth_ros.ros.diagnostics import DepthReport
from depth_ros.ros.entry import run_node
from depth_ros.ros.parameters import ParamSpec, defaults, table
from depth_ros.sensors.extrinsics import (
    AXES_ONLY_SOURCE,
    BODY_TO_OPTICAL,
    explicit_extrinsics,
    finite_points,
    sparse_depth_image,
)
from depth_ros.sensors.sync import NearestStampSync, SyncCounts
from depth_ros.sensors.tf_lookup import TfExtrinsics, describe_transform
from depth_ros.weights import DEFAULT_FUSION_MODEL

NODE_NAME = "fusion_depth_node"

# Every parameter, declared with descriptors from this table; config/fusion_depth.yaml is
# checked against PARAMETERS (the defaults).
PARAMETER_SPECS: tuple[ParamSpec, ...] = table(BASE_PARAMETER_SPECS, (
    ParamSpec("sync_slop_s", 0.05, "largest |image stamp - cloud stamp| of a pair, seconds",
              minimum=0.0, maximum=10.0),
    # A larger step, or a step back, is followed once the next message agrees.
    ParamSpec("sync_max_gap_s", 1.0, "largest step of a stream's stamps taken as the same time "
              "line, seconds (above the slowest sensor's period; > sync_slop_s)",
              minimum=0.0, above_minimum=True, maximum=3600.0),
    ParamSpec("lidar_timeout_s", 1.0, "no cloud for this long: serve images alone; 0 = always "
              "wait for a cloud", minimum=0.0, maximum=3600.0),
    ParamSpec("lidar_to_camera", [float(v) for v in BODY_TO_OPTICAL.ravel()],
              "LiDAR -> camera optical frame, 4x4 row-major; default: axes only (REP 103 body "
              "frame)", length=16, allowed="16 numbers (a 4x4 row-major matrix)"),
    ParamSpec("calibration_path", "", "KITTI calib_velo_to_cam.txt; wins over lidar_to_camera",
              allowed="a file path, or empty"),
    ParamSpec("cam_to_cam_path", "", "KITTI calib_cam_to_cam.txt; empty: beside "
              "calibration_path", allowed="a file path, or empty"),
    ParamSpec("calibration_camera", 2, "which rectified KITTI camera the images come from",
              minimum=0, maximum=3),
    ParamSpec("use_tf", True, "neither calibration_path nor lidar_to_camera given: LiDAR -> "
              "camera from TF (tf2_ros)"),
))
PARAMETERS: dict[str, object] = defaults(PARAMETER_SPECS)

SUBSCRIBED_TOPICS: tuple[str, ...] = ("image", "camera_info", "lidar/points")
PUBLISHED_TOPICS: tuple[str, ...] = BASE_PUBLISHED_TOPICS


def _stamp_ns(msg: Image | PointCloud2) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


@dataclass
class FusionJob(DepthJob):
    """A DepthJob with the transform of its cloud into the image's frame."""

    lidar_to_camera: np.ndarray | None = None


def tf_extrinsics(node) -> TfExtrinsics | None:
    """LiDAR → camera lookups through tf2_ros for ``node``, or None where tf2_ros is not
    importable (pip installs; every ROS install has it)."""
    try:
        import tf2_ros
        from rclpy.duration import Duration
        from rclpy.time import Time
    except ImportError:
        return None
    buffer = tf2_ros.Buffer()
    # Kept on the node: the listener's subscriptions (/tf, /tf_static) live as long as it.
    node.tf_listener = tf2_ros.TransformListener(buffer, node)
    return TfExtrinsics(buffer, Time(), Duration(), (tf2_ros.TransformException,))


class FusionDepthNode(DepthNodeBase):
    """Camera + LiDAR depth node; see the module docstring."""

    # Pairing is reported as unpaired counts; serving without LiDAR as the output's kind; a
    # time jump is a bag played again or a clock reset, not a bad message.
    NOT_INPUT_PROBLEMS = frozenset({"unpaired_image", "unpaired_cloud", "no_lidar",
                                    "time_jump"})

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, PARAMETER_SPECS, DEFAULT_FUSION_MODEL, **kwargs)

    def setup_inputs(self) -> None:
        """Load the extrinsics, set up pairing, subscribe to ``image`` and ``lidar/points``."""
        p = self.param
        self._setup_extrinsics()
        slop = float(p("sync_slop_s"))
        self.lidar_timeout_s = float(p("lidar_timeout_s"))
        try:
            self.sync = NearestStampSync(slop_s=slop, max_gap_s=float(p("sync_max_gap_s")))
        except ValueError as exc:  # name the parameters, not the class's arguments
            raise ValueError(f"sync_slop_s={slop:g}, sync_max_gap_s="
                             f"{p('sync_max_gap_s')}: {exc}") from exc
        self._camera_frame = ""
        self._last_cloud_time: float | None = None
        # The grace period starts with the first image, not with the node: a node started
        # long before its sensors must still wait for the first cloud.
        self._first_image_time: float | None = None
        meta = self.estimator.metadata
        if meta.kind == "mono" and meta.output == "metric":
            self.get_logger().warning("a mono metric model does not use the LiDAR; give a "
                                      "fusion or relative model to fusion_depth_node")
        self.get_logger().info(f"pairing within {slop:g} s")
        self.create_subscription(Image, "image", self._on_image, self.input_qos)
        self.create_subscription(PointCloud2, "lidar/points", self._on_cloud, self.input_qos)

    def _setup_extrinsics(self) -> None:
        """Choose where the LiDAR → camera transform comes from and say so."""
        p = self.param
        self.tf_extrinsics: TfExtrinsics | None = None
        self.lidar_to_camera: np.ndarray | None = None
        explicit = explicit_extrinsics(p("lidar_to_camera"), p("calibration_path"),
                                       p("cam_to_cam_path"), int(p("calibration_camera")))
        if explicit is not None:
            self.lidar_to_camera, source = explicit
            self.get_logger().info(f"extrinsics from {source}")
            return
        if p("use_tf"):
            self.tf_extrinsics = tf_extrinsics(self)
        if self.tf_extrinsics is not None:
            self.get_logger().info(
                "extrinsics from TF: each cloud's frame_id to the camera's (the image's "
                "frame_id), looked up once found; clouds are dropped until TF has it")
            return
        why = "use_tf is false" if not p("use_tf") else "tf2_ros is not importable"
        self.lidar_to_camera = BODY_TO_OPTICAL.copy()
        self.get_logger().warning(f"extrinsics: neither calibration_path nor lidar_to_camera "
                                  f"is set and {why}: using {AXES_ONLY_SOURCE}")

    def _lidar_to_camera_for(self, cloud_frame: str) -> np.ndarray | None:
        """The transform of a cloud in ``cloud_frame`` into the camera, or None (warned)
        while TF does not have it."""
        if self.tf_extrinsics is None:
            return self.lidar_to_camera
        camera_frame = self._camera_frame
        if not camera_frame and (info := self.latest_camera_info()) is not None:
            camera_frame = info.header.frame_id
        if not camera_frame:
            self.warner.warn("no_tf", "dropping cloud: no image or camera_info yet to name "
                             "the camera frame the TF lookup needs")
            return None
        found = self.tf_extrinsics.lookup(camera_frame, cloud_frame)
        if found.matrix is None:
            self.warner.warn("no_tf", f"dropping cloud: no transform from {cloud_frame!r} to "
                             f"{camera_frame!r} in TF yet ({found.error}); publish it (e.g. "
                             "static_transform_publisher) or set calibration_path or "
                             "lidar_to_camera")
            return None
        if found.first:
            self.get_logger().info(f"extrinsics from TF {cloud_frame!r} -> {camera_frame!r}: "
                                   f"{describe_transform(found.matrix)}")
        return found.matrix

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
        self._camera_frame = msg.header.frame_id
        job = FusionJob(msg, self.latest_camera_info(), time.monotonic())
        if not self.lidar_active():
            self.warner.warn("no_lidar", f"no valid cloud on 'lidar/points' for "
                             f"{self.lidar_timeout_s:g} s: serving images without LiDAR")
            self.submit(job)
            return
        self._offer("image", _stamp_ns(msg), job)

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
        transform = self._lidar_to_camera_for(msg.header.frame_id)
        if transform is None:
            return
        self._last_cloud_time = time.monotonic()
        self._offer("cloud", _stamp_ns(msg), (points, transform))

    def _offer(self, kind: str, stamp: int, item: object) -> None:
        """Hand an input to the synchroniser, report what it gave up, submit its pair."""
        before = SyncCounts(**self.sync.counts.as_dict())
        newest = self.sync.newest_image_ns if kind == "image" else self.sync.newest_cloud_ns
        add = self.sync.add_image if kind == "image" else self.sync.add_cloud
        pair = add(stamp, item)
        self._account(before, kind, stamp, newest)
        if pair is not None:
            self._submit_pair(pair.image, *pair.cloud)

    def _submit_pair(self, job: FusionJob, points: np.ndarray, transform: np.ndarray) -> None:
        job.points = points
        job.lidar_to_camera = transform
        job.received = time.monotonic()  # latency counts from the completed pair
        self.submit(job)

    def _account(self, before: SyncCounts, kind: str, stamp_ns: int,
                 newest_ns: int | None) -> None:
        """Turn what the last sync call held aside, followed or gave up into stats and
        rate-limited warnings (``newest_ns``: the stream's time line before the call)."""
        after = self.sync.counts
        slop = self.sync.slop_s
        stamp = stamp_ns / 1e9
        for lost, new in (("image", after.unpaired_images - before.unpaired_images),
                          ("cloud", after.unpaired_clouds - before.unpaired_clouds)):
            if new > 0:
                self.stats.add(f"unpaired_{lost}", new)
                other = "cloud" if lost == "image" else "image"
                self.warner.warn(f"unpaired_{lost}",
                                 f"{new} {lost}(s) found no {other} within sync_slop_s="
                                 f"{slop:g} s (latest {kind} stamp {stamp:.3f} s); total "
                                 f"unpaired {lost}s: {getattr(after, f'unpaired_{lost}s')}")
        step = (stamp_ns - newest_ns) / 1e9 if newest_ns is not None else 0.0
        for held, where in (("out_of_order", f"{-step:.3f} s behind"),
                            ("ahead", f"{step:.3f} s ahead of")):
            name = f"{held}_{kind}s"
            if getattr(after, name) > getattr(before, name):
                self.warner.warn(f"{held}_{kind}",
                                 f"{kind} stamped {stamp:.3f} s is {where} the previous "
                                 f"{kind}: held aside; the next {kind} tells a stray "
                                 "(dropped) from a jump in time (followed)")
        if after.time_jumps > before.time_jumps:
            self.warner.warn("time_jump", f"{kind} stamps jumped {step:+.3f} s (to "
                             f"{stamp:.3f} s) and the next {kind} agreed: pairing follows "
                             "the new time line")

    def sparse_depth(self, job: DepthJob, camera: PinholeCamera) -> np.ndarray | None:
        """The paired cloud projected into this image (z-buffered), or None without one."""
        if job.points is None or getattr(job, "lidar_to_camera", None) is None:
            return None
        sparse = sparse_depth_image(job.points, job.lidar_to_camera, camera.K, camera.width,
                                    camera.height)
        if not (sparse > 0).any():
            self.warner.warn("no_lidar_in_view",
                             f"none of {len(job.points)} LiDAR points lands in the image: "
                             "check lidar_to_camera / calibration_path / TF")
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


def main(args: list[str] | None = None) -> int:
    """Console-script entry point: ``fusion_depth_node --ros-args --params-file ...``."""
    # ValueError: ExtrinsicsError (a bad matrix or calibration file) is one line too.
    return run_node(FusionDepthNode, NODE_NAME, args, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
