"""kitti_to_bag: a KITTI raw drive (synced + rectified) to a rosbag2 bag, written with rosbags.

    kitti_to_bag 2011_09_26/2011_09_26_drive_0001_sync drive_0001            # MCAP
    kitti_to_bag DRIVE out_bag --storage sqlite3 --cameras 2 --start 10 --end 60 --no-lidar

Topics under ``--prefix`` (``/kitti``), stamped from the drive's ``timestamps.txt`` files:
``camera<N>/image_raw`` (rgb8; mono8 for the grey cameras 0 and 1) and ``camera<N>/camera_info``
for each camera, ``camera<N>/depth_groundtruth`` (32FC1 metres, NaN = no data) where
``proj_depth/groundtruth`` has the frame, ``velo/pointcloud`` (x, y, z, intensity float32),
``oxts/imu`` and ``oxts/gps/fix`` from the OXTS packets; ``/tf_static`` with the rig's
calibration (see ``depth_ros.bags.topics``) and ``/tf`` (world → imu_link) from OXTS.
A drive with projected scans but no velodyne ``.bin`` files (kitti_dev, KITTI depth
completion) gives ``velo/pointcloud`` with ``--lidar-from-projected-depth [CAMERA]``: each
projected scan back-projected into a cloud in that camera's optical frame, stamped as its image
(``DriveSource``).

The drive is checked before anything is written, and the bag is built beside the output and
renamed into place when complete: an existing output is an error unless ``--overwrite``, and
an interrupted conversion never leaves a bag that looks complete.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from tqdm import tqdm

from depth_ros.bags import messages, topics
from depth_ros.bags.atomic import atomic_directory
from depth_ros.bags.drive_source import DriveSource
from depth_ros.kitti.formats import KittiFormatError
from depth_ros.kitti.oxts import rotation_from_rpy

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# zstd: MCAP compresses its chunks (what `ros2 bag record --compression-mode storage`
# would not do for sqlite3); sqlite3 compresses each message (rosbag2's "message" mode).
COMPRESSION_MODES = {"mcap": CompressionMode.STORAGE, "sqlite3": CompressionMode.MESSAGE}
BAG_VERSION = 8  # the newest rosbag2 metadata version Humble's rosbag2 also reads
_UNSET = QosTime(sec=0, nsec=0)  # rosbag2's "default" (no deadline, lifespan or lease)


def _qos(durability: QosDurability, depth: int) -> Qos:
    return Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
               durability=durability, deadline=_UNSET, lifespan=_UNSET,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_UNSET,
               avoid_ros_namespace_conventions=False)


# Offered QoS recorded with each topic: `ros2 bag play` publishes with it, so late joiners
# (RViz, robot_state consumers) get the static transforms.
SENSOR_QOS = _qos(QosDurability.VOLATILE, 10)
TF_STATIC_QOS = _qos(QosDurability.TRANSIENT_LOCAL, 1)


@dataclass(frozen=True)
class ConversionOptions:
    """What goes into the bag and how it is written (see ``kitti_to_bag --help``)."""

    cameras: tuple[int, ...] | None = None  # None: the colour cameras the drive has
    start: int = 0
    end: int | None = None
    lidar: bool = True
    oxts: bool = True
    groundtruth: bool = True
    prefix: str = topics.DEFAULT_PREFIX
    storage: str = "mcap"
    compression: str = "none"  # none | zstd
    overwrite: bool = False
    progress: bool = True
    jobs: int = 2  # frames read (PNG decoding) in parallel
    lidar_from_depth: int | None = None  # camera whose projected scans give the LiDAR


@dataclass
class ConversionResult:
    """What a conversion wrote."""

    output: Path
    frames: int
    messages: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def frames_per_s(self) -> float:
        """Conversion speed."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    @property
    def bytes_per_frame(self) -> float:
        """Bag size per frame on disk."""
        return self.bytes / self.frames if self.frames else float("nan")


Message = tuple[str, int, object]  # topic, stamp (ns), typestore message


def static_tf_message(source: DriveSource, stamp_ns: int) -> object:
    """The /tf_static message of a drive: its rig, every link from the calibration."""
    return messages.tf_message([messages.transform_message(parent, child, link, stamp_ns)
                                for parent, child, link in source.static_transforms()])


class _FrameBuilder:
    """Builds every message of one frame (thread-safe: reads files, keeps no state)."""

    def __init__(self, source: DriveSource, names: topics.BagTopics) -> None:
        self.source = source
        self.names = names
        self.poses = source.oxts_poses() if source.has_oxts else None

    def __call__(self, position: int) -> list[Message]:
        source, names = self.source, self.names
        out: list[Message] = []
        for cam in source.cameras:
            stamp = int(cam.stamps_ns[position])
            encoding = "rgb8" if cam.colour else "mono8"
            # camera_info first: a node that keeps the newest CameraInfo has it for the image.
            out.append((names.camera_info(cam.index), stamp, messages.camera_info_message(
                cam.width, cam.height, cam.ros_projection(), stamp, cam.frame_id)))
            out.append((names.image(cam.index), stamp, messages.image_message(
                cam.image(position), encoding, stamp, cam.frame_id)))
        for cam in source.groundtruth_cameras:
            depth = cam.groundtruth(position)
            if depth is not None:
                stamp = int(cam.stamps_ns[position])
                out.append((names.groundtruth(cam.index), stamp, messages.image_message(
                    depth, "32FC1", stamp, cam.frame_id)))
        if source.velodyne_stamps_ns is not None:
            stamp = int(source.velodyne_stamps_ns[position])
            out.append((names.pointcloud, stamp, messages.pointcloud_message(
                source.scan(position), stamp, source.lidar_frame)))
        if self.poses is not None:
            out.extend(self._oxts(position))
        # Stable: at equal stamps the order above (camera_info before its image) stays.
        return sorted(out, key=lambda m: m[1])

    def _oxts(self, position: int) -> list[Message]:
        packet = self.source.oxts_packets[position]
        stamp = int(self.source.oxts_stamps_ns[position])
        rotation = rotation_from_rpy(packet["roll"], packet["pitch"], packet["yaw"])
        tf = messages.tf_message([messages.transform_message(
            topics.WORLD_FRAME, topics.IMU_FRAME, self.poses[position], stamp)])
        imu = messages.imu_message(rotation, (packet["wx"], packet["wy"], packet["wz"]),
                                   (packet["ax"], packet["ay"], packet["az"]), stamp,
                                   topics.IMU_FRAME)
        fix = messages.nav_sat_fix_message(packet["lat"], packet["lon"], packet["alt"],
                                           packet["pos_accuracy"], stamp, topics.IMU_FRAME)
        return [(topics.TF_TOPIC, stamp, tf), (self.names.imu, stamp, imu),
                (self.names.gps_fix, stamp, fix)]


def _topic_types(source: DriveSource, names: topics.BagTopics) -> dict[str, str]:
    types = {topics.TF_STATIC_TOPIC: messages.TFMessage.__msgtype__}
    for cam in source.cameras:
        types[names.image(cam.index)] = messages.Image.__msgtype__
        types[names.camera_info(cam.index)] = messages.CameraInfo.__msgtype__
    for cam in source.groundtruth_cameras:
        types[names.groundtruth(cam.index)] = messages.Image.__msgtype__
    if source.has_lidar:
        types[names.pointcloud] = messages.PointCloud2.__msgtype__
    if source.has_oxts:
        types[topics.TF_TOPIC] = messages.TFMessage.__msgtype__
        types[names.imu] = messages.Imu.__msgtype__
        types[names.gps_fix] = messages.NavSatFix.__msgtype__
    return types


def _frames_in_order(build: _FrameBuilder, positions: range, jobs: int
                     ) -> Iterator[list[Message]]:
    """Frames built ``jobs`` at a time (PNG decoding releases the GIL), yielded in order,
    with a bounded look-ahead so memory stays a few frames whatever the drive's length."""
    if jobs <= 1:
        yield from (build(p) for p in positions)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: deque[Future[list[Message]]] = deque()
        todo = iter(positions)
        for position in todo:
            pending.append(pool.submit(build, position))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def convert_drive(drive_path: str | Path, output: str | Path,
                  options: ConversionOptions | None = None) -> ConversionResult:
    """Convert a drive to a rosbag2 bag at ``output`` (a directory); see the module doc.

    Raises ``KittiFormatError`` (naming the file) for a drive that is not complete or
    consistent, ``FileExistsError`` for an existing output without ``overwrite`` and
    ``ValueError`` for bad options, all before anything is written.
    """
    options = options or ConversionOptions()
    if options.storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {options.storage!r}")
    if options.compression not in ("none", "zstd"):
        raise ValueError(f"compression must be 'none' or 'zstd', got {options.compression!r}")
    started = time.monotonic()
    names = topics.BagTopics(options.prefix)
    source = DriveSource(drive_path, options.cameras, lidar=options.lidar, oxts=options.oxts,
                         groundtruth=options.groundtruth, start=options.start, end=options.end,
                         lidar_from_depth=options.lidar_from_depth)
    build = _FrameBuilder(source, names)
    output = Path(output)
    counts: Counter[str] = Counter()
    with atomic_directory(output, overwrite=options.overwrite) as work:
        writer = Writer(work, version=BAG_VERSION, storage_plugin=STORAGES[options.storage])
        if options.compression == "zstd":
            writer.set_compression(COMPRESSION_MODES[options.storage], CompressionFormat.ZSTD)
        writer.open()
        try:
            connections = {
                topic: writer.add_connection(
                    topic, msgtype, typestore=messages.TYPESTORE,
                    offered_qos_profiles=[TF_STATIC_QOS if topic == topics.TF_STATIC_TOPIC
                                          else SENSOR_QOS])
                for topic, msgtype in _topic_types(source, names).items()}
            first = source.first_stamp_ns()
            writer.write(connections[topics.TF_STATIC_TOPIC], first,
                         messages.serialize(static_tf_message(source, first)))
            counts[topics.TF_STATIC_TOPIC] += 1
            frames = tqdm(_frames_in_order(build, source.positions(), options.jobs),
                          total=len(source), desc="kitti_to_bag", unit="frame",
                          disable=not options.progress, file=sys.stderr)
            for frame in frames:
                for topic, stamp, msg in frame:
                    writer.write(connections[topic], stamp, messages.serialize(msg))
                    counts[topic] += 1
            writer.close()
        except BaseException:
            writer.abort()
            raise
    size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    return ConversionResult(output, len(source), dict(counts), size,
                            time.monotonic() - started)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kitti_to_bag", description="Convert a KITTI raw drive (synced + rectified) to "
        "a rosbag2 bag (MCAP or sqlite3).")
    parser.add_argument("drive", type=Path, help="the <date>_drive_<NNNN>_sync directory")
    parser.add_argument("output", type=Path, help="bag directory to create")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    parser.add_argument("--compression", choices=("none", "zstd"), default="none",
                        help="zstd: compressed MCAP chunks / sqlite3 messages")
    parser.add_argument("--prefix", default=topics.DEFAULT_PREFIX, help="topic prefix")
    parser.add_argument("--cameras", type=int, nargs="+", default=None,
                        help="camera numbers 0-3 (default: the colour cameras 2 and 3)")
    parser.add_argument("--start", type=int, default=0, help="first frame (index)")
    parser.add_argument("--end", type=int, default=None, help="frame to stop before")
    parser.add_argument("--no-lidar", action="store_true", help="leave the velodyne out")
    parser.add_argument("--lidar-from-projected-depth", type=int, nargs="?", const=2,
                        default=None, metavar="CAMERA",
                        help="no velodyne .bin files: back-project camera CAMERA's (default 2) "
                        "proj_depth/velodyne_raw scans into a cloud in its optical frame")
    parser.add_argument("--no-oxts", action="store_true", help="leave /tf, IMU and GPS out")
    parser.add_argument("--no-groundtruth", action="store_true",
                        help="leave proj_depth/groundtruth out")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    parser.add_argument("--jobs", type=int, default=2, help="frames decoded in parallel")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; prints a summary, or one error line and exits 1."""
    args = _parser().parse_args(argv)
    options = ConversionOptions(
        cameras=tuple(args.cameras) if args.cameras else None, start=args.start, end=args.end,
        lidar=not args.no_lidar, oxts=not args.no_oxts, groundtruth=not args.no_groundtruth,
        prefix=args.prefix, storage=args.storage, compression=args.compression,
        overwrite=args.overwrite, progress=not args.no_progress, jobs=max(1, args.jobs),
        lidar_from_depth=args.lidar_from_projected_depth)
    try:
        result = convert_drive(args.drive, args.output, options)
    except (KittiFormatError, FileExistsError, ValueError) as exc:
        print(f"kitti_to_bag: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kitti_to_bag: interrupted; no bag was written", file=sys.stderr)
        return 130
    print(f"wrote {result.output} ({args.storage}): {result.frames} frames, "
          f"{sum(result.messages.values())} messages, {result.bytes / 1e6:.1f} MB "
          f"({result.bytes_per_frame / 1e6:.2f} MB/frame) in {result.seconds:.1f} s "
          f"({result.frames_per_s:.1f} frames/s)")
    for topic, count in sorted(result.messages.items()):
        print(f"  {topic}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
