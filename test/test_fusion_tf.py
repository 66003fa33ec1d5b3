"""fusion_depth_node taking its LiDAR → camera transform from TF, as a process.

tf2_ros does not install from PyPI, so the node runs with a stand-in ``tf2_ros`` package on
its path that has the real module's names and signatures (``Buffer()``,
``TransformListener(buffer, node)``, ``Buffer.lookup_transform(target_frame, source_frame,
time, timeout)`` returning a geometry_msgs TransformStamped, ``TransformException``). Its
transforms come from a JSON file the test writes while the node runs: "publishing" on TF.
Checked: the node picks TF when nothing else is given, says so, drops clouds (no depth, one
warning naming both frames) until the transform is there, logs it once found, then projects
with exactly that transform.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time

import numpy as np
import pytest
from rclpy.time import Time
from ros_helpers import Listener, cloud_message, start_node, stop_node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depth_ros.geometry import PinholeCamera
from depth_ros.inference import DepthEstimator
from depth_ros.ros.conversions import camera_to_camera_info, image_to_numpy, numpy_to_image
from depth_ros.ros.launching import node_command
from depth_ros.sensors.extrinsics import BODY_TO_OPTICAL, sparse_depth_image
from depth_ros.share import find_config
from depth_ros.weights import DEFAULT_FUSION_MODEL

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CAMERA_FRAME, LIDAR_FRAME = "camera_optical", "velodyne"
WIDTH, HEIGHT = 208, 64
CAMERA = PinholeCamera(110.0, 110.0, 103.5, 31.5, WIDTH, HEIGHT)

FAKE_TF2_ROS = '''"""Stand-in for tf2_ros with its API: transforms from the JSON file
$DEPTH_ROS_TEST_TF, re-read at each lookup:
{"target <- source": [[tx, ty, tz], [qx, qy, qz, qw]]}."""
import json
import os

from geometry_msgs.msg import TransformStamped


class TransformException(Exception):
    pass


class LookupException(TransformException):
    pass


class Buffer:
    def __init__(self, cache_time=None, node=None):
        self.lookups = 0

    def lookup_transform(self, target_frame, source_frame, time, timeout=None):
        self.lookups += 1
        path = os.environ["DEPTH_ROS_TEST_TF"]
        table = json.load(open(path)) if os.path.exists(path) else {}
        key = f"{target_frame} <- {source_frame}"
        if key not in table:
            raise LookupException(f'"{target_frame}" passed to lookupTransform argument '
                                  f'target_frame does not exist.')
        (tx, ty, tz), (qx, qy, qz, qw) = table[key]
        msg = TransformStamped()
        msg.header.frame_id, msg.child_frame_id = target_frame, source_frame
        t, q = msg.transform.translation, msg.transform.rotation
        t.x, t.y, t.z, q.x, q.y, q.z, q.w = tx, ty, tz, qx, qy, qz, qw
        return msg


class TransformListener:
    def __init__(self, buffer, node, *, spin_thread=False, qos=None, static_qos=None):
        self.buffer = buffer
'''

# A LiDAR with REP 103 body axes, its origin 0.3 m above (optical y points down) and 0.1 m
# behind the camera's.
LIDAR_TO_CAMERA = BODY_TO_OPTICAL.copy()
LIDAR_TO_CAMERA[:3, 3] = [0.0, -0.3, -0.1]
# (x, y, z, w) of BODY_TO_OPTICAL's rotation, as a TF publisher sends it
QUATERNION = [0.5, -0.5, 0.5, 0.5]


def _points() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.column_stack([rng.uniform(4, 40, 600), rng.uniform(-8, 8, 600),
                            rng.uniform(-1.5, 1.5, 600)]).astype(np.float32)


def _rgb() -> np.ndarray:
    ramp = np.linspace(0, 255, WIDTH, dtype=np.float32)[None, :, None]
    noise = np.random.default_rng(5).normal(0, 12, (HEIGHT, WIDTH, 3))
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def test_extrinsics_come_from_tf_once_it_has_them(tmp_path):
    fake = tmp_path / "fake"
    (fake / "tf2_ros").mkdir(parents=True)
    (fake / "tf2_ros" / "__init__.py").write_text(FAKE_TF2_ROS)
    tf_file = tmp_path / "tf.json"
    env = {**os.environ, "DEPTH_ROS_TEST_TF": str(tf_file),
           "PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    ns, log = "/t_fusion_tf", tmp_path / "node.log"
    cmd = node_command("fusion_depth_node", find_config("fusion_depth.yaml"),
                       params={"model_path": str(DEFAULT_FUSION_MODEL), "lidar_timeout_s": 0.0,
                               "warn_period_s": 0.0}, remaps={"__ns": ns})
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    listener = Listener(ns, {"depth": Image})
    image_pub = listener.publisher(Image, "image")
    info_pub = listener.publisher(CameraInfo, "camera_info")
    cloud_pub = listener.publisher(PointCloud2, "lidar/points")
    rgb, points = _rgb(), _points()
    stamps = iter(range(2000_000_000_000, 3000_000_000_000, 100_000_000))

    def send() -> int:
        stamp = next(stamps)
        stamp_msg = Time(nanoseconds=stamp).to_msg()
        info_pub.publish(camera_to_camera_info(CAMERA, Header(stamp=stamp_msg,
                                                              frame_id=CAMERA_FRAME)))
        cloud_pub.publish(cloud_message({k: points[:, i] for i, k in enumerate("xyz")},
                                        Header(stamp=stamp_msg, frame_id=LIDAR_FRAME)))
        image_pub.publish(numpy_to_image(rgb, "rgb8", Header(stamp=stamp_msg,
                                                             frame_id=CAMERA_FRAME)))
        return stamp

    try:
        assert listener.spin_until(lambda: listener.node.count_publishers("depth") > 0
                                   and listener.node.count_subscribers("lidar/points") > 0,
                                   60), log.read_text()[-3000:]
        text = log.read_text()
        assert "extrinsics from TF: each cloud's frame_id to the camera's" in text, text
        assert "axes-only" not in text
        # Not on TF yet: clouds are dropped, and with lidar_timeout_s 0 no image is served.
        unserved = []
        for _ in range(40):
            unserved.append(send())
            if listener.spin_until(lambda: "in TF yet" in log.read_text(), 0.5):
                break
        listener.spin_until(lambda: False, 1.0)
        assert (f"dropping cloud: no transform from '{LIDAR_FRAME}' to '{CAMERA_FRAME}' in TF "
                "yet (LookupException: ") in log.read_text(), log.read_text()[-3000:]
        assert not any(listener.stamped("depth", s) for s in unserved)

        tf_file.write_text(json.dumps({f"{CAMERA_FRAME} <- {LIDAR_FRAME}": [
            LIDAR_TO_CAMERA[:3, 3].tolist(), QUATERNION]}))
        served = None
        for _ in range(6):
            stamp = send()
            if listener.spin_until(lambda s=stamp: listener.stamped("depth", s), 20):
                served = listener.stamped("depth", stamp)[0]
                break
        assert served is not None, log.read_text()[-3000:]
        for _ in range(3):  # found once, then cached: logged once
            stamp = send()
            assert listener.spin_until(lambda s=stamp: listener.stamped("depth", s), 20)
        text = log.read_text()
        assert text.count(f"extrinsics from TF '{LIDAR_FRAME}' -> '{CAMERA_FRAME}': "
                          "translation [0.0000, -0.3000, -0.1000] m, rpy [90.00, -90.00, "
                          "0.00] deg") == 1, text
    finally:
        try:
            stop_node(proc, log)
        finally:  # the node first: see ros_helpers.Listener.close
            listener.close()

    # The node projected with TF's transform: its depth is the model's for that projection.
    sparse = sparse_depth_image(points, LIDAR_TO_CAMERA, CAMERA.K, WIDTH, HEIGHT)
    assert (sparse > 0).sum() > 50
    estimator = DepthEstimator(DEFAULT_FUSION_MODEL)
    expected = estimator.predict_detailed(rgb, sparse, CAMERA.fx).depth
    moved = estimator.predict_detailed(
        rgb, sparse_depth_image(points, BODY_TO_OPTICAL, CAMERA.K, WIDTH, HEIGHT),
        CAMERA.fx).depth
    depth = image_to_numpy(served)
    valid = np.isfinite(depth)
    assert valid.mean() > 0.9
    np.testing.assert_allclose(depth[valid], expected[valid], rtol=1e-3, atol=1e-3)
    assert np.nanmax(np.abs(expected - moved)) > 0.05, "the transform must matter"


@pytest.mark.parametrize("params, expected", [
    ({}, None),  # TF where tf2_ros imports (a ROS install), else the warned default
    ({"use_tf": False}, "[WARN]"),
    ({"lidar_to_camera": LIDAR_TO_CAMERA.ravel().tolist()}, "[INFO]"),
])
def test_the_node_says_where_its_extrinsics_come_from(params, expected, tmp_path):
    if expected is None:
        expected = "[INFO]" if importlib.util.find_spec("tf2_ros") else "[WARN]"
    words = {"[INFO]": "extrinsics from the lidar_to_camera parameter"
             if params else "extrinsics from TF: each cloud's frame_id",
             "[WARN]": "extrinsics: neither calibration_path nor lidar_to_camera is set and "
             + ("use_tf is false" if params else "tf2_ros is not importable")
             + ": using the axes-only default lidar_to_camera (no offset)"}[expected]
    log = tmp_path / "node.log"
    proc = start_node("fusion_depth_node", "fusion_depth.yaml", "/t_fusion_extrinsics", log,
                      model_path=str(DEFAULT_FUSION_MODEL), **params)
    try:
        deadline = time.monotonic() + 60
        while "pairing within" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        stop_node(proc, log)
    lines = [line for line in log.read_text().splitlines() if "]: extrinsics" in line]
    assert len(lines) == 1 and lines[0].startswith(expected) and words in lines[0], lines
