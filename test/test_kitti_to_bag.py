"""kitti_to_bag round trips: an engine drive to rosbag2 (MCAP and sqlite3), read back with
rosbags and compared with the drive's own files; bad drives and interrupted conversions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from depth_ros.bags import kitti_to_bag, messages, topics
from depth_ros.bags.drive_source import DriveSource
from depth_ros.bags.kitti_to_bag import ConversionOptions, convert_drive
from depth_ros.kitti import KittiFormatError, read_depth_png, read_rgb_png, read_timestamps_ns
from depth_ros.sensors.tf_lookup import quaternion_to_matrix
from depth_ros.synthetic import plan_drive, rig, write_synthetic_drive
from depth_ros.synthetic.drive import CAMERA_INDEX

FRAMES, SEED, WIDTH, HEIGHT = 4, 31, 160, 48
NAMES = topics.BagTopics()


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("drive")
    return write_synthetic_drive(root, num_frames=FRAMES, seed=SEED, width=WIDTH, height=HEIGHT,
                                 progress=False, azimuth_decimation=8)


def _read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """Every message of the bag, deserialised, by topic: (log time, message)."""
    out: dict[str, list[tuple[int, object]]] = {}
    with AnyReader([path]) as reader:
        for connection, stamp, raw in reader.messages():
            out.setdefault(connection.topic, []).append(
                (stamp, reader.deserialize(raw, connection.msgtype)))
    return out


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _matrix(transform) -> np.ndarray:
    t, q = transform.translation, transform.rotation
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix(q.x, q.y, q.z, q.w)
    out[:3, 3] = (t.x, t.y, t.z)
    return out


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial-" in p.name)


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def converted(request, drive, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"bag_{request.param}") / "drive_bag"
    result = convert_drive(drive, out, ConversionOptions(storage=request.param, progress=False))
    return request.param, result, _read_bag(out)


def test_bag_has_every_topic_with_one_message_per_frame(converted):
    storage, result, bag = converted
    per_frame = [NAMES.image(2), NAMES.camera_info(2), NAMES.image(3), NAMES.camera_info(3),
                 NAMES.groundtruth(2), NAMES.groundtruth(3), NAMES.pointcloud, NAMES.imu,
                 NAMES.gps_fix, topics.TF_TOPIC]
    assert {t: len(v) for t, v in bag.items()} == {**dict.fromkeys(per_frame, FRAMES),
                                                   topics.TF_STATIC_TOPIC: 1}
    assert result.messages == {t: len(v) for t, v in bag.items()}
    assert result.frames == FRAMES and result.bytes > 0
    suffix = {"mcap": ".mcap", "sqlite3": ".db3"}[storage]
    assert (result.output / f"{result.output.name}{suffix}").is_file()
    assert _leftovers(result.output.parent) == []


def test_images_equal_the_source_pngs(converted, drive):
    _, _, bag = converted
    for camera in (2, 3):
        for index, (_, msg) in enumerate(bag[NAMES.image(camera)]):
            source = read_rgb_png(drive / f"image_{camera:02d}" / "data" / f"{index:010d}.png")
            assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", HEIGHT, WIDTH,
                                                                       3 * WIDTH)
            assert msg.header.frame_id == topics.camera_frame(camera)
            assert np.array_equal(np.asarray(msg.data).reshape(HEIGHT, WIDTH, 3), source)


def test_point_clouds_equal_the_bin_files(converted, drive):
    _, _, bag = converted
    for index, (_, msg) in enumerate(bag[NAMES.pointcloud]):
        raw = (drive / "velodyne_points" / "data" / f"{index:010d}.bin").read_bytes()
        assert msg.width == len(raw) // 16 > 1000 and msg.height == 1
        assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
            ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)]
        assert msg.point_step == 16 and msg.row_step == 16 * msg.width and msg.is_dense
        assert msg.header.frame_id == topics.VELODYNE_FRAME
        assert bytes(msg.data) == raw


def test_groundtruth_is_metres_with_nan_for_no_data(converted, drive):
    _, _, bag = converted
    for index, (_, msg) in enumerate(bag[NAMES.groundtruth(2)]):
        source = read_depth_png(drive / "proj_depth" / "groundtruth" / "image_02"
                                / f"{index:010d}.png")
        depth = np.asarray(msg.data).view("<f4").reshape(HEIGHT, WIDTH)
        assert msg.encoding == "32FC1" and msg.step == 4 * WIDTH
        assert np.array_equal(np.isnan(depth), source == 0) and (source == 0).any()
        assert np.array_equal(depth[source > 0], source[source > 0])


def test_stamps_come_from_the_timestamp_files_and_increase(converted, drive):
    _, _, bag = converted
    image_stamps = read_timestamps_ns(drive / "image_02" / "timestamps.txt")
    velo_stamps = read_timestamps_ns(drive / "velodyne_points" / "timestamps.txt")
    oxts_stamps = read_timestamps_ns(drive / "oxts" / "timestamps.txt")
    expected = {NAMES.image(2): image_stamps, NAMES.camera_info(2): image_stamps,
                NAMES.groundtruth(2): image_stamps, NAMES.pointcloud: velo_stamps,
                NAMES.imu: oxts_stamps}
    for topic, stamps in expected.items():
        logged = [t for t, _ in bag[topic]]
        headers = [_stamp_ns(m) for _, m in bag[topic]]
        assert logged == headers == stamps.tolist(), topic
        assert np.all(np.diff(logged) > 0)
    # Exact, from the text: 13:02:00.099999905 is not the float's ...099999904.7.
    assert image_stamps[1] % 1_000_000_000 == 99_999_905


def test_camera_info_is_the_rectified_calibration(converted, drive):
    _, _, bag = converted
    source = DriveSource(drive)
    p2, p3 = source.projections[2], source.projections[3]
    _, info2 = bag[NAMES.camera_info(2)][0]
    _, info3 = bag[NAMES.camera_info(3)][0]
    for info, p in ((info2, p2), (info3, p3)):
        assert (info.width, info.height, info.distortion_model) == (WIDTH, HEIGHT, "plumb_bob")
        assert np.array_equal(info.d, np.zeros(5)) and np.array_equal(info.r, np.eye(3).ravel())
        assert np.allclose(np.asarray(info.k).reshape(3, 3), p[:, :3])
        assert np.allclose(np.asarray(info.p).reshape(3, 4)[:, :3], p[:, :3])
    fx = p2[0, 0]
    assert np.asarray(info2.p)[3] == pytest.approx(0.0, abs=1e-9)  # left camera: Tx = 0
    assert np.asarray(info3.p)[3] == pytest.approx(-fx * 0.54, rel=1e-5)  # Tx = -fx * B


def test_static_transforms_match_the_calibration(converted):
    _, _, bag = converted
    (_, tf_static), = bag[topics.TF_STATIC_TOPIC]
    links = {(t.header.frame_id, t.child_frame_id): _matrix(t.transform)
             for t in tf_static.transforms}
    assert set(links) == {(topics.IMU_FRAME, topics.VELODYNE_FRAME),
                          (topics.VELODYNE_FRAME, "camera_00_optical_frame"),
                          ("camera_00_optical_frame", "camera_02_optical_frame"),
                          ("camera_00_optical_frame", "camera_03_optical_frame")}
    # The engine's rig: R_rect_00 = I, so camera 00's rectified frame is its own.
    assert np.allclose(links[(topics.IMU_FRAME, topics.VELODYNE_FRAME)],
                       np.linalg.inv(rig.imu_to_velo_matrix()), atol=1e-6)
    velo_to_cam2 = (links[(topics.VELODYNE_FRAME, "camera_00_optical_frame")]
                    @ links[("camera_00_optical_frame", "camera_02_optical_frame")])
    assert np.allclose(velo_to_cam2, np.linalg.inv(rig.velo_to_cam_matrix())
                       @ rig.camera_to_cam0_matrix(2), atol=1e-6)
    cam3 = links[("camera_00_optical_frame", "camera_03_optical_frame")]
    assert np.allclose(cam3, rig.camera_to_cam0_matrix(3), atol=1e-6)


def test_oxts_gives_tf_imu_and_fix_along_the_drive(converted, drive):
    _, _, bag = converted
    plan = plan_drive(FRAMES, SEED, WIDTH, HEIGHT)
    imu_to_world = [rig.sensor_to_world(plan.trajectory.pose(t), CAMERA_INDEX, "imu")
                    for t in plan.times_s]
    for i, (_, tf) in enumerate(bag[topics.TF_TOPIC]):
        (link,) = tf.transforms
        assert (link.header.frame_id, link.child_frame_id) == (topics.WORLD_FRAME,
                                                                topics.IMU_FRAME)
        expected = np.linalg.inv(imu_to_world[0]) @ imu_to_world[i]
        got = _matrix(link.transform)
        assert np.allclose(got[:3, 3], expected[:3, 3], atol=0.02)
        assert np.allclose(got[:3, :3], expected[:3, :3], atol=1e-4)
    assert np.linalg.norm(_matrix(bag[topics.TF_TOPIC][-1][1].transforms[0].transform)[:3, 3]) > 2
    packets = DriveSource(drive).oxts_packets
    for i, (_, imu) in enumerate(bag[NAMES.imu]):
        assert imu.header.frame_id == topics.IMU_FRAME
        assert imu.linear_acceleration.z == pytest.approx(packets["az"][i])  # gravity in it
        q = imu.orientation
        rotation = quaternion_to_matrix(q.x, q.y, q.z, q.w)
        assert np.arctan2(rotation[1, 0], rotation[0, 0]) == pytest.approx(packets["yaw"][i])
        _, fix = bag[NAMES.gps_fix][i]
        assert (fix.latitude, fix.longitude) == (packets["lat"][i], packets["lon"][i])


def test_frame_range_cameras_prefix_and_no_lidar(drive, tmp_path):
    out = tmp_path / "part"
    rc = kitti_to_bag.main([str(drive), str(out), "--cameras", "3", "--start", "1", "--end",
                            "3", "--no-lidar", "--no-oxts", "--prefix", "/car/",
                            "--storage", "sqlite3", "--no-progress"])
    assert rc == 0
    bag = _read_bag(out)
    names = topics.BagTopics("/car")
    assert set(bag) == {names.image(3), names.camera_info(3), names.groundtruth(3),
                        topics.TF_STATIC_TOPIC}
    stamps = read_timestamps_ns(drive / "image_03" / "timestamps.txt")
    assert [t for t, _ in bag[names.image(3)]] == stamps[1:3].tolist()
    (_, tf_static), = bag[topics.TF_STATIC_TOPIC]
    assert {t.child_frame_id for t in tf_static.transforms} == {
        topics.VELODYNE_FRAME, "camera_00_optical_frame", "camera_03_optical_frame"}


def test_existing_output_is_an_error_unless_overwrite(drive, tmp_path, capsys):
    out = tmp_path / "bag"
    assert kitti_to_bag.main([str(drive), str(out), "--end", "1", "--no-progress"]) == 0
    first = _read_bag(out)
    capsys.readouterr()
    assert kitti_to_bag.main([str(drive), str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and "--overwrite" in err
    assert _read_bag(out).keys() == first.keys()
    assert len(_read_bag(out)[NAMES.image(2)]) == 1  # untouched
    assert kitti_to_bag.main([str(drive), str(out), "--overwrite", "--no-progress"]) == 0
    assert len(_read_bag(out)[NAMES.image(2)]) == FRAMES
    assert _leftovers(tmp_path) == []


def _broken_copy(drive: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "date" / drive.name
    shutil.copytree(drive.parent, copy.parent, dirs_exist_ok=True)
    return copy


def _remove_velodyne_frame(d: Path) -> None:
    (d / "velodyne_points" / "data" / "0000000002.bin").unlink()


def _truncate_scan(d: Path) -> None:
    path = d / "velodyne_points" / "data" / "0000000001.bin"
    path.write_bytes(path.read_bytes()[:-5])


def _missing_timestamp(d: Path) -> None:
    path = d / "image_03" / "timestamps.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


def _remove_frame_everywhere(d: Path) -> None:
    for path in d.rglob("0000000001.*"):
        path.unlink()
    for path in d.rglob("timestamps*.txt"):
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:1] + lines[2:]))


def _bad_calibration(d: Path) -> None:
    path = d / "calib_cam_to_cam.txt"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.startswith("P_rect_03")))


def _calib_copies(d: Path, name: str) -> list[Path]:
    """Every copy of a calibration file the drive could use (in it, and in its parent)."""
    copies = [folder / name for folder in (d, d.parent) if (folder / name).is_file()]
    assert copies, name
    return copies


def _remove_calib(name: str):
    def damage(d: Path) -> None:
        for path in _calib_copies(d, name):
            path.unlink()
    return damage


def _non_finite(name: str, key: str, value: str):
    """Replace the first number of ``key`` in calibration file ``name`` by ``value``."""
    def damage(d: Path) -> None:
        for path in _calib_copies(d, name):
            _replace_first(path, key, value)
    return damage


def _replace_first(path: Path, key: str, value: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(f"{key}:"):
            numbers = line.split(":", 1)[1].split()
            lines[i] = f"{key}: {' '.join([value, *numbers[1:]])}\n"
            break
    else:
        raise AssertionError(f"{key} not in {path}")
    path.write_text("".join(lines))


@pytest.mark.parametrize("damage, names", [
    (_remove_velodyne_frame, ["velodyne_points/data", "0000000002"]),
    (_truncate_scan, ["0000000001.bin", "truncated"]),
    (_missing_timestamp, ["image_03/timestamps.txt", "3 lines for 4 frames"]),
    (_remove_frame_everywhere, ["image_02/data", "frame 0000000001 is missing"]),
    (_bad_calibration, ["calib_cam_to_cam.txt", "P_rect_03"]),
    (_remove_calib("calib_velo_to_cam.txt"),
     ["calib_velo_to_cam.txt", "not found", "the LiDAR and the OXTS /tf", "--no-lidar"]),
    (_remove_calib("calib_imu_to_velo.txt"), ["calib_imu_to_velo.txt", "the OXTS /tf"]),
    (_non_finite("calib_velo_to_cam.txt", "T", "nan"),
     ["calib_velo_to_cam.txt", "T holds a non-finite number (nan "]),
    (_non_finite("calib_imu_to_velo.txt", "R", "inf"),
     ["calib_imu_to_velo.txt", "R holds a non-finite number (inf "]),
    (_non_finite("calib_cam_to_cam.txt", "P_rect_02", "NaN"),
     ["calib_cam_to_cam.txt", "P_rect_02 holds a non-finite number"]),
    (_non_finite("calib_cam_to_cam.txt", "D_00", "nan"),  # unused by the bag, still refused
     ["calib_cam_to_cam.txt", "D_00"]),
])
def test_bad_drives_fail_before_writing_with_one_line(drive, tmp_path, capsys, damage, names):
    broken = _broken_copy(drive, tmp_path)
    damage(broken)
    out = tmp_path / "bag"
    assert kitti_to_bag.main([str(broken), str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kitti_to_bag: error: ") and err.count("\n") == 1
    for name in names:
        assert name in err, err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_camera_only_bag_needs_no_lidar_calibration(drive, tmp_path):
    broken = _broken_copy(drive, tmp_path)
    _remove_calib("calib_velo_to_cam.txt")(broken)
    _remove_calib("calib_imu_to_velo.txt")(broken)
    # Neither the LiDAR nor OXTS goes into the bag: the missing links are not needed.
    out = tmp_path / "cameras_only"
    result = convert_drive(broken, out, ConversionOptions(lidar=False, oxts=False,
                                                          progress=False))
    assert result.frames == FRAMES
    bag = _read_bag(out)
    assert NAMES.pointcloud not in bag and topics.TF_TOPIC not in bag
    (_, tf_static), = bag[topics.TF_STATIC_TOPIC]
    assert {(t.header.frame_id, t.child_frame_id) for t in tf_static.transforms} == {
        ("camera_00_optical_frame", "camera_02_optical_frame"),
        ("camera_00_optical_frame", "camera_03_optical_frame")}
    # With the LiDAR asked for, the same drive is refused before anything is written.
    with pytest.raises(KittiFormatError, match=r"calib_velo_to_cam\.txt"):
        convert_drive(broken, tmp_path / "with_lidar", ConversionOptions(oxts=False,
                                                                         progress=False))
    assert not (tmp_path / "with_lidar").exists()


def test_failure_mid_conversion_leaves_no_bag_and_keeps_the_old_one(drive, tmp_path):
    broken = _broken_copy(drive, tmp_path)
    out = tmp_path / "bag"
    convert_drive(broken, out, ConversionOptions(end=1, progress=False))
    # A PNG that cannot be decoded is found only when its frame is read: two frames are
    # in the bag by then.
    (broken / "image_02" / "data" / "0000000002.png").write_bytes(b"not a png")
    with pytest.raises(KittiFormatError, match=r"0000000002\.png"):
        convert_drive(broken, out, ConversionOptions(overwrite=True, progress=False, jobs=1))
    assert len(_read_bag(out)[NAMES.image(2)]) == 1  # the old bag, whole
    with pytest.raises(KittiFormatError):
        convert_drive(broken, tmp_path / "new", ConversionOptions(progress=False))
    assert not (tmp_path / "new").exists() and _leftovers(tmp_path) == []


def test_interrupt_leaves_nothing_that_looks_like_a_bag(drive, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = messages.serialize

    def interrupted(msg):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return real(msg)

    monkeypatch.setattr(messages, "serialize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_drive(drive, tmp_path / "bag", ConversionOptions(progress=False))
    assert calls["n"] == 15
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_abandoned_partial_directory_of_a_dead_process_is_removed(drive, tmp_path):
    dead = tmp_path / ".bag.partial-999999999"
    (dead / "bag").mkdir(parents=True)
    convert_drive(drive, tmp_path / "bag", ConversionOptions(end=1, progress=False))
    assert not dead.exists() and (tmp_path / "bag" / "metadata.yaml").is_file()


def test_bad_options_are_errors(drive, tmp_path):
    with pytest.raises(ValueError, match="frame range"):
        convert_drive(drive, tmp_path / "a", ConversionOptions(start=3, end=2))
    with pytest.raises(ValueError, match="cameras"):
        convert_drive(drive, tmp_path / "a", ConversionOptions(cameras=(2, 7)))
    with pytest.raises(KittiFormatError, match="image_01"):
        convert_drive(drive, tmp_path / "a", ConversionOptions(cameras=(1,)))
    with pytest.raises(ValueError, match="storage"):
        convert_drive(drive, tmp_path / "a", ConversionOptions(storage="bag"))
    assert list(tmp_path.iterdir()) == []


def test_zstd_compression_reads_back_the_same(drive, tmp_path, converted):
    storage, plain_result, plain = converted
    out = tmp_path / "z"
    result = convert_drive(drive, out, ConversionOptions(storage=storage, compression="zstd",
                                                         progress=False))
    packed = _read_bag(out)
    assert result.bytes < plain_result.bytes
    for topic in (NAMES.image(2), NAMES.pointcloud):
        assert [bytes(m.data) for _, m in packed[topic]] == [bytes(m.data)
                                                              for _, m in plain[topic]]
