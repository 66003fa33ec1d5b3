"""Bad input fuzzing of the depth nodes, each running as its own process (console script).

Malformed messages of every kind the nodes can meet (wrong or unknown encodings, sizes that
do not match ``step``, empty images, CameraInfo with a zero focal length or another size than
the image, clouds without x/y/z, with only NaN/inf points or none, stamps out of order or far
apart) go out through real rclpy publishers, each followed by a good frame. Counted: crashes
(the process must live to the end and exit cleanly) and lost good frames (each good frame,
sent only once the previous one was answered so that newest-only dropping cannot explain a
loss, must come back as depth with its stamp). Each problem must be named by a warning in the
node's log, warnings must be rate-limited, and no malformed input may produce depth.
A model without metadata must stop the node at start-up with one line, not a traceback.
"""

from __future__ import annotations

import importlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.time import Time
from ros_helpers import Listener, cloud_message, stamp_ns, start_node, stop_node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from depth_ros.geometry import PinholeCamera
from depth_ros.ros.conversions import camera_to_camera_info, numpy_to_image
from depth_ros.ros.launching import node_command
from depth_ros.share import find_config
from depth_ros.weights import DEFAULT_MONO_MODEL

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WIDTH, HEIGHT = 208, 64  # the bundled model runs at 416×128: the node resizes both ways
FRAME_ID = "camera_02_optical_frame"
CAMERA = PinholeCamera(110.0, 110.0, 103.5, 31.5, WIDTH, HEIGHT)
WARN_PERIOD_S = 0.05  # per kind of problem; the sequence waits longer between kinds
REPLY_TIMEOUT_S = 30.0  # a loaded 2-core machine: generous, it bounds only a failure
NODES = ("mono_depth_node", "fusion_depth_node")


def _rgb() -> np.ndarray:
    rng = np.random.default_rng(5)
    ramp = np.linspace(0, 255, WIDTH, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 12, (HEIGHT, WIDTH, 3))
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


RGB = _rgb()


def _points(count: int = 400, seed: int = 3) -> dict[str, np.ndarray]:
    """LiDAR returns in front of the camera (REP 103 body frame: x forward, z up)."""
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(4, 40, count).astype(np.float32),
            "y": rng.uniform(-8, 8, count).astype(np.float32),
            "z": rng.uniform(-1.5, 1.5, count).astype(np.float32),
            "intensity": rng.uniform(0, 1, count).astype(np.float32)}


class Rig:
    """Publishers into the node's namespace, the stamp clock and the node's log."""

    def __init__(self, listener: Listener, executable: str, log: Path) -> None:
        self.listener = listener
        self.lidar = executable == "fusion_depth_node"
        self.log = log
        self.image_pub = listener.publisher(Image, "image")
        self.info_pub = listener.publisher(CameraInfo, "camera_info")
        self.cloud_pub = listener.publisher(PointCloud2, "lidar/points") if self.lidar else None
        self.now_s = 1000.0

    def stamp(self, step_s: float = 0.1) -> int:
        """A stamp later than every one used so far (nanoseconds)."""
        self.now_s += step_s
        return int(round(self.now_s * 1e9))

    def header(self, stamp: int) -> Header:
        return Header(stamp=Time(nanoseconds=stamp).to_msg(), frame_id=FRAME_ID)

    def image(self, stamp: int) -> Image:
        return numpy_to_image(RGB, "rgb8", self.header(stamp))

    def info(self, stamp: int = 0) -> CameraInfo:
        return camera_to_camera_info(CAMERA, self.header(stamp))

    def cloud(self, stamp: int, columns: dict[str, np.ndarray] | None = None) -> PointCloud2:
        return cloud_message(columns or _points(), self.header(stamp))

    def frame(self, image: Image) -> list[tuple[str, object]]:
        """An image as the node needs it: with a cloud of the same stamp on fusion."""
        if not self.lidar:
            return [("image", image)]
        return [("lidar/points", self.cloud(stamp_ns(image))), ("image", image)]

    def publish(self, messages: list[tuple[str, object]]) -> None:
        publishers = {"image": self.image_pub, "camera_info": self.info_pub,
                      "lidar/points": self.cloud_pub}
        for topic, msg in messages:
            publishers[topic].publish(msg)

    def log_text(self, offset: int = 0) -> str:
        return self.log.read_text(errors="replace")[offset:]

    def replied(self, stamp: int) -> bool:
        return bool(self.listener.stamped("depth", stamp))


@dataclass(frozen=True)
class Case:
    """One malformed input: the messages that carry it and the warning that must name it.

    ``expect`` maps a node to the log text naming the problem, or None where that node
    serves the input (a mono node has no use for stamp order, for instance). ``settle``:
    publish the messages but the probe image only after a pause (CameraInfo is cached and
    only checked against the next image). ``served``: named by a warning, yet served (a
    stamp that jumps back is a bag played again: the node starts afresh on the new time line).
    """

    name: str
    build: Callable[[Rig, int], list[tuple[str, object]]]
    expect: dict[str, str | None]
    settle: bool = False
    served: bool = False


def _both(text: str | None) -> dict[str, str | None]:
    return {node: text for node in NODES}


def _image(data_fn: Callable[[bytes], bytes] | None = None,
           **fields) -> Callable[[Rig, int], list[tuple[str, object]]]:
    """A malformed image: the good one with some fields (and maybe its data) replaced."""
    def build(rig: Rig, stamp: int) -> list[tuple[str, object]]:
        image = rig.image(stamp)
        for key, value in fields.items():
            setattr(image, key, value)
        if data_fn is not None:
            image.data = data_fn(bytes(image.data))
        return rig.frame(image)
    return build


def _encoding(name: str) -> Case:
    return Case(f"encoding {name!r}", _image(encoding=name),
                _both(f"encoding {name!r} is not a colour image"))


def _info(change: Callable[[CameraInfo], None]) -> Callable[[Rig, int], list[tuple[str, object]]]:
    def build(rig: Rig, stamp: int) -> list[tuple[str, object]]:
        info = rig.info(stamp)
        change(info)
        return [("camera_info", info), *rig.frame(rig.image(stamp))]
    return build


def _set_k(fx: float, fy: float | None = None) -> Callable[[CameraInfo], None]:
    def change(info: CameraInfo) -> None:
        k = list(info.k)
        k[0], k[4] = fx, fy if fy is not None else k[4]
        info.k = k
    return change


def _cloud_columns(columns: dict[str, np.ndarray]) -> Callable[[Rig, int], list]:
    return lambda rig, stamp: [("lidar/points", rig.cloud(stamp, columns))]


def _cloud_fields(change: Callable[[PointCloud2], None]) -> Callable[[Rig, int], list]:
    def build(rig: Rig, stamp: int) -> list[tuple[str, object]]:
        cloud = rig.cloud(stamp)
        change(cloud)
        return [("lidar/points", cloud)]
    return build


def _field(index: int, **values) -> Callable[[PointCloud2], None]:
    def change(cloud: PointCloud2) -> None:
        fields = list(cloud.fields)
        fields[index] = PointField(**{"name": fields[index].name,
                                      "offset": fields[index].offset,
                                      "datatype": fields[index].datatype,
                                      "count": fields[index].count, **values})
        cloud.fields = fields
    return change


def _fusion(text: str) -> dict[str, str | None]:
    return {"fusion_depth_node": text}


def _out_of_order_image(rig: Rig, stamp: int) -> list[tuple[str, object]]:
    old = stamp - int(0.55e9)  # behind the last good frame, within the sync's reset window
    return [("image", rig.image(old))]


def _out_of_order_cloud(rig: Rig, stamp: int) -> list[tuple[str, object]]:
    return [("lidar/points", rig.cloud(stamp - int(0.55e9)))]


def _image_far_before_cloud(rig: Rig, stamp: int) -> list[tuple[str, object]]:
    later = stamp + int(2e9)
    rig.now_s = later / 1e9  # good frames from here on are newer than both
    messages = [("image", rig.image(stamp))]
    if rig.lidar:
        messages.append(("lidar/points", rig.cloud(later)))
    return messages


def _cloud_far_before_image(rig: Rig, stamp: int) -> list[tuple[str, object]]:
    later = stamp + int(2e9)
    rig.now_s = later / 1e9
    messages = [("image", rig.image(later))]
    if rig.lidar:
        messages.insert(0, ("lidar/points", rig.cloud(stamp)))
    return messages


def _stamp_jumps_back(rig: Rig, stamp: int) -> list[tuple[str, object]]:
    return rig.frame(rig.image(stamp - int(100e9)))


def _stamp_zero(rig: Rig, stamp: int) -> list[tuple[str, object]]:
    return rig.frame(rig.image(0))


NAN = np.float32(np.nan)
CASES: list[Case] = [
    # Encodings: unknown, misspelt, or not a colour image a depth network can take.
    *[_encoding(name) for name in ("yuv422_weird", "RGB8", "", "rgb16", "bgra16", "mono16",
                                   "16UC1", "32FC1", "8UC3", "bayer_rggb8", "jpeg")],
    # Sizes that do not match step or the data.
    Case("data one byte short", _image(data_fn=lambda d: d[:-1]),
         _both("data length 39935 != step 624")),
    Case("data one row long", _image(data_fn=lambda d: d + d[:624]),
         _both("data length 40560 != step 624")),
    Case("no data", _image(data_fn=lambda d: b""), _both("data length 0 != step 624")),
    Case("step below the row size", _image(step=600), _both("step 600 < width 208")),
    Case("step 0", _image(step=0), _both("step 0 < width 208")),
    Case("step above the data's rows", _image(step=640), _both("data length 39936 != step 640")),
    Case("rgba8 size for rgb8 data", _image(encoding="rgba8", step=832),
         _both("data length 39936 != step 832")),
    Case("huge claimed size", _image(width=100_000, height=100_000, step=300_000),
         _both("data length 39936 != step 300000 × height 100000")),
    # Empty images.
    Case("0×0 image", _image(width=0, height=0, step=0, data_fn=lambda d: b""),
         _both("zero-size image 0×0")),
    Case("zero width", _image(width=0, step=0, data_fn=lambda d: b""),
         _both("zero-size image 0×64")),
    Case("zero height", _image(height=0, data_fn=lambda d: b""),
         _both("zero-size image 208×0")),
    # CameraInfo: uncalibrated, non-finite, empty, or of another size than the image.
    Case("CameraInfo K all zero", _info(lambda i: setattr(i, "k", [0.0] * 9)),
         _both("fx=0 fy=0"), settle=True),
    Case("CameraInfo fx 0", _info(_set_k(0.0)), _both("fx=0 fy=110"), settle=True),
    Case("CameraInfo fx negative", _info(_set_k(-110.0)), _both("fx=-110"), settle=True),
    Case("CameraInfo fx NaN", _info(_set_k(float("nan"))), _both("fx=nan"), settle=True),
    Case("CameraInfo fy inf", _info(_set_k(110.0, float("inf"))), _both("fy=inf"),
         settle=True),
    Case("CameraInfo 0×0", _info(lambda i: (setattr(i, "width", 0), setattr(i, "height", 0))),
         _both("zero-size camera 0×0"), settle=True),
    Case("CameraInfo half size", _info(lambda i: (setattr(i, "width", 104),
                                                  setattr(i, "height", 32))),
         _both("CameraInfo is 104x32 but the image is 208x64"), settle=True),
    Case("CameraInfo transposed size", _info(lambda i: (setattr(i, "width", 64),
                                                        setattr(i, "height", 208))),
         _both("CameraInfo is 64x208 but the image is 208x64"), settle=True),
    # Clouds: no coordinates, nothing finite, nothing at all, broken layouts.
    Case("cloud without x/y/z", _cloud_columns({"intensity": _points()["intensity"]}),
         _fusion("no field(s) ['x', 'y', 'z']")),
    Case("cloud without z", _cloud_columns({k: v for k, v in _points().items() if k != "z"}),
         _fusion("no field(s) ['z']")),
    Case("cloud of NaN points", _cloud_columns({k: np.full(50, NAN) for k in "xyz"}),
         _fusion("no finite x/y/z point in it (50x1 points)")),
    Case("cloud of inf points", _cloud_columns({k: np.full(50, np.float32(np.inf))
                                                for k in "xyz"}),
         _fusion("no finite x/y/z point in it (50x1 points)")),
    Case("empty cloud", _cloud_columns({k: np.zeros(0, np.float32) for k in "xyz"}),
         _fusion("no finite x/y/z point in it (0x1 points)")),
    Case("cloud data short", _cloud_fields(lambda c: setattr(c, "data", bytes(c.data)[:-3])),
         _fusion("data length 6397 != row_step 6400")),
    Case("cloud row_step short", _cloud_fields(lambda c: setattr(c, "row_step", 100)),
         _fusion("row_step 100 < width 400 × point_step 16")),
    Case("cloud field of unknown datatype", _cloud_fields(_field(0, datatype=42)),
         _fusion("field 'x' has unknown datatype 42")),
    Case("cloud field count 3", _cloud_fields(_field(2, count=3)),
         _fusion("field 'z' has count 3")),
    Case("cloud field past point_step", _cloud_fields(_field(1, offset=14)),
         _fusion("field 'y' at offset 14 (4 bytes) overruns point_step 16")),
    Case("cloud point_step 0", _cloud_fields(lambda c: setattr(c, "point_step", 0)),
         _fusion("overruns point_step 0")),
    # Stamps: a mono node serves any order; a fusion node pairs in order only.
    # A stamp off its stream's time line is held aside, dropped unless the next message of
    # the stream agrees with it (a jump, followed): one frame far back is a stray, not served.
    Case("image older than the last", _out_of_order_image,
         {"mono_depth_node": None,
          "fusion_depth_node": "behind the previous image: held aside"}),
    Case("cloud older than the last", _out_of_order_cloud,
         _fusion("behind the previous cloud: held aside")),
    Case("cloud 2 s after the image", _image_far_before_cloud,
         {"mono_depth_node": None,
          "fusion_depth_node": "ahead of the previous cloud: held aside"}),
    Case("image 2 s after the cloud", _cloud_far_before_image,
         {"mono_depth_node": None,
          "fusion_depth_node": "ahead of the previous image: held aside"}),
    Case("stamp 100 s back", _stamp_jumps_back,
         {"mono_depth_node": None,
          "fusion_depth_node": "behind the previous image: held aside"}),
    Case("stamp zero", _stamp_zero,
         {"mono_depth_node": None,
          "fusion_depth_node": "behind the previous image: held aside"}),
    # NaN/inf among good points: dropped, the rest is used (served, no warning needed).
    Case("cloud with NaN and inf points among good ones",
         lambda rig, stamp: [("lidar/points", rig.cloud(stamp, {
             k: np.concatenate([v, np.array([np.nan, np.inf, -np.inf], np.float32)])
             for k, v in _points().items()})), ("image", rig.image(stamp))],
         {"fusion_depth_node": None}),
]


@dataclass
class Tally:
    """What one node run counted."""

    malformed: int = 0
    good_frames: int = 0
    lost: list = field(default_factory=list)  # good frames without a depth reply
    unnamed: list = field(default_factory=list)  # problems no warning named
    bad_stamps: dict = field(default_factory=dict)  # stamp of a malformed image -> case
    served_stamps: dict = field(default_factory=dict)  # case -> stamps, one must be answered


def _send(rig: Rig, messages: list[tuple[str, object]], settle: bool) -> None:
    if settle:  # the CameraInfo first, cached by the node, then the image it is checked on
        rig.publish(messages[:1])
        rig.listener.spin_until(lambda: False, 0.3)
        messages = messages[1:]
    rig.publish(messages)


def _await_warning(rig: Rig, case: Case, text: str, tally: Tally) -> bool:
    """Send the case until text shows in the log (discovery or a best-effort input may lose
    a copy); each try is built afresh, so a stamp is never sent twice."""
    offset = len(rig.log_text())
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        messages = case.build(rig, rig.stamp())
        for topic, msg in messages:
            if topic == "image" and case.served:
                tally.served_stamps.setdefault(case.name, []).append(stamp_ns(msg))
            elif topic == "image":
                tally.bad_stamps[stamp_ns(msg)] = case.name
        _send(rig, messages, case.settle)
        if rig.listener.spin_until(lambda: text in rig.log_text(offset), 2.0):
            return True
    return False


def _good_frame(rig: Rig, tally: Tally, after: str) -> None:
    """One good frame, sent once; lost unless its depth comes back."""
    stamp = rig.stamp()
    rig.publish(rig.frame(rig.image(stamp)))
    tally.good_frames += 1
    if not rig.listener.spin_until(lambda: rig.replied(stamp), REPLY_TIMEOUT_S):
        tally.lost.append(after)


def _pause(rig: Rig) -> None:
    # Longer than the rate limit, so the next problem of the same kind is logged.
    rig.listener.spin_until(lambda: False, 1.5 * WARN_PERIOD_S)


def _run_case(rig: Rig, case: Case, executable: str, tally: Tally) -> None:
    expect = case.expect[executable]
    _pause(rig)
    if expect is not None:
        tally.malformed += 1
        if not _await_warning(rig, case, expect, tally):
            tally.unnamed.append(f"{case.name}: no warning with {expect!r}")
    else:  # served by this node: it must answer, like a good frame
        messages = case.build(rig, rig.stamp())
        _send(rig, messages, case.settle)
        probe = stamp_ns(messages[-1][1])
        if not rig.listener.spin_until(lambda: rig.replied(probe), REPLY_TIMEOUT_S):
            tally.lost.append(f"{case.name} (valid for this node)")
    if case.settle:
        rig.publish([("camera_info", rig.info())])
        # CameraInfo and image come on two topics: the good one must be cached first.
        rig.listener.spin_until(lambda: False, 0.3)
    _pause(rig)
    _good_frame(rig, tally, after=case.name)


def _diagnostics(rig: Rig) -> dict[str, str]:
    since = time.time_ns()  # the node stamps diagnostics with the same system clock
    fresh: list = []

    def arrived() -> bool:
        fresh[:] = [m for m in rig.listener.msgs["/diagnostics"] if stamp_ns(m) >= since]
        return bool(fresh)

    assert rig.listener.spin_until(arrived, 10), "no /diagnostics"
    (status,) = fresh[0].status
    return {kv.key: kv.value for kv in status.values}


def _node_available(executable: str) -> None:
    try:
        importlib.import_module(f"depth_ros.ros.{executable}")
    except ImportError as exc:
        pytest.skip(f"{executable} not written yet ({exc})")


NO_CAMERA_INFO = Case("image before any CameraInfo", lambda rig, stamp: rig.frame(
    rig.image(stamp)), _both("no CameraInfo received on 'camera_info' yet"))
# A flood of one problem, and the rate limiter's key for it.
FLOOD = {"mono_depth_node": (CASES[0], "bad_image"),
         "fusion_depth_node": (next(c for c in CASES if c.name == "cloud without x/y/z"),
                               "bad_cloud")}


def _flood(rig: Rig, executable: str) -> tuple[str, float]:
    """60 copies of one malformed input as fast as the test sends; returns the log written
    meanwhile (and by one more copy after the period) and how long the flood took."""
    case, _ = FLOOD[executable]
    offset = len(rig.log_text())
    start = time.monotonic()
    for _ in range(60):
        rig.publish(case.build(rig, rig.stamp(0.01)))
        rig.listener.spin_until(lambda: False, 0.01)
    flood_s = time.monotonic() - start
    _pause(rig)
    rig.publish(case.build(rig, rig.stamp()))  # past the period: logged with the held count
    rig.listener.spin_until(lambda: "suppressed" in rig.log_text(offset), 5)
    return rig.log_text(offset), flood_s


@pytest.mark.parametrize("executable", NODES)
def test_malformed_inputs_cost_no_crash_and_no_good_frame(executable, tmp_path):
    _node_available(executable)
    ns = f"/t_fuzz_{executable.split('_')[0]}"
    log = tmp_path / "node.log"
    params = {"model_path": str(DEFAULT_MONO_MODEL), "warn_period_s": WARN_PERIOD_S,
              "diagnostics_period_s": 0.5}
    if executable == "fusion_depth_node":
        params["lidar_timeout_s"] = 0.0  # always pair: every image goes through the sync
    proc = start_node(executable, executable.removesuffix("_node") + ".yaml", ns, log,
                      **params)
    listener = Listener(ns, {"depth": Image, "/diagnostics": DiagnosticArray})
    rig = Rig(listener, executable, log)
    tally = Tally()
    try:
        ready = listener.spin_until(lambda: listener.node.count_subscribers("image") > 0
                                    and listener.node.count_publishers("depth") > 0, 60)
        assert ready, log.read_text()[-3000:]
        for case in [NO_CAMERA_INFO, *CASES]:
            if case is NO_CAMERA_INFO:
                # Also the discovery warm-up: the warning shows once the link is up.
                tally.malformed += 1
                if not _await_warning(rig, case, case.expect[executable], tally):
                    tally.unnamed.append(case.name)
                rig.publish([("camera_info", rig.info())])
                rig.listener.spin_until(lambda: False, 0.3)
                _good_frame(rig, tally, after=case.name)
            elif executable in case.expect:
                _run_case(rig, case, executable, tally)
            assert proc.poll() is None, f"died after {case.name}:\n{log.read_text()[-3000:]}"
        flood_log, flood_s = _flood(rig, executable)
        _good_frame(rig, tally, after="the flood")
        values = _diagnostics(rig)
        answered_bad = sorted({case for stamp, case in tally.bad_stamps.items()
                               if rig.replied(stamp)})
        unserved = [case for case, stamps in tally.served_stamps.items()
                    if not any(rig.replied(stamp) for stamp in stamps)]
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        try:
            stop_node(proc, log)  # exit code 0, no traceback
        finally:  # the node first: see ros_helpers.Listener.close
            listener.close()

    assert tally.malformed >= 30, tally.malformed
    assert tally.lost == [], f"good frames lost after: {tally.lost}"
    assert tally.unnamed == [], "\n".join(tally.unnamed)
    assert answered_bad == [], f"depth published for malformed input: {answered_bad}"
    assert unserved == [], f"not served after the warning: {unserved}"
    assert int(values["frames published"]) >= tally.good_frames
    # Rate limited: a few lines for the flood, the rest counted and reported as held back.
    text = FLOOD[executable][0].expect[executable]
    lines = flood_log.count(text)
    assert 1 <= lines <= 3 + flood_s / WARN_PERIOD_S, (lines, flood_s)
    assert "similar warnings suppressed" in flood_log, flood_log[-2000:]
    assert int(values[f"bad input: {FLOOD[executable][1]}"]) > lines


def _strip_metadata(path: Path, keep: set[str]) -> Path:
    model = onnx.load(str(DEFAULT_MONO_MODEL))
    props = [(p.key, p.value) for p in model.metadata_props if p.key in keep]
    del model.metadata_props[:]
    for key, value in props:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("executable", NODES)
@pytest.mark.parametrize(("keep", "missing"), [
    (set(), "architecture"),
    ({"architecture", "kind", "output", "min_depth_m", "max_depth_m"}, "stride"),
])
def test_model_without_metadata_stops_with_one_line(executable, keep, missing, tmp_path):
    _node_available(executable)
    model = _strip_metadata(tmp_path / "model.onnx", keep)
    cmd = node_command(executable, find_config(executable.removesuffix("_node") + ".yaml"),
                       params={"model_path": str(model)})
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1, output
    assert len(output) == 1, output
    assert str(model) in output[0] and "metadata" in output[0] and missing in output[0]
    assert "Traceback" not in output[0]
