"""ROS 2 messages built and serialised with ``rosbags`` (no rclpy needed to write a bag).

Messages come from the ROS 2 Humble typestore: the sensor, geometry and tf2 messages used here
are identical in every later distribution, and Humble is the oldest one the bags are for. Byte
buffers (image and cloud data) go into the messages as numpy arrays, so serialising a frame is
a copy, never a loop over pixels or points.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
_T = TYPESTORE.types
Time = _T["builtin_interfaces/msg/Time"]
Header = _T["std_msgs/msg/Header"]
Image = _T["sensor_msgs/msg/Image"]
CameraInfo = _T["sensor_msgs/msg/CameraInfo"]
RegionOfInterest = _T["sensor_msgs/msg/RegionOfInterest"]
PointCloud2 = _T["sensor_msgs/msg/PointCloud2"]
PointField = _T["sensor_msgs/msg/PointField"]
Imu = _T["sensor_msgs/msg/Imu"]
NavSatFix = _T["sensor_msgs/msg/NavSatFix"]
NavSatStatus = _T["sensor_msgs/msg/NavSatStatus"]
Vector3 = _T["geometry_msgs/msg/Vector3"]
Quaternion = _T["geometry_msgs/msg/Quaternion"]
Transform = _T["geometry_msgs/msg/Transform"]
TransformStamped = _T["geometry_msgs/msg/TransformStamped"]
TFMessage = _T["tf2_msgs/msg/TFMessage"]

# x, y, z, intensity as float32: KITTI's .bin layout, 16 bytes a point, copied as it is.
POINT_FIELDS = ("x", "y", "z", "intensity")
POINT_STEP = 16
_ENCODING_CHANNELS = {"rgb8": 3, "mono8": 1, "32FC1": 1}


def to_time(stamp_ns: int) -> Time:
    """A builtin_interfaces/Time from integer nanoseconds."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    """A std_msgs/Header."""
    return Header(stamp=to_time(stamp_ns), frame_id=frame_id)


def serialize(msg: object) -> bytes:
    """CDR bytes of a typestore message, as rosbag2 stores them."""
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def image_message(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    """An Image with unpadded rows (step = width × bytes per pixel), little-endian.

    ``array`` is H×W×3 uint8 for rgb8, H×W uint8 for mono8, H×W float32 for 32FC1.
    """
    channels = _ENCODING_CHANNELS.get(encoding)
    if channels is None:
        raise ValueError(f"unsupported encoding {encoding!r}; one of {sorted(_ENCODING_CHANNELS)}")
    dtype = np.dtype("<f4") if encoding == "32FC1" else np.dtype(np.uint8)
    array = np.ascontiguousarray(array, dtype=dtype)
    shape_ok = array.ndim == 2 if channels == 1 else (array.ndim == 3
                                                      and array.shape[2] == channels)
    if not shape_ok or array.size == 0:
        raise ValueError(f"encoding {encoding!r} does not fit an array of shape {array.shape}")
    height, width = array.shape[:2]
    return Image(header=make_header(stamp_ns, frame_id), height=height, width=width,
                 encoding=encoding, is_bigendian=0, step=width * channels * dtype.itemsize,
                 data=array.reshape(-1).view(np.uint8))


def camera_info_message(width: int, height: int, projection: np.ndarray, stamp_ns: int,
                        frame_id: str) -> CameraInfo:
    """CameraInfo of a rectified camera: K = P[:, :3], D = 0 (plumb_bob), R = I, P as given.

    The images are already rectified, so there is nothing left to undistort or rotate; P's
    fourth column carries the stereo baseline (ROS's convention: Tx = −fx·B for the right
    camera of a pair, 0 for the left one).
    """
    p = np.asarray(projection, dtype=np.float64).reshape(3, 4)
    return CameraInfo(header=make_header(stamp_ns, frame_id), height=int(height),
                      width=int(width), distortion_model="plumb_bob", d=np.zeros(5),
                      k=p[:, :3].reshape(-1).copy(), r=np.eye(3).reshape(-1),
                      p=p.reshape(-1).copy(), binning_x=0, binning_y=0,
                      roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                           do_rectify=False))


def pointcloud_message(points: np.ndarray, stamp_ns: int, frame_id: str) -> PointCloud2:
    """An unorganised PointCloud2 (height 1) of N×4 float32 x, y, z, intensity points."""
    points = np.ascontiguousarray(points, dtype="<f4")
    if points.ndim != 2 or points.shape[1] != len(POINT_FIELDS):
        raise ValueError(f"expected N×4 points (x, y, z, intensity), got {points.shape}")
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate(POINT_FIELDS)]
    count = points.shape[0]
    return PointCloud2(header=make_header(stamp_ns, frame_id), height=1, width=count,
                       fields=fields, is_bigendian=False, point_step=POINT_STEP,
                       row_step=POINT_STEP * count, data=points.reshape(-1).view(np.uint8),
                       is_dense=bool(np.isfinite(points[:, :3]).all()))


def quaternion_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion of a 3×3 rotation, w ≥ 0.

    Goes through OpenCV's Rodrigues, which first projects the matrix onto the nearest rotation
    (calibration files hold rotations rounded to 7 digits, not exactly orthonormal).
    """
    rvec, _ = cv2.Rodrigues(np.asarray(rotation, dtype=np.float64).reshape(3, 3))
    rvec = rvec.reshape(3)
    angle = float(np.linalg.norm(rvec))
    if angle < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0])
    xyz = rvec / angle * np.sin(angle / 2.0)
    quat = np.array([*xyz, np.cos(angle / 2.0)])
    return quat if quat[3] >= 0 else -quat


def _quaternion_msg(rotation: np.ndarray) -> Quaternion:
    x, y, z, w = quaternion_from_matrix(rotation)
    return Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))


def transform_message(parent: str, child: str, transform: np.ndarray,
                      stamp_ns: int) -> TransformStamped:
    """TransformStamped of ``child`` in ``parent``: ``transform`` maps child coordinates to
    parent coordinates (4×4)."""
    transform = np.asarray(transform, dtype=np.float64).reshape(4, 4)
    x, y, z = (float(v) + 0.0 for v in transform[:3, 3])  # + 0.0: no "-0.0" in the bag
    return TransformStamped(header=make_header(stamp_ns, parent), child_frame_id=child,
                            transform=Transform(translation=Vector3(x=x, y=y, z=z),
                                                rotation=_quaternion_msg(transform[:3, :3])))


def tf_message(transforms: Sequence[TransformStamped]) -> TFMessage:
    """A tf2_msgs/TFMessage (what /tf and /tf_static carry)."""
    return TFMessage(transforms=list(transforms))


def imu_message(rotation: np.ndarray, angular_velocity: Sequence[float],
                linear_acceleration: Sequence[float], stamp_ns: int, frame_id: str) -> Imu:
    """sensor_msgs/Imu: orientation (3×3, ENU), body rates (rad/s), specific force (m/s²).

    Covariances are all zero: the message's "unknown" (the OXTS packet does not give them).
    """
    wx, wy, wz = (float(v) for v in angular_velocity)
    ax, ay, az = (float(v) for v in linear_acceleration)
    zeros = np.zeros(9)
    return Imu(header=make_header(stamp_ns, frame_id), orientation=_quaternion_msg(rotation),
               orientation_covariance=zeros, angular_velocity=Vector3(x=wx, y=wy, z=wz),
               angular_velocity_covariance=zeros.copy(),
               linear_acceleration=Vector3(x=ax, y=ay, z=az),
               linear_acceleration_covariance=zeros.copy())


def nav_sat_fix_message(latitude: float, longitude: float, altitude: float,
                        position_accuracy_m: float, stamp_ns: int, frame_id: str) -> NavSatFix:
    """sensor_msgs/NavSatFix with a diagonal covariance from the unit's position accuracy."""
    variance = float(position_accuracy_m) ** 2
    return NavSatFix(header=make_header(stamp_ns, frame_id),
                     status=NavSatStatus(status=NavSatStatus.STATUS_FIX,
                                         service=NavSatStatus.SERVICE_GPS),
                     latitude=float(latitude), longitude=float(longitude),
                     altitude=float(altitude), position_covariance=np.diag([variance] * 3)
                     .reshape(-1),
                     position_covariance_type=NavSatFix.COVARIANCE_TYPE_APPROXIMATED)
