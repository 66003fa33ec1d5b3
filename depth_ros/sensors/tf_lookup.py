"""LiDAR → camera extrinsics from TF, by the messages' frame ids (ROS-free).

The node hands over a ``tf2_ros.Buffer`` fed by a ``TransformListener``; anything with its
``lookup_transform(target_frame, source_frame, time, timeout)`` works, so this logic is tested
with a stand-in buffer where tf2_ros is not installed. tf2's convention: the transform looked
up with target = the camera's optical frame and source = the cloud's frame maps LiDAR points
into the camera frame, the 4×4 the projection needs.

Policy (the transform is a rig's mounting, published on ``/tf_static``):

* Looked up at the latest time, not at each cloud's stamp: a static transform holds at every
  time, and asking at a stamp fails (extrapolation) on a chain through ``/tf`` until the data
  covers it.
* Cached once found, per (camera frame, LiDAR frame): a moving sensor head (a LiDAR on a
  pan unit) is outside what this node supports.
* Never blocking (timeout 0): the lookup runs in a subscription callback, and a blocking wait
  there would starve the listener that fills the buffer on the same executor. Until the
  transform is there, the caller drops the cloud (never projects with a guessed transform)
  and tries again with the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from depth_ros.sensors.extrinsics import ExtrinsicsError, validate_transform


class TransformBuffer(Protocol):
    """What is used of ``tf2_ros.Buffer``."""

    def lookup_transform(self, target_frame: str, source_frame: str, time: Any,
                         timeout: Any) -> Any:
        """The TransformStamped mapping source-frame points into the target frame."""


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3×3 rotation of an (x, y, z, w) quaternion, normalised first (TF publishers round).

    Raises ExtrinsicsError for a zero or non-finite quaternion (no rotation to normalise).
    """
    q = np.array([x, y, z, w], dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or norm < 1e-9:
        raise ExtrinsicsError(f"quaternion ({x:g}, {y:g}, {z:g}, {w:g}) is not a rotation")
    x, y, z, w = q / norm
    return np.array([
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
        [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
        [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
    ])


def transform_to_matrix(transform: Any) -> np.ndarray:
    """The 4×4 of a geometry_msgs ``Transform`` or ``TransformStamped`` (or anything with
    ``translation.x/y/z`` and ``rotation.x/y/z/w``), validated."""
    transform = getattr(transform, "transform", transform)
    t, r = transform.translation, transform.rotation
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(r.x, r.y, r.z, r.w)
    matrix[:3, 3] = [t.x, t.y, t.z]
    return validate_transform(matrix, what="the TF transform")


@dataclass(frozen=True)
class TfLookup:
    """The outcome of one lookup: the matrix, or why there is none; ``first`` is True the
    one time a pair of frames is found (for the caller to log it)."""

    matrix: np.ndarray | None
    error: str = ""
    first: bool = False


@dataclass
class TfExtrinsics:
    """LiDAR → camera transforms from a TF buffer by frame ids, cached once found.

    Args:
        buffer: a ``tf2_ros.Buffer`` or anything with its ``lookup_transform``.
        time: what the buffer takes as "the latest" (``rclpy.time.Time()``).
        timeout: what it takes as "do not wait" (``rclpy.duration.Duration()``).
        errors: the exceptions a failed lookup raises (``tf2_ros.TransformException``);
            anything else is a bug and propagates.
    """

    buffer: TransformBuffer
    time: Any
    timeout: Any
    errors: tuple[type[BaseException], ...]
    attempts: int = field(default=0, init=False)
    _found: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, init=False)

    def lookup(self, camera_frame: str, lidar_frame: str) -> TfLookup:
        """The transform mapping ``lidar_frame`` points into ``camera_frame``."""
        key = (camera_frame, lidar_frame)
        if key in self._found:
            return TfLookup(self._found[key])
        if not camera_frame or not lidar_frame:
            return TfLookup(None, f"empty frame_id (camera {camera_frame!r}, LiDAR "
                                  f"{lidar_frame!r}): TF cannot place the cloud")
        if camera_frame == lidar_frame:
            matrix = np.eye(4)  # as tf2 answers: the cloud is already in the camera frame
        else:
            self.attempts += 1
            try:
                msg = self.buffer.lookup_transform(camera_frame, lidar_frame, self.time,
                                                   self.timeout)
            except self.errors as exc:
                return TfLookup(None, f"{type(exc).__name__}: {exc}")
            try:
                matrix = transform_to_matrix(msg)
            except ExtrinsicsError as exc:  # a broken publisher: not cached, tried again
                return TfLookup(None, str(exc))
        self._found[key] = matrix
        return TfLookup(matrix, first=True)


def describe_transform(matrix: np.ndarray) -> str:
    """Translation (m) and roll/pitch/yaw (degrees, fixed axes x-y-z) of a 4×4, for a log
    line a user can compare with ``ros2 run tf2_ros tf2_echo``."""
    r = np.asarray(matrix)[:3, :3]
    pitch = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    if abs(r[2, 0]) < 1.0 - 1e-9:
        roll, yaw = math.atan2(r[2, 1], r[2, 2]), math.atan2(r[1, 0], r[0, 0])
    else:  # gimbal lock: yaw folded into roll
        roll, yaw = math.atan2(-r[1, 2], r[1, 1]), 0.0
    t = np.asarray(matrix)[:3, 3]
    rpy = np.degrees([roll, pitch, yaw])
    return (f"translation [{t[0]:.4f}, {t[1]:.4f}, {t[2]:.4f}] m, rpy "
            f"[{rpy[0]:.2f}, {rpy[1]:.2f}, {rpy[2]:.2f}] deg")
