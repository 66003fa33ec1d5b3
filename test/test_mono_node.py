"""mono_depth_node across processes with real rclpy: outputs, conventions and bad input."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.time import Time
from ros_helpers import Listener, relative_model, stamp_ns, start_node, stop_node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header, String

from depth_ros.geometry import PinholeCamera
from depth_ros.inference import DepthEstimator
from depth_ros.inference.processor import decimated_intrinsics
from depth_ros.kitti import KittiDrive
from depth_ros.ros.conversions import (
    camera_info_to_camera,
    camera_to_camera_info,
    image_to_numpy,
    numpy_to_image,
    pointcloud2_to_array,
)
from depth_ros.ros.launching import node_command, stop_process
from depth_ros.ros.qos import latched_qos
from depth_ros.share import find_config
from depth_ros.synthetic import write_synthetic_drive
from depth_ros.viz import colorize_depth
from depth_ros.weights import DEFAULT_MONO_MODEL

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WIDTH, HEIGHT = 621, 188  # half KITTI size: the node resizes to the model and back


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> KittiDrive:
    root = tmp_path_factory.mktemp("drive")
    return KittiDrive(write_synthetic_drive(root, num_frames=4, seed=77, width=WIDTH,
                                            height=HEIGHT, progress=False, stereo=False,
                                            lidar=False))


TOPICS = {"depth": Image, "depth/camera_info": CameraInfo, "points": PointCloud2,
          "depth/colored": Image, "depth/info": String, "/diagnostics": DiagnosticArray}


def listen(namespace: str) -> Listener:
    """A listener for every output of the node, depth/info latched."""
    return Listener(namespace, TOPICS, qos={"depth/info": latched_qos()})


def start_mono(namespace: str, log_path: Path, **params) -> subprocess.Popen:
    return start_node("mono_depth_node", "mono_depth.yaml", namespace, log_path, **params)


def test_node_serves_a_drive_played_by_another_process(drive, tmp_path, monkeypatch):
    ns = "/t_serve"
    ros_log_dir = tmp_path / "ros_log"
    monkeypatch.setenv("ROS_LOG_DIR", str(ros_log_dir))  # the node's ~/.ros/log file
    node = start_mono(ns, tmp_path / "node.log")
    player = subprocess.Popen(
        node_command("kitti_drive_publisher", params={
            "drive_path": str(drive.path), "rate_hz": 5.0, "loop": True,
            "stamp_source": "drive"}, remaps={"__ns": ns}),
        stdout=(tmp_path / "player.log").open("w"), stderr=subprocess.STDOUT)
    listener = listen(ns)
    outputs = ("depth", "depth/camera_info", "points", "depth/colored")
    try:
        got = listener.spin_until(lambda: all(len(listener.msgs[t]) >= 2 for t in outputs), 90)
        assert got, {k: len(v) for k, v in listener.msgs.items()} | {
            "node_log": (tmp_path / "node.log").read_text()[-3000:]}
        assert listener.node.count_subscribers(f"{ns}/image") == 1
    finally:
        stop_process(player)
        code = stop_process(node)
        # Ctrl-C: the node's topics leave the graph at once (not after the DDS lease) and
        # its ROS log file holds everything it logged, the totals written at shutdown too.
        left = listener.spin_until(
            lambda: listener.node.count_publishers(f"{ns}/depth") == 0
            and listener.node.count_subscribers(f"{ns}/image") == 0, 5)
        listener.close()
    assert code == 0, (tmp_path / "node.log").read_text()[-3000:]
    assert left, "the stopped node's topics are still in the ROS graph"
    ros_logs = [p.read_text() for p in ros_log_dir.glob("*.log")]
    node_logs = [text for text in ros_logs if f"[{ns[1:]}.mono_depth_node]" in text]
    assert len(node_logs) == 1, ros_logs
    assert "frames in" in node_logs[0] and "model " in node_logs[0], node_logs[0]

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
    node = start_mono(ns, log, warn_period_s=0.0)
    listener = listen(ns)
    image_pub = listener.publisher(Image, "image")
    info_pub = listener.publisher(CameraInfo, "camera_info")
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

        # An uncalibrated camera: CameraInfo with zero focal lengths.
        uncalibrated = camera_to_camera_info(camera, header)
        uncalibrated.k = [0.0] * 9
        info_pub.publish(uncalibrated)
        listener.spin_until(lambda: False, 0.5)
        assert _publish_until_logged(image_pub, numpy_to_image(rgb, "rgb8", header), log,
                                     "uncalibrated camera", listener), log.read_text()[-2000:]
        info_pub.publish(camera_to_camera_info(camera, header))
        listener.spin_until(lambda: False, 0.5)

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


def _without_metadata() -> bytes:
    model = onnx.load(DEFAULT_MONO_MODEL)
    del model.metadata_props[:]
    return model.SerializeToString()


@pytest.mark.parametrize("content", [None, b"this is not an onnx model", "no metadata"])
def test_missing_or_unreadable_model_exits_with_one_line(tmp_path, content):
    model = tmp_path / "model.onnx"
    if content == "no metadata":
        model.write_bytes(_without_metadata())
    elif content is not None:
        model.write_bytes(content)
    cmd = node_command("mono_depth_node", find_config("mono_depth.yaml"),
                       params={"model_path": str(model)})
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert str(model) in output[0] and "Traceback" not in output[0]


def _serve(listener: Listener, drive: KittiDrive, index: int, stamp_s: float,
           timeout_s: float = 60) -> int:
    """Publish frame index (camera_info, then image) with a stamp until its depth comes back
    (discovery may lose the first); returns the stamp in nanoseconds."""
    image_pub = listener.publisher(Image, "image")
    info_pub = listener.publisher(CameraInfo, "camera_info")
    camera = drive.camera_model()
    header = Header(stamp=Time(seconds=stamp_s).to_msg(), frame_id="camera_02_optical_frame")
    stamp = Time.from_msg(header.stamp).nanoseconds
    image = numpy_to_image(drive.rgb(index), "rgb8", header)
    info = camera_to_camera_info(camera, header)

    def send_and_check() -> bool:
        info_pub.publish(info)
        image_pub.publish(image)
        return listener.spin_until(lambda: listener.stamped("depth", stamp), 2.0)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not send_and_check():
        pass
    assert listener.stamped("depth", stamp), f"no depth for frame {index}"
    return stamp


def _diagnostics(listener: Listener, name: str) -> tuple[int, str, dict[str, str]]:
    """(level, message, values) of the first /diagnostics status published from now on."""
    since = time.time_ns()
    name = f"{listener.node.get_namespace()}/{name}"  # statuses carry the node's full name

    def fresh() -> list:
        return [m for m in listener.msgs["/diagnostics"]
                if stamp_ns(m) >= since and m.status[0].name == name]

    assert listener.spin_until(lambda: bool(fresh()), 10), f"no /diagnostics from {name}"
    (status,) = fresh()[0].status
    return status.level[0], status.message, {kv.key: kv.value for kv in status.values}


def test_16uc1_range_decimated_points_auto_colours_and_diagnostics(drive, tmp_path):
    ns, log = "/t_options", tmp_path / "node.log"
    step, near, far = 3, 4.0, 30.0
    node = start_mono(ns, log, depth_encoding="16UC1", points_decimation=step,
                      points_rgb=False, colored_range="auto", min_depth_m=near,
                      max_depth_m=far, diagnostics_period_s=0.5)
    listener = listen(ns)
    try:
        stamps = [_serve(listener, drive, index, 50.0 + index) for index in range(2)]
        assert listener.spin_until(lambda: all(listener.stamped("points", s)
                                               and listener.stamped("depth/colored", s)
                                               for s in stamps), 20)
        level, message, values = _diagnostics(listener, "mono_depth_node: depth")
        assert listener.spin_until(lambda: listener.msgs["depth/info"], 5)
    finally:
        try:
            stop_node(node, log)
        finally:  # the node first: see ros_helpers.Listener.close
            listener.close()

    assert level == 0 and message.startswith("publishing at"), message
    text = log.read_text()
    assert "publishing metric depth (16UC1, millimetres)" in text and ", metres)" not in text
    assert "Failed to publish log message to rosout" not in text  # nothing logs after Ctrl-C
    assert values["output kind"] == "metric" and values["model"] == "mono_cnn_synthetic.onnx"
    assert int(values["frames published"]) >= 2 and float(values["latency p50 ms"]) > 0
    assert 0 < float(values["inference p50 ms"]) < float(values["latency p50 ms"])
    assert float(values["output rate Hz"]) > 0 and "unpaired images" not in values
    info = json.loads(listener.msgs["depth/info"][-1].data)
    assert info == {"kind": "metric", "units": "millimetres", "encoding": "16UC1",
                    "model": "mono_cnn_synthetic.onnx", "backend": values["backend"],
                    "lidar": False}

    camera = drive.camera_model()
    reference = DepthEstimator(DEFAULT_MONO_MODEL)
    for index, stamp in enumerate(stamps):
        (msg,) = listener.stamped("depth", stamp)
        assert msg.encoding == "16UC1" and (msg.height, msg.width) == (HEIGHT, WIDTH)
        millimetres = image_to_numpy(msg)
        expected = reference.predict(drive.rgb(index), fx=camera.fx)
        inside = (expected >= near) & (expected <= far)
        assert inside.mean() > 0.3 and (~inside).mean() > 0.05  # the range clips something
        assert np.all(millimetres[~inside] == 0)  # 16UC1: 0 = no estimate
        np.testing.assert_allclose(millimetres[inside] / 1000.0, expected[inside], atol=6e-4)

        (cloud,) = listener.stamped("points", stamp)
        assert (cloud.height, cloud.width) == (-(-HEIGHT // step), -(-WIDTH // step))
        assert [f.name for f in cloud.fields] == ["x", "y", "z"]  # points_rgb false
        xyz = pointcloud2_to_array(cloud).reshape(cloud.height, cloud.width, 3)
        # every step-th point of the full cloud of the same depth
        depth = np.where(inside, expected, np.nan).astype(np.float32)
        v, u = np.mgrid[0:HEIGHT:step, 0:WIDTH:step]
        sub = depth[::step, ::step]
        full = np.stack([(u - camera.cx) / camera.fx * sub, (v - camera.cy) / camera.fy * sub,
                         sub], axis=-1)
        np.testing.assert_allclose(xyz, full, rtol=1e-4, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(decimated_intrinsics(camera.K, step)[0, 0],
                                   camera.fx / step)

        (colored,) = listener.stamped("depth/colored", stamp)
        rgb = image_to_numpy(colored)
        auto = colorize_depth(depth)  # per-frame percentiles of what was published
        fixed = colorize_depth(depth, near, far)
        assert np.mean(np.abs(rgb.astype(int) - auto).max(axis=-1) > 8) < 0.01
        assert np.mean(np.abs(rgb.astype(int) - fixed).max(axis=-1) > 8) > 0.2


def test_relative_model_without_lidar_publishes_relative_depth_and_says_so(drive, tmp_path):
    model = relative_model(tmp_path / "relative.onnx")
    ns, log = "/t_relative", tmp_path / "node.log"
    node = start_mono(ns, log, model_path=str(model), diagnostics_period_s=0.5)
    listener = listen(ns)
    try:
        stamp = _serve(listener, drive, 0, 70.0)
        assert listener.spin_until(lambda: listener.stamped("depth/colored", stamp)
                                   and listener.msgs["depth/info"], 10)
        level, message, values = _diagnostics(listener, "mono_depth_node: depth")
    finally:
        try:
            stop_node(node, log)
        finally:  # the node first: see ros_helpers.Listener.close
            listener.close()
    (msg,) = listener.stamped("depth", stamp)
    np.testing.assert_allclose(image_to_numpy(msg),
                               DepthEstimator(model).predict_detailed(drive.rgb(0)).depth,
                               rtol=1e-5)
    info = json.loads(listener.msgs["depth/info"][-1].data)
    assert info["kind"] == "relative_inverse_depth" and info["lidar"] is False
    assert level == 1 and "relative depth, not metric" in message
    assert values["output kind"] == "relative_inverse_depth"
    assert not listener.stamped("points", stamp)  # no 3-D points from relative depth
    text = log.read_text()
    assert text.count("publishing RELATIVE depth") == 1 and "no 'points'" in text
