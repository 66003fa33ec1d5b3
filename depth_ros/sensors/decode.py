"""Image, CameraInfo and PointCloud2 messages read into numpy arrays, without ROS (no rclpy,
no message packages).

The functions take any object with the message's fields, so they read rclpy's messages in the
nodes (``depth_ros.ros.conversions`` re-exports them) and the ``rosbags`` typestore's messages
decoded from a bag (``training.data.bags``) alike: one decoder for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from depth_ros.geometry import PinholeCamera


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

# sensor_msgs/PointField datatype constants (INT8 = 1 ... FLOAT64 = 8, fixed by the message
# definition) to numpy.
POINTFIELD_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.int8),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int16),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int32),
    6: np.dtype(np.uint32),
    7: np.dtype(np.float32),
    8: np.dtype(np.float64),
}

def encoding_layout(encoding: str) -> tuple[np.dtype, int]:
    """(element dtype, channels) of a supported Image encoding; ConversionError otherwise."""
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


def image_to_numpy(msg: Any) -> np.ndarray:
    """Decode an Image to an H×W (one channel) or H×W×C array of the encoding's dtype.

    When the data is in native byte order (as little-endian images are everywhere ROS runs) the
    result is a view on ``msg.data`` that skips any row padding: no copy is made, and writing
    to it writes to the message (and ``msg.data`` cannot be resized while it lives).
    Big-endian multi-byte data is byte-swapped into a new array.
    """
    dtype, channels = encoding_layout(msg.encoding)
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


def image_to_rgb(msg: Any) -> np.ndarray:
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


def camera_info_to_camera(msg: Any) -> PinholeCamera:
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


def pointcloud2_to_array(msg: Any, field_names: Sequence[str] = ("x", "y", "z"),
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
        base = POINTFIELD_DTYPES.get(field.datatype)
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
