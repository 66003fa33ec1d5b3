"""Message conversions: images, depth, CameraInfo and PointCloud2, round trips and hand-built
messages in every layout the converters promise to read."""

from __future__ import annotations

import array

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from depth_ros.geometry import PinholeCamera, backproject_depth
from depth_ros.ros.conversions import (
    SUPPORTED_ENCODINGS,
    ConversionError,
    camera_info_to_camera,
    camera_to_camera_info,
    depth_to_image,
    depth_to_pointcloud2,
    image_to_numpy,
    image_to_rgb,
    numpy_to_image,
    pointcloud2_to_array,
)

# encoding -> (dtype, channels), written out independently of the module under test.
LAYOUTS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4), "mono8": (np.uint8, 1), "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
}


def make_header(sec: int = 12, nanosec: int = 345, frame_id: str = "camera_optical") -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


def random_image(encoding: str, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype, channels = LAYOUTS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype is np.float32:
        return rng.uniform(-100.0, 100.0, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def hand_image(array_le: np.ndarray, encoding: str, pad: int = 0,
               bigendian: bool = False) -> Image:
    """An Image built byte by byte, rows padded with `pad` garbage bytes."""
    height, width = array_le.shape[:2]
    order = ">" if bigendian else "<"
    rows = np.ascontiguousarray(array_le.astype(array_le.dtype.newbyteorder(order)))
    row_bytes = rows.reshape(height, -1).view(np.uint8)
    garbage = np.full((height, pad), 0xAB, dtype=np.uint8)
    data = np.concatenate([row_bytes, garbage], axis=1).tobytes()
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                 step=row_bytes.shape[1] + pad, data=data)


def message_bytes(msg: Image | PointCloud2) -> np.ndarray:
    return np.frombuffer(msg.data, dtype=np.uint8)


def test_supported_encodings() -> None:
    assert set(SUPPORTED_ENCODINGS) == set(LAYOUTS)
    assert issubclass(ConversionError, ValueError)


@pytest.mark.parametrize("encoding", list(LAYOUTS))
def test_round_trip(encoding: str) -> None:
    image = random_image(encoding)
    header = make_header()
    msg = numpy_to_image(image, encoding, header)
    dtype, channels = LAYOUTS[encoding]
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * channels * np.dtype(dtype).itemsize
    assert msg.is_bigendian == 0
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert msg.header.frame_id == "camera_optical" and msg.header is not header
    # Little-endian bytes on the wire, whatever the host.
    expected = image.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    assert message_bytes(msg).tobytes() == expected
    decoded = image_to_numpy(msg)
    assert decoded.dtype == dtype and decoded.shape == image.shape
    np.testing.assert_array_equal(decoded, image)
    # And through the real rclpy serialiser, which must accept the buffer we stored.
    wire = deserialize_message(serialize_message(msg), Image)
    received = image_to_numpy(wire)
    np.testing.assert_array_equal(received, image)
    assert np.shares_memory(received, message_bytes(wire))


@pytest.mark.parametrize("encoding", list(LAYOUTS))
@pytest.mark.parametrize("pad", [1, 3, 8])
def test_padded_rows_decode_as_a_view(encoding: str, pad: int) -> None:
    image = random_image(encoding, height=4, width=6, seed=pad)
    msg = hand_image(image, encoding, pad=pad)
    decoded = image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, image)
    assert np.shares_memory(decoded, message_bytes(msg))


@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1"])
@pytest.mark.parametrize("pad", [0, 2])
def test_big_endian_messages_decode_to_native_values(encoding: str, pad: int) -> None:
    if encoding == "32FC1":
        image = np.array([[1.5, -2.25, np.nan], [1e-3, 65504.0, -0.0]], dtype=np.float32)
    else:
        image = np.array([[1, 256, 258], [0x1234, 65535, 0]], dtype=np.uint16)
    msg = hand_image(image, encoding, pad=pad, bigendian=True)
    # The bytes really are big-endian: 256 is 0x01 0x00 on the wire.
    if encoding != "32FC1":
        assert message_bytes(msg)[2:4].tolist() == [1, 0]
    decoded = image_to_numpy(msg)
    assert decoded.dtype.isnative and decoded.dtype == image.dtype
    np.testing.assert_array_equal(decoded, image)


def test_zero_copy_decode_writes_through() -> None:
    msg = numpy_to_image(np.zeros((3, 4), dtype=np.float32), "32FC1")
    decoded = image_to_numpy(msg)
    assert np.shares_memory(decoded, message_bytes(msg))
    msg.data[4:8] = array.array("B", np.float32(7.5).tobytes())
    assert decoded[0, 1] == 7.5


def test_8bit_images_ignore_the_endianness_flag() -> None:
    image = random_image("rgb8")
    msg = hand_image(image, "rgb8", pad=2)
    msg.is_bigendian = 1
    decoded = image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, image)
    assert np.shares_memory(decoded, message_bytes(msg))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"encoding": "yuv422"}, "unsupported encoding 'yuv422'"),
        ({"step": 13}, "step 13 < width 5 × 3 bytes"),
        ({"height": 3}, r"data length 32 != step 16 × height 3"),
        ({"data": bytes(31)}, r"data length 31 != step 16 × height 2"),
        ({"width": 0}, "zero-size image 0×2"),
        ({"height": 0}, "zero-size image 5×0"),
        ({"width": 0, "height": 0, "step": 0, "data": b""}, "zero-size image 0×0"),
        ({"step": 0}, "step 0 < width 5 × 3 bytes"),
        ({"data": b""}, r"data length 0 != step 16 × height 2"),
        ({"data": bytes(48)}, r"data length 48 != step 16 × height 2"),
        ({"encoding": "rgba8"}, "step 16 < width 5 × 4 bytes"),
        ({"encoding": "rgba8", "step": 20}, r"data length 32 != step 20 × height 2"),
        ({"encoding": "32FC1", "step": 20}, r"data length 32 != step 20 × height 2"),
        ({"encoding": ""}, "unsupported encoding ''"),
        ({"encoding": "RGB8"}, "unsupported encoding 'RGB8'"),
        ({"encoding": "8UC3"}, "unsupported encoding '8UC3'"),
        # A claimed size far beyond the data: refused before anything that large is made.
        ({"width": 100_000, "height": 100_000, "step": 300_000},
         r"data length 32 != step 300000 × height 100000"),
    ],
)
def test_bad_images_raise(change: dict, match: str) -> None:
    fields = {"height": 2, "width": 5, "encoding": "rgb8", "step": 16, "data": bytes(32)}
    fields.update(change)
    with pytest.raises(ConversionError, match=match):
        image_to_numpy(Image(**fields))


@pytest.mark.parametrize(
    ("array_in", "encoding", "match"),
    [
        (np.zeros((2, 3), np.float64), "32FC1", "needs dtype float32, got float64"),
        (np.zeros((2, 3), np.uint8), "16UC1", "needs dtype uint16, got uint8"),
        (np.zeros((2, 3), np.int16), "mono16", "needs dtype uint16, got int16"),
        (np.zeros((2, 3), np.uint8), "rgb8", r"needs a H×W×3 array, got shape \(2, 3\)"),
        (np.zeros((2, 3, 3), np.uint8), "bgra8", r"H×W×4 array"),
        (np.zeros((2, 3, 2), np.uint8), "mono8", r"needs a H×W array"),
        (np.zeros((0, 3), np.uint8), "mono8", "zero-size image 3×0"),
        (np.zeros((2, 3), np.uint8), "jpeg", "unsupported encoding 'jpeg'"),
    ],
)
def test_numpy_to_image_rejects_mismatches(array_in: np.ndarray, encoding: str,
                                           match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        numpy_to_image(array_in, encoding)


def test_numpy_to_image_takes_strided_big_endian_and_single_channel_arrays() -> None:
    base = np.arange(48, dtype=np.float32).reshape(4, 12)
    strided = base.astype(">f4")[:, ::3]
    msg = numpy_to_image(strided, "32FC1")
    assert (msg.width, msg.step, msg.is_bigendian) == (4, 16, 0)
    np.testing.assert_array_equal(image_to_numpy(msg), base[:, ::3])
    mono = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(mono, "mono8")), mono[..., 0])
    assert numpy_to_image(mono, "mono8").header == Header()


@pytest.mark.parametrize("pad", [0, 5])
def test_image_to_rgb_conversions(pad: int) -> None:
    rgb = random_image("rgb8", seed=3)
    alpha = np.full((*rgb.shape[:2], 1), 200, dtype=np.uint8)
    cases = {
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2),
    }
    for encoding, image in cases.items():
        out = image_to_rgb(hand_image(np.ascontiguousarray(image), encoding, pad=pad))
        assert out.shape == rgb.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, rgb)
    gray = rgb[..., 1]
    out = image_to_rgb(hand_image(np.ascontiguousarray(gray), "mono8", pad=pad))
    np.testing.assert_array_equal(out, np.stack([gray] * 3, axis=2))
    msg = hand_image(rgb, "rgb8", pad=pad)
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out, rgb)
    assert np.shares_memory(out, message_bytes(msg))


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1", "mono16", "yuv422", "", "RGB8",
                                      "rgb16", "bayer_rggb8", "jpeg"])
def test_image_to_rgb_wants_colour(encoding: str) -> None:
    msg = Image(height=1, width=1, encoding=encoding, step=4, data=bytes(4))
    with pytest.raises(ConversionError, match="not a colour image"):
        image_to_rgb(msg)


def test_depth_32fc1_keeps_metres_and_nan() -> None:
    depth = np.array([[1.25, np.nan], [80.0, 0.5]], dtype=np.float64)
    msg = depth_to_image(depth, make_header())
    assert msg.encoding == "32FC1" and msg.step == 8
    decoded = image_to_numpy(msg)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, depth.astype(np.float32))
    assert msg.header.frame_id == "camera_optical"


def test_depth_16uc1_millimetres() -> None:
    depth = np.array([[1.2344, 1.2346, 0.0004, 0.0006, np.nan, np.inf],
                      [-np.inf, -1.0, 0.0, 70.0, 65.5349, 0.001]], dtype=np.float32)
    msg = depth_to_image(depth, make_header(), encoding="16UC1")
    assert (msg.encoding, msg.step, msg.is_bigendian) == ("16UC1", 12, 0)
    expected = [[1234, 1235, 0, 1, 0, 0], [0, 0, 0, 65535, 65535, 1]]
    np.testing.assert_array_equal(image_to_numpy(msg), np.array(expected, dtype=np.uint16))


@pytest.mark.parametrize(
    ("depth", "encoding", "match"),
    [
        (np.ones((2, 2, 1), np.float32), "32FC1", "H×W"),
        (np.ones((2, 2), np.float32), "mono8", "must be '32FC1' or '16UC1'"),
        (np.ones((2, 2), bool), "32FC1", "real H×W"),
    ],
)
def test_depth_to_image_rejects(depth: np.ndarray, encoding: str, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        depth_to_image(depth, make_header(), encoding)


@pytest.mark.parametrize("model,n_coefficients",
                         [("plumb_bob", 5), ("rational_polynomial", 8), ("equidistant", 4)])
def test_camera_info_round_trip(model: str, n_coefficients: int) -> None:
    camera = PinholeCamera(721.5, 710.25, 609.5, 172.75, 1242, 375)
    info = camera_to_camera_info(camera, make_header(), distortion_model=model)
    assert (info.width, info.height, info.distortion_model) == (1242, 375, model)
    np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), camera.K)
    p = np.asarray(info.p).reshape(3, 4)
    np.testing.assert_array_equal(p[:, :3], camera.K)
    np.testing.assert_array_equal(p[:, 3], 0.0)
    np.testing.assert_array_equal(np.asarray(info.r).reshape(3, 3), np.eye(3))
    assert list(info.d) == [0.0] * n_coefficients
    assert info.header.frame_id == "camera_optical" and info.header.stamp.nanosec == 345
    wire = deserialize_message(serialize_message(info), CameraInfo)
    assert camera_info_to_camera(wire) == camera


def test_camera_to_camera_info_rejects_unknown_model() -> None:
    camera = PinholeCamera(1.0, 1.0, 0.0, 0.0, 2, 2)
    with pytest.raises(ConversionError, match="unsupported distortion model 'fisheye9'"):
        camera_to_camera_info(camera, None, distortion_model="fisheye9")


@pytest.mark.parametrize(
    ("k", "size", "match"),
    [
        ([0.0] * 9, (640, 480), "fx=0 fy=0"),
        ([500, 0, 320, 0, -500, 240, 0, 0, 1], (640, 480), "fy=-500"),
        ([np.nan, 0, 320, 0, 500, 240, 0, 0, 1], (640, 480), "fx=nan"),
        ([500, 0, np.inf, 0, 500, 240, 0, 0, 1], (640, 480), "cx=inf"),
        ([500, 0, 320, 0, 500, 240, 0, 0, 1], (0, 480), "zero-size camera 0×480"),
        ([500, 0, 320, 0, 500, 240, 0, 0, 1], (640, 0), "zero-size camera 640×0"),
        ([500, 0, 320, 0, np.inf, 240, 0, 0, 1], (640, 480), "fy=inf"),
        ([-500, 0, 320, 0, 500, 240, 0, 0, 1], (640, 480), "fx=-500"),
        ([500, 0, 320, 0, 500, np.nan, 0, 0, 1], (640, 480), "cy=nan"),
    ],
)
def test_bad_camera_info_raises(k: list, size: tuple[int, int], match: str) -> None:
    info = CameraInfo(width=size[0], height=size[1], k=np.array(k, dtype=np.float64))
    with pytest.raises(ConversionError, match=match):
        camera_info_to_camera(info)


# A non-square, off-centre camera so that a swapped axis or focal length shows.
K_TEST = np.array([[50.0, 0.0, 3.2], [0.0, 40.0, 1.7], [0.0, 0.0, 1.0]])
CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"],
                        "offsets": [0, 4, 8, 12], "itemsize": 16})


def test_depth_to_pointcloud2_geometry_and_layout() -> None:
    rng = np.random.default_rng(7)
    depth = rng.uniform(0.5, 30.0, (4, 6)).astype(np.float32)
    invalid = {(0, 0): np.nan, (1, 2): np.inf, (2, 5): 0.0, (3, 1): -2.0}
    for pixel, value in invalid.items():
        depth[pixel] = value
    header = make_header(frame_id="cam0_optical")
    msg = depth_to_pointcloud2(depth, K_TEST, header)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (4, 6, 16, 96)
    assert (msg.is_dense, msg.is_bigendian) == (False, False)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1)]
    assert msg.header.frame_id == "cam0_optical" and msg.header is not header
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert len(msg.data) == 4 * 6 * 16
    points = np.frombuffer(msg.data, dtype=CLOUD_DTYPE).reshape(4, 6)
    k_inv = np.linalg.inv(K_TEST)
    for v, u in [(0, 1), (1, 0), (2, 3), (3, 5), (3, 0)]:
        expected = k_inv @ np.array([u, v, 1.0]) * float(depth[v, u])
        got = [points[v, u][name] for name in "xyz"]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    for v, u in invalid:
        assert all(np.isnan(points[v, u][name]) for name in "xyz")
    assert np.all(points["rgb"] == 0)
    # pointcloud2_to_array reads it back in row-major order, through the real serialiser.
    wire = deserialize_message(serialize_message(msg), PointCloud2)
    xyz = pointcloud2_to_array(wire)
    assert xyz.shape == (24, 3) and xyz.dtype == np.float32
    np.testing.assert_array_equal(xyz[2 * 6 + 3], [points[2, 3][n] for n in "xyz"])
    assert pointcloud2_to_array(wire, skip_nans=True).shape == (20, 3)


def test_depth_to_pointcloud2_packs_rgb() -> None:
    rng = np.random.default_rng(8)
    depth = rng.uniform(1.0, 5.0, (3, 4)).astype(np.float32)
    rgb = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    rgb[0, 0] = (0x12, 0x34, 0x56)
    msg = depth_to_pointcloud2(depth, K_TEST, make_header(), rgb=rgb)
    rgb_field = msg.fields[3]
    assert (rgb_field.name, rgb_field.offset, rgb_field.datatype, rgb_field.count) == (
        "rgb", 12, PointField.FLOAT32, 1)
    assert msg.point_step == 16
    points = np.frombuffer(msg.data, dtype=CLOUD_DTYPE).reshape(3, 4)
    assert points[0, 0]["rgb"] == 0x00123456
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(3, 4, 16)
    assert raw[0, 0, 12:16].tolist() == [0x56, 0x34, 0x12, 0]
    packed = points["rgb"]
    np.testing.assert_array_equal((packed >> 16) & 0xFF, rgb[..., 0])
    np.testing.assert_array_equal((packed >> 8) & 0xFF, rgb[..., 1])
    np.testing.assert_array_equal(packed & 0xFF, rgb[..., 2])
    np.testing.assert_array_equal(packed >> 24, 0)
    # The same bits come back through the float32 field, as a PCL/RViz reader sees them.
    as_float = pointcloud2_to_array(msg, ("rgb",))
    np.testing.assert_array_equal(as_float[:, 0].view(np.uint32), packed.reshape(-1))
    # And the geometry is the same as without colour.
    plain = np.frombuffer(depth_to_pointcloud2(depth, K_TEST, None).data, dtype=CLOUD_DTYPE)
    np.testing.assert_array_equal(plain[["x", "y", "z"]].tolist(),
                                  points.reshape(-1)[["x", "y", "z"]].tolist())


@pytest.mark.parametrize(
    ("depth", "rgb", "match"),
    [
        (np.ones((3, 4), np.float32), np.zeros((3, 5, 3), np.uint8), r"shape \(3, 4, 3\)"),
        (np.ones((3, 4), np.float32), np.zeros((3, 4, 3), np.float32), "uint8"),
        (np.ones((3, 4, 1), np.float32), None, "H×W"),
        (np.ones((0, 4), np.float32), None, "non-empty"),
    ],
)
def test_depth_to_pointcloud2_rejects(depth: np.ndarray, rgb: np.ndarray | None,
                                      match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        depth_to_pointcloud2(depth, K_TEST, make_header(), rgb=rgb)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (37, 61)])
def test_depth_to_pointcloud2_is_backproject_depth_bit_for_bit(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(11)
    depth = rng.uniform(0.1, 90.0, shape).astype(np.float32)
    holes = rng.random(shape) < 0.2
    depth[holes] = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -1.0], np.float32),
                              holes.sum())
    K = np.array([[61.3, 0.0, 29.7], [0.0, 57.9, 17.2], [0.0, 0.0, 1.0]])  # noqa: N806
    msg = depth_to_pointcloud2(depth, K, make_header())
    points = np.frombuffer(msg.data, dtype=CLOUD_DTYPE).reshape(shape)
    valid = ~holes
    expected = backproject_depth(np.where(valid, depth, np.nan), K)
    for i, name in enumerate("xyz"):
        np.testing.assert_array_equal(points[name][valid], expected[..., i][valid])
        assert np.isnan(points[name][holes]).all()
    assert (points["rgb"] == 0).all()


def test_depth_to_pointcloud2_follows_the_intrinsics_it_is_given() -> None:
    # The rays are cached per intrinsics and size: a second camera must not get the first's.
    depth = np.full((6, 8), 2.0, np.float32)
    clouds = {}
    for fx in (50.0, 100.0, 50.0):
        K = np.array([[fx, 0.0, 4.0], [0.0, fx, 3.0], [0.0, 0.0, 1.0]])  # noqa: N806
        msg = depth_to_pointcloud2(depth, K, make_header())
        clouds.setdefault(fx, []).append(np.frombuffer(msg.data, dtype=CLOUD_DTYPE))
    assert clouds[50.0][0]["x"][0] == pytest.approx(2.0 * (0 - 4.0) / 50.0)
    assert clouds[100.0][0]["x"][0] == pytest.approx(2.0 * (0 - 4.0) / 100.0)
    np.testing.assert_array_equal(clouds[50.0][0], clouds[50.0][1])
    # A strided view and a 3×4 projection matrix give the same cloud as their copies.
    wide = np.full((6, 16), 2.0, np.float32)
    P = np.hstack([np.array([[50.0, 0.0, 4.0], [0.0, 50.0, 3.0], [0.0, 0.0, 1.0]]),  # noqa: N806
                   np.zeros((3, 1))])
    strided = depth_to_pointcloud2(wide[:, ::2], P, make_header())
    assert bytes(strided.data) == clouds[50.0][0].tobytes()
    with pytest.raises(ConversionError, match="K must be 3×3"):
        depth_to_pointcloud2(depth, np.eye(4), make_header())


def test_depth_to_pointcloud2_leaves_the_input_alone() -> None:
    depth = np.array([[1.0, np.inf], [-1.0, 2.0]], np.float32)
    before = depth.copy()
    depth_to_pointcloud2(depth, K_TEST, make_header())
    np.testing.assert_array_equal(depth, before)


# A LiDAR-like point: fields out of order, an unaligned float64, padding inside and after.
LIDAR_FIELDS = [("intensity", 0, PointField.FLOAT32, "f4"), ("ring", 4, PointField.UINT16, "u2"),
                ("x", 8, PointField.FLOAT32, "f4"), ("time", 12, PointField.FLOAT64, "f8"),
                ("y", 20, PointField.FLOAT32, "f4"), ("z", 24, PointField.FLOAT32, "f4")]
LIDAR_POINT_STEP = 32


def lidar_cloud(height: int, width: int, row_pad: int, bigendian: bool,
                seed: int = 0) -> tuple[PointCloud2, dict[str, np.ndarray]]:
    """A hand-built cloud and the values of each field, in row-major point order."""
    rng = np.random.default_rng(seed)
    n = height * width
    values = {"intensity": rng.uniform(0, 255, n).astype(np.float32),
              "ring": rng.integers(0, 64, n).astype(np.uint16),
              "x": rng.uniform(-50, 50, n).astype(np.float32),
              "time": rng.uniform(0, 0.1, n),
              "y": rng.uniform(-50, 50, n).astype(np.float32),
              "z": rng.uniform(-3, 3, n).astype(np.float32)}
    order = ">" if bigendian else "<"
    point = np.dtype({"names": [f[0] for f in LIDAR_FIELDS],
                      "formats": [order + f[3] for f in LIDAR_FIELDS],
                      "offsets": [f[1] for f in LIDAR_FIELDS], "itemsize": LIDAR_POINT_STEP})
    points = np.zeros(n, dtype=point)
    for name, column in values.items():
        points[name] = column
    row_step = width * LIDAR_POINT_STEP + row_pad
    rows = np.full((height, row_step), 0xEE, dtype=np.uint8)
    rows[:, :width * LIDAR_POINT_STEP] = points.view(np.uint8).reshape(height, -1)
    msg = PointCloud2(height=height, width=width, is_bigendian=bigendian,
                      point_step=LIDAR_POINT_STEP, row_step=row_step, is_dense=True,
                      fields=[PointField(name=name, offset=offset, datatype=datatype, count=1)
                              for name, offset, datatype, _ in LIDAR_FIELDS],
                      data=rows.tobytes())
    return msg, values


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize(("height", "width", "row_pad"), [(1, 12, 0), (3, 4, 8), (2, 5, 3)])
def test_pointcloud2_to_array_reads_any_layout(height: int, width: int, row_pad: int,
                                               bigendian: bool) -> None:
    msg, values = lidar_cloud(height, width, row_pad, bigendian)
    names = ("x", "y", "z", "intensity", "ring", "time")
    out = pointcloud2_to_array(msg, names)
    assert out.shape == (height * width, 6) and out.dtype == np.float64
    for i, name in enumerate(names):
        np.testing.assert_array_equal(out[:, i], values[name].astype(np.float64))
    xyz = pointcloud2_to_array(msg)
    assert xyz.dtype == np.float32
    np.testing.assert_array_equal(xyz, np.stack([values[n] for n in "xyz"], axis=1))
    # Asking for a field twice is allowed.
    np.testing.assert_array_equal(pointcloud2_to_array(msg, ("ring", "ring"))[:, 1],
                                  values["ring"])


def test_pointcloud2_to_array_skip_nans() -> None:
    msg, values = lidar_cloud(2, 5, 0, bigendian=False)
    points = np.frombuffer(msg.data, dtype=np.uint8).copy()
    for index, offset in [(1, 8), (6, 24)]:  # x of point 1, z of point 6
        start = index * LIDAR_POINT_STEP + offset
        points[start:start + 4] = np.frombuffer(np.float32(np.nan).tobytes(), np.uint8)
    msg.data = points.tobytes()
    assert np.isnan(pointcloud2_to_array(msg)).any(axis=1).sum() == 2
    kept = pointcloud2_to_array(msg, skip_nans=True)
    keep = np.setdiff1d(np.arange(10), [1, 6])
    np.testing.assert_array_equal(kept[:, 0], values["x"][keep])
    # NaN in a field not asked for does not drop the point.
    assert pointcloud2_to_array(msg, ("intensity",), skip_nans=True).shape == (10, 1)


@pytest.mark.parametrize(
    ("datatype", "dtype", "out_dtype"),
    [(PointField.INT8, "i1", np.float32), (PointField.UINT8, "u1", np.float32),
     (PointField.INT16, "i2", np.float32), (PointField.UINT16, "u2", np.float32),
     (PointField.INT32, "i4", np.float64), (PointField.UINT32, "u4", np.float64),
     (PointField.FLOAT32, "f4", np.float32), (PointField.FLOAT64, "f8", np.float64)],
)
@pytest.mark.parametrize("bigendian", [False, True])
def test_pointcloud2_to_array_datatypes(datatype: int, dtype: str, out_dtype: type,
                                        bigendian: bool) -> None:
    info = np.iinfo(dtype) if dtype[0] in "iu" else None
    values = (np.array([info.min, 0, 1, info.max]) if info is not None
              else np.array([-1.5, 0.0, 2.25, 1e30]))
    order = ">" if bigendian else "<"
    point = np.dtype({"names": ["v"], "formats": [order + dtype], "offsets": [2],
                      "itemsize": 12})
    points = np.zeros(4, dtype=point)
    points["v"] = values
    msg = PointCloud2(height=1, width=4, is_bigendian=bigendian, point_step=12, row_step=48,
                      fields=[PointField(name="v", offset=2, datatype=datatype, count=1)],
                      data=points.tobytes())
    out = pointcloud2_to_array(msg, ("v",))
    # float32 only where it holds every value exactly.
    assert out.dtype == out_dtype
    np.testing.assert_array_equal(out[:, 0], values.astype(out.dtype))


def test_pointcloud2_to_array_empty_cloud() -> None:
    msg, _ = lidar_cloud(1, 0, 0, bigendian=False)
    assert pointcloud2_to_array(msg).shape == (0, 3)


def _broken(change: str) -> PointCloud2:
    msg, _ = lidar_cloud(2, 3, 0, bigendian=False)
    if change == "length":
        msg.data = bytes(len(msg.data) - 1)
    elif change == "row_step":
        msg.row_step = 3 * LIDAR_POINT_STEP - 1
    elif change == "datatype":
        msg.fields[2].datatype = 9
    elif change == "count":
        msg.fields[2].count = 3
    elif change == "offset":
        msg.fields[2].offset = 30
    elif change == "no_fields":
        msg.fields = []
    elif change == "no_z":
        msg.fields = [f for f in msg.fields if f.name != "z"]
    elif change == "point_step_0":
        msg.point_step = 0
    elif change == "no_data":
        msg.data = b""
    return msg


@pytest.mark.parametrize(
    ("change", "names", "match"),
    [
        ("none", ("x", "rgb"), r"no field\(s\) \['rgb'\]"),
        ("length", ("x",), "data length 191 != row_step 96 × height 2"),
        ("row_step", ("x",), "row_step 95 < width 3 × point_step 32"),
        ("datatype", ("x",), "field 'x' has unknown datatype 9"),
        ("count", ("x",), "field 'x' has count 3"),
        ("offset", ("x",), "overruns point_step 32"),
        ("none", (), "no field names"),
        ("no_fields", ("x", "y", "z"), r"no field\(s\) \['x', 'y', 'z'\]; it has \[\]"),
        ("no_z", ("x", "y", "z"), r"no field\(s\) \['z'\]"),
        ("point_step_0", ("x",), "field 'x' at offset 8 .* overruns point_step 0"),
        ("no_data", ("x",), "data length 0 != row_step 96 × height 2"),
    ],
)
def test_pointcloud2_to_array_rejects(change: str, names: tuple[str, ...], match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        pointcloud2_to_array(_broken(change), names)


def test_pointcloud2_to_array_nan_and_inf_points() -> None:
    # Non-finite coordinates are read as they are; skip_nans drops NaN (inf is the caller's).
    msg, _ = lidar_cloud(1, 4, 0, bigendian=False)
    raw = np.frombuffer(msg.data, dtype=np.uint8).copy()
    for index, value in [(0, np.nan), (2, np.inf)]:
        start = index * LIDAR_POINT_STEP + 8  # x
        raw[start:start + 4] = np.frombuffer(np.float32(value).tobytes(), np.uint8)
    msg.data = raw.tobytes()
    xyz = pointcloud2_to_array(msg)
    assert np.isnan(xyz[0, 0]) and np.isinf(xyz[2, 0])
    assert pointcloud2_to_array(msg, skip_nans=True).shape == (3, 3)


def test_pointcloud2_to_array_empty_organised_cloud() -> None:
    msg, _ = lidar_cloud(1, 3, 0, bigendian=False)
    msg.height, msg.width, msg.row_step, msg.data = 0, 0, 0, b""
    assert pointcloud2_to_array(msg).shape == (0, 3)


def test_private_data_slot_is_used_only_where_it_behaves_as_the_setter():
    from depth_ros.ros.conversions import _private_data_slot_works, _set_data

    # The rosidl layout of this rclpy: the slot is used, and the message is what the
    # setter would have made.
    assert _private_data_slot_works(Image) and _private_data_slot_works(PointCloud2)
    buf = array.array("B", range(12))
    fast, slow = Image(height=1, width=4, step=12, encoding="rgb8"), Image(
        height=1, width=4, step=12, encoding="rgb8")
    _set_data(fast, buf)
    slow.data = array.array("B", range(12))
    assert fast.data is buf
    assert serialize_message(fast) == serialize_message(slow)

    class OtherLayout:  # no _data slot: a layout this module does not know
        __slots__ = ("data",)

    assert not _private_data_slot_works(OtherLayout)
    other = OtherLayout()
    _set_data(other, buf)
    assert other.data is buf  # through the public attribute
