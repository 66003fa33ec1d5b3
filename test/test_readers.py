"""Readers for real data on hand-made fixtures in the exact KITTI / NYU file formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_ros import kitti
from depth_ros.kitti import (
    KittiRawCalibration,
    RawDrive,
    read_oxts,
    read_oxts_dir,
    read_rigid_transform,
    read_split_file,
    velo_to_image_projection,
)
from depth_ros.readers import (
    NYU_CAMERA,
    KittiCompletionSplit,
    KittiEigenSplit,
    KittiRawFrames,
    KittiValSelection,
    NyuFormatError,
    NyuLabeled,
    NyuSync,
    read_nyu_depth_png,
)
from training.data import transforms
from training.data.sources import DepthDataset

DATE = "2011_09_26"
DRIVE = f"{DATE}_drive_0002_sync"

# Verbatim from KITTI raw 2011_09_26 (calib_cam_to_cam.txt, calib_velo_to_cam.txt,
# calib_imu_to_velo.txt), trimmed to the keys the readers use.
CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_00: 1.392000e+03 5.120000e+02
R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 \
7.402527e-03 4.351614e-03 9.999631e-01
P_rect_00: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 \
1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
S_rect_02: 1.242000e+03 3.750000e+02
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 \
1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
"""
VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 \
9.998621e-01 7.523790e-03 1.480755e-02
T: -4.069766e-03 -7.631618e-02 -2.717806e-01
delta_f: 0.000000e+00 0.000000e+00
delta_c: 0.000000e+00 0.000000e+00
"""
IMU_TO_VELO = """calib_time: 25-May-2012 16:47:16
R: 9.999976e-01 7.553071e-04 -2.035826e-03 -7.854027e-04 9.998898e-01 -1.482298e-02 \
2.024406e-03 1.482454e-02 9.998881e-01
T: -8.086759e-01 3.195559e-01 -7.997231e-01
"""
# First packet of 2011_09_26_drive_0001 (oxts/data/0000000000.txt).
OXTS_LINE = ("49.015003823272 8.4342971002335 116.43032836914 0.035752 0.00903 -2.6087069803847 "
             "-4.1637198623965 7.1266753214746 8.2528039219051 -0.0090813241958 0.17021064739924 "
             "0.10221016621396 0.076051347917101 9.8076362133896 0.19163735735722 "
             "0.077290210473462 9.8055917669734 -0.015271551864998 0.0085627209007226 "
             "-0.0050025416617346 -0.015203339129474 0.0085802612593233 -0.0050873588695298 "
             "0.59581153681006 0.18027728927931 4 10 4 4 0")


def write_small_calib(date_dir: Path, width: int = 8, height: int = 6) -> None:
    """An ideal rig with an 8×6 image: fx = fy = 10, c = (4, 3); velodyne x forward, y left,
    z up, 0 m from the camera, so the velodyne point (X, Y, Z) lands at pixel
    (4 − 10·Y/X, 3 − 10·Z/X) with depth X."""
    date_dir.mkdir(parents=True, exist_ok=True)
    k = "1.0e+01 0 4.0e+00 0 0 1.0e+01 3.0e+00 0 0 0 1 0"
    (date_dir / "calib_cam_to_cam.txt").write_text(
        f"calib_time: x\nR_rect_00: 1 0 0 0 1 0 0 0 1\nS_rect_02: {width} {height}\n"
        f"P_rect_02: {k}\nS_rect_03: {width} {height}\nP_rect_03: {k}\n")
    (date_dir / "calib_velo_to_cam.txt").write_text(
        "calib_time: x\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 0\n")


def write_raw_drive(root: Path, frames: int = 3, velodyne_frames: int | None = None,
                    drive: str = DRIVE) -> Path:
    """A raw drive with images, velodyne scans (one point at 5 m on pixel (5, 3)), oxts and
    timestamps."""
    date_dir = root / drive[:10]
    write_small_calib(date_dir)
    drive_dir = date_dir / drive
    for i in range(frames):
        kitti.write_rgb_png(drive_dir / "image_02" / "data" / f"{kitti.frame_name(i)}.png",
                            np.full((6, 8, 3), 10 * i, np.uint8))
    for sensor in ("image_02", "velodyne_points", "oxts"):
        kitti.write_timestamps(drive_dir / sensor / "timestamps.txt",
                               100.0 + 0.1 * np.arange(frames))
    for i in range(frames if velodyne_frames is None else velodyne_frames):
        scan = np.array([[5.0, -0.5, 0.0, 0.3], [8.0, -0.8, 0.0, 0.9],  # same pixel: 5 m wins
                         [-5.0, 0.0, 0.0, 1.0],  # behind the camera
                         [5.0, 5.0, 0.0, 1.0]], np.float32)  # left of the image
        (drive_dir / "velodyne_points" / "data").mkdir(parents=True, exist_ok=True)
        scan.tofile(drive_dir / "velodyne_points" / "data" / f"{kitti.frame_name(i)}.bin")
        (drive_dir / "oxts" / "data").mkdir(parents=True, exist_ok=True)
        (drive_dir / "oxts" / "data" / f"{kitti.frame_name(i)}.txt").write_text(OXTS_LINE + "\n")
    return drive_dir


# KITTI raw --------------------------------------------------------------------------------

def test_velodyne_bin_round_trip_and_truncation(tmp_path):
    points = np.arange(20, dtype=np.float32).reshape(5, 4) - 3.5
    path = tmp_path / "0000000000.bin"
    points.tofile(path)
    np.testing.assert_array_equal(kitti.read_velodyne_bin(path), points)
    path.write_bytes(points.tobytes()[:-3])
    with pytest.raises(kitti.KittiFormatError, match=r"0000000000\.bin: 77 bytes .* multiple"):
        kitti.read_velodyne_bin(path)


def test_real_kitti_calibration_chain(tmp_path):
    (tmp_path / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    (tmp_path / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    (tmp_path / "calib_imu_to_velo.txt").write_text(IMU_TO_VELO)
    calib = KittiRawCalibration.from_files(tmp_path / "calib_cam_to_cam.txt",
                                           tmp_path / "calib_velo_to_cam.txt",
                                           tmp_path / "calib_imu_to_velo.txt")
    assert (calib.width, calib.height) == (1242, 375)
    np.testing.assert_allclose(calib.K, [[721.5377, 0, 609.5593], [0, 721.5377, 172.854],
                                         [0, 0, 1]])
    np.testing.assert_allclose(calib.T_velo_to_cam[0, :3], [7.533745e-03, -9.999714e-01,
                                                            -6.166020e-04])  # row-major R
    np.testing.assert_allclose(calib.T_velo_to_cam[:3, 3], [-4.069766e-03, -7.631618e-02,
                                                            -2.717806e-01])
    np.testing.assert_allclose(calib.T_imu_to_velo[:3, 3], [-0.8086759, 0.3195559, -0.7997231])
    p3, t4 = velo_to_image_projection(tmp_path / "calib_cam_to_cam.txt",
                                      tmp_path / "calib_velo_to_cam.txt")
    assert p3.shape == (3, 4) and t4.shape == (4, 4)
    np.testing.assert_allclose(t4[3], [0, 0, 0, 1])
    # 20 m ahead, 1 m to the left of the velodyne: left of centre, a few rows below cy (the
    # calibration pitches the velodyne ~0.85° down against the camera, which outweighs its
    # 7.6 cm height above it), depth ~ 20 m − 0.27 m (the camera sits ahead of the velodyne).
    # A transposed R would put the point behind the camera.
    u, v, z = p3 @ np.array([20.0, 1.0, 0.0, 1.0])
    assert 20.0 - 0.35 < z < 20.0 - 0.2
    assert 570 < u / z < 580 and 170 < v / z < 180, (u / z, v / z)
    np.testing.assert_allclose(p3, calib.P_rect @ calib.R_rect @ calib.T_velo_to_cam)


@pytest.mark.parametrize("name, text, missing", [
    ("calib_velo_to_cam.txt", "calib_time: x\nR: 1 0 0 0 1 0 0 0 1\n", "'T'"),
    ("calib_cam_to_cam.txt", "P_rect_02: 1 0 0 0 0 1 0 0 0 0 1 0\nS_rect_02: 8 6\n",
     "'R_rect_00'"),
])
def test_calibration_with_a_missing_key(tmp_path, name, text, missing):
    write_small_calib(tmp_path)
    (tmp_path / name).write_text(text)
    with pytest.raises(kitti.KittiFormatError, match=rf"{name}: missing key {missing}"):
        KittiRawCalibration.from_files(tmp_path / "calib_cam_to_cam.txt",
                                       tmp_path / "calib_velo_to_cam.txt")


def test_rigid_transform_rejects_a_short_rotation(tmp_path):
    (tmp_path / "calib_imu_to_velo.txt").write_text("R: 1 0 0 0 1 0\nT: 0 0 0\n")
    with pytest.raises(kitti.KittiFormatError, match="R must hold 9 numbers"):
        read_rigid_transform(tmp_path / "calib_imu_to_velo.txt")


def test_projection_z_buffer_and_bounds(tmp_path):
    write_small_calib(tmp_path)
    calib = KittiRawCalibration.from_files(tmp_path / "calib_cam_to_cam.txt",
                                           tmp_path / "calib_velo_to_cam.txt")
    # X forward → depth; image x = 4 − 10·Y/X; image y = 3 − 10·Z/X.
    points = np.array([[5.0, -0.5, 0.0], [8.0, -0.8, 0.0], [-5.0, 0.0, 0.0], [4.0, 0.0, 0.4],
                       [5.0, 5.0, 0.0]])
    depth = calib.sparse_depth(points)
    assert depth.dtype == np.float32 and depth.shape == (6, 8)
    assert depth[3, 5] == 5.0  # the 8 m point lands on the same pixel and is hidden
    assert depth[2, 4] == 4.0
    assert np.count_nonzero(depth) == 2  # behind the camera and off-image: dropped


def test_oxts_packet_fields(tmp_path):
    path = tmp_path / "0000000000.txt"
    path.write_text(OXTS_LINE + "\n")
    packet = read_oxts(path)
    assert packet.shape == (1,)
    assert packet["lat"][0] == pytest.approx(49.015003823272)
    assert packet["yaw"][0] == pytest.approx(-2.6087069803847)
    assert packet["vf"][0] == pytest.approx(8.2528039219051)
    assert packet["numsats"][0] == 10 and packet["navstat"].dtype == np.int32
    assert packet["orimode"][0] == 0
    (tmp_path / "0000000001.txt").write_text(OXTS_LINE.replace("49.015", "49.016") + "\n")
    packets = read_oxts_dir(tmp_path)
    np.testing.assert_allclose(packets["lat"], [49.015003823272, 49.016003823272])


def test_oxts_packet_with_a_missing_field(tmp_path):
    path = tmp_path / "0000000000.txt"
    path.write_text(OXTS_LINE.rsplit(" ", 1)[0] + "\n")
    with pytest.raises(kitti.KittiFormatError, match=r"0000000000\.txt:1: expected 30 .* got 29"):
        read_oxts(path)


def test_raw_drive_sensors(tmp_path):
    drive = RawDrive(write_raw_drive(tmp_path))
    drive.check()
    assert drive.has_velodyne()
    assert drive.velodyne(1).shape == (4, 4)
    np.testing.assert_allclose(drive.sensor_timestamps("velodyne_points"), [100.0, 100.1, 100.2],
                               atol=1e-6)
    np.testing.assert_allclose(drive.sensor_timestamps("oxts"), drive.timestamps(), atol=1e-9)
    kitti.write_timestamps(drive.path / "velodyne_points" / "timestamps_end.txt",
                           [100.05, 100.15, 100.25])
    np.testing.assert_allclose(drive.sensor_timestamps("velodyne_points", "timestamps_end.txt"),
                               [100.05, 100.15, 100.25], atol=1e-6)
    assert drive.oxts()["numsats"].tolist() == [10, 10, 10]
    sparse = drive.sparse_depth(0)
    assert sparse[3, 5] == 5.0 and np.count_nonzero(sparse) == 1
    frames = KittiRawFrames([drive], require_groundtruth=False)
    frame = frames.frame(2)
    assert frame.rgb[0, 0].tolist() == [20, 20, 20] and frame.depth is None
    np.testing.assert_array_equal(frame.sparse_depth, sparse)
    np.testing.assert_allclose(frame.K, [[10, 0, 4], [0, 10, 3], [0, 0, 1]])


def test_drive_with_mismatched_frame_counts(tmp_path):
    drive = RawDrive(write_raw_drive(tmp_path, frames=3, velodyne_frames=2))
    with pytest.raises(kitti.KittiFormatError,
                       match=r"drive_0002_sync: 2 velodyne frames .* for 3 images"):
        drive.check()
    with pytest.raises(kitti.KittiFormatError, match="2 velodyne frames"):
        KittiRawFrames([drive], require_groundtruth=False)


def test_sensor_timestamps_must_match_the_images(tmp_path):
    drive_dir = write_raw_drive(tmp_path)
    kitti.write_timestamps(drive_dir / "oxts" / "timestamps.txt", [1.0, 2.0])
    with pytest.raises(kitti.KittiFormatError, match=r"oxts/timestamps.txt has 2 lines for 3"):
        RawDrive(drive_dir).sensor_timestamps("oxts")


# KITTI depth --------------------------------------------------------------------------------

def write_eigen_split(root: Path, unlabelled: bool = True) -> tuple[Path, Path, Path]:
    """An Eigen split list over a raw drive: frame 1 with ground truth (12.5 m at row 2,
    column 3), and frame 2 without (``None``) when ``unlabelled``. Returns (split, raw root,
    depth root)."""
    raw = root / "raw"
    write_raw_drive(raw)
    depth_root = root / "data_depth_annotated"
    gt = np.zeros((6, 8), np.float32)
    gt[2, 3] = 12.5
    kitti.write_depth_png(depth_root / DRIVE / "proj_depth" / "groundtruth" / "image_02"
                          / "0000000001.png", gt)
    split = root / "eigen_test_files_with_gt.txt"
    lines = (f"{DATE}/{DRIVE}/image_02/data/0000000001.png "
             f"{DRIVE}/proj_depth/groundtruth/image_02/0000000001.png 721.5377\n")
    if unlabelled:
        lines += f"{DATE}/{DRIVE}/image_02/data/0000000002.png None 721.5377\n\n"
    split.write_text(lines)
    return split, raw, depth_root


def test_eigen_split_file(tmp_path):
    split, raw, depth_root = write_eigen_split(tmp_path)
    entries = read_split_file(split)
    assert [e.depth is None for e in entries] == [False, True]
    assert entries[0].focal_px == 721.5377
    reader = KittiEigenSplit(split, raw, depth_root)
    assert len(reader) == 2
    first, second = reader.frame(0), reader.frame(1)
    assert first.depth[2, 3] == 12.5 and np.count_nonzero(first.depth) == 1
    assert first.sparse_depth[3, 5] == 5.0
    assert first.rgb[0, 0, 0] == 10 and second.depth is None
    np.testing.assert_allclose(second.K, [[10, 0, 4], [0, 10, 3], [0, 0, 1]])
    assert KittiEigenSplit(split, raw, depth_root, velodyne=False).frame(0).sparse_depth is None


@pytest.mark.parametrize("line, message", [
    (f"{DATE}/{DRIVE}/image_02/data/0000000001.png 721.5377", "got 2 fields"),
    (f"{DATE}/{DRIVE}/image_02/data/0000000001.png None focal", "'focal' is not a number"),
    (f"{DATE}/{DRIVE}/data/0000000001.png None 721.5377", "no image_0X camera folder"),
])
def test_split_line_that_does_not_parse(tmp_path, line, message):
    split = tmp_path / "eigen_train_files_with_gt.txt"
    split.write_text(f"{DATE}/{DRIVE}/image_02/data/0000000000.png None 721.5377\n{line}\n")
    with pytest.raises(kitti.KittiFormatError, match=message) as info:
        KittiEigenSplit(split, tmp_path)
    assert "eigen_train_files_with_gt.txt" in str(info.value)


def write_completion_split(root: Path, gt_frames: int = 2) -> tuple[Path, Path]:
    raw = root / "raw"
    write_raw_drive(raw, frames=3)
    split = root / "train"
    base = split / DRIVE / "proj_depth"
    for i in range(2):
        sparse = np.zeros((6, 8), np.float32)
        sparse[1, i] = 7.0 + i
        kitti.write_depth_png(base / "velodyne_raw" / "image_02" / f"{kitti.frame_name(i)}.png",
                              sparse)
    for i in range(gt_frames):
        kitti.write_depth_png(base / "groundtruth" / "image_02" / f"{kitti.frame_name(i)}.png",
                              np.full((6, 8), 20.0 + i))
    return split, raw


def test_depth_completion_layout(tmp_path):
    split, raw = write_completion_split(tmp_path)
    reader = KittiCompletionSplit(split, raw)
    assert len(reader) == 2
    image, sparse, gt = reader.paths(1)
    assert image == raw / DATE / DRIVE / "image_02" / "data" / "0000000001.png"
    assert sparse.parts[-4:] == ("proj_depth", "velodyne_raw", "image_02", "0000000001.png")
    assert gt.parts[-4:] == ("proj_depth", "groundtruth", "image_02", "0000000001.png")
    frame = reader.frame(1)
    assert frame.sparse_depth[1, 1] == 8.0 and np.count_nonzero(frame.sparse_depth) == 1
    assert frame.depth[5, 7] == 21.0 and frame.rgb[0, 0, 0] == 10
    np.testing.assert_allclose(frame.K[0], [10, 0, 4])


def test_depth_completion_mismatched_frames(tmp_path):
    split, raw = write_completion_split(tmp_path, gt_frames=1)
    with pytest.raises(kitti.KittiFormatError,
                       match=rf"drive {DRIVE}: 2 velodyne_raw frames .* but 1 groundtruth"):
        KittiCompletionSplit(split, raw)


def test_depth_completion_8_bit_png_is_an_error(tmp_path):
    split, raw = write_completion_split(tmp_path)
    bad = split / DRIVE / "proj_depth" / "velodyne_raw" / "image_02" / "0000000000.png"
    cv2.imwrite(str(bad), np.full((6, 8), 7, np.uint8))
    with pytest.raises(kitti.KittiFormatError, match=r"0000000000\.png: expected .*uint16.*uint8"):
        KittiCompletionSplit(split, raw).frame(0)


def write_val_selection(root: Path, intrinsics: str) -> str:
    stem = f"{DRIVE}_image_0000000005_image_02"
    kitti.write_rgb_png(root / "image" / f"{stem}.png", np.full((4, 6, 3), 9, np.uint8))
    kitti.write_depth_png(root / "velodyne_raw"
                          / f"{DRIVE}_velodyne_raw_0000000005_image_02.png", np.full((4, 6), 3.0))
    kitti.write_depth_png(root / "groundtruth_depth"
                          / f"{DRIVE}_groundtruth_depth_0000000005_image_02.png",
                          np.full((4, 6), 4.0))
    (root / "intrinsics").mkdir()
    (root / "intrinsics" / f"{stem}.txt").write_text(intrinsics)
    return stem


def test_val_selection_cropped(tmp_path):
    write_val_selection(tmp_path, "721.5377 0.0 596.5593 0.0 721.5377 149.854 0.0 0.0 1.0\n")
    reader = KittiValSelection(tmp_path)
    frame = reader.frame(0)
    np.testing.assert_allclose(frame.K, [[721.5377, 0, 596.5593], [0, 721.5377, 149.854],
                                         [0, 0, 1]])
    assert frame.sparse_depth[0, 0] == 3.0 and frame.depth[3, 5] == 4.0
    assert frame.rgb.shape == (4, 6, 3)


def test_anonymous_test_set_has_no_ground_truth(tmp_path):
    kitti.write_rgb_png(tmp_path / "image" / "0000000000.png", np.full((4, 6, 3), 9, np.uint8))
    kitti.write_depth_png(tmp_path / "velodyne_raw" / "0000000000.png", np.full((4, 6), 3.0))
    (tmp_path / "intrinsics").mkdir()
    (tmp_path / "intrinsics" / "0000000000.txt").write_text("700 0 600 0 700 150 0 0 1\n")
    frame = KittiValSelection(tmp_path).frame(0)
    assert frame.depth is None and frame.sparse_depth[2, 2] == 3.0 and frame.K[1, 2] == 150


def test_val_selection_missing_groundtruth_file(tmp_path):
    stem = write_val_selection(tmp_path, "1 0 0 0 1 0 0 0 1\n")
    missing = tmp_path / "groundtruth_depth" / stem.replace("_sync_image_",
                                                            "_sync_groundtruth_depth_")
    missing.with_suffix(".png").unlink()
    with pytest.raises(kitti.KittiFormatError, match=r"cannot read depth PNG .*groundtruth_depth"):
        KittiValSelection(tmp_path).frame(0)


def test_val_selection_intrinsics_must_have_9_numbers(tmp_path):
    stem = write_val_selection(tmp_path, "721.5377 0.0 596.5593 0.0 721.5377 149.854 0.0 0.0\n")
    with pytest.raises(kitti.KittiFormatError, match=rf"{stem}\.txt: expected the 9 .* got 8"):
        KittiValSelection(tmp_path).frame(0)


# NYU Depth v2 ---------------------------------------------------------------------------------

def write_nyu_mat(path: Path, n: int = 2, width: int = 8, height: int = 6) -> tuple:
    """The labelled .mat layout as h5py shows MATLAB's column-major arrays: N×3×W×H, N×W×H."""
    h5py = pytest.importorskip("h5py")
    rgb = np.zeros((n, height, width, 3), np.uint8)
    depth = np.zeros((n, height, width), np.float32)
    for i in range(n):
        rgb[i, ..., 0] = np.arange(width)[None, :] * 10 + i  # red encodes the column
        rgb[i, ..., 1] = np.arange(height)[:, None] * 20  # green encodes the row
        rgb[i, ..., 2] = 200
        depth[i] = 1.0 + np.arange(height)[:, None] + np.arange(width)[None, :] / 10.0 + i
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=rgb.transpose(0, 3, 2, 1))  # N×3×W×H
        f.create_dataset("depths", data=depth.transpose(0, 2, 1))  # N×W×H
    return rgb, depth


def test_nyu_labeled_mat_axis_order(tmp_path):
    rgb, depth = write_nyu_mat(tmp_path / "nyu_depth_v2_labeled.mat")
    reader = NyuLabeled(tmp_path / "nyu_depth_v2_labeled.mat")
    assert len(reader) == 2
    frame = reader.frame(1)
    assert frame.rgb.shape == (6, 8, 3) and frame.depth.shape == (6, 8)
    assert frame.rgb[2, 5].tolist() == [51, 40, 200]  # row 2, column 5 of frame 1
    assert frame.depth[2, 5] == pytest.approx(1.0 + 2 + 0.5 + 1)
    np.testing.assert_array_equal(frame.rgb, rgb[1])
    np.testing.assert_array_equal(frame.depth, depth[1])
    # The 8×6 fixture is NYU's 640×480 camera scaled by 1/80.
    np.testing.assert_allclose(frame.K[0, 0], 518.8579 / 80)
    # DataLoader workers that spawn get a pickled copy, which reopens the file.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reader)).frame(0).depth, depth[0])


def test_nyu_mat_with_mismatched_depths(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3, 8, 6), np.uint8))
        f.create_dataset("depths", data=np.zeros((2, 6, 8), np.float32))  # W and H swapped
    with pytest.raises(NyuFormatError,
                       match=r"nyu_depth_v2_labeled\.mat: 'depths' is \(2, 6, 8\) float32"):
        NyuLabeled(path)
    path.write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(NyuFormatError, match="not an HDF5"):
        NyuLabeled(path)


def write_nyu_sync(root: Path) -> None:
    scene = root / "kitchen_0028b"
    scene.mkdir(parents=True)
    for index, millimetres in ((45, 1500), (46, 2750)):
        cv2.imwrite(str(scene / f"rgb_{index:05d}.jpg"), np.full((480, 640, 3), 128, np.uint8))
        depth = np.full((480, 640), millimetres, np.uint16)
        depth[0, 0] = 0
        cv2.imwrite(str(scene / f"sync_depth_{index:05d}.png"), depth)


def test_nyu_sync_layout_and_split_file(tmp_path):
    write_nyu_sync(tmp_path)
    reader = NyuSync(tmp_path)
    assert len(reader) == 2
    frame = reader.frame(1)
    assert frame.depth[10, 10] == pytest.approx(2.75) and frame.depth[0, 0] == 0
    np.testing.assert_allclose(frame.K, NYU_CAMERA.K)
    np.testing.assert_allclose(frame.K[:2, 2], [325.5824, 253.7362])
    split = tmp_path / "nyudepthv2_test_files_with_gt.txt"
    split.write_text("/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579\n")
    only = NyuSync(tmp_path, split)
    assert len(only) == 1 and only.frame(0).depth[5, 5] == pytest.approx(1.5)
    (tmp_path / "kitchen_0028b" / "rgb_00046.jpg").write_bytes(b"\xff\xd8 cut short")
    with pytest.raises(NyuFormatError, match=r"cannot read image .*rgb_00046\.jpg"):
        reader.frame(1)
    split.write_text("/kitchen_0028b/rgb_00045.jpg\n")
    with pytest.raises(NyuFormatError, match=r"nyudepthv2_test_files_with_gt\.txt:1"):
        NyuSync(tmp_path, split)


def test_nyu_8_bit_depth_png_is_an_error(tmp_path):
    path = tmp_path / "sync_depth_00001.png"
    cv2.imwrite(str(path), np.full((4, 4), 200, np.uint8))
    with pytest.raises(NyuFormatError, match=r"sync_depth_00001\.png: expected .*uint16.*uint8"):
        read_nyu_depth_png(path)


def test_data_engine_drive_reads_back(tmp_path):
    """The engine's writers and these readers agree: its velodyne scans projected through its
    calibration files give its own ``velodyne_raw`` PNGs."""
    from depth_ros.synthetic import write_synthetic_drive

    drive = RawDrive(write_synthetic_drive(tmp_path, num_frames=2, width=160, height=48,
                                           progress=False))
    drive.check()
    assert drive.has_velodyne() and drive.calibration().T_imu_to_velo is not None
    assert len(drive.oxts()) == 2 and len(drive.sensor_timestamps("velodyne_points")) == 2
    frame = KittiRawFrames([drive]).frame(1)
    projected = drive.sparse_depth(1)
    np.testing.assert_array_equal(frame.sparse_depth > 0, projected > 0)
    assert np.count_nonzero(projected) > 100
    np.testing.assert_allclose(frame.sparse_depth, projected, atol=0.5 / kitti.DEPTH_PNG_SCALE)


# Training datasets over the same fixtures --------------------------------------------------

def _eigen(tmp_path: Path):
    split, raw, depth_root = write_eigen_split(tmp_path, unlabelled=False)
    return KittiEigenSplit(split, raw, depth_root), (2, 3, 12.5), (3, 5, 5.0)


def _completion(tmp_path: Path):
    split, raw = write_completion_split(tmp_path)
    return KittiCompletionSplit(split, raw), (0, 0, 20.0), (1, 0, 7.0)


def _nyu_mat(tmp_path: Path):
    _, depth = write_nyu_mat(tmp_path / "nyu_depth_v2_labeled.mat")
    return NyuLabeled(tmp_path / "nyu_depth_v2_labeled.mat"), (2, 5, float(depth[0, 2, 5])), None


@pytest.mark.parametrize("make", [_eigen, _completion, _nyu_mat],
                         ids=["kitti_eigen", "kitti_completion", "nyu_labeled"])
def test_training_dataset_serves_every_reader(tmp_path, make):
    """The training dataset yields image, depth and sparse depth with the fixture's known
    values where they were written (at the frame's own focal: no rescaling), and a flip
    moves them together."""
    reader, (gv, gu, gd), sparse = make(tmp_path)
    focal = float(reader.frame(0).K[0, 0])
    image, depth, lidar = DepthDataset(reader, focal, lidar=True)[0]
    assert image.shape == (3, 6, 8) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert depth.shape == lidar.shape == (1, 6, 8)
    assert float(depth[0, gv, gu]) == pytest.approx(gd, abs=1 / 256)
    if sparse is None:
        assert not bool((lidar > 0).any())
    else:
        sv, su, sd = sparse
        assert float(lidar[0, sv, su]) == pytest.approx(sd, abs=1 / 256)
    flip = transforms.RandomHorizontalFlip(prob=1.0)
    f_image, f_depth, f_lidar = DepthDataset(reader, focal, flip, lidar=True)[0]
    assert float(f_depth[0, gv, 7 - gu]) == pytest.approx(gd, abs=1 / 256)
    assert torch.equal(f_image, image.flip(-1)) and torch.equal(f_lidar, lidar.flip(-1))
