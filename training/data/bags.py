"""rosbag2 bags (MCAP or sqlite3) as training frames: camera images with their paired LiDAR
projected into them, the camera's intrinsics and, where the bag says, the camera's poses.

Everything a fusion node would do with the same bag is done by the node's own code: images
and clouds are decoded by ``depth_ros.sensors.decode`` (what ``depth_ros.ros.conversions``
re-exports), paired by ``depth_ros.sensors.sync.NearestStampSync`` fed in the bag's order
(newest pair only, within ``slop_s``), and projected by ``extrinsics.sparse_depth_image``
with the LiDAR-to-camera transform given or found in the bag's ``/tf_static``. The camera's
intrinsics come from the newest CameraInfo before each image (P's 3×3 for a rectified camera,
D = 0; K otherwise). Camera poses (``T_world_camera``) come from an Odometry topic when one is
named, else from ``/tf`` (the camera frame's chain up to its root, or to ``world_frame``,
interpolated at each image stamp); None when the bag has neither.

Decoded bags are cached (one ``.npz`` per bag, written atomically), keyed by the bag's files
(names, sizes, modification times) and every option that changes the frames: a second epoch
or run reads the cache, never the bag.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from tqdm import tqdm

from depth_ros.bags.messages import TYPESTORE
from depth_ros.bags.reading import BagError, bag_location
from depth_ros.errors import one_line
from depth_ros.fileio import write_atomic
from depth_ros.sensors.decode import (
    ConversionError,
    camera_info_to_camera,
    image_to_rgb,
    pointcloud2_to_array,
)
from depth_ros.sensors.extrinsics import (
    ExtrinsicsError,
    finite_points,
    sparse_depth_image,
    validate_transform,
)
from depth_ros.sensors.sync import NearestStampSync
from depth_ros.sensors.tf_lookup import quaternion_to_matrix, transform_to_matrix
from depth_ros.sensors.tf_tree import TransformTree, TransformTreeError
from training.config import ConfigError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
ODOMETRY = "nav_msgs/msg/Odometry"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"
# The fusion node's sync_slop_s and sync_max_gap_s defaults (config/fusion_depth.yaml).
DEFAULT_SLOP_S = 0.05
DEFAULT_MAX_GAP_S = 1.0
# A step between kept frames above this many times the bag's median step starts a segment.
SEGMENT_GAP_FACTOR = 1.5
CACHE_VERSION = 1

# Reasons a frame (an image of the image topic) is dropped, the keys of the counts.
DROP_REASONS = {
    "no_lidar": "no LiDAR cloud within the pairing window",
    "out_of_order": "image stamp out of order (a stray the pairing dropped)",
    "bad_encoding": "image encoding not decodable to RGB",
    "size_change": "image size differs from the first frame or from its CameraInfo",
    "no_camera_info": "no valid CameraInfo before the image",
}


class BagDataError(ConfigError):
    """A bag that cannot give training frames; the message is the one line to show."""


@dataclass
class BagFrames:
    """Frames decoded from rosbag2 bags, held in memory."""

    rgb: np.ndarray  # N×H×W×3 uint8 (one camera; all frames the same size)
    K: np.ndarray  # N×3×3 float64
    sparse: np.ndarray  # N×H×W float32 metres: the paired LiDAR projected (0 = no return)
    stamps_ns: np.ndarray  # N int64 image stamps
    poses: np.ndarray | None  # N×4×4 float64 T_world_camera (NaN where unknown), or None
    segments: np.ndarray  # N int64: consecutive frames of one bag without a gap share an id
    names: list[str]  # "<bag name>:<index of the image in its topic>"
    source: str  # bag names and topics, for the model card

    def __len__(self) -> int:
        return len(self.stamps_ns)


@dataclass
class _Options:
    image_topic: str
    lidar_topic: str | None
    camera_info_topic: str
    lidar_to_camera: np.ndarray | None
    odometry_topic: str | None
    world_frame: str | None
    slop_s: float
    max_gap_s: float

    def key(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if self.lidar_to_camera is not None:
            out["lidar_to_camera"] = self.lidar_to_camera.tolist()
        return out


@dataclass
class _BagPart:
    """One bag's frames (what the cache holds)."""

    rgb: np.ndarray
    K: np.ndarray
    sparse: np.ndarray
    stamps_ns: np.ndarray
    image_index: np.ndarray
    poses: np.ndarray | None
    drops: dict[str, int]
    note: str
    period_ns: float  # the slower sensor's period: the expected step between frames


def default_camera_info_topic(image_topic: str) -> str:
    """The CameraInfo beside an image topic: ``/cam/image_raw`` (or its ``/compressed``) →
    ``/cam/camera_info``."""
    topic = image_topic.rstrip("/")
    if topic.endswith("/compressed"):
        topic = topic[: -len("/compressed")]
    parent = topic.rsplit("/", 1)[0]
    return f"{parent}/camera_info"


def decode_image(msg: Any) -> np.ndarray:
    """An Image (rgb8, bgr8, mono8, ...) or CompressedImage as H×W×3 uint8 RGB;
    ConversionError for anything else."""
    if hasattr(msg, "format"):  # sensor_msgs/CompressedImage: OpenCV codecs decode to BGR
        image = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ConversionError(f"compressed image ({msg.format!r}) does not decode")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image_to_rgb(msg))


def camera_matrix(info: Any) -> np.ndarray:
    """The 3×3 intrinsics of a CameraInfo for its images: P's left 3×3 when the images are
    rectified (no distortion coefficients, or all zero, and R = I) and P is set, else K.
    Raises ConversionError for an uncalibrated one (as the nodes do)."""
    camera = camera_info_to_camera(info)
    d = np.asarray(info.d, dtype=np.float64).reshape(-1)
    r = np.asarray(info.r, dtype=np.float64).reshape(-1)
    p = np.asarray(info.p, dtype=np.float64).reshape(-1)
    rectified = not np.any(d) and r.size == 9 and np.allclose(r, np.eye(3).reshape(-1))
    if rectified and p.size == 12:
        p = p.reshape(3, 4)
        if np.isfinite(p).all() and p[0, 0] > 0 and p[1, 1] > 0:
            return p[:, :3].copy()
    return camera.K.astype(np.float64)


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _pose_matrix(pose: Any) -> np.ndarray:
    out = np.eye(4)
    o, p = pose.orientation, pose.position
    out[:3, :3] = quaternion_to_matrix(o.x, o.y, o.z, o.w)
    out[:3, 3] = (p.x, p.y, p.z)
    return out


def _topic_list(reader: AnyReader) -> str:
    return ", ".join(f"{c.topic} ({c.msgtype})" for c in
                     sorted(reader.connections, key=lambda c: c.topic)) or "no topics"


@dataclass
class _Image:
    index: int
    stamp_ns: int
    frame_id: str
    rgb: np.ndarray
    K: np.ndarray


class _BagReader:
    """One pass over one bag: pairs, transforms, odometry; then the frames."""

    def __init__(self, path: Path, name: str, options: _Options, progress: bool) -> None:
        self.path, self.name, self.options, self.progress = path, name, options, progress
        self.drops: Counter[str] = Counter()
        self.tree = TransformTree()
        self.odometry: list[tuple[int, str, str, np.ndarray]] = []
        self.pairs: list[tuple[_Image, tuple[np.ndarray, str] | None]] = []
        self.sync = (NearestStampSync(slop_s=options.slop_s, max_gap_s=options.max_gap_s)
                     if options.lidar_topic else None)
        self.images = self.clouds = 0
        self.size: tuple[int, int] | None = None
        self.image_stamps: list[int] = []
        self.cloud_stamps: list[int] = []

    def _connections(self, reader: AnyReader) -> list:
        o = self.options
        by_topic: dict[str, list] = {}
        for c in reader.connections:
            by_topic.setdefault(c.topic, []).append(c)

        def need(topic: str, types: tuple[str, ...], what: str) -> list:
            found = by_topic.get(topic)
            if not found:
                raise BagDataError(f"bag {self.name}: no {what} topic {topic!r}; it has "
                                   f"{_topic_list(reader)}")
            bad = [c.msgtype for c in found if c.msgtype not in types]
            if bad:
                raise BagDataError(f"bag {self.name}: {topic} is {bad[0]}, not "
                                   f"{' or '.join(types)}")
            return found

        chosen = need(o.image_topic, (IMAGE, COMPRESSED_IMAGE), "image")
        if o.camera_info_topic not in by_topic:
            raise BagDataError(f"bag {self.name}: no CameraInfo topic {o.camera_info_topic!r} "
                               f"for {o.image_topic} (name it with camera_info_topic); it has "
                               f"{_topic_list(reader)}")
        chosen += need(o.camera_info_topic, (CAMERA_INFO,), "CameraInfo")
        if o.lidar_topic:
            chosen += need(o.lidar_topic, (POINTCLOUD2,), "LiDAR")
        if o.odometry_topic:
            chosen += need(o.odometry_topic, (ODOMETRY,), "odometry")
        for topic in (TF_STATIC_TOPIC, TF_TOPIC):
            chosen += [c for c in by_topic.get(topic, []) if c.msgtype == TF_MESSAGE]
        return chosen

    def read(self) -> _BagPart:
        try:
            reader = AnyReader([self.path], default_typestore=TYPESTORE)
            reader.open()
        except (AnyReaderError, OSError) as exc:
            raise BagDataError(f"cannot read bag {self.path}: {one_line(exc)}") from None
        try:
            connections = self._connections(reader)
            total = sum(c.msgcount for c in connections)
            messages = tqdm(reader.messages(connections=connections), total=total,
                            desc=f"bag {self.name}", unit="msg", disable=not self.progress,
                            file=sys.stderr)
            info: Any = None
            for connection, _, raw in messages:
                msg = reader.deserialize(raw, connection.msgtype)
                topic = connection.topic
                if topic == self.options.image_topic:
                    self._image(msg, info)
                elif topic == self.options.camera_info_topic:
                    info = self._camera_info(msg, info)
                elif topic == self.options.lidar_topic:
                    self._cloud(msg)
                elif topic == self.options.odometry_topic:
                    self.odometry.append((_stamp_ns(msg.header), msg.header.frame_id,
                                          msg.child_frame_id, _pose_matrix(msg.pose.pose)))
                else:
                    self._tf(msg, static=topic == TF_STATIC_TOPIC)
        except AnyReaderError as exc:
            raise BagDataError(f"cannot read bag {self.path}: {one_line(exc)}") from None
        finally:
            reader.close()
        return self._frames()

    def _camera_info(self, msg: Any, previous: Any) -> Any:
        try:
            return (msg, camera_matrix(msg))
        except ConversionError:
            return previous  # an uncalibrated message: keep the last good one

    def _image(self, msg: Any, info: Any) -> None:
        index = self.images
        self.images += 1
        self.image_stamps.append(_stamp_ns(msg.header))
        if info is None:
            self.drops["no_camera_info"] += 1
            return
        try:
            rgb = decode_image(msg)
        except ConversionError:
            self.drops["bad_encoding"] += 1
            return
        size = rgb.shape[:2]
        if size != (int(info[0].height), int(info[0].width)) or (
                self.size is not None and size != self.size):
            self.drops["size_change"] += 1
            return
        self.size = size
        image = _Image(index, _stamp_ns(msg.header), msg.header.frame_id, rgb, info[1])
        if self.sync is None:
            self.pairs.append((image, None))
            return
        pair = self.sync.add_image(image.stamp_ns, image)
        if pair is not None:
            self.pairs.append((pair.image, pair.cloud))

    def _cloud(self, msg: Any) -> None:
        self.clouds += 1
        self.cloud_stamps.append(_stamp_ns(msg.header))
        try:
            points = finite_points(pointcloud2_to_array(msg, ("x", "y", "z")))
        except ConversionError:
            return  # as the node: a cloud it cannot read pairs with nothing
        if len(points) == 0:
            return
        pair = self.sync.add_cloud(_stamp_ns(msg.header), (points, msg.header.frame_id))
        if pair is not None:
            self.pairs.append((pair.image, pair.cloud))

    def _tf(self, msg: Any, static: bool) -> None:
        for t in msg.transforms:
            try:
                matrix = transform_to_matrix(t)
            except ExtrinsicsError:
                continue
            self.tree.add(t.header.frame_id, t.child_frame_id, matrix, _stamp_ns(t.header),
                          static=static)

    def _lidar_to_camera(self, camera_frame: str, lidar_frame: str) -> np.ndarray:
        if self.options.lidar_to_camera is not None:
            return self.options.lidar_to_camera
        try:
            return self.tree.lookup(camera_frame, lidar_frame, static_only=True)
        except TransformTreeError as exc:
            where = "the bag has no /tf_static" if not self.tree.static_links() else str(exc)
            raise BagDataError(f"bag {self.name}: no LiDAR-to-camera transform from "
                               f"{lidar_frame!r} to {camera_frame!r} ({where}); give "
                               "lidar_to_camera (a 4×4)") from None

    def _frames(self) -> _BagPart:
        o = self.options
        if self.sync is not None:
            counts = self.sync.counts
            lost = counts.images - counts.pairs
            stray = min(counts.stray_images, lost)
            self.drops["out_of_order"] += stray
            self.drops["no_lidar"] += lost - stray
            if not self.pairs:
                raise BagDataError(
                    f"bag {self.name}: no image of {o.image_topic} ({counts.images} usable) "
                    f"has a cloud of {o.lidar_topic} ({self.clouds}) within slop_s="
                    f"{o.slop_s:g} s: zero pairs")
        elif not self.pairs:
            raise BagDataError(f"bag {self.name}: no usable image on {o.image_topic} "
                               f"({self.images} messages; dropped: {dict(self.drops)})")
        self.pairs.sort(key=lambda p: p[0].stamp_ns)
        h, w = self.pairs[0][0].rgb.shape[:2]
        n = len(self.pairs)
        rgb = np.empty((n, h, w, 3), dtype=np.uint8)
        sparse = np.zeros((n, h, w), dtype=np.float32)
        K = np.empty((n, 3, 3), dtype=np.float64)  # noqa: N806
        for i, (image, cloud) in enumerate(self.pairs):
            rgb[i], K[i] = image.rgb, image.K
            if cloud is not None:
                points, lidar_frame = cloud
                sparse[i] = sparse_depth_image(
                    points, self._lidar_to_camera(image.frame_id, lidar_frame), image.K, w, h)
        stamps = np.array([p[0].stamp_ns for p in self.pairs], dtype=np.int64)
        index = np.array([p[0].index for p in self.pairs], dtype=np.int64)
        poses, note = self._poses(stamps, self.pairs[0][0].frame_id)
        # Pairs come no closer than the slower sensor's period: a longer step is a gap.
        period = max(_period(self.image_stamps), _period(self.cloud_stamps))
        return _BagPart(rgb, K, sparse, stamps, index, poses, dict(self.drops), note, period)

    def _poses(self, stamps: np.ndarray, camera_frame: str) -> tuple[np.ndarray | None, str]:
        o = self.options
        tree = self.tree
        if o.odometry_topic:
            if not self.odometry:
                return None, f"no messages on {o.odometry_topic}"
            tree = TransformTree(max_extrapolation_ns=self.tree.max_extrapolation_ns)
            for parent, child, matrix in self.tree.static_links():
                tree.add(parent, child, matrix, static=True)  # they place the camera on the base
            for stamp, parent, child, matrix in self.odometry:
                tree.add(parent, child, matrix, stamp)
            world = o.world_frame or self.odometry[0][1]
            how = f"odometry {o.odometry_topic}"
        else:
            if camera_frame not in tree.frames or not tree.has_dynamic_link(camera_frame):
                return None, "no /tf chain moves the camera"
            world = o.world_frame or tree.root(camera_frame)
            how = f"/tf {world} -> {camera_frame}"
        poses = np.full((len(stamps), 4, 4), np.nan)
        for i, stamp in enumerate(stamps):
            try:
                poses[i] = tree.lookup(world, camera_frame, int(stamp))
            except TransformTreeError as exc:
                if "no TF chain" in str(exc):
                    raise BagDataError(f"bag {self.name}: camera poses: {exc}") from None
                # Otherwise outside the poses' time span: kept, with a NaN pose.
        missing = int(np.isnan(poses[:, 0, 0]).sum())
        if missing:
            how += f", {missing} frames without a pose"
        return poses, how


def _bag_files(path: Path) -> list[tuple[str, int, int]]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size,
             p.stat().st_mtime_ns) for p in files]


def _cache_path(cache_dir: Path, path: Path, options: _Options) -> Path:
    key = {"version": CACHE_VERSION, "bag": str(path.resolve()), "files": _bag_files(path),
           "options": options.key()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"{path.name}-{digest}.npz"


def _save(cache: Path, part: _BagPart) -> None:
    arrays = {"rgb": part.rgb, "K": part.K, "sparse": part.sparse, "stamps_ns": part.stamps_ns,
              "image_index": part.image_index,
              "poses": part.poses if part.poses is not None else np.zeros((0, 4, 4)),
              "has_poses": np.array(part.poses is not None),
              "drop_reasons": np.array(list(part.drops), dtype=str),
              "drop_counts": np.array(list(part.drops.values()), dtype=np.int64),
              "note": np.array(part.note), "period_ns": np.array(part.period_ns)}
    # Sparse depth is mostly zeros: compressed, a frame's cache is about its image's size.
    write_atomic(cache, lambda f: np.savez_compressed(f, **arrays), durable=False)


def _load(cache: Path) -> _BagPart | None:
    try:
        with np.load(cache, allow_pickle=False) as z:
            return _BagPart(z["rgb"], z["K"], z["sparse"], z["stamps_ns"], z["image_index"],
                            z["poses"] if bool(z["has_poses"]) else None,
                            dict(zip(z["drop_reasons"].tolist(),
                                     z["drop_counts"].tolist(), strict=True)),
                            str(z["note"]), float(z["period_ns"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # unreadable (a foreign or damaged file): decode the bag again


def _period(stamps: list[int]) -> float:
    """A stream's period from its stamps: a lost message only lengthens a step, so the lower
    quartile of the steps measures it even where a fair share of them is lost."""
    steps = np.diff(np.sort(np.asarray(stamps, dtype=np.int64)))
    steps = steps[steps > 0]
    return float(np.percentile(steps, 25)) if len(steps) else 0.0


def _segments(stamps: np.ndarray, period_ns: float, max_gap_s: float) -> np.ndarray:
    """Local segment ids: a step back in time, over ``max_gap_s`` or over
    ``SEGMENT_GAP_FACTOR`` × the sensors' period (a frame lost between) starts a new one."""
    if len(stamps) < 2:
        return np.zeros(len(stamps), dtype=np.int64)
    steps = np.diff(stamps)
    gap = (steps <= 0) | (steps > max_gap_s * 1e9)
    if period_ns > 0:
        gap |= steps > SEGMENT_GAP_FACTOR * period_ns
    return np.concatenate([[0], np.cumsum(gap)]).astype(np.int64)


def load_bag_frames(bags: Sequence[str | os.PathLike], image_topic: str,
                    lidar_topic: str | None, camera_info_topic: str | None = None,
                    lidar_to_camera: np.ndarray | None = None,
                    odometry_topic: str | None = None, world_frame: str | None = None,
                    cache_dir: str | os.PathLike | None = None, progress: bool = True,
                    slop_s: float = DEFAULT_SLOP_S, max_gap_s: float = DEFAULT_MAX_GAP_S,
                    ) -> tuple[BagFrames, dict[str, int]]:
    """Decode, pair and project the frames of ``bags`` (see the module docstring).

    Args:
        bags: bag directories (with ``metadata.yaml``) or bare ``.mcap`` / ``.db3`` files.
        image_topic: sensor_msgs/Image (rgb8, bgr8, mono8, ...) or CompressedImage.
        lidar_topic: sensor_msgs/PointCloud2; None: no LiDAR (sparse all 0, every image kept).
        camera_info_topic: default ``default_camera_info_topic(image_topic)``.
        lidar_to_camera: 4×4 mapping LiDAR points into the camera's optical frame; None:
            from the bag's ``/tf_static`` (cloud frame_id to image frame_id), as the node.
        odometry_topic: nav_msgs/Odometry giving the poses (else ``/tf``).
        world_frame: the frame poses are in (default: the odometry's frame, or the root of
            the camera's ``/tf`` chain).
        cache_dir: where the decoded bags are kept (None: no cache).
        slop_s, max_gap_s: the pairing's window and time-line step (the node's defaults).

    Returns the frames, and the frames dropped counted by reason (``DROP_REASONS``; a frame
    kept without a pose is counted under ``no_pose``, its pose NaN).

    Raises BagDataError (a ConfigError: one line) for a bag missing or unreadable, a topic
    missing (the message lists the bag's topics), no CameraInfo, no LiDAR-to-camera transform,
    zero pairs, or bags of different image sizes.
    """
    if isinstance(bags, (str, os.PathLike)):
        bags = [bags]  # one bag, not a sequence of characters
    if not bags:
        raise BagDataError("no bags given")
    if lidar_to_camera is not None:
        try:
            lidar_to_camera = validate_transform(lidar_to_camera)
        except ExtrinsicsError as exc:
            raise BagDataError(str(exc)) from None
    options = _Options(image_topic, lidar_topic or None,
                       camera_info_topic or default_camera_info_topic(image_topic),
                       lidar_to_camera, odometry_topic or None, world_frame or None,
                       float(slop_s), float(max_gap_s))
    parts: list[tuple[str, _BagPart]] = []
    for bag in bags:
        try:
            path = bag_location(bag)
        except BagError as exc:
            raise BagDataError(str(exc)) from None
        name = path.name
        cache = (_cache_path(Path(cache_dir).expanduser(), path, options)
                 if cache_dir is not None else None)
        part = _load(cache) if cache is not None and cache.is_file() else None
        if part is None:
            part = _BagReader(path, name, options, progress).read()
            if cache is not None:
                _save(cache, part)
        parts.append((name, part))
    sizes = {part.rgb.shape[1:3] for _, part in parts}
    if len(sizes) > 1:
        listed = ", ".join(f"{name} {p.rgb.shape[2]}x{p.rgb.shape[1]}" for name, p in parts)
        raise BagDataError(f"bags of different image sizes ({listed}): one camera size per "
                           "dataset")
    drops: Counter[str] = Counter()
    segments, names, offset = [], [], 0
    for name, part in parts:
        drops.update(part.drops)
        local = _segments(part.stamps_ns, part.period_ns, options.max_gap_s)
        segments.append(local + offset)
        offset += int(local.max()) + 1
        names += [f"{name}:{i}" for i in part.image_index.tolist()]
    have_poses = any(part.poses is not None for _, part in parts)
    poses = None
    if have_poses:
        poses = np.concatenate([part.poses if part.poses is not None
                                else np.full((len(part.stamps_ns), 4, 4), np.nan)
                                for _, part in parts])  # NaN: that bag has none
        missing = int(np.isnan(poses[:, 0, 0]).sum())
        if missing:
            drops["no_pose"] += missing
    source = "; ".join(f"{name} ({part.note})" for name, part in parts)
    source = (f"bags {source}: image {image_topic}, camera_info {options.camera_info_topic}, "
              f"lidar {lidar_topic or 'none'}")
    def joined(name: str) -> np.ndarray:
        arrays = [getattr(part, name) for _, part in parts]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # one bag: no copy

    frames = BagFrames(rgb=joined("rgb"), K=joined("K"), sparse=joined("sparse"),
                       stamps_ns=joined("stamps_ns"), poses=poses,
                       segments=np.concatenate(segments), names=names, source=source)
    return frames, {reason: count for reason, count in drops.items() if count}
