"""Bags as training data: an engine drive made into a bag (kitti_to_bag, MCAP and sqlite3)
and read back by ``training.data.bags.load_bag_frames``: images, projected LiDAR and poses
equal the drive's own files; segments, the cache, the drop counts and every error."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin

from depth_ros.bags import kitti_to_bag, messages, topics
from depth_ros.bags.kitti_to_bag import ConversionOptions, convert_drive
from depth_ros.kitti import read_calib_file, read_depth_png, read_rgb_png, read_timestamps_ns
from depth_ros.sensors.decode import POINTFIELD_DTYPES
from depth_ros.sensors.extrinsics import transform_from_kitti
from depth_ros.sensors.tf_tree import TransformTree, TransformTreeError
from depth_ros.synthetic import write_synthetic_drive
from training.config import ConfigError
from training.data import bags
from training.data.bags import BagDataError, load_bag_frames

FRAMES, SEED, WIDTH, HEIGHT = 4, 31, 160, 48
NAMES = topics.BagTopics()
IMAGE, LIDAR = NAMES.image(2), NAMES.pointcloud
Edit = Callable[[str, int, object], "object | None"]


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


def _copy_bag(source: Path, target: Path, edit: Edit | None = None,
              drop_topics: tuple[str, ...] = (), types: dict[str, str] | None = None,
              extra: Callable[[str, int, object], list[tuple[str, object]]] | None = None
              ) -> Path:
    """``source`` rewritten to ``target`` (MCAP). ``edit(topic, index, msg)`` returns the
    message to write (None: leave it out; ``index`` counts that topic's messages); ``types``
    declares topics whose type the edit changes; ``extra`` adds (topic, message) after each
    message (dropped ones included), on topics named in ``types``."""
    types = dict(types or {})
    counts: dict[str, int] = {}
    writer = Writer(target, version=8, storage_plugin=StoragePlugin.MCAP)
    with Reader(source) as reader, writer:
        declared = {c.topic: c.msgtype for c in reader.connections
                    if c.topic not in drop_topics}
        declared.update(types)
        connections = {topic: writer.add_connection(topic, msgtype,
                                                    typestore=messages.TYPESTORE)
                       for topic, msgtype in declared.items()}
        for connection, stamp, raw in reader.messages():
            topic = connection.topic
            index = counts.get(topic, 0)
            counts[topic] = index + 1
            msg = messages.TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            added = extra(topic, index, msg) if extra is not None else []
            if edit is not None:
                msg = edit(topic, index, msg)
            if msg is not None and topic not in drop_topics:
                writer.write(connections[topic], stamp, messages.serialize(msg))
            for new_topic, new in added:
                writer.write(connections[new_topic], stamp, messages.serialize(new))
    return target


def _load(bag: Path, **kwargs):
    kwargs.setdefault("progress", False)
    return load_bag_frames([bag], IMAGE, LIDAR, **kwargs)


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


@pytest.mark.parametrize(("storage", "camera"), [("mcap", 2), ("sqlite3", 2), ("mcap", 3)])
def test_projected_scans_back_projected_into_the_bag_come_back_exactly(drive, tmp_path,
                                                                         storage, camera):
    # A drive as kitti_dev ships: projected scans, no velodyne .bin files.
    copy = tmp_path / "drive" / drive.name
    shutil.copytree(drive, copy, ignore=shutil.ignore_patterns("velodyne_points"))
    out = tmp_path / "bag"
    convert_drive(copy, out, ConversionOptions(storage=storage, progress=False,
                                               lidar_from_depth=camera))
    frames, drops = load_bag_frames([out], NAMES.image(camera), LIDAR, progress=False)
    assert drops == {} and len(frames) == FRAMES
    pngs = _drive_files(drive, f"proj_depth/velodyne_raw/image_{camera:02d}")
    for i, png in enumerate(pngs):
        # Every return on the pixel it came from, with the depth it had (bit for bit).
        np.testing.assert_array_equal(frames.sparse[i], read_depth_png(png))
    np.testing.assert_array_equal(
        frames.stamps_ns, read_timestamps_ns(drive / f"image_{camera:02d}" / "timestamps.txt"))


def test_a_missing_cloud_drops_its_frame_and_splits_the_segment(mcap_bag, tmp_path):
    bag = _copy_bag(mcap_bag, tmp_path / "gap",
                    edit=lambda topic, i, msg: None if topic == LIDAR and i == 2 else msg)
    frames, drops = _load(bag)
    assert drops == {"no_lidar": 1}
    assert frames.names == ["gap:0", "gap:1", "gap:3"]
    np.testing.assert_array_equal(frames.segments, [0, 0, 1])


def test_a_bare_mcap_file_is_a_bag(mcap_bag):
    reference, _ = _load(mcap_bag)
    frames, drops = _load(next(mcap_bag.glob("*.mcap")))
    assert drops == {} and frames.names == [f"drive_bag.mcap:{i}" for i in range(FRAMES)]
    np.testing.assert_array_equal(frames.sparse, reference.sparse)


def test_two_bags_never_share_a_segment(mcap_bag, tmp_path):
    other = shutil.copytree(mcap_bag, tmp_path / "second")
    frames, _ = load_bag_frames([mcap_bag, other], IMAGE, LIDAR, progress=False)
    assert len(frames) == 2 * FRAMES
    np.testing.assert_array_equal(frames.segments, [0] * FRAMES + [1] * FRAMES)
    assert frames.names[FRAMES - 1:FRAMES + 1] == [f"drive_bag:{FRAMES - 1}", "second:0"]
    np.testing.assert_array_equal(frames.rgb[:FRAMES], frames.rgb[FRAMES:])
    assert "drive_bag" in frames.source and "second" in frames.source


def test_the_cache_skips_decoding_and_follows_the_bag_and_the_options(mcap_bag, tmp_path,
                                                                        monkeypatch, drive):
    bag = shutil.copytree(mcap_bag, tmp_path / "cached")
    cache = tmp_path / "cache"
    calls = []
    real = bags.decode_image
    monkeypatch.setattr(bags, "decode_image", lambda msg: calls.append(1) or real(msg))
    first, drops = _load(bag, cache_dir=cache)
    assert len(calls) == FRAMES and len(list(cache.glob("*.npz"))) == 1
    second, drops_again = _load(bag, cache_dir=cache)
    assert len(calls) == FRAMES  # read from the cache: nothing decoded
    for name in ("rgb", "K", "sparse", "stamps_ns", "poses", "segments"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    assert (second.names, second.source, drops_again) == (first.names, first.source, drops)
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []
    # Another option that changes the frames: another entry.
    _load(bag, cache_dir=cache, slop_s=0.02)
    assert len(calls) == 2 * FRAMES and len(list(cache.glob("*.npz"))) == 2
    # The bag's file changed: decoded again.
    storage = next(bag.glob("*.mcap"))
    stat = storage.stat()
    os.utime(storage, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _load(bag, cache_dir=cache)
    assert len(calls) == 3 * FRAMES
    # A damaged cache file is decoded again (and replaced).
    for entry in cache.glob("*.npz"):
        entry.write_bytes(b"not an npz")
    again, _ = _load(bag, cache_dir=cache)
    assert len(calls) == 4 * FRAMES
    np.testing.assert_array_equal(again.sparse, first.sparse)
    assert _load(bag, cache_dir=cache) and len(calls) == 4 * FRAMES


def _set_image(msg, array: np.ndarray, encoding: str):
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    return dataclasses.replace(msg, height=height, width=width, encoding=encoding,
                               step=width * channels,
                               data=np.ascontiguousarray(array).reshape(-1))


def test_drops_are_counted_by_reason(mcap_bag, tmp_path):
    def edit(topic, i, msg):
        if topic == NAMES.camera_info(2) and i == 0:
            return None  # image 0 has no CameraInfo before it
        if topic == IMAGE and i == 1:
            return dataclasses.replace(msg, encoding="32FC1")  # not a colour image
        if topic == IMAGE and i == 2:
            return _set_image(msg, np.zeros((HEIGHT // 2, WIDTH // 2, 3), np.uint8), "rgb8")
        return msg

    frames, drops = _load(_copy_bag(mcap_bag, tmp_path / "edited", edit))
    assert drops == {"no_camera_info": 1, "bad_encoding": 1, "size_change": 1}
    assert frames.names == [f"edited:{FRAMES - 1}"]
    assert set(drops) <= set(bags.DROP_REASONS)


def test_bgr8_mono8_and_compressed_images_decode_to_rgb(mcap_bag, tmp_path, drive):
    originals = [read_rgb_png(p) for p in _drive_files(drive, "image_02/data")]
    grey = cv2.cvtColor(originals[1], cv2.COLOR_RGB2GRAY)

    def edit(topic, i, msg):
        if topic == IMAGE and i == 0:
            return _set_image(msg, originals[0][..., ::-1], "bgr8")
        if topic == IMAGE and i == 1:
            return _set_image(msg, grey, "mono8")
        return msg

    frames, drops = _load(_copy_bag(mcap_bag, tmp_path / "encodings", edit))
    assert drops == {}
    np.testing.assert_array_equal(frames.rgb[0], originals[0])
    np.testing.assert_array_equal(frames.rgb[1], np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(frames.rgb[2], originals[2])

    compressed_type = "sensor_msgs/msg/CompressedImage"
    compressed = messages.TYPESTORE.types[compressed_type]

    def compress(topic, i, msg):
        if topic != IMAGE:
            return msg
        ok, png = cv2.imencode(".png", originals[i][..., ::-1])  # OpenCV encodes BGR
        assert ok
        return compressed(header=msg.header, format="png", data=png.reshape(-1))

    topic = "/kitti/camera2/image_raw/compressed"
    bag = _copy_bag(mcap_bag, tmp_path / "compressed", compress, types={IMAGE: compressed_type})
    frames, drops = _load(bag)
    assert drops == {}
    np.testing.assert_array_equal(frames.rgb, np.stack(originals))
    assert bags.default_camera_info_topic(topic) == NAMES.camera_info(2)


def _odometry_from_tf(topic, i, msg):
    """An Odometry message on /odom for each /tf (world -> imu_link) message."""
    if topic != topics.TF_TOPIC:
        return []
    t = messages.TYPESTORE.types
    out = []
    for transform in msg.transforms:
        tr, q = transform.transform.translation, transform.transform.rotation
        pose = t["geometry_msgs/msg/Pose"](
            position=t["geometry_msgs/msg/Point"](x=tr.x, y=tr.y, z=tr.z), orientation=q)
        zero = messages.Vector3(x=0.0, y=0.0, z=0.0)
        out.append(("/odom", t["nav_msgs/msg/Odometry"](
            header=transform.header, child_frame_id=transform.child_frame_id,
            pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
            twist=t["geometry_msgs/msg/TwistWithCovariance"](
                twist=t["geometry_msgs/msg/Twist"](linear=zero, angular=zero),
                covariance=np.zeros(36)))))
    return out


def test_poses_from_odometry_equal_those_from_tf_and_none_without_either(mcap_bag, tmp_path):
    reference, _ = _load(mcap_bag)
    bag = _copy_bag(mcap_bag, tmp_path / "odom", drop_topics=(topics.TF_TOPIC,),
                    types={"/odom": "nav_msgs/msg/Odometry"}, extra=_odometry_from_tf)
    frames, _ = _load(bag, odometry_topic="/odom")
    np.testing.assert_allclose(frames.poses, reference.poses, atol=1e-9)
    assert "odometry /odom" in frames.source
    without, drops = _load(bag)
    assert without.poses is None and drops == {}


def test_frames_outside_the_poses_time_span_keep_a_nan_pose(mcap_bag, tmp_path):
    bag = _copy_bag(mcap_bag, tmp_path / "short_tf",
                    edit=lambda topic, i, msg: None if topic == topics.TF_TOPIC and i >= 2
                    else msg)
    frames, drops = _load(bag)
    assert drops == {"no_pose": FRAMES - 2} and len(frames) == FRAMES
    assert np.isfinite(frames.poses[:2]).all() and np.isnan(frames.poses[2:]).all()


def _shift_clouds(topic, i, msg):
    if topic != LIDAR:
        return msg
    stamp = msg.header.stamp
    return dataclasses.replace(msg, header=dataclasses.replace(
        msg.header, stamp=dataclasses.replace(stamp, nanosec=(stamp.nanosec + 30_000_000)
                                              % 1_000_000_000)))


@pytest.mark.parametrize(("case", "expected"), [
    ("no_such_bag", ["no such bag"]),
    ("not_a_bag", ["not a rosbag2 bag"]),
    ("unreadable", ["cannot read bag"]),
    ("image_topic", ["no image topic '/camera/image_raw'", f"{IMAGE} (sensor_msgs/msg/Image)",
                     f"{LIDAR} (sensor_msgs/msg/PointCloud2)"]),
    ("lidar_type", [f"{IMAGE} is sensor_msgs/msg/Image, not sensor_msgs/msg/PointCloud2"]),
    ("no_camera_info", [f"no CameraInfo topic '{NAMES.camera_info(2)}'", "camera_info_topic"]),
    ("no_tf_static", ["no LiDAR-to-camera transform from 'velodyne' to "
                      "'camera_02_optical_frame'", "the bag has no /tf_static",
                      "lidar_to_camera"]),
    ("zero_pairs", ["zero pairs", "slop_s=0.02"]),
    ("sizes", ["different image sizes", "80x24", f"{WIDTH}x{HEIGHT}"]),
])
def test_errors_are_one_clear_line(case, expected, mcap_bag, tmp_path):
    bag_list, kwargs = [mcap_bag], {}
    if case == "no_such_bag":
        bag_list = [tmp_path / "nothing"]
    elif case == "not_a_bag":
        (tmp_path / "empty").mkdir()
        bag_list = [tmp_path / "empty"]
    elif case == "unreadable":
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "metadata.yaml").write_text("rosbag2_bagfile_information: [\n")
        bag_list = [tmp_path / "broken"]
    elif case == "image_topic":
        kwargs["image_topic"] = "/camera/image_raw"
    elif case == "lidar_type":
        kwargs["lidar_topic"] = IMAGE
    elif case == "no_camera_info":
        bag_list = [_copy_bag(mcap_bag, tmp_path / "b", drop_topics=(NAMES.camera_info(2),))]
    elif case == "no_tf_static":
        bag_list = [_copy_bag(mcap_bag, tmp_path / "b", drop_topics=(topics.TF_STATIC_TOPIC,))]
    elif case == "zero_pairs":
        bag_list = [_copy_bag(mcap_bag, tmp_path / "b", _shift_clouds)]
        kwargs["slop_s"] = 0.02
    elif case == "sizes":
        def halve(topic, i, msg):
            if topic == IMAGE:
                return _set_image(msg, np.zeros((24, 80, 3), np.uint8), "rgb8")
            if topic == NAMES.camera_info(2):
                return dataclasses.replace(msg, width=80, height=24)
            return msg
        bag_list = [mcap_bag, _copy_bag(mcap_bag, tmp_path / "small", halve)]
    args = {"image_topic": IMAGE, "lidar_topic": LIDAR, "progress": False, **kwargs}
    with pytest.raises(BagDataError) as caught:
        load_bag_frames(bag_list, **args)
    assert isinstance(caught.value, ConfigError)
    message = str(caught.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_a_given_lidar_to_camera_replaces_tf_static(mcap_bag, tmp_path, drive):
    reference, _ = _load(mcap_bag)
    bag = _copy_bag(mcap_bag, tmp_path / "no_static", drop_topics=(topics.TF_STATIC_TOPIC,))
    transform = transform_from_kitti(drive / "calib_velo_to_cam.txt", camera=2)
    frames, drops = _load(bag, lidar_to_camera=transform)
    assert drops == {} and frames.poses is None  # no /tf_static: the camera is on no /tf chain
    # The same transform as /tf_static's chain, to rounding: the same pixels, the same depths.
    agree = ((frames.sparse > 0) == (reference.sparse > 0)).mean()
    assert agree > 0.999, agree  # but for a point on a pixel border
    both = (frames.sparse > 0) & (reference.sparse > 0)
    np.testing.assert_allclose(frames.sparse[both], reference.sparse[both], atol=1e-4)
    with pytest.raises(BagDataError, match="not orthonormal"):
        _load(bag, lidar_to_camera=np.diag([2.0, 1.0, 1.0, 1.0]))


def test_without_a_lidar_topic_every_image_is_a_frame(mcap_bag):
    frames, drops = load_bag_frames(str(mcap_bag), IMAGE, None, progress=False)  # one bag
    assert len(frames) == FRAMES and drops == {} and not frames.sparse.any()
    assert "lidar none" in frames.source
    with pytest.raises(BagDataError, match="no bags given"):
        load_bag_frames([], IMAGE, LIDAR)


def test_transform_tree_interpolates_and_refuses_to_extrapolate_far():
    tree = TransformTree(max_extrapolation_ns=10)
    turn = np.eye(4)
    turn[:3, :3] = cv2.Rodrigues(np.array([0.0, 0.0, np.pi / 2]))[0]
    turn[:3, 3] = (2.0, 0.0, 0.0)
    tree.add("world", "base", np.eye(4), 100)
    tree.add("world", "base", turn, 200)
    offset = np.eye(4)
    offset[:3, 3] = (0.0, 0.0, 1.0)
    tree.add("base", "camera", offset, static=True)
    half = tree.lookup("world", "camera", 150)
    expected = np.eye(4)
    expected[:3, :3] = cv2.Rodrigues(np.array([0.0, 0.0, np.pi / 4]))[0]
    expected[:3, 3] = (1.0, 0.0, 0.0)
    np.testing.assert_allclose(half, expected @ offset, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("camera", "world", 150), np.linalg.inv(half),
                               atol=1e-12)
    np.testing.assert_allclose(tree.lookup("world", "camera", 205), turn @ offset, atol=0.2)
    with pytest.raises(TransformTreeError, match="not at"):
        tree.lookup("world", "camera", 300)
    with pytest.raises(TransformTreeError, match="not /tf_static"):
        tree.lookup("world", "camera", 150, static_only=True)
    with pytest.raises(TransformTreeError, match="no TF chain"):
        tree.lookup("camera", "elsewhere")
    assert tree.root("camera") == "world" and tree.has_dynamic_link("camera")


def test_decoders_know_sensor_msgs_pointfield_datatypes():
    point_field = pytest.importorskip("sensor_msgs.msg").PointField
    names = ["INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "FLOAT32", "FLOAT64"]
    assert {getattr(point_field, n): np.dtype(n.lower()) for n in names} == POINTFIELD_DTYPES


def test_a_drive_subset_takes_its_stamps_by_frame_number(drive, tmp_path):
    # kitti_dev's layout: some frames of a drive, with the whole drive's timestamps.txt.
    copy = tmp_path / "drive" / drive.name
    shutil.copytree(drive, copy)
    for path in copy.rglob("0000000000.*"):
        path.unlink()
    out = tmp_path / "bag"
    convert_drive(copy, out, ConversionOptions(progress=False))
    frames, drops = _load(out)
    expected = read_timestamps_ns(drive / "image_02" / "timestamps.txt")[1:]
    np.testing.assert_array_equal(frames.stamps_ns, expected)
    assert drops == {} and frames.names == [f"bag:{i}" for i in range(FRAMES - 1)]


def test_projected_scans_that_are_not_there_are_one_error_line(drive, tmp_path, capsys):
    out = tmp_path / "bag"
    assert kitti_to_bag.main([str(drive), str(out), "--lidar-from-projected-depth", "1",
                              "--no-progress"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("kitti_to_bag: error: no projected scans for camera 01")
    assert "proj_depth/velodyne_raw/image_01" in error and "\n" not in error
    assert not out.exists()
    assert kitti_to_bag.main([str(drive), str(out), "--lidar-from-projected-depth", "7"]) == 1
    assert "camera number 0-3" in capsys.readouterr().err


@pytest.mark.parametrize(("d", "r", "expected"), [
    (np.zeros(5), np.eye(3), "P"),  # rectified: P describes the images
    (np.array([]), np.eye(3), "P"),
    (np.array([-0.3, 0.1, 0.0, 0.0, 0.0]), np.eye(3), "K"),  # raw, distorted: K
    (np.zeros(5), cv2.Rodrigues(np.array([0.0, 0.02, 0.0]))[0], "K"),  # not yet rotated
])
def test_intrinsics_come_from_p_for_rectified_images_else_k(d, r, expected):
    k = np.array([[700.0, 0.0, 600.0], [0.0, 705.0, 170.0], [0.0, 0.0, 1.0]])
    p = np.array([[720.0, 0.0, 610.0, -388.0], [0.0, 720.0, 172.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    info = messages.CameraInfo(
        header=messages.make_header(0, "cam"), height=375, width=1242,
        distortion_model="plumb_bob", d=d, k=k.reshape(-1), r=r.reshape(-1), p=p.reshape(-1),
        binning_x=0, binning_y=0, roi=messages.RegionOfInterest(
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    np.testing.assert_array_equal(bags.camera_matrix(info),
                                  p[:, :3] if expected == "P" else k)


KITTI_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"
KITTI_DEV_DRIVE = KITTI_DEV / "2011_09_26" / "2011_09_26_drive_0023_sync"


@pytest.mark.skipif(not KITTI_DEV_DRIVE.is_dir(),
                    reason=f"kitti_dev not found at {KITTI_DEV} (see DESIGN.md)")
def test_kitti_dev_becomes_a_bag_whose_lidar_comes_back_exactly(tmp_path):
    # Real KITTI frames, projected scans only: the bag goes to tmp_path, never the repository.
    out = tmp_path / "kitti_dev_bag"
    result = convert_drive(KITTI_DEV_DRIVE, out, ConversionOptions(progress=False,
                                                                   lidar_from_depth=2))
    assert result.frames == 7
    frames, drops = load_bag_frames([out], IMAGE, LIDAR, progress=False)
    assert drops == {} and len(frames) == 7 and frames.rgb.shape[1:3] == (375, 1242)
    pngs = sorted((KITTI_DEV_DRIVE / "proj_depth" / "velodyne_raw" / "image_02").glob("*.png"))
    for i, png in enumerate(pngs):
        np.testing.assert_array_equal(frames.sparse[i], read_depth_png(png))
        assert 18_000 < (frames.sparse[i] > 0).sum() < 20_000
    np.testing.assert_allclose(frames.K[0, 0, 0], 721.5377)
    steps = np.linalg.norm(np.diff(frames.poses[:, :3, 3], axis=0), axis=1)
    assert ((steps > 0.5) & (steps < 1.5)).all()  # ~9 m/s at 10 Hz, from the OXTS /tf
    np.testing.assert_array_equal(frames.segments, np.zeros(7))
