"""depth_ros_bag_play in its own process, heard by a real rclpy subscriber in this one: counts,
recorded stamps and bytes, rate factor, remaps, start offset, restamping, loop and /clock."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from rclpy.time import Time
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ros.bags import messages, topics
from depth_ros.bags.kitti_to_bag import ConversionOptions, convert_drive
from depth_ros.ros import bag_play as play
from depth_ros.ros.bag_play import (
    TF_STATIC_DEPTH,
    BagPlayer,
    PlayOptions,
    message_class,
    parse_remap,
    playback_stamp_map,
    restamp_message,
)
from depth_ros.ros.launching import ros_environment, stop_process
from depth_ros.ros.qos import make_qos
from depth_ros.synthetic import write_synthetic_drive

pytestmark = [pytest.mark.ros, pytest.mark.slow]

FRAMES = 4
NAMES = topics.BagTopics()
PLAYER = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "depth_ros_bag_play"


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("play")
    drive = write_synthetic_drive(root / "drive", num_frames=FRAMES, seed=12, width=160,
                                  height=48, progress=False, azimuth_decimation=8)
    return {storage: convert_drive(drive, root / storage,
                                   ConversionOptions(storage=storage, progress=False)).output
            for storage in ("mcap", "sqlite3")}


def _recorded(bag: Path, topic: str) -> list[tuple[int, bytes]]:
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, bytes(reader.deserialize(raw, c.msgtype).data))
                for c, t, raw in reader.messages(connections=conns)]


class Listener:
    """An rclpy node of its own context recording what arrives, with arrival times."""

    def __init__(self, subscriptions: dict[str, type]) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bag_play_listener", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.msgs: dict[str, list] = {topic: [] for topic in subscriptions}
        self.arrivals: dict[str, list[float]] = {topic: [] for topic in subscriptions}
        for topic, kind in subscriptions.items():
            qos = make_qos("best_effort", 1) if topic == "/clock" else make_qos("reliable", 50)
            self.node.create_subscription(kind, topic, self._callback(topic), qos)

    def _callback(self, topic: str):
        def store(msg) -> None:
            self.msgs[topic].append(msg)
            self.arrivals[topic].append(time.monotonic())
        return store

    def spin_until(self, done, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done():
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _play(bag: Path, log: Path, *args: str) -> subprocess.Popen:
    cmd = [str(PLAYER), str(bag), "--no-progress", *args]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=ros_environment())


def _run(bag: Path, tmp_path: Path, subscriptions: dict[str, type], done, *args: str,
         timeout_s: float = 60.0) -> tuple[Listener, str, int]:
    """Play with ``args`` until ``done(listener)()``; then let the player finish (it stops
    by itself unless looping) and hear anything still in flight."""
    listener = Listener(subscriptions)
    log = tmp_path / "player.log"
    player = _play(bag, log, *args)
    try:
        listener.spin_until(done(listener), timeout_s)
        if "--loop" not in args:
            listener.spin_until(lambda: player.poll() is not None, 30)
        listener.spin_until(lambda: False, 0.3)
    finally:
        rc = stop_process(player)
        listener.close()
    return listener, log.read_text(), rc


def _stamp(msg) -> int:
    return Time.from_msg(msg.header.stamp).nanoseconds


def test_plays_every_message_with_its_recorded_stamp_and_bytes(bags, tmp_path):
    bag = bags["mcap"]
    subs = {NAMES.image(2): Image, NAMES.pointcloud: PointCloud2,
            NAMES.camera_info(2): CameraInfo}
    listener, log, rc = _run(
        bag, tmp_path, subs, lambda lis: lambda: all(len(v) >= FRAMES
                                                     for v in lis.msgs.values()),
        "--wait-for-subscribers", "3")
    assert rc == 0, log
    assert {t: len(v) for t, v in listener.msgs.items()} == dict.fromkeys(subs, FRAMES), log
    for topic in (NAMES.image(2), NAMES.pointcloud):
        recorded = _recorded(bag, topic)
        got = listener.msgs[topic]
        assert [_stamp(m) for m in got] == [t for t, _ in recorded]
        assert [bytes(m.data) for m in got] == [data for _, data in recorded]
    assert listener.msgs[NAMES.image(2)][0].header.frame_id == "camera_02_optical_frame"
    # At the recorded 10 Hz the four frames take 0.3 s; never faster.
    arrivals = listener.arrivals[NAMES.image(2)]
    assert arrivals[-1] - arrivals[0] > 0.25
    # pip installs have no tf2_msgs: /tf and /tf_static are skipped, once, by name.
    if message_class("tf2_msgs/msg/TFMessage") is None:
        assert log.count("tf2_msgs/msg/TFMessage (/tf, /tf_static)") == 1, log
    with AnyReader([bag]) as reader:
        playable = sum(c.msgcount for c in reader.connections
                       if message_class(c.msgtype) is not None)
    assert playable >= 9 * FRAMES and f"published {playable} messages" in log, log


def test_rate_factor_remap_and_clock_from_sqlite3(bags, tmp_path):
    bag = bags["sqlite3"]
    subs = {"/remapped/image": Image, NAMES.image(2): Image, "/clock": Clock}
    listener, log, rc = _run(
        bag, tmp_path, subs, lambda lis: lambda: len(lis.msgs["/remapped/image"]) >= FRAMES,
        "--rate", "0.25", "--remap", f"{NAMES.image(2)}:=/remapped/image", "--clock", "50",
        "--topics", NAMES.image(2), "--wait-for-subscribers", "1")
    assert rc == 0, log
    assert len(listener.msgs["/remapped/image"]) == FRAMES and not listener.msgs[NAMES.image(2)]
    arrivals = listener.arrivals["/remapped/image"]
    # 0.3 s of bag at a quarter of the speed: 1.2 s (loose: a loaded machine is only slower).
    assert 1.0 < arrivals[-1] - arrivals[0] < 4.0
    recorded = [t for t, _ in _recorded(bag, NAMES.image(2))]
    clock = [Time.from_msg(m.clock).nanoseconds for m in listener.msgs["/clock"]]
    assert len(clock) >= 10, log
    assert np.all(np.diff(clock) >= 0)
    assert recorded[0] <= clock[0] and clock[-1] <= recorded[-1] + 0.2e9


def test_start_offset_restamp_and_loop(bags, tmp_path):
    bag = bags["mcap"]
    subs = {NAMES.image(2): Image, NAMES.camera_info(2): CameraInfo}
    started = time.time_ns()
    listener, log, rc = _run(
        bag, tmp_path, subs, lambda lis: lambda: len(lis.msgs[NAMES.camera_info(2)]) >= 4,
        "--start-offset", "0.15", "--restamp", "--loop", "--rate", "2",
        "--topics", NAMES.image(2), NAMES.camera_info(2), "--wait-for-subscribers", "2",
        timeout_s=30.0)
    assert rc == 0, log
    recorded = [t for t, _ in _recorded(bag, NAMES.image(2))]
    images = listener.msgs[NAMES.image(2)]
    infos = listener.msgs[NAMES.camera_info(2)]
    assert len(images) >= 4 and len(infos) >= 4
    stamps = [_stamp(m) for m in images[:4]]
    # Frames 2 and 3 only (0.2 s and 0.3 s into the bag), stamped when they go out, at twice
    # the recorded speed, twice over; stamps keep increasing across the loop.
    half_period = (recorded[3] - recorded[2]) / 2
    assert abs(stamps[1] - stamps[0] - half_period) <= 1
    assert abs(stamps[3] - stamps[2] - half_period) <= 1
    assert np.all(np.diff(stamps) > 0)
    assert started < stamps[0] < time.time_ns()
    # Image and its camera_info keep one stamp; the image bytes are unchanged.
    assert [_stamp(m) for m in infos[:4]] == stamps
    assert bytes(images[0].data) == _recorded(bag, NAMES.image(2))[2][1]


@pytest.mark.parametrize("args, message", [
    (("--topics", "/nope"), "topics not in the bag: /nope"),
    (("--start-offset", "99"), "beyond the bag's 0.300 s"),
    (("--rate", "0"), "--rate must be > 0"),
])
def test_bad_arguments_are_one_line_errors(bags, tmp_path, args, message):
    log = tmp_path / "bad.log"
    proc = _play(bags["mcap"], log, *args)
    assert proc.wait(timeout=60) == 1
    assert message in log.read_text() and log.read_text().count("\n") == 1


@pytest.mark.parametrize("storage, suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_a_bare_storage_file_plays_as_ros2_bag_play_does(bags, tmp_path, storage, suffix):
    source, = bags[storage].glob(f"*{suffix}")
    bare = tmp_path / f"copied{suffix}"  # no metadata.yaml beside it
    shutil.copyfile(source, bare)
    subs = {NAMES.image(2): Image}
    listener, log, rc = _run(
        bare, tmp_path, subs, lambda lis: lambda: len(lis.msgs[NAMES.image(2)]) >= FRAMES,
        "--topics", NAMES.image(2), "--wait-for-subscribers", "1")
    assert rc == 0, log
    got = [(_stamp(m), bytes(m.data)) for m in listener.msgs[NAMES.image(2)]]
    assert got == _recorded(bags[storage], NAMES.image(2)), log
    assert f"published {FRAMES} messages" in log, log


@pytest.mark.parametrize("name, content, message", [
    ("nothing_here", None, "no such bag: "),
    ("notes.txt", b"hello", "neither a bag directory nor a .mcap or .db3 file"),
    ("junk.mcap", b"\x89not an mcap file" * 64, "File magic is invalid"),
    ("empty.mcap", b"", "seems to be empty"),
    ("junk.db3", b"SQLite format 2\x00" * 64, "cannot read "),
])
def test_bad_bag_paths_are_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    log = tmp_path / "bad.log"
    assert _play(path, log).wait(timeout=60) == 1
    text = log.read_text()
    assert message in text and str(path) in text and text.count("\n") == 1, text


def test_tf_topics_are_played_where_their_type_exists(bags, monkeypatch):
    """/tf and /tf_static get publishers wherever tf2_msgs imports (every ROS install), the
    static one transient-local, so a late RViz or tf2 buffer still gets the rig; without
    tf2_msgs (pip installs: no wheel of it exists) they are skipped with one warning, as
    test_plays_every_message_with_its_recorded_stamp_and_bytes checks in a real run."""
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("tf_selection", context=context)
    try:
        if message_class("tf2_msgs/msg/TFMessage") is None:
            player = BagPlayer(node, bags["mcap"], PlayOptions(progress=False))
            assert topics.TF_STATIC_TOPIC not in player.topics
            assert topics.TF_TOPIC not in player.topics
            player.close()
            # A stand-in class where the type would resolve: any generated message will do
            # for the publishers (nothing is played here).
            real = play.message_class
            monkeypatch.setattr(play, "message_class", lambda t: real(
                "sensor_msgs/msg/Image" if t == "tf2_msgs/msg/TFMessage" else t))
        player = BagPlayer(node, bags["mcap"], PlayOptions(progress=False))
        static = player.topics[topics.TF_STATIC_TOPIC].publisher.qos_profile
        dynamic = player.topics[topics.TF_TOPIC].publisher.qos_profile
        player.close()
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert static.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert static.reliability == ReliabilityPolicy.RELIABLE and static.depth == TF_STATIC_DEPTH
    assert dynamic.durability == DurabilityPolicy.VOLATILE


def test_not_a_bag_and_undecodable_topics(tmp_path):
    log = tmp_path / "bad.log"
    assert _play(tmp_path, log).wait(timeout=60) == 1
    assert "not a rosbag2 bag (no metadata.yaml in the directory)" in log.read_text()
    # A topic whose bytes are not the type it claims is skipped with a warning; the rest plays.
    bag = tmp_path / "mixed"
    with Writer(bag, version=8) as writer:
        good = writer.add_connection("/good", messages.Image.__msgtype__,
                                     typestore=messages.TYPESTORE)
        bad = writer.add_connection("/bad", messages.Image.__msgtype__,
                                    typestore=messages.TYPESTORE)
        for i in range(3):
            image = messages.image_message(np.full((2, 3), i, np.uint8), "mono8", 10**9 + i, "f")
            writer.write(good, 10**9 + i, messages.serialize(image))
            writer.write(bad, 10**9 + i, b"\x00\x01\x00\x00\xff")
    assert _play(bag, log).wait(timeout=60) == 0
    text = log.read_text()
    assert "skipping /bad: its messages do not decode as sensor_msgs/msg/Image" in text, text
    assert "published 3 messages" in text, text


def test_restamp_and_parsing_helpers():
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 10, 900_000_000
    assert restamp_message(msg, lambda t: t + 250_000_000)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (11, 150_000_000)
    assert not restamp_message(Clock(), lambda t: t + 5)
    forward = playback_stamp_map(bag_start_ns=100, wall_start_ns=5_000, rate=2.0)
    assert (forward(100), forward(300)) == (5_000, 5_100)
    assert parse_remap("/a:=/b") == ("/a", "/b")
    with pytest.raises(Exception, match="from:=to"):
        parse_remap("/a")
    assert message_class("sensor_msgs/msg/Image") is Image
    assert message_class("no_such_msgs/msg/Thing") is None
    assert PlayOptions().rate == 1.0


_FAILING_PLAY = """
import sys, rclpy
from depth_ros.ros import bag_play
def play(self):
    if sys.argv[2] == "after_shutdown":
        rclpy.shutdown()  # what Ctrl-C does to the context before KeyboardInterrupt arrives
    raise RuntimeError("Failed to publish: publisher's context is invalid")
bag_play.BagPlayer.play = play
sys.exit(bag_play.main([sys.argv[1], "--no-progress"]))
"""


@pytest.mark.parametrize("when, code", [("after_shutdown", 0), ("while_up", 1)])
def test_a_publish_cut_short_by_ctrl_c_is_a_stop_and_any_other_failure_an_error(
        bags, when, code):
    """Ctrl-C shuts the context down at once; a publish under way then fails before
    KeyboardInterrupt arrives (seen once in a full run: exit 1 with a traceback). That is a
    clean stop; the same failure with the context up is still an error."""
    run = subprocess.run([sys.executable, "-c", _FAILING_PLAY, str(bags["mcap"]), when],
                         capture_output=True, text=True, timeout=120,
                         env=ros_environment())
    assert run.returncode == code, run.stderr[-2000:]
    assert ("publisher's context is invalid" in run.stderr) == (code != 0)
