"""depth_ros_bag_play: publish a rosbag2 bag (MCAP or sqlite3) with rclpy, no ros2 CLI needed.

    depth_ros_bag_play drive_0001 [--rate 0.5] [--loop] [--start-offset 2.0] \
        [--remap /kitti/camera2/image_raw:=/camera/image_raw] [--clock 100] [--restamp] \
        [--topics /kitti/camera2/image_raw /kitti/camera2/camera_info] [--ros-args ...]

The bag is a directory with ``metadata.yaml`` or, as ``ros2 bag play`` accepts, a bare
``.mcap`` (or ``.db3``) file. Messages go out at the recorded rate (log times from the bag)
times ``--rate``. The bag is read with rosbags; each message's CDR bytes are published as
they are (``publish`` of serialised bytes: no Python-side conversion of image or cloud
buffers at all), or, with ``--restamp``, deserialised by rclpy's C code, restamped and
published. ``--restamp`` maps every header
stamp (and every transform's in a TFMessage) to the time the message is due to go out: the
first message of the bag (or of each loop) is stamped "now", later ones ``now + Δt / rate``.
The recording then looks live to nodes that measure latency from stamps, and messages that
shared a stamp still share one (an image and its camera_info; camera–LiDAR pairs keep their
offset, scaled by the rate).

QoS: reliable, keep-last ``--qos-depth`` for every topic; ``/tf_static`` is transient-local,
and its messages from before ``--start-offset`` are published first, so the transform tree is
complete whatever the offset. ``--clock`` publishes ``/clock`` (rosgraph_msgs/Clock) with the
playback time at the given rate (Hz) for nodes with ``use_sim_time``. Topics whose message
type has no Python package here (e.g. tf2_msgs on pip installs) are skipped with one warning
naming them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from tqdm import tqdm

from depth_ros.bags.reading import BagError, bag_location
from depth_ros.ros.entry import prepare_process, release

NODE_NAME = "depth_ros_bag_play"
TF_STATIC_TOPIC = "/tf_static"
CLOCK_TOPIC = "/clock"
TF_STATIC_DEPTH = 100  # transient-local history: every static broadcaster's message survives
# A publisher counts a subscription as matched before the subscriber's side has matched it;
# volatile messages sent in between are lost (measured here: up to ~1 s later, and all of a
# 0.3 s bag lost). Wait this long after the count is reached (kitti_drive_publisher's
# settle_s does the same).
MATCH_SETTLE_S = 2.0

FLUSH_S = 0.5  # pause after the last message, before the player ends


class BagPlayError(BagError):
    """The bag or the options cannot be played."""


@dataclass(frozen=True)
class PlayOptions:
    """How a bag is played (see ``depth_ros_bag_play --help``)."""

    rate: float = 1.0
    loop: bool = False
    start_offset_s: float = 0.0
    remaps: dict[str, str] = field(default_factory=dict)
    topics: tuple[str, ...] = ()  # empty: every topic
    clock_hz: float = 0.0  # 0: no /clock
    restamp: bool = False
    wait_for_subscribers: int = 0
    delay_s: float = 0.0
    qos_depth: int = 10
    progress: bool = True


def message_class(msgtype: str) -> type | None:
    """The rclpy message class of ``pkg/msg/Type``, or None where its package is missing."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        return None
    package, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError):
        return None


def parse_remap(text: str) -> tuple[str, str]:
    """``from:=to`` to a pair of topic names."""
    source, sep, target = text.partition(":=")
    if not sep or not source or not target:
        raise argparse.ArgumentTypeError(f"remap must look like from:=to, got {text!r}")
    return source, target


StampMap = Callable[[int], int]  # recorded stamp (ns) -> published stamp (ns)


def _restamp(stamp, new_stamp: StampMap) -> None:
    total = new_stamp(stamp.sec * 1_000_000_000 + stamp.nanosec)
    stamp.sec, stamp.nanosec = divmod(total, 1_000_000_000)


def restamp_message(msg: object, new_stamp: StampMap) -> bool:
    """Replace ``msg``'s header stamp (and each transform's, for a TFMessage) by
    ``new_stamp(old)``; False when the message has no stamp."""
    moved = False
    header = getattr(msg, "header", None)
    if header is not None and hasattr(header, "stamp"):
        _restamp(header.stamp, new_stamp)
        moved = True
    for transform in getattr(msg, "transforms", None) or ():
        _restamp(transform.header.stamp, new_stamp)
        moved = True
    return moved


def playback_stamp_map(bag_start_ns: int, wall_start_ns: int, rate: float) -> StampMap:
    """``--restamp``'s map: bag time ``bag_start_ns`` becomes ``wall_start_ns``, and bag time
    passes ``rate`` times as fast as the new stamps do (as it is played)."""
    return lambda stamp_ns: wall_start_ns + round((stamp_ns - bag_start_ns) / rate)


@dataclass
class _Topic:
    name: str  # in the bag
    published_as: str
    msg_class: type
    publisher: Publisher
    checked: bool = False
    stampable: bool = True


class BagPlayer:
    """Publishes the messages of an open bag on ``node``'s publishers, on schedule."""

    def __init__(self, node: Node, bag_path: str | Path, options: PlayOptions) -> None:
        if options.rate <= 0:
            raise BagPlayError(f"--rate must be > 0, got {options.rate}")
        if options.start_offset_s < 0:
            raise BagPlayError(f"--start-offset must be >= 0, got {options.start_offset_s}")
        self.node = node
        self.options = options
        self.log = node.get_logger()
        path = bag_location(bag_path)
        try:
            self.reader = AnyReader([path])
            self.reader.open()
        except AnyReaderError as exc:
            raise BagPlayError(f"cannot read {path}: {exc}") from None
        duration_s = self.reader.duration / 1e9
        if options.start_offset_s > duration_s:
            self.reader.close()
            raise BagPlayError(f"--start-offset {options.start_offset_s:g} s is beyond the "
                               f"bag's {duration_s:.3f} s")
        self.topics: dict[str, _Topic] = {}
        try:
            self.connections = self._select(self.reader.connections)
        except BagPlayError:
            self.reader.close()
            raise
        self.clock_pub = None
        if options.clock_hz > 0:
            from rosgraph_msgs.msg import Clock

            self._clock_class = Clock
            self.clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, 1)
        self.published = 0
        self.warnings: list[str] = []

    def close(self) -> None:
        """Close the bag."""
        self.reader.close()

    def _select(self, connections: Iterable[Connection]) -> list[Connection]:
        wanted = set(self.options.topics)
        present = {c.topic for c in connections}
        if missing := sorted(wanted - present):
            raise BagPlayError(f"topics not in the bag: {', '.join(missing)} (it has "
                               f"{', '.join(sorted(present))})")
        unknown: dict[str, list[str]] = {}
        selected = []
        for connection in connections:
            if wanted and connection.topic not in wanted:
                continue
            topic = self.topics.get(connection.topic)
            if topic is None:
                cls = message_class(connection.msgtype)
                if cls is None:
                    unknown.setdefault(connection.msgtype, []).append(connection.topic)
                    continue
                name = self.options.remaps.get(connection.topic, connection.topic)
                topic = _Topic(connection.topic, name, cls,
                               self.node.create_publisher(cls, name, self._qos(connection.topic)))
                self.topics[connection.topic] = topic
            selected.append(connection)
        if unknown:
            listed = "; ".join(f"{t} ({', '.join(sorted(set(names)))})"
                               for t, names in sorted(unknown.items()))
            self.log.warning(f"skipping topics whose message types have no Python package "
                             f"here: {listed}")
        if not selected:
            raise BagPlayError("nothing to play: no topic of the bag can be published here")
        return selected

    def _qos(self, topic: str) -> QoSProfile:
        if topic == TF_STATIC_TOPIC:
            return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=TF_STATIC_DEPTH,
                              reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.options.qos_depth,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)

    def subscription_count(self) -> int:
        """Subscriptions matched, summed over the played topics."""
        return sum(t.publisher.get_subscription_count() for t in self.topics.values())

    def wait_for_subscribers(self, timeout_s: float | None = None) -> bool:
        """Hold until ``wait_for_subscribers`` subscriptions have matched (and settled)."""
        wanted = self.options.wait_for_subscribers
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        logged = False
        while self.subscription_count() < wanted:
            if not rclpy.ok(context=self.node.context):
                return False
            if deadline is not None and time.monotonic() > deadline:
                return False
            if not logged:
                self.log.info(f"waiting for {wanted} subscription(s)")
                logged = True
            time.sleep(0.02)
        time.sleep(MATCH_SETTLE_S)
        return True

    def _publish(self, connection: Connection, raw: bytes, new_stamp: StampMap | None
                 ) -> None:
        topic = self.topics[connection.topic]
        raw = raw if isinstance(raw, bytes) else bytes(raw)
        if not topic.checked:
            # The bag's bytes must be this type as installed here (a bag from another
            # distribution could differ): decode the first message of each topic once.
            try:
                deserialize_message(raw, topic.msg_class)
            except Exception as exc:  # rclpy raises several kinds for bad bytes
                self.log.warning(f"skipping {connection.topic}: its messages do not decode as "
                                 f"{connection.msgtype} here ({exc})")
                del self.topics[connection.topic]
                self.connections = [c for c in self.connections
                                    if c.topic != connection.topic]
                return
            topic.checked = True
        if new_stamp is not None and topic.stampable:
            msg = deserialize_message(raw, topic.msg_class)
            if restamp_message(msg, new_stamp):
                topic.publisher.publish(msg)
                self.published += 1
                return
            topic.stampable = False
        topic.publisher.publish(raw)
        self.published += 1

    def _publish_clock(self, bag_time_ns: int) -> None:
        sec, nanosec = divmod(int(bag_time_ns), 1_000_000_000)
        msg = self._clock_class()
        msg.clock.sec, msg.clock.nanosec = sec, nanosec
        self.clock_pub.publish(msg)

    def _sleep_until(self, wall_target: float, wall_start: float, bag_start_ns: int,
                     new_stamp: StampMap | None, next_clock: list[float]) -> None:
        """Sleep to ``wall_target`` (monotonic), publishing /clock on the way."""
        period = 1.0 / self.options.clock_hz if self.clock_pub is not None else None
        while True:
            now = time.monotonic()
            if period is not None and now >= next_clock[0]:
                bag_now = bag_start_ns + int((now - wall_start) * self.options.rate * 1e9)
                self._publish_clock(bag_now if new_stamp is None else new_stamp(bag_now))
                next_clock[0] = now + period
            if now >= wall_target:
                return
            wake = wall_target if period is None else min(wall_target, next_clock[0])
            time.sleep(max(0.0, wake - now))

    def _static_before(self, start_ns: int, new_stamp: StampMap | None) -> None:
        static = [c for c in self.connections if c.topic == TF_STATIC_TOPIC]
        if static and start_ns > self.reader.start_time:
            for connection, _, raw in self.reader.messages(connections=static, stop=start_ns):
                self._publish(connection, raw, new_stamp)

    def play_once(self, progress: tqdm | None = None) -> None:
        """Play the bag from the start offset to its end once."""
        start_ns = self.reader.start_time + int(round(self.options.start_offset_s * 1e9))
        new_stamp = None
        if self.options.restamp:
            new_stamp = playback_stamp_map(start_ns, self.node.get_clock().now().nanoseconds,
                                           self.options.rate)
        self._static_before(start_ns, new_stamp)
        wall_start = time.monotonic()
        next_clock = [wall_start]
        for connection, stamp, raw in self.reader.messages(connections=self.connections,
                                                           start=start_ns):
            if not rclpy.ok(context=self.node.context) or not self.connections:
                return
            if connection.topic not in self.topics:
                continue
            target = wall_start + (stamp - start_ns) / 1e9 / self.options.rate
            self._sleep_until(target, wall_start, start_ns, new_stamp, next_clock)
            self._publish(connection, raw, new_stamp)
            if progress is not None:
                progress.update()

    def play(self) -> int:
        """Play (and loop) until the end or shutdown; returns the messages published."""
        if self.options.wait_for_subscribers > 0 and not self.wait_for_subscribers():
            return self.published
        if self.options.delay_s > 0:
            time.sleep(self.options.delay_s)
        total = sum(c.msgcount for c in self.connections)
        started = time.monotonic()
        with tqdm(total=total, desc=NODE_NAME, unit="msg", file=sys.stderr,
                  disable=not self.options.progress) as progress:
            while rclpy.ok(context=self.node.context):
                progress.reset(total=total)
                self.play_once(progress)
                if not self.options.loop or not self.connections:
                    break  # (every topic failed to decode: nothing left to loop over)
        self.log.info(f"published {self.published} messages in "
                      f"{time.monotonic() - started:.1f} s")
        # Let the last messages leave before the participant goes: a player that exited right
        # after its last publish lost that message once in a clean-clone test run.
        time.sleep(FLUSH_S)
        return self.published


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=NODE_NAME, description="Publish a rosbag2 bag (MCAP or sqlite3) with rclpy.")
    parser.add_argument("bag", type=Path,
                        help="bag directory (with metadata.yaml), or one .mcap or .db3 file")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--loop", action="store_true", help="play again from the start")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                        help="skip the first S seconds of the bag")
    parser.add_argument("--remap", type=parse_remap, action="append", default=[],
                        metavar="FROM:=TO", help="publish bag topic FROM as TO (repeatable)")
    parser.add_argument("--topics", nargs="+", default=[], help="play only these topics")
    parser.add_argument("--clock", type=float, nargs="?", const=100.0, default=0.0,
                        metavar="HZ", help="publish /clock (at HZ, default 100)")
    parser.add_argument("--restamp", action="store_true",
                        help="stamp messages with the time they go out (live-camera-like)")
    parser.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                        help="start once N subscriptions (over the played topics) matched")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S",
                        help="wait S seconds before playing")
    parser.add_argument("--qos-depth", type=int, default=10)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def play_main(argv: list[str] | None = None) -> int:
    """Play a bag as the command line says; returns the exit code. ROS arguments after
    ``--ros-args`` go to rclpy."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    args = _parser().parse_args(argv[:len(argv) - len(ros_args)])
    options = PlayOptions(rate=args.rate, loop=args.loop, start_offset_s=args.start_offset,
                          remaps=dict(args.remap), topics=tuple(args.topics),
                          clock_hz=args.clock, restamp=args.restamp,
                          wait_for_subscribers=args.wait_for_subscribers, delay_s=args.delay,
                          qos_depth=args.qos_depth, progress=not args.no_progress)
    prepare_process(NODE_NAME)
    rclpy.init(args=[NODE_NAME, *ros_args])
    node = Node(NODE_NAME)
    player = None
    try:
        player = BagPlayer(node, args.bag, options)
        player.play()
    except BagError as exc:
        node.get_logger().fatal(str(exc))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C shuts the context down at once, and a publish already under way then fails
        # ("publisher's context is invalid") before KeyboardInterrupt reaches this thread:
        # that is a stop, not an error. Anything while the context is still up is an error.
        if rclpy.ok():
            raise
    finally:
        if player is not None:
            player.close()
        release(node)
        rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: plays; returns the exit code."""
    return play_main(argv)


if __name__ == "__main__":
    sys.exit(main())
