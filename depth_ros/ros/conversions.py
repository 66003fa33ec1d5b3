"""Conversions between ROS 2 messages and numpy arrays, without cv_bridge or sensor_msgs_py.

Only message classes are imported (never rclpy), so everything here runs and is tested without
a ROS graph. Conventions: REP 103 (optical frame), REP 117 (NaN for no measurement) and
REP 118 (depth as 32FC1 metres or 16UC1 millimetres with 0 for no data).

rclpy stores every ``uint8[]`` field (``Image.data``, ``PointCloud2.data``) as an
``array.array('B')``, which exposes the buffer protocol: decoding is a numpy view on it, and
encoding builds that ``array.array`` directly and hands it to the message without a further
copy.
"""

from __future__ import annotations

import array as pyarray
from collections.abc import Sequence
from functools import cache, lru_cache

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from depth_ros.geometry import PinholeCamera, normalised_pixel_coordinates
from depth_ros.inference.processor import depth_millimetres

__all__ = [
    "SUPPORTED_ENCODINGS",
    "ConversionError",
    "camera_info_to_camera",
    "camera_to_camera_info",
    "depth_to_image",
    "depth_to_pointcloud2",
    "image_to_numpy",
    "image_to_rgb",
    "numpy_to_image",
    "pointcloud2_to_array",
]


class ConversionError(ValueError):
    """A message or array that cannot be converted; the message says what was wrong."""


# encoding -> (element dtype, channels); byte order is applied per message.
_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)

# Colour encodings a depth network can take, with the OpenCV conversion to RGB (None: as is).
_TO_RGB: dict[str, int | None] = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
}

_POINTFIELD_DTYPES: dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}

_DISTORTION_COEFFICIENTS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}

# x, y, z, rgb as float32: 16 bytes per point whether or not rgb is filled in. The layout
# is PCL's PointXYZ (x, y, z at 0, 4, 8 in a 16-byte point), so pcl::fromROSMsg takes its
# row-memcpy path, points stay 16-byte aligned, and the rgb field uses the fourth slot
# instead of padding. Without colour the slot stays zero.
_POINT_STEP = 16
_ZERO_BYTE = pyarray.array("B", [0])


@lru_cache(maxsize=4)
def _rays(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> np.ndarray:
    rays = np.empty((height, width, _POINT_STEP // 4), dtype=np.float32)
    rays[..., 0], rays[..., 1] = normalised_pixel_coordinates(
        PinholeCamera(fx, fy, cx, cy, width, height))
    rays[..., 2] = 1.0
    rays[..., 3] = 0.0
    rays.setflags(write=False)
    return rays


def _point_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:  # noqa: N803
    """(x/z, y/z, 1, 0) of each pixel's viewing ray, H×W×4 float32, read-only.

    Cached per intrinsics and size (a node sends every frame with the same camera): building
    it costs about as much as a cloud.
    """
    k = np.asarray(K, dtype=np.float64)
    if k.shape not in ((3, 3), (3, 4)):
        raise ConversionError(f"K must be 3×3, got shape {k.shape}")
    return _rays(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), width, height)


def _fields(with_rgb: bool) -> list[PointField]:
    names = ("x", "y", "z", "rgb") if with_rgb else ("x", "y", "z")
    return [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
            for i, name in enumerate(names)]


def _encoding_layout(encoding: str) -> tuple[np.dtype, int]:
    try:
        return _ENCODINGS[encoding]
    except KeyError:
        raise ConversionError(
            f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        ) from None


def _byte_view(data: object) -> np.ndarray:
    """The message's byte buffer as a 1-D uint8 array, without a copy when it has a buffer."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        pass
    # A plain list, as a hand-built message may hold: only this path copies.
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConversionError(f"data is not a byte sequence: {exc}") from None


def _new_buffer(nbytes: int) -> tuple[pyarray.array, np.ndarray]:
    """A zeroed ``array.array('B')`` of nbytes and a writable uint8 numpy view on it."""
    # Repeating one byte is a memset; array.array('B', bytes(n)) would also copy n bytes.
    buf = _ZERO_BYTE * nbytes
    return buf, np.frombuffer(buf, dtype=np.uint8)


@cache
def _private_data_slot_works(message_type: type) -> bool:
    """Whether ``message_type`` keeps ``data`` in a ``_data`` slot that the ``data`` property
    reads back as it is and that serialises as the setter's value would.

    That is the layout rosidl generates for Humble through Kilted (checked here on a small
    message once per type); a future layout that differs fails the check and the public
    setter is used instead.
    """
    if "_data" not in getattr(message_type, "__slots__", ()):
        return False
    try:
        probe = pyarray.array("B", b"depth_ros")
        private, public = message_type(), message_type()
        private._data = probe
        public.data = pyarray.array("B", b"depth_ros")
        return private.data is probe and (serialize_message(private)
                                          == serialize_message(public))
    except Exception:  # any surprise: the public path, which is always right
        return False


def _set_data(msg: Image | PointCloud2, buf: pyarray.array) -> None:
    """Give msg the byte buffer buf, without the copy the generated setter makes where the
    class layout is the known one (``_private_data_slot_works``), else through the setter.

    Recent generated setters (Jazzy, Kilted) run ``array.array('B', value)``, a full copy,
    even for an ``array.array('B')`` unless ROS_PYTHON_CHECK_FIELDS=1. Measured here (2 CPU
    cores, rclpy 9.1) for a 1216×352 cloud with colour, ``depth_to_pointcloud2`` takes
    1.0 ms through the slot against 1.9 ms through the setter (1.3 against 5.7 ms with the
    nodes' malloc thresholds, ``memory.py``).
    """
    if _private_data_slot_works(type(msg)):
        msg._data = buf
    else:
        msg.data = buf


def _copy_header(header: Header | None) -> Header:
    # A copy, so a caller that reuses or edits its header never changes a published message.
    if header is None:
        return Header()
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec),
                  frame_id=header.frame_id)


def image_to_numpy(msg: Image) -> np.ndarray:
    """Decode an Image to an H×W (one channel) or H×W×C array of the encoding's dtype.

    When the data is in native byte order (as little-endian images are everywhere ROS runs) the
    result is a view on ``msg.data`` that skips any row padding: no copy is made, and writing
    to it writes to the message (and ``msg.data`` cannot be resized while it lives).
    Big-endian multi-byte data is byte-swapped into a new array.
    """
    dtype, channels = _encoding_layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ConversionError(f"zero-size image {width}×{height}")
    pixel_bytes = dtype.itemsize * channels
    if step < width * pixel_bytes:
        raise ConversionError(f"step {step} < width {width} × {pixel_bytes} bytes")
    data = _byte_view(msg.data)
    if data.size != step * height:
        raise ConversionError(f"data length {data.size} != step {step} × height {height}")
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    if channels == 1:
        shape, strides = (height, width), (step, dtype.itemsize)
    else:
        shape, strides = (height, width, channels), (step, pixel_bytes, dtype.itemsize)
    image = np.ndarray(shape, dtype=dtype, buffer=data, strides=strides)
    if not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder("="))
    return image


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Encode an H×W or H×W×C array as a little-endian Image with unpadded rows."""
    dtype, channels = _encoding_layout(encoding)
    array = np.asarray(array)
    if array.dtype.kind != dtype.kind or array.dtype.itemsize != dtype.itemsize:
        raise ConversionError(f"encoding {encoding!r} needs dtype {dtype.name}, "
                              f"got {array.dtype.name}")
    if channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        wanted = "H×W" if channels == 1 else f"H×W×{channels}"
        raise ConversionError(f"encoding {encoding!r} needs a {wanted} array, "
                              f"got shape {array.shape}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ConversionError(f"zero-size image {width}×{height}")
    little = dtype.newbyteorder("<")
    if array.flags.c_contiguous and array.dtype == little:
        # One memcpy straight into the array.array the message will own.
        buf = pyarray.array("B")
        buf.frombytes(array.reshape(-1).view(np.uint8))
    else:
        buf, view = _new_buffer(array.nbytes)
        np.copyto(view.view(little).reshape(array.shape), array, casting="equiv")
    msg = Image(header=_copy_header(header), height=height, width=width, encoding=encoding,
                is_bigendian=0, step=width * channels * dtype.itemsize)
    _set_data(msg, buf)
    return msg


def image_to_rgb(msg: Image) -> np.ndarray:
    """Decode a colour or mono8 Image to H×W×3 uint8 RGB, as the depth networks take it.

    rgb8 comes back as a view on the message (no copy; row padding is skipped by the strides);
    the other encodings are converted into a new contiguous array.
    """
    if msg.encoding not in _TO_RGB:
        raise ConversionError(f"encoding {msg.encoding!r} is not a colour image; this node "
                              f"wants one of {', '.join(_TO_RGB)}")
    image = image_to_numpy(msg)
    code = _TO_RGB[msg.encoding]
    return image if code is None else cv2.cvtColor(image, code)


def depth_to_image(depth_m: np.ndarray, header: Header | None,
                   encoding: str = "32FC1") -> Image:
    """Encode H×W depth in metres as REP 118 32FC1 (metres, as given) or 16UC1 millimetres.

    16UC1 rounds to the nearest millimetre (ties to even), saturates at 65535 mm, and writes 0
    (REP 118's "no data") where the depth is NaN, infinite or not positive.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or depth.dtype.kind not in "fiu":
        raise ConversionError(f"depth must be a real H×W array, got {depth.dtype.name} "
                              f"of shape {depth.shape}")
    if encoding == "32FC1":
        return numpy_to_image(depth.astype(np.float32, copy=False), encoding, header)
    if encoding != "16UC1":
        raise ConversionError(f"depth encoding must be '32FC1' or '16UC1', got {encoding!r}")
    return numpy_to_image(depth_millimetres(depth), encoding, header)


def camera_info_to_camera(msg: CameraInfo) -> PinholeCamera:
    """The pinhole intrinsics of a CameraInfo, from its K matrix, width and height.

    Binning and ROI (REP 104) are not applied: K must describe the image as published.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise ConversionError(f"CameraInfo K has {k.size} elements, expected 9")
    width, height = int(msg.width), int(msg.height)
    if width == 0 or height == 0:
        raise ConversionError(f"zero-size camera {width}×{height}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
        raise ConversionError(f"CameraInfo K has fx={fx:g} fy={fy:g} cx={cx:g} cy={cy:g}; "
                              "fx and fy must be finite and > 0 (uncalibrated camera?)")
    return PinholeCamera.from_K(k.reshape(3, 3), width, height)


def camera_to_camera_info(camera: PinholeCamera, header: Header | None,
                          distortion_model: str = "plumb_bob") -> CameraInfo:
    """A CameraInfo for a rectified pinhole camera: no distortion, R = I, P = [K | 0]."""
    try:
        n_coefficients = _DISTORTION_COEFFICIENTS[distortion_model]
    except KeyError:
        raise ConversionError(
            f"unsupported distortion model {distortion_model!r}; "
            f"supported: {', '.join(_DISTORTION_COEFFICIENTS)}"
        ) from None
    k = camera.K
    p = np.zeros((3, 4), dtype=np.float64)
    p[:, :3] = k
    return CameraInfo(header=_copy_header(header), width=int(camera.width),
                      height=int(camera.height), distortion_model=distortion_model,
                      d=[0.0] * n_coefficients, k=k.reshape(-1), r=np.eye(3).reshape(-1),
                      p=p.reshape(-1))


def depth_to_pointcloud2(depth_m: np.ndarray, K: np.ndarray, header: Header | None,  # noqa: N803
                         rgb: np.ndarray | None = None) -> PointCloud2:
    """Back-project H×W depth (metres) to an organised PointCloud2 in the header's frame.

    Fields x, y, z (float32 at 0, 4, 8) and, with ``rgb`` (H×W×3 uint8, RGB order), ``rgb`` at
    12: the uint32 0x00RRGGBB bits read as float32, as PCL and RViz expect. 16 bytes a point
    either way. Pixels whose depth is NaN, infinite or not positive become NaN points.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim != 2 or depth.size == 0:
        raise ConversionError(f"depth must be a non-empty H×W array, got shape {depth.shape}")
    height, width = depth.shape
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.shape != (height, width, 3):
            raise ConversionError(f"rgb must be uint8 of shape {(height, width, 3)}, got "
                                  f"{rgb.dtype.name} of shape {rgb.shape}")
    # NaN depth back-projects to NaN x, y, z by itself; inf and ≤ 0 would not. Two
    # NaN-ignoring reductions rule them out in the common case, depth with NaN holes included
    # (a node's depth outside its range is NaN).
    if not (np.fmin.reduce(depth, axis=None) > 0.0 and np.fmax.reduce(depth, axis=None) < np.inf):
        # OR-ing the quiet-NaN bit pattern into the invalid pixels has no data-dependent
        # branch: 2.5× faster than np.where on a frame with scattered holes.
        invalid = ~((depth > 0.0) & (depth < np.inf))
        nan_bits = invalid.view(np.uint8) * np.uint32(0x7FC00000)
        depth = (depth.view(np.uint32) | nan_bits).view(np.float32)
    rays = _point_rays(K, width, height)
    buf, data = _new_buffer(height * width * _POINT_STEP)
    points = data.view("<f4").reshape(height, width, _POINT_STEP // 4)
    # Two contiguous SIMD passes instead of three strided ones (x, y, z): spread each depth
    # over its point as (d, d, d, 1), then multiply by (x/z, y/z, 1, 0). The products are
    # the float32 products backproject_depth makes, bit for bit; the fourth slot is 0.
    spread = cv2.cvtColor(np.ascontiguousarray(depth), cv2.COLOR_GRAY2BGRA, dst=points)
    if spread is not points:  # an OpenCV that would not write into dst: copy it there
        points[...] = spread
    np.multiply(points, rays, out=points)
    if rgb is not None:
        # OpenCV's SIMD swizzle to B, G, R, A bytes is 0xAARRGGBB as a little-endian uint32;
        # clearing alpha gives 0x00RRGGBB. Faster than scattering the bytes with numpy.
        packed = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA).view("<u4")[..., 0]
        np.bitwise_and(packed, 0x00FFFFFF, out=packed)
        points.view("<u4")[..., 3] = packed
    msg = PointCloud2(header=_copy_header(header), height=height, width=width,
                      fields=_fields(rgb is not None), is_bigendian=False,
                      point_step=_POINT_STEP, row_step=_POINT_STEP * width, is_dense=False)
    _set_data(msg, buf)
    return msg


def pointcloud2_to_array(msg: PointCloud2, field_names: Sequence[str] = ("x", "y", "z"),
                         skip_nans: bool = False) -> np.ndarray:
    """Read the named fields of every point as an N×len(field_names) float array.

    Any layout is read through one structured view: field order and offsets, point and row
    padding, organised or not, either byte order, all PointField datatypes (count 1). Points
    come in row-major order (index v · width + u for organised clouds). The dtype is float32
    when every field fits in it exactly (float32, 8- and 16-bit integers), float64 otherwise.
    ``skip_nans`` drops points with NaN in any requested field.
    """
    names = tuple(field_names)
    if not names:
        raise ConversionError("no field names given")
    by_name = {field.name: field for field in msg.fields}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ConversionError(f"PointCloud2 has no field(s) {missing}; it has {list(by_name)}")
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    height, width = int(msg.height), int(msg.width)
    byte_order = ">" if msg.is_bigendian else "<"
    formats: list[np.dtype] = []
    for name in names:
        field = by_name[name]
        base = _POINTFIELD_DTYPES.get(field.datatype)
        if base is None:
            raise ConversionError(f"field {name!r} has unknown datatype {field.datatype}")
        if field.count != 1:
            raise ConversionError(f"field {name!r} has count {field.count}; only 1 is supported")
        if field.offset + base.itemsize > point_step:
            raise ConversionError(f"field {name!r} at offset {field.offset} "
                                  f"({base.itemsize} bytes) overruns point_step {point_step}")
        formats.append(base.newbyteorder(byte_order) if base.itemsize > 1 else base)
    if width > 0 and row_step < width * point_step:
        raise ConversionError(f"row_step {row_step} < width {width} × point_step {point_step}")
    data = _byte_view(msg.data)
    if data.size != row_step * height:
        raise ConversionError(f"data length {data.size} != row_step {row_step} × "
                              f"height {height}")
    out_dtype = np.result_type(np.float32, *(fmt.newbyteorder("=") for fmt in formats))
    if height * width == 0:
        return np.empty((0, len(names)), dtype=out_dtype)
    # Positional names, so that asking for one field twice still builds a valid dtype.
    point = np.dtype({"names": [f"f{i}" for i in range(len(names))], "formats": formats,
                      "offsets": [by_name[name].offset for name in names],
                      "itemsize": point_step})
    cloud = np.ndarray((height, width), dtype=point, buffer=data, strides=(row_step, point_step))
    out = np.empty((height, width, len(names)), dtype=out_dtype)
    for i in range(len(names)):
        out[..., i] = cloud[f"f{i}"]
    out = out.reshape(-1, len(names))
    if skip_nans:
        out = out[~np.isnan(out).any(axis=1)]
    return out
