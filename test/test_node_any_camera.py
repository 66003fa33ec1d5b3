"""mono_depth_node on cameras other than KITTI's: a 640×480 stream (fx 500) then a 1280×720
stream (fx 900), rendered by the engine, published as Image + CameraInfo to the real node
(its own process, real rclpy). The node passes CameraInfo's fx to the estimator, logs the
network size once per camera, publishes depth at the input's size, and (with a model trained
for any camera) matches the engine's ground truth within the model's stated accuracy.

The mechanism runs twice: with the bundled model as it is, and with its weights relabelled
``resize_policy: canonical`` with a small maximum size (so the node's frames are tiled): the
whole canonical path through the node, before a canonical model is bundled."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from rclpy.time import Time
from ros_helpers import Listener, start_node, stop_node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from depth_ros.geometry import PinholeCamera
from depth_ros.inference import DepthEstimator
from depth_ros.ros.conversions import camera_to_camera_info, image_to_numpy, numpy_to_image
from depth_ros.synthetic.drive import plan_drive
from depth_ros.synthetic.render import render_frame
from depth_ros.weights import DEFAULT_MONO_MODEL

pytestmark = [pytest.mark.ros, pytest.mark.slow]

MODEL_PATH = DEFAULT_MONO_MODEL
# AbsRel bound of the node's depth against the engine truth (pixels with truth within the
# model's range), from the bundled model's card once it is trained for the canonical camera.
# The fixed-policy model (v2) measures 1.25 (640×480) and 0.78 (1280×720) here: see the
# strict xfail below.
NODE_ABS_REL_BOUND = 0.15
STREAMS = {
    "vga": PinholeCamera(500.0, 500.0, 319.5, 239.5, 640, 480),
    "hd": PinholeCamera(900.0, 900.0, 639.5, 359.5, 1280, 720),
}
SEED, FRAMES = 2003, 2  # an engine test-split scene, two frames a stream
# The relabelled model's maximum network size: VGA's 320x256 input runs in 1x2 tiles, 720p's
# 352x224 in 2x2.
RELABELLED_MAX = {"max_input_height": "192", "max_input_width": "320"}


@pytest.fixture(scope="module")
def streams() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """name -> [(RGB, true depth)] for each frame, every camera at the same poses."""
    plan = plan_drive(FRAMES, seed=SEED)
    return {name: [render_frame(plan.scene_at(i), plan.poses[i], camera, noise_seed=i)
                   for i in range(FRAMES)] for name, camera in STREAMS.items()}


def serve(listener: Listener, rgb: np.ndarray, camera: PinholeCamera, stamp_s: float,
          timeout_s: float = 60) -> Image:
    """Publish CameraInfo then the image until the depth with its stamp comes back
    (discovery may lose the first); returns that depth message."""
    image_pub = listener.publisher(Image, "image")
    info_pub = listener.publisher(CameraInfo, "camera_info")
    header = Header(stamp=Time(seconds=stamp_s).to_msg(), frame_id="camera_optical_frame")
    stamp = Time.from_msg(header.stamp).nanoseconds
    image = numpy_to_image(rgb, "rgb8", header)
    info = camera_to_camera_info(camera, header)

    def send_and_check() -> bool:
        info_pub.publish(info)
        image_pub.publish(image)
        return listener.spin_until(lambda: listener.stamped("depth", stamp), 2.0)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not send_and_check():
        pass
    got = listener.stamped("depth", stamp)
    assert got, f"no depth for the {camera.width}x{camera.height} frame at {stamp_s} s"
    return got[0]


def relabelled_canonical(path: Path) -> Path:
    """The bundled model's ONNX file with ``resize_policy: canonical`` and
    ``RELABELLED_MAX`` in its metadata (the weights are today's)."""
    model = onnx.load(str(MODEL_PATH))
    props = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**props, "resize_policy": "canonical",
                                        **RELABELLED_MAX})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module", params=["bundled", "relabelled_canonical"])
def served(request, streams, tmp_path_factory) -> dict:
    """Both streams through one node, one after the other (the resolution changes)."""
    base = tmp_path_factory.mktemp("node")
    log = base / "node.log"
    model = (MODEL_PATH if request.param == "bundled"
             else relabelled_canonical(base / "canonical.onnx"))
    ns = f"/t_any_camera_{request.param}"
    node = start_node("mono_depth_node", "mono_depth.yaml", ns, log, model_path=str(model))
    listener = Listener(ns, {"depth": Image})
    depth: dict[str, list[np.ndarray]] = {}
    try:
        for offset, (name, frames) in enumerate(streams.items()):
            depth[name] = [image_to_numpy(serve(listener, rgb, STREAMS[name],
                                                100.0 + 10 * offset + index))
                           for index, (rgb, _) in enumerate(frames)]
    finally:
        try:
            stop_node(node, log)
        finally:  # the node first: see ros_helpers.Listener.close
            listener.close()
    return {"depth": depth, "log": log.read_text(), "model": model, "name": request.param}


def abs_rel(depth: np.ndarray, truth: np.ndarray, max_depth_m: float) -> float:
    """Mean |d − t| / t over pixels with truth in (0, max_depth_m] and a published depth."""
    good = np.isfinite(truth) & (truth <= max_depth_m) & np.isfinite(depth)
    return float(np.mean(np.abs(depth[good] - truth[good]) / truth[good]))


def test_depth_has_the_stream_size_is_metric_and_uses_camera_info_fx(served, streams):
    """Shape = input shape, finite over most of the frame, inside the model's range, and
    equal to ``DepthEstimator.predict(rgb, fx=CameraInfo's fx)``: the node passes the focal
    length on (a fixed model rescales by it, a canonical one sizes its input by it)."""
    reference = DepthEstimator(served["model"], backend="onnxruntime", num_threads=2)
    meta = reference.metadata
    for name, frames in streams.items():
        camera = STREAMS[name]
        for (rgb, _), depth in zip(frames, served["depth"][name], strict=True):
            assert depth.dtype == np.float32 and depth.shape == (camera.height, camera.width)
            finite = np.isfinite(depth)
            assert finite.mean() > 0.9, (name, finite.mean())
            assert meta.min_depth_m <= depth[finite].min() <= depth[finite].max() \
                <= meta.max_depth_m
            expected = reference.predict(rgb, fx=camera.fx)
            np.testing.assert_allclose(depth[finite], expected[finite], rtol=1e-4, atol=1e-4)
            other = reference.predict(rgb, fx=1.5 * camera.fx)  # fx matters: a wrong one shows
            assert np.nanmedian(np.abs(other / expected - 1)) > 0.1


def test_network_size_is_logged_once_per_camera(served):
    """One line per resolution, with the size the network runs at, not one per frame."""
    reference = DepthEstimator(served["model"], backend="onnxruntime", num_threads=1)
    log = served["log"]
    for camera in STREAMS.values():
        line = reference.describe_input(camera.height, camera.width, camera.fx)
        assert log.count(line) == 1, (line, log[-3000:])
        if served["name"] == "relabelled_canonical":
            assert "overlapping tiles of 320x192" in line


def test_depth_matches_the_engine_truth_within_the_model_accuracy(served, streams, request):
    """AbsRel against the engine's truth within the model's stated accuracy on both
    streams. A ``fixed`` model squeezes these cameras into its KITTI-shaped input and misses
    it by far: a strict xfail until the canonical model is bundled."""
    if served["name"] != "bundled":
        pytest.skip("the accuracy bound is the bundled model's")
    reference = DepthEstimator(MODEL_PATH, backend="onnxruntime", num_threads=1)
    if reference.resize_policy == "fixed":
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="the bundled model has the fixed resize policy"))
    max_depth = reference.metadata.max_depth_m
    figures = {name: np.mean([abs_rel(d, truth, max_depth) for d, (_, truth)
                              in zip(served["depth"][name], streams[name], strict=True)])
               for name in STREAMS}
    assert all(value <= NODE_ABS_REL_BOUND for value in figures.values()), figures
