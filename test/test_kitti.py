"""KITTI file formats: depth PNGs, calibration files, timestamps, the drive reader."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ros import kitti


def test_depth_png_round_trip_quantises_to_1_256_m(tmp_path):
    depth = np.array([[0.0, np.nan, 1.0, 5.123], [80.0, -3.0, np.inf, 255.9]], np.float32)
    path = tmp_path / "d.png"
    kitti.write_depth_png(path, depth)
    back = kitti.read_depth_png(path)
    assert back.dtype == np.float32
    # No data (0, NaN, negative, inf) reads back as 0, as the KITTI devkit expects.
    assert back[0, 0] == 0 and back[0, 1] == 0 and back[1, 1] == 0 and back[1, 2] == 0
    valid = np.array([[False, False, True, True], [True, False, False, True]])
    np.testing.assert_allclose(back[valid], depth[valid], atol=0.5 / 256)


def test_depth_png_rejects_a_colour_image(tmp_path):
    path = tmp_path / "rgb.png"
    kitti.write_rgb_png(path, np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(kitti.KittiFormatError, match="uint16"):
        kitti.read_depth_png(path)


def test_calib_file_round_trip(tmp_path):
    p_rect = np.arange(12, dtype=np.float64).reshape(3, 4) * 1.5
    path = tmp_path / "calib_cam_to_cam.txt"
    kitti.write_calib_file(path, {"calib_time": "09-Jan-2012 13:57:47", "P_rect_02": p_rect,
                                  "S_rect_02": np.array([1242.0, 375.0])})
    calib = kitti.read_calib_file(path)
    assert calib["calib_time"] == "09-Jan-2012 13:57:47"
    np.testing.assert_allclose(calib["P_rect_02"].reshape(3, 4), p_rect, rtol=1e-6)
    assert path.read_text().splitlines()[1].startswith("P_rect_02: 0.000000e+00 1.500000e+00")


@pytest.mark.parametrize("text, seconds", [
    ("2011-09-26 13:02:25.964389546", 1317042145.964389546),
    ("1970-01-01 00:00:01.000000000", 1.0),
])
def test_timestamps_parse_and_format(text, seconds):
    assert kitti.parse_timestamp(text) == pytest.approx(seconds, abs=1e-6)
    assert kitti.format_timestamp(kitti.parse_timestamp(text))[:23] == text[:23]


@pytest.mark.parametrize("text", ["yesterday", "2011-09-26 13:02:25.96e3",
                                  "2011-09-26 13:02:25.-5", "2011-09-31 13:02:25.0"])
def test_bad_timestamp_raises(text):
    with pytest.raises(kitti.KittiFormatError, match="bad KITTI timestamp"):
        kitti.parse_timestamp(text)


def test_timestamps_file_reads_exact_nanoseconds_and_nearest_seconds(tmp_path):
    path = tmp_path / "timestamps.txt"
    path.write_text("2011-09-26 13:02:25.964389546\n\n2011-09-26 13:02:26.07\n"
                    "2011-09-26 13:02:26\n")
    ns = kitti.read_timestamps_ns(path)
    assert ns.dtype == np.int64
    assert ns.tolist() == [1317042145_964389546, 1317042146_070000000, 1317042146_000000000]
    # float seconds are the float64 nearest to each exact time (one rounding, not two)
    seconds = kitti.read_timestamps(path)
    assert seconds.tolist() == [n / 1_000_000_000 for n in ns.tolist()]
    assert seconds[0] == 1317042145.964389546


def test_timestamps_file_names_the_bad_line(tmp_path):
    path = tmp_path / "timestamps.txt"
    path.write_text("2011-09-26 13:02:25.964389546\n2011-09-26 13:02:26.x\n")
    for read in (kitti.read_timestamps, kitti.read_timestamps_ns):
        with pytest.raises(kitti.KittiFormatError, match=r"timestamps\.txt:2: bad KITTI "
                                                         r"timestamp '2011-09-26 13:02:26\.x'"):
            read(path)
    with pytest.raises(kitti.KittiFormatError, match="timestamps file not found"):
        kitti.read_timestamps_ns(tmp_path / "missing.txt")


def test_written_timestamps_read_back_within_float_resolution(tmp_path):
    path = tmp_path / "timestamps.txt"
    seconds = np.array([1317042145.0, 1317042145.1, 1317042145.2])
    kitti.write_timestamps(path, seconds)
    np.testing.assert_array_equal(kitti.read_timestamps(path), seconds)
    # float64 near 1.3e9 s resolves 238 ns: the written digits lie within half of that
    exact = [int(s) * 1_000_000_000 + round((s - int(s)) * 1e9) for s in seconds.tolist()]
    assert np.abs(kitti.read_timestamps_ns(path) - exact).max() <= 1


@pytest.mark.parametrize("rpy", [(0.0, 0.0, 0.0), (0.1, -0.2, 2.5), (-3.0, 1.2, -1.0)])
def test_rotation_from_rpy_is_kittis_order_and_inverts(rpy):
    from depth_ros.kitti.oxts import rotation_z, rpy_from_matrix

    roll, pitch, yaw = rpy
    rotation = kitti.rotation_from_rpy(roll, pitch, yaw)
    rx = np.array([[1, 0, 0], [0, np.cos(roll), -np.sin(roll)],
                   [0, np.sin(roll), np.cos(roll)]])
    ry = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0],
                   [-np.sin(pitch), 0, np.cos(pitch)]])
    np.testing.assert_allclose(rotation, rotation_z(yaw) @ ry @ rx, atol=1e-15)
    np.testing.assert_allclose(rpy_from_matrix(rotation), rpy, atol=1e-12)


def test_oxts_poses_are_relative_to_the_first_packet():
    packets = np.zeros((3, len(kitti.OXTS_FIELDS)))
    packets[:, 0] = 49.0
    packets[:, 1] = 8.4 + np.array([0.0, 0.0, 1e-4])  # the third packet ~7.3 m further east
    packets[:, 2] = [100.0, 102.0, 100.0]
    packets[1, 5] = np.pi / 2
    poses = kitti.oxts_poses(packets)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(poses[1][:3, 3], [0.0, 0.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(poses[1][:3, :3], kitti.rotation_from_rpy(0, 0, np.pi / 2),
                               atol=1e-12)
    east = np.cos(np.radians(49.0)) * 1e-4 * np.pi * 6378137.0 / 180.0
    np.testing.assert_allclose(poses[2][:3, 3], [east, 0.0, 0.0], atol=1e-6)


def test_velodyne_bin_size_check(tmp_path):
    path = tmp_path / "0000000000.bin"
    kitti.write_velodyne_bin(path, np.ones((5, 4), np.float32))
    assert kitti.check_velodyne_bin(path) == 5
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(kitti.KittiFormatError, match=r"77 bytes is not a multiple of 16"):
        kitti.check_velodyne_bin(path)
    with pytest.raises(kitti.KittiFormatError, match="velodyne scan not found"):
        kitti.check_velodyne_bin(tmp_path / "missing.bin")


def test_drive_reader(tmp_path):
    drive = tmp_path / "2011_09_26" / "2011_09_26_drive_0001_sync"
    for i in range(3):
        kitti.write_rgb_png(drive / "image_02" / "data" / f"{kitti.frame_name(i)}.png",
                            np.full((6, 8, 3), i, np.uint8))
        kitti.write_depth_png(drive / "proj_depth" / "groundtruth" / "image_02" /
                              f"{kitti.frame_name(i)}.png", np.full((6, 8), i + 1.0))
    kitti.write_timestamps(drive / "image_02" / "timestamps.txt", [10.0, 10.1, 10.2])
    p_rect = np.array([[700.0, 0, 4.0, 0], [0, 710.0, 3.0, 0], [0, 0, 1, 0]])
    kitti.write_calib_file(tmp_path / "2011_09_26" / "calib_cam_to_cam.txt",
                           {"P_rect_02": p_rect, "S_rect_02": np.array([8.0, 6.0])})
    reader = kitti.KittiDrive(drive)
    assert len(reader) == 3 and reader.frames[0] == "0000000000"
    assert reader.rgb(2)[0, 0].tolist() == [2, 2, 2]
    assert reader.groundtruth(1)[0, 0] == 2.0
    np.testing.assert_allclose(np.diff(reader.timestamps()), 0.1, atol=1e-6)
    cam = reader.camera_model()
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (700, 710, 4, 3, 8, 6)
    assert [d.path for d in kitti.find_drives(tmp_path)] == [drive]


def test_drive_with_missing_timestamps_line_is_an_error(tmp_path):
    drive = tmp_path / "d"
    for i in range(2):
        kitti.write_rgb_png(drive / "image_02" / "data" / f"{kitti.frame_name(i)}.png",
                            np.zeros((2, 2, 3), np.uint8))
    kitti.write_timestamps(drive / "image_02" / "timestamps.txt", [1.0])
    with pytest.raises(kitti.KittiFormatError, match="1 lines for 2 images"):
        kitti.KittiDrive(drive).timestamps()


def test_not_a_drive(tmp_path):
    with pytest.raises(kitti.KittiFormatError, match="not a KITTI drive"):
        kitti.KittiDrive(tmp_path)
