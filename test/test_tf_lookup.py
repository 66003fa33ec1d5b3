"""LiDAR → camera extrinsics from TF without tf2_ros: quaternion → matrix against known
rotations (KITTI's velodyne → camera), and the lookup policy against a stand-in buffer with
tf2_ros.Buffer's ``lookup_transform(target, source, time, timeout)``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3

from depth_ros.sensors.extrinsics import (
    BODY_TO_OPTICAL,
    ExtrinsicsError,
    explicit_extrinsics,
    load_extrinsics,
    transform_points,
)
from depth_ros.sensors.tf_lookup import (
    TfExtrinsics,
    describe_transform,
    quaternion_to_matrix,
    transform_to_matrix,
)

# KITTI raw 2011_09_26 calib_velo_to_cam.txt (velodyne → camera 00), as the dataset ships it.
KITTI_R = np.array([[7.533745e-03, -9.999714e-01, -6.166020e-04],
                    [1.480249e-02, 7.280733e-04, -9.998902e-01],
                    [9.998621e-01, 7.523790e-03, 1.480755e-02]])
KITTI_T = np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01])


def _quaternion_of(r: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix by the trace method (w the largest term here), as a
    TF publisher would compute it: independent of the code under test."""
    w = math.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2.0
    return ((r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w),
            (r[1, 0] - r[0, 1]) / (4 * w), w)


def _msg(r: np.ndarray, t, target: str = "camera_optical", source: str = "velodyne",
         quaternion=None) -> TransformStamped:
    x, y, z, w = quaternion if quaternion is not None else _quaternion_of(r)
    msg = TransformStamped(child_frame_id=source, transform=Transform(
        translation=Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))))
    msg.header.frame_id = target
    return msg


@pytest.mark.parametrize("quaternion, matrix", [
    ((0.0, 0.0, 0.0, 1.0), np.eye(3)),
    ((0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)),  # 90° about z
     [[0, -1, 0], [1, 0, 0], [0, 0, 1]]),
    ((1.0, 0.0, 0.0, 0.0), np.diag([1.0, -1.0, -1.0])),  # 180° about x
    # REP 103 body axes → optical axes, the node's default; published as (0.5, -0.5, 0.5, 0.5)
    ((0.5, -0.5, 0.5, 0.5), BODY_TO_OPTICAL[:3, :3]),
    ((1.0, -1.0, 1.0, 1.0), BODY_TO_OPTICAL[:3, :3]),  # not normalised: normalised first
])
def test_quaternion_to_matrix_gives_known_rotations(quaternion, matrix):
    np.testing.assert_allclose(quaternion_to_matrix(*quaternion), matrix, atol=1e-12)


def test_kitti_velodyne_to_camera_through_a_transform_message():
    q = _quaternion_of(KITTI_R)
    # trace 0.0231: a rotation of ~120° (LiDAR x forward, camera z forward), w = cos 60°
    assert q[3] == pytest.approx(0.5057, abs=1e-4)
    transform = transform_to_matrix(_msg(KITTI_R, KITTI_T))
    # The calibration holds 7 digits, so its rotation is orthonormal to ~1e-6 only.
    np.testing.assert_allclose(transform[:3, :3], KITTI_R, atol=2e-6)
    np.testing.assert_allclose(transform[:3, 3], KITTI_T)
    np.testing.assert_array_equal(transform[3], [0, 0, 0, 1])
    # A return 10 m ahead of the LiDAR is 9.73 m in front of the camera, 7 cm right, 7 cm down.
    (point,) = transform_points(np.array([[10.0, 0.0, 0.0]]), transform)
    np.testing.assert_allclose(point, [0.0713, 0.0717, 9.7268], atol=1e-4)
    # The same from the bare Transform (no header), as the lookup's .transform.
    np.testing.assert_array_equal(transform_to_matrix(_msg(KITTI_R, KITTI_T).transform),
                                  transform)


@pytest.mark.parametrize("quaternion", [(0.0, 0.0, 0.0, 0.0), (math.nan, 0.0, 0.0, 1.0)])
def test_a_quaternion_that_is_no_rotation_is_refused(quaternion):
    with pytest.raises(ExtrinsicsError, match="not a rotation"):
        transform_to_matrix(_msg(np.eye(3), [0, 0, 0], quaternion=quaternion))


def test_describe_transform_reads_like_tf2_echo():
    assert describe_transform(BODY_TO_OPTICAL) == (
        "translation [0.0000, 0.0000, 0.0000] m, rpy [90.00, -90.00, 0.00] deg")
    text = describe_transform(transform_to_matrix(_msg(KITTI_R, KITTI_T)))
    assert text.startswith("translation [-0.0041, -0.0763, -0.2718] m, rpy [")


class TransformError(Exception):
    """What the stand-in raises, as tf2_ros raises TransformException subclasses."""


class StandInBuffer:
    """tf2_ros.Buffer's lookup_transform over a dict of published transforms; records calls."""

    def __init__(self) -> None:
        self.published: dict[tuple[str, str], TransformStamped] = {}
        self.calls: list[tuple] = []

    def lookup_transform(self, target_frame, source_frame, time, timeout):
        self.calls.append((target_frame, source_frame, time, timeout))
        if (target_frame, source_frame) not in self.published:
            raise TransformError(f'"{target_frame}" passed to lookupTransform argument '
                                 f'target_frame does not exist or is not connected to '
                                 f'"{source_frame}"')
        return self.published[(target_frame, source_frame)]


LATEST, NO_WAIT = object(), object()  # what rclpy's Time() and Duration() stand for


@pytest.fixture
def buffer() -> StandInBuffer:
    return StandInBuffer()


@pytest.fixture
def tf(buffer) -> TfExtrinsics:
    return TfExtrinsics(buffer, LATEST, NO_WAIT, (TransformError,))


def test_found_at_once_is_cached_and_reported_once(buffer, tf):
    buffer.published[("camera_optical", "velodyne")] = _msg(KITTI_R, KITTI_T)
    first = tf.lookup("camera_optical", "velodyne")
    assert first.first and first.error == ""
    np.testing.assert_allclose(first.matrix[:3, 3], KITTI_T)
    # target = the camera frame, source = the cloud's, at the latest time, without waiting
    assert buffer.calls == [("camera_optical", "velodyne", LATEST, NO_WAIT)]
    for _ in range(5):
        again = tf.lookup("camera_optical", "velodyne")
        assert not again.first and again.matrix is first.matrix
    assert len(buffer.calls) == 1  # a static transform: never asked again


def test_not_yet_available_is_retried_with_each_cloud_until_it_is(buffer, tf):
    for tries in range(1, 4):  # /tf_static not received yet
        result = tf.lookup("camera_optical", "velodyne")
        assert result.matrix is None and not result.first
        assert result.error.startswith("TransformError: ") and "velodyne" in result.error
        assert tf.attempts == tries
    buffer.published[("camera_optical", "velodyne")] = _msg(KITTI_R, KITTI_T)
    result = tf.lookup("camera_optical", "velodyne")
    assert result.first and result.matrix is not None and tf.attempts == 4
    assert tf.lookup("camera_optical", "velodyne").matrix is result.matrix
    assert tf.attempts == 4


def test_never_available_never_gives_a_transform(buffer, tf):
    results = [tf.lookup("camera_optical", "velodyne") for _ in range(50)]
    assert all(r.matrix is None for r in results) and tf.attempts == 50
    buffer.published[("camera_optical", "lidar_top")] = _msg(KITTI_R, KITTI_T)
    # another frame pair's transform is not this one's
    assert tf.lookup("camera_optical", "velodyne").matrix is None


def test_frames_differ_per_message_each_pair_is_looked_up_and_cached(buffer, tf):
    other_r = quaternion_to_matrix(0.0, 0.0, math.sin(0.1), math.cos(0.1))
    buffer.published[("camera_optical", "velodyne")] = _msg(KITTI_R, KITTI_T)
    buffer.published[("camera_optical", "lidar_rear")] = _msg(other_r, [0.0, 0.0, -1.0])
    front = tf.lookup("camera_optical", "velodyne").matrix
    rear = tf.lookup("camera_optical", "lidar_rear").matrix
    np.testing.assert_allclose(rear[:3, :3], other_r, atol=1e-12)
    assert not np.allclose(front, rear)
    assert tf.lookup("camera_optical", "velodyne").matrix is front
    assert len(buffer.calls) == 2
    # a cloud already in the camera frame: the identity, as tf2 answers, without asking
    same = tf.lookup("camera_optical", "camera_optical")
    np.testing.assert_array_equal(same.matrix, np.eye(4))
    assert len(buffer.calls) == 2
    # a message without a frame_id cannot be placed, and the buffer is not asked
    for camera, lidar in [("", "velodyne"), ("camera_optical", "")]:
        result = tf.lookup(camera, lidar)
        assert result.matrix is None and "empty frame_id" in result.error
    assert len(buffer.calls) == 2


def test_a_broken_transform_is_not_cached_and_a_fixed_one_is_used(buffer, tf):
    buffer.published[("camera_optical", "velodyne")] = _msg(
        np.eye(3), [0, 0, 0], quaternion=(0.0, 0.0, 0.0, 0.0))
    result = tf.lookup("camera_optical", "velodyne")
    assert result.matrix is None and "not a rotation" in result.error
    buffer.published[("camera_optical", "velodyne")] = _msg(KITTI_R, KITTI_T)
    assert tf.lookup("camera_optical", "velodyne").first


def test_errors_other_than_the_buffers_own_propagate():
    class Broken:
        def lookup_transform(self, target_frame, source_frame, time, timeout):
            raise TypeError("lookup_transform() got an unexpected keyword")

    tf = TfExtrinsics(Broken(), LATEST, NO_WAIT, (TransformError,))
    with pytest.raises(TypeError):
        tf.lookup("camera_optical", "velodyne")


def test_only_explicit_parameters_keep_tf_from_being_asked(tmp_path):
    assert explicit_extrinsics(BODY_TO_OPTICAL.ravel(), "") is None  # the default: ask TF
    matrix = BODY_TO_OPTICAL.copy()
    matrix[:3, 3] = [0.1, 0.0, -0.2]
    transform, source = explicit_extrinsics(matrix.ravel(), "")
    np.testing.assert_array_equal(transform, matrix)
    assert source == "the lidar_to_camera parameter"
    with pytest.raises(ExtrinsicsError, match="16 numbers"):  # bad values fail either way
        explicit_extrinsics([1.0, 2.0, 3.0], "")
    transform, source = load_extrinsics(BODY_TO_OPTICAL.ravel(), "")
    np.testing.assert_array_equal(transform, BODY_TO_OPTICAL)
    assert "axes-only default" in source and "TF" in source
