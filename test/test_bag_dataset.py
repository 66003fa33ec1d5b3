"""Bags as training data: an engine drive made into a bag (kitti_to_bag, MCAP and sqlite3)
and read back by ``training.data.bags.load_bag_frames``: images, projected LiDAR and poses
equal the drive's own files; segments, the cache, the drop counts and every error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer

from depth_ros.bags import messages, topics
from depth_ros.bags.kitti_to_bag import ConversionOptions, convert_drive
from depth_ros.kitti import read_calib_file, read_depth_png, read_rgb_png, read_timestamps_ns
from depth_ros.synthetic import write_synthetic_drive
from training.data.bags import load_bag_frames

FRAMES, SEED, WIDTH, HEIGHT = 4, 31, 160, 48
NAMES = topics.BagTopics()
IMAGE, LIDAR = NAMES.image(2), NAMES.pointcloud


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("drive")
    return write_synthetic_drive(root, num_frames=FRAMES, seed=SEED, width=WIDTH, height=HEIGHT,
                                 progress=False, azimuth_decimation=8)


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag(request, drive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"bag_{request.param}") / "drive_bag"
    convert_drive(drive, out, ConversionOptions(storage=request.param, progress=False))
    return out


@pytest.fixture(scope="module")
def mcap_bag(drive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bag_edit") / "drive_bag"
    convert_drive(drive, out, ConversionOptions(progress=False))
    return out


def _drive_files(drive: Path, what: str) -> list[Path]:
    return sorted((drive / what).glob("*.png"))


def _copy_bag(source: Path, target: Path,
              edit: Callable[[str, int, object], object | None] | None = None,
              drop_topics: tuple[str, ...] = ()) -> Path:
    """``source`` rewritten to ``target`` (MCAP); ``edit(topic, index, msg)`` returns the
    message to write (None: leave it out), its index counting that topic's messages."""
    counts: dict[str, int] = {}
    writer = Writer(target, version=8)
    with Reader(source) as reader, writer:
        connections = {c.topic: writer.add_connection(c.topic, c.msgtype,
                                                      typestore=messages.TYPESTORE)
                       for c in reader.connections if c.topic not in drop_topics}
        for connection, stamp, raw in reader.messages():
            if connection.topic in drop_topics:
                continue
            index = counts.get(connection.topic, 0)
            counts[connection.topic] = index + 1
            if edit is not None:
                msg = messages.TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                msg = edit(connection.topic, index, msg)
                if msg is None:
                    continue
                raw = messages.serialize(msg)
            writer.write(connections[connection.topic], stamp, raw)
    return target


def test_frames_equal_the_drive(bag, drive):
    frames, drops = load_bag_frames([bag], IMAGE, LIDAR, progress=False)
    assert drops == {}
    assert len(frames) == FRAMES and frames.rgb.shape == (FRAMES, HEIGHT, WIDTH, 3)
    for i, png in enumerate(_drive_files(drive, "image_02/data")):
        np.testing.assert_array_equal(frames.rgb[i], read_rgb_png(png))
    np.testing.assert_array_equal(frames.stamps_ns,
                                  read_timestamps_ns(drive / "image_02" / "timestamps.txt"))
    assert frames.names == [f"drive_bag:{i}" for i in range(FRAMES)]
    np.testing.assert_array_equal(frames.segments, np.zeros(FRAMES))
    assert "drive_bag" in frames.source and IMAGE in frames.source and LIDAR in frames.source
    # The engine's projection of each scan and the loader's (bag cloud, /tf_static chain,
    # CameraInfo K) land on the same pixels, equal to within the PNG's 1/256 m quantum.
    for i, png in enumerate(_drive_files(drive, "proj_depth/velodyne_raw/image_02")):
        ref = read_depth_png(png)
        np.testing.assert_array_equal(frames.sparse[i] > 0, ref > 0)
        assert (ref > 0).sum() > 1000
        np.testing.assert_allclose(frames.sparse[i][ref > 0], ref[ref > 0], atol=1 / 512 + 1e-6)
    p_rect = read_calib_file(drive / "calib_cam_to_cam.txt")["P_rect_02"].reshape(3, 4)
    np.testing.assert_allclose(frames.K, np.broadcast_to(p_rect[:, :3], (FRAMES, 3, 3)))


def test_poses_from_tf_equal_the_drives_poses(bag, drive):
    frames, _ = load_bag_frames([bag], IMAGE, LIDAR, progress=False)
    expected = np.loadtxt(drive / "poses.txt").reshape(-1, 3, 4)
    assert frames.poses is not None and frames.poses.shape == (FRAMES, 4, 4)
    relative = np.linalg.inv(frames.poses[0]) @ frames.poses
    np.testing.assert_allclose(relative[:, :3], expected, atol=1e-6)
