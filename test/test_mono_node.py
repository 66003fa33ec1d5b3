"""mono_depth_node across processes with real rclpy: outputs, conventions and bad input."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depth_ros.geometry import PinholeCamera
from depth_ros.kitti import KittiDrive
from depth_ros.ros.conversions import (
    camera_info_to_camera,
    camera_to_camera_info,
    image_to_numpy,
    numpy_to_image,
    pointcloud2_to_array,
)
from depth_ros.ros.launching import find_config, node_command, stop_process
from depth_ros.ros.qos import make_qos
from depth_ros.synthetic import write_synthetic_drive

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WIDTH, HEIGHT = 621, 188  # half KITTI size: the node resizes to the model and back


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> KittiDrive:
    root = tmp_path_factory.mktemp("drive")
    return KittiDrive(write_synthetic_drive(root, num_frames=4, seed=77, width=WIDTH,
                                            height=HEIGHT, progress=False))


class Listener:
    """An in-process rclpy node (own context) collecting the node's outputs."""

    def __init__(self, namespace: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_listener", namespace=namespace,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.msgs: dict[str, list] = {"depth": [], "depth/camera_info": [], "points": [],
                                      "depth/colored": []}
        qos = make_qos("reliable", 10)
        for topic, kind in [("depth", Image), ("depth/camera_info", CameraInfo),
                            ("points", PointCloud2), ("depth/colored", Image)]:
            self.node.create_subscription(kind, topic, self.msgs[topic].append, qos)

    def publishers(self, qos_reliability: str = "reliable"):
        qos = make_qos(qos_reliability, 5)
        return (self.node.create_publisher(Image, "image", qos),
                self.node.create_publisher(CameraInfo, "camera_info", qos))

    def spin_until(self, done, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def start_node(namespace: str, log_path: Path, **params) -> subprocess.Popen:
    cmd = node_command("mono_depth_node", find_config("mono_depth.yaml"), params=params,
                       remaps={"__ns": namespace})
    return subprocess.Popen(cmd, stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def test_node_serves_a_drive_played_by_another_process(drive, tmp_path):
    ns = "/t_serve"
    node = start_node(ns, tmp_path / "node.log")
    player = subprocess.Popen(
        node_command("kitti_drive_publisher", params={
            "drive_path": str(drive.path), "rate_hz": 5.0, "loop": True,
            "stamp_source": "drive"}, remaps={"__ns": ns}),
        stdout=(tmp_path / "player.log").open("w"), stderr=subprocess.STDOUT)
    listener = Listener(ns)
    try:
        got = listener.spin_until(lambda: all(len(v) >= 2 for v in listener.msgs.values()), 90)
        assert got, {k: len(v) for k, v in listener.msgs.items()} | {
            "node_log": (tmp_path / "node.log").read_text()[-3000:]}
    finally:
        stop_process(player)
        assert stop_process(node) == 0, (tmp_path / "node.log").read_text()[-3000:]
        listener.close()

    stamps = {round(s * 1e9) for s in drive.timestamps()}
    infos = {Time.from_msg(m.header.stamp).nanoseconds: m
             for m in listener.msgs["depth/camera_info"]}
    clouds = {Time.from_msg(m.header.stamp).nanoseconds: m for m in listener.msgs["points"]}
    checked = 0
    for depth_msg in listener.msgs["depth"]:
        stamp = Time.from_msg(depth_msg.header.stamp).nanoseconds
        assert stamp in stamps, "the output header must be the input image's header"
        assert depth_msg.header.frame_id == "camera_02_optical_frame"
        assert depth_msg.encoding == "32FC1"
        assert (depth_msg.height, depth_msg.width) == (HEIGHT, WIDTH)
        depth = image_to_numpy(depth_msg)
        valid = np.isfinite(depth)
        assert valid.mean() > 0.5 and np.all(depth[valid] > 0) and np.all(depth[valid] <= 80)
        index = sorted(stamps).index(stamp)
        gt = drive.groundtruth(index)
        both = valid & (gt > 0)
        abs_rel = np.mean(np.abs(depth[both] - gt[both]) / gt[both])
        assert abs_rel < 0.5, f"the bundled model should give usable depth, AbsRel {abs_rel}"
        if stamp in infos and stamp in clouds:
            camera = camera_info_to_camera(infos[stamp])
            assert (camera.width, camera.height) == (WIDTH, HEIGHT)
            assert camera.fx == pytest.approx(drive.camera_model().fx)
            cloud = clouds[stamp]
            assert (cloud.height, cloud.width) == (HEIGHT, WIDTH)
            assert cloud.header.frame_id == depth_msg.header.frame_id
            xyz = pointcloud2_to_array(cloud, ("x", "y", "z")).reshape(HEIGHT, WIDTH, 3)
            v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
            expected = np.stack([(u - camera.cx) / camera.fx * depth,
                                 (v - camera.cy) / camera.fy * depth, depth], axis=-1)
            np.testing.assert_allclose(xyz, expected, rtol=1e-5, atol=1e-4)
            assert np.isnan(xyz[~valid]).all()
            checked += 1
    assert checked >= 1
    colored = listener.msgs["depth/colored"][0]
    assert colored.encoding == "rgb8" and (colored.height, colored.width) == (HEIGHT, WIDTH)


def _publish_until_logged(pub, msg, path: Path, text: str, listener: Listener,
                          timeout_s: float = 20) -> bool:
    """Publish msg every 0.5 s until the node's log shows text (discovery may lose the first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.publish(msg)
        if listener.spin_until(lambda: text in path.read_text(), 0.5):
            return True
    return False


def test_bad_input_is_logged_and_the_stream_goes_on(drive, tmp_path):
    ns = "/t_bad"
    log = tmp_path / "node.log"
    node = start_node(ns, log, warn_period_s=0.0)
    listener = Listener(ns)
    image_pub, info_pub = listener.publishers()
    rgb = drive.rgb(0)
    camera: PinholeCamera = drive.camera_model()
    header = Header(frame_id="camera_02_optical_frame")
    try:
        assert listener.spin_until(lambda: image_pub.get_subscription_count() > 0
                                   and info_pub.get_subscription_count() > 0
                                   and listener.node.count_publishers("depth") > 0, 60)
        # 1. An image before any CameraInfo.
        assert _publish_until_logged(image_pub, numpy_to_image(rgb, "rgb8", header), log,
                                     "no CameraInfo received", listener)
        info_pub.publish(camera_to_camera_info(camera, header))
        listener.spin_until(lambda: False, 0.5)

        bad_encoding = numpy_to_image(rgb, "rgb8", header)
        bad_encoding.encoding = "yuv422_weird"
        short = numpy_to_image(rgb, "rgb8", header)
        short.data = bytes(short.data)[:-10]
        empty = Image(header=header, height=0, width=0, encoding="rgb8", step=0)
        wrong_size = numpy_to_image(np.ascontiguousarray(rgb[:100, :200]), "rgb8", header)
        for msg, expected in [(bad_encoding, "yuv422_weird"), (short, "data length"),
                              (empty, "zero-size"), (wrong_size, "CameraInfo is")]:
            assert _publish_until_logged(image_pub, msg, log, expected, listener), (
                expected, log.read_text()[-2000:])

        # The node is alive and serves the next good frame.
        header.stamp = Time(seconds=123, nanoseconds=456).to_msg()
        good = numpy_to_image(rgb, "rgb8", header)
        assert listener.spin_until(lambda: image_pub.publish(good) or any(
            Time.from_msg(m.header.stamp).nanoseconds == 123_000_000_456
            for m in listener.msgs["depth"]), 30), log.read_text()[-3000:]
        assert node.poll() is None
    finally:
        assert stop_process(node) == 0, log.read_text()[-3000:]
        listener.close()
    text = log.read_text()
    assert "Traceback" not in text


@pytest.mark.parametrize("content", [None, b"this is not an onnx model"])
def test_missing_or_unreadable_model_exits_with_one_line(tmp_path, content):
    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_bytes(content)
    cmd = node_command("mono_depth_node", find_config("mono_depth.yaml"),
                       params={"model_path": str(model)})
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert str(model) in output[0] and "Traceback" not in output[0]
