"""The synthetic rig beyond camera 02: the simulated velodyne, its projections, camera 03, the
calibration files and the OXTS packets of a KITTI raw drive."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from depth_ros import kitti, viz
from depth_ros.geometry import project_points, project_velodyne
from depth_ros.kitti import oxts as oxts_format
from depth_ros.synthetic import (
    KITTI_CAMERA,
    CameraPose,
    StreetScene,
    cli,
    drive,
    lidar,
    plan_drive,
    render_frame,
    rig,
    write_synthetic_drive,
)
from depth_ros.synthetic.lidar import LidarModel, cast_lidar, hdl64_elevations_deg

LEVEL = CameraPose.from_euler((0.0, 0.0, 1.65))
NUM_FRAMES = 3


@pytest.fixture(scope="module")
def engine_drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_lidar")
    path = write_synthetic_drive(root, num_frames=NUM_FRAMES, seed=11, drive=5, progress=False)
    return root, path


@pytest.fixture(scope="module")
def ideal_drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_ideal_lidar")
    path = write_synthetic_drive(root, num_frames=NUM_FRAMES, seed=11, drive=5, progress=False,
                                 ideal_lidar=True)
    return root, path


def _scan_ranges(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, :3], axis=1)


def test_beam_pattern_is_the_hdl64e():
    elevations = hdl64_elevations_deg()
    assert len(elevations) == 64 and np.all(np.diff(elevations) < 0)
    assert elevations[0] == pytest.approx(2.0) and elevations[-1] == pytest.approx(-24.8)
    np.testing.assert_allclose(np.diff(elevations[:32]), -1 / 3)
    model = LidarModel()
    assert model.num_columns == 4000
    assert 360.0 / model.num_columns == pytest.approx(0.09)
    assert LidarModel(azimuth_decimation=4).num_columns == 1000
    with pytest.raises(ValueError):
        LidarModel(azimuth_decimation=3)
    with pytest.raises(ValueError, match="descending"):
        LidarModel(elevations_deg=(-5.0, 2.0))


def test_ground_scan_lies_on_the_beams_and_the_ground():
    # A level LiDAR 1.73 m over an empty street: every return is on the ground plane, on one
    # of the beams, and only beams steep enough to reach the ground within 120 m return.
    height = 1.73
    pose = np.eye(4)
    pose[2, 3] = height
    model = LidarModel(range_noise_m=0.0)
    scan = cast_lidar(StreetScene.empty(), pose, model)
    pts = scan.points
    assert pts.dtype == np.float32 and pts.shape[1] == 4 and len(pts) > 50_000
    np.testing.assert_allclose(pts[:, 2], -height, atol=1e-4)
    elevation = np.degrees(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
    beams = np.asarray(model.elevations_deg)
    np.testing.assert_allclose(elevation, beams[scan.beam], atol=1e-3)
    assert _scan_ranges(pts).max() <= model.max_range_m
    reachable = np.sin(np.radians(-beams)) * model.max_range_m > height
    assert set(np.unique(scan.beam)) <= set(np.flatnonzero(reachable))
    # Near beams see every azimuth: no dropouts on a bright enough road at short range.
    assert np.sum(scan.beam == 63) == model.num_columns
    assert 0.0 <= pts[:, 3].min() and pts[:, 3].max() <= 1.0


def test_scan_is_deterministic_by_seed_and_frame():
    plan = plan_drive(2, seed=9, width=320, height=96)
    velo_to_world = rig.sensor_to_world(plan.poses[1], 2, "velo")
    model = LidarModel(azimuth_decimation=4)
    a, b, c = (cast_lidar(plan.scene, velo_to_world, model, noise_seed=k) for k in (1, 1, 2))
    np.testing.assert_array_equal(a.points, b.points)
    assert len(a.points) != len(c.points) or not np.array_equal(a.points, c.points)
    # Firing order: column by column, each column top beam first.
    order = a.column.astype(np.int64) * 64 + a.beam
    assert np.all(np.diff(order) > 0)


@pytest.mark.parametrize("seed, frame, yaw, pitch, roll", [(3, 0, 0.0, 0.0, 0.0),
                                                         (8, 25, 2.5, 0.08, -0.1)])
def test_face_culling_never_misses_a_hit(monkeypatch, seed, frame, yaw, pitch, roll):
    # The same sweep with every face tested on every ray must give identical returns: the
    # beam and azimuth blocks that bound each face are conservative, at any orientation.
    plan = plan_drive(30, seed=seed, width=64, height=32)
    pose = CameraPose.from_euler(plan.poses[frame].position, yaw, pitch, roll)
    velo_to_world = rig.sensor_to_world(pose, 2, "velo")
    model = LidarModel(azimuth_decimation=8)
    culled = cast_lidar(plan.scene, velo_to_world, model)
    real_blocks = lidar._face_blocks

    def everything(*args, **kwargs):
        blocks, cols, near = real_blocks(*args, **kwargs)
        blocks[:] = (0, len(model.elevations_deg))
        cols[:] = (0, model.num_columns)
        return blocks, cols, near

    monkeypatch.setattr(lidar, "_face_blocks", everything)
    brute = cast_lidar(plan.scene, velo_to_world, model)
    np.testing.assert_array_equal(culled.beam, brute.beam)
    np.testing.assert_array_equal(culled.column, brute.column)
    np.testing.assert_array_equal(culled.points, brute.points)
    assert len(culled.points) > 20_000


def test_range_noise_has_the_model_sigma():
    pose = np.eye(4)
    pose[2, 3] = 1.73
    exact = cast_lidar(StreetScene.empty(), pose, LidarModel(range_noise_m=0.0))
    noisy = cast_lidar(StreetScene.empty(), pose, LidarModel())
    # Same ray set where both returned (dropouts are drawn from the same stream).
    key_exact = exact.beam.astype(np.int64) * 10_000 + exact.column
    key_noisy = noisy.beam.astype(np.int64) * 10_000 + noisy.column
    common, ia, ib = np.intersect1d(key_exact, key_noisy, return_indices=True)
    assert len(common) > 50_000
    error = _scan_ranges(noisy.points[ib]) - _scan_ranges(exact.points[ia])
    assert np.std(error) == pytest.approx(0.02, rel=0.05)
    assert abs(np.mean(error)) < 1e-3


def test_dark_and_grazing_surfaces_drop_returns():
    pose = np.eye(4)
    pose[2, 3] = 1.73
    bright = StreetScene.empty().with_boxes([8.0, -20.0, 0.0], [9.0, 20.0, 6.0],
                                           colour=(0.8, 0.8, 0.8), pattern=(3.0, 2.5, 0.0, 0.0))
    dark = StreetScene.empty().with_boxes([8.0, -20.0, 0.0], [9.0, 20.0, 6.0],
                                         colour=(0.01, 0.01, 0.01), pattern=(3.0, 2.5, 0.0, 0.0))
    wall_hits = []
    for scene in (bright, dark):
        pts = cast_lidar(scene, pose).points
        wall_hits.append(np.sum(np.abs(pts[:, 0] - 8.0) < 0.1))
    assert wall_hits[0] > 5000 and wall_hits[1] < wall_hits[0] / 20
    # The ground far away is seen at a grazing angle: fewer returns per beam than near by.
    scan = cast_lidar(StreetScene.empty(), pose)
    assert np.sum(scan.beam == 14) < np.sum(scan.beam == 63) / 2


def test_velodyne_bin_round_trip_and_truncation(tmp_path):
    points = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    path = tmp_path / "0000000000.bin"
    kitti.write_velodyne_bin(path, points)
    assert path.stat().st_size == 100 * 16
    back = kitti.read_velodyne_bin(path)
    assert back.dtype == np.float32 and back.shape == (100, 4)
    np.testing.assert_array_equal(back, points)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(kitti.KittiFormatError, match=r"0000000000\.bin"):
        kitti.read_velodyne_bin(path)
    with pytest.raises(ValueError):
        kitti.write_velodyne_bin(path, points[:, :3])


def test_project_points_z_buffers_and_drops():
    K = KITTI_CAMERA.K  # noqa: N806
    pixel = np.array([[2.0, 1.0, 10.0]])
    far, near = pixel * 2.0, pixel * 1.0  # both project to the same pixel
    behind = np.array([[0.0, 0.0, -5.0]])
    outside = np.array([[100.0, 0.0, 1.0]])
    for order in ((far, near), (near, far)):
        depth = project_points(np.vstack([*order, behind, outside]), K, 1242, 375)
        assert depth.shape == (375, 1242) and depth.dtype == np.float32
        assert np.count_nonzero(depth) == 1
        u = int(np.rint(K[0, 0] * 0.2 + K[0, 2]))
        v = int(np.rint(K[1, 1] * 0.1 + K[1, 2]))
        assert depth[v, u] == pytest.approx(10.0)


def test_drive_has_the_kitti_raw_layout(engine_drive):
    root, path = engine_drive
    assert path == root / "2011_09_26" / "2011_09_26_drive_0005_sync"
    names = [kitti.frame_name(i) for i in range(NUM_FRAMES)]
    for sub, suffix in (("image_02/data", ".png"), ("image_03/data", ".png"),
                        ("velodyne_points/data", ".bin"), ("oxts/data", ".txt"),
                        ("proj_depth/groundtruth/image_02", ".png"),
                        ("proj_depth/groundtruth/image_03", ".png"),
                        ("proj_depth/velodyne_raw/image_02", ".png"),
                        ("proj_depth/velodyne_raw/image_03", ".png")):
        assert sorted(p.name for p in (path / sub).iterdir()) == [n + suffix for n in names]
    stamps = kitti.read_timestamps(path / "image_02" / "timestamps.txt")
    np.testing.assert_allclose(kitti.read_timestamps(path / "image_03" / "timestamps.txt"),
                               stamps)
    velo = path / "velodyne_points"
    np.testing.assert_allclose(kitti.read_timestamps(velo / "timestamps.txt"), stamps)
    np.testing.assert_allclose(kitti.read_timestamps(velo / "timestamps_start.txt"),
                               stamps - 0.05, atol=1e-6)
    np.testing.assert_allclose(kitti.read_timestamps(velo / "timestamps_end.txt"),
                               stamps + 0.05, atol=1e-6)
    np.testing.assert_allclose(kitti.read_timestamps(path / "oxts" / "timestamps.txt"), stamps)
    assert (path / "oxts" / "dataformat.txt").read_text().count("\n") == 30


def test_calibration_files_have_the_kitti_keys(engine_drive):
    _, path = engine_drive
    date_dir = path.parent
    velo = kitti.read_calib_file(date_dir / "calib_velo_to_cam.txt")
    assert set(velo) == {"calib_time", "R", "T", "delta_f", "delta_c"}
    assert isinstance(velo["calib_time"], str)
    rotation = velo["R"].reshape(3, 3)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
    # T is the velodyne's origin in camera 00's frame (y down, z ahead): 0.27 m behind the
    # camera and 0.08 m above it; its x axis (forward) is the camera's z axis.
    assert velo["T"][2] == pytest.approx(-0.27, abs=0.005)
    assert velo["T"][1] == pytest.approx(-0.076, abs=0.005)
    assert rotation[2, 0] == pytest.approx(1.0, abs=1e-3)
    imu = kitti.read_calib_file(date_dir / "calib_imu_to_velo.txt")
    assert set(imu) == {"calib_time", "R", "T"} and imu["R"].size == 9 and imu["T"].size == 3
    cam = kitti.read_calib_file(date_dir / "calib_cam_to_cam.txt")
    baseline = (cam["P_rect_02"][3] - cam["P_rect_03"][3]) / cam["P_rect_02"][0]
    assert baseline == pytest.approx(0.54)
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        assert (path / name).read_text() == (date_dir / name).read_text()


def _velodyne_projection(path, index: int, cam: int) -> np.ndarray:
    calib = kitti.read_calib_file(path.parent / "calib_cam_to_cam.txt")
    velo = kitti.read_calib_file(path.parent / "calib_velo_to_cam.txt")
    t_velo_to_cam = np.hstack([velo["R"].reshape(3, 3), velo["T"].reshape(3, 1)])
    points = kitti.read_velodyne_bin(path / "velodyne_points" / "data"
                                     / f"{kitti.frame_name(index)}.bin")
    assert len(points) > 10_000
    return project_velodyne(points, t_velo_to_cam, calib["R_rect_00"], calib[f"P_rect_{cam:02d}"],
                            1242, 375), points


@pytest.mark.parametrize("cam", [2, 3])
def test_velodyne_raw_is_the_z_buffered_projection_of_the_bin(engine_drive, cam):
    _, path = engine_drive
    for index in range(NUM_FRAMES):
        expected, points = _velodyne_projection(path, index, cam)
        stored = kitti.read_depth_png(path / "proj_depth" / "velodyne_raw" / f"image_{cam:02d}"
                                      / f"{kitti.frame_name(index)}.png")
        np.testing.assert_allclose(stored, expected, atol=0.5 / 256 + 1e-6)
        assert np.count_nonzero(stored) > 5_000
        assert _scan_ranges(points).max() <= 120.0


@pytest.mark.parametrize("which, lowest, highest", [
    # The ideal sensor: the same geometry as the renderer, only range noise.
    ("ideal_drive", 0.99, 1.0),
    # The default (LidarModel.kitti): calibration error, mixed pixels and beams through car
    # windows and foliage gaps move part of the returns off the camera's surface on purpose.
    ("engine_drive", 0.65, 0.95)])
def test_lidar_agrees_with_rendered_depth_away_from_edges(request, which, lowest, highest):
    _, path = request.getfixturevalue(which)
    agree, total = 0, 0
    for index in range(NUM_FRAMES):
        name = f"{kitti.frame_name(index)}.png"
        gt = kitti.read_depth_png(path / "proj_depth" / "groundtruth" / "image_02" / name)
        lidar = kitti.read_depth_png(path / "proj_depth" / "velodyne_raw" / "image_02" / name)
        kernel = np.ones((5, 5), np.uint8)
        hi = cv2.dilate(np.where(gt > 0, gt, np.inf).astype(np.float32), kernel)
        lo = cv2.erode(np.where(gt > 0, gt, 0).astype(np.float32), kernel)
        smooth = (lo > 0) & np.isfinite(hi) & (hi <= 1.05 * lo)
        sel = smooth & (lidar > 0)
        rel = np.abs(lidar[sel] - gt[sel]) / gt[sel]
        agree += int(np.sum(rel < 0.01))
        total += int(sel.sum())
    assert total > 10_000
    assert lowest <= agree / total <= highest


def test_lidar_sees_behind_what_hides_it_from_the_camera():
    # A low wall 5 m ahead and a tall one 25 m ahead: from 8 cm higher and 0.27 m further back
    # the velodyne looks over the near wall's top onto a strip of the far wall that the camera
    # cannot see, so those points project onto the near wall with a larger depth (KITTI's
    # well-known parallax artefact).
    scene = StreetScene.empty().with_boxes([[5.0, -4.0, 0.0], [25.0, -15.0, 0.0]],
                                           [[5.5, 4.0, 1.2], [26.0, 15.0, 10.0]],
                                           colour=(0.7, 0.7, 0.7),
                                           pattern=(3.0, 2.5, 0.0, 0.0))
    pose = LEVEL
    camera = KITTI_CAMERA
    _, depth = render_frame(scene, pose, camera)
    velo_to_world = rig.sensor_to_world(pose, 2, "velo")
    scan = cast_lidar(scene, velo_to_world, LidarModel(range_noise_m=0.0))
    calib = kitti.cam_to_cam_calibration(camera)
    sparse = project_velodyne(scan.points, rig.velo_to_cam_matrix(), calib["R_rect_00"],
                              calib["P_rect_02"], camera.width, camera.height)
    seen = (sparse > 0) & np.isfinite(depth)
    hidden = seen & (sparse > 1.3 * depth)
    assert hidden.sum() >= 20
    # The camera sees the near wall (its face or top) where those points land; the velodyne
    # saw past it, onto the ground behind it or the far wall.
    assert np.all((depth[hidden] >= 5.0) & (depth[hidden] <= 5.6))
    assert np.all(sparse[hidden] > 6.5)


def test_right_camera_is_shifted_by_the_stereo_disparity():
    # A textured wall facing the rig at a distance where fx · 0.54 / z is exactly 20 px.
    camera = KITTI_CAMERA
    z = camera.fx * 0.54 / 20.0
    scene = StreetScene.empty().with_boxes([z, -30.0, 0.0], [z + 2.0, 30.0, 15.0],
                                           colour=(0.75, 0.6, 0.45))
    left_pose = CameraPose.from_euler((0.0, 0.0, 1.65))
    right_pose = rig.camera_pose_of(left_pose, 2, 3)
    np.testing.assert_allclose(right_pose.position - left_pose.position, [0.0, -0.54, 0.0],
                               atol=1e-12)
    left, depth_left = render_frame(scene, left_pose, camera)
    right, depth_right = render_frame(scene, right_pose, camera, noise_seed=1)
    rows = slice(20, int(camera.cy))  # the wall, above the ground
    np.testing.assert_allclose(depth_left[rows], z, rtol=1e-6)
    np.testing.assert_allclose(depth_right[rows], z, rtol=1e-6)
    a = left[rows].astype(np.float32)
    b = right[rows].astype(np.float32)
    errors = {d: np.abs(a[:, 100 + d:-100] - b[:, 100:-100 - d]).mean() for d in range(10, 31)}
    assert min(errors, key=errors.get) == 20
    # Sub-pixel: the vertex of the parabola through the three errors around the minimum.
    e0, e1, e2 = (float(errors[d]) for d in (19, 20, 21))
    assert 20 + (e0 - e2) / (2 * (e0 - 2 * e1 + e2)) == pytest.approx(20.0, abs=0.1)


def test_drive_right_images_match_a_rerender(engine_drive):
    _, path = engine_drive
    plan = plan_drive(NUM_FRAMES, seed=11, drive=5)
    pose = rig.camera_pose_of(plan.poses[1], 2, 3)
    _, depth = render_frame(plan.scene_at(1), pose, plan.camera)
    stored = kitti.read_depth_png(path / "proj_depth" / "groundtruth" / "image_03"
                                  / f"{kitti.frame_name(1)}.png")
    np.testing.assert_allclose(stored, np.nan_to_num(depth), atol=0.5 / 256 + 1e-4)


def test_oxts_packets_follow_the_trajectory(engine_drive):
    _, path = engine_drive
    lines = [(path / "oxts" / "data" / f"{kitti.frame_name(i)}.txt").read_text()
             for i in range(NUM_FRAMES)]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    packets = np.array([[float(v) for v in line.split()] for line in lines])
    assert packets.shape == (NUM_FRAMES, 30)
    assert np.all(np.abs(packets[:, 0] - 49.01) < 0.05)  # Karlsruhe
    assert np.all(np.abs(packets[:, 1] - 8.42) < 0.06)
    # The devkit's Mercator poses give back the OXTS unit's motion on the synthetic rig.
    plan = plan_drive(NUM_FRAMES, seed=11, drive=5)
    imu = [rig.sensor_to_world(p, 2, "imu") for p in plan.poses]
    expected = np.stack([np.linalg.inv(imu[0]) @ m for m in imu])
    poses = oxts_format.oxts_poses(packets)
    np.testing.assert_allclose(poses[:, :3, 3], expected[:, :3, 3], atol=2e-3)
    np.testing.assert_allclose(poses[:, :3, :3], expected[:, :3, :3], atol=1e-6)
    # Velocities integrate to the positions; the accelerometers feel gravity.
    scale = oxts_format.lat_to_scale(packets[0, 0])
    east, north = oxts_format.latlon_to_mercator(packets[:, 0], packets[:, 1], scale)
    dt = np.diff(plan.times_s)
    for velocity, position in ((packets[:, 7], east), (packets[:, 6], north)):
        integrated = np.cumsum((velocity[1:] + velocity[:-1]) / 2 * dt)
        np.testing.assert_allclose(integrated, position[1:] - position[0], atol=0.02)
    speed = np.hypot(packets[:, 6], packets[:, 7])
    np.testing.assert_allclose(packets[:, 8], speed, rtol=1e-3)  # vf: forward, level
    # az: gravity plus the suspension's bounce (up to ~0.8 m/s² at 1.4 Hz).
    np.testing.assert_allclose(packets[:, 13], 9.81, atol=1.5)
    assert set(packets[:, 25:].ravel()) <= set(range(20))


def test_oxts_mercator_inverse_is_exact():
    scale = oxts_format.lat_to_scale(49.0)
    lat = np.array([49.0, 49.01, 48.99])
    lon = np.array([8.4, 8.41, 8.39])
    mx, my = oxts_format.latlon_to_mercator(lat, lon, scale)
    back = oxts_format.mercator_to_latlon(mx, my, scale)
    np.testing.assert_allclose(back[0], lat, atol=1e-11)
    np.testing.assert_allclose(back[1], lon, atol=1e-11)


def test_rerun_of_a_complete_lidar_drive_renders_nothing(engine_drive, monkeypatch):
    root, path = engine_drive

    def fail(*args, **kwargs):
        raise AssertionError("cast although the drive was complete")

    monkeypatch.setattr(drive, "cast_lidar", fail)
    monkeypatch.setattr(drive, "render_frame", fail)
    assert write_synthetic_drive(root, num_frames=NUM_FRAMES, seed=11, drive=5,
                                 progress=False) == path


def test_camera_only_drive_skips_the_rig(tmp_path):
    path = write_synthetic_drive(tmp_path, num_frames=2, width=64, height=32, progress=False,
                                 stereo=False, lidar=False)
    assert not (path / "image_03").exists() and not (path / "velodyne_points").exists()
    assert len(kitti.KittiDrive(path)) == 2


def test_module_cli_writes_several_drives_in_parallel_and_resumes(tmp_path):
    args = [sys.executable, "-m", "depth_ros.synthetic", "--out", os.fspath(tmp_path),
            "--drives", "2", "--frames", "2", "--seed", "4", "--width", "96", "--height",
            "32", "--jobs", "2", "--azimuth-decimation", "8", "--no-progress",
            "--contact-sheet"]
    first = subprocess.run(args, capture_output=True, text=True, check=True)
    date_dir = tmp_path / "2011_09_26"
    expected = [date_dir / f"2011_09_26_drive_{n:04d}_sync" for n in (1, 2)]
    assert first.stdout.split() == [os.fspath(p) for p in expected]
    seeds = [json.loads((p / drive.PARAMS_FILE).read_text())["seed"] for p in expected]
    assert seeds == [4, 5]
    points = kitti.read_velodyne_bin(expected[1] / "velodyne_points" / "data" / "0000000001.bin")
    assert len(points) > 0
    sheet = kitti.read_rgb_png(tmp_path / "contact_sheets" / "2011_09_26_drive_0002_sync.png")
    assert sheet.shape[0] > 32 and sheet.shape[2] == 3
    stamp = (expected[0] / "image_02" / "data" / "0000000000.png").stat().st_mtime_ns
    again = subprocess.run(args[:-1], capture_output=True, text=True, check=True)
    assert again.stdout == first.stdout
    assert (expected[0] / "image_02" / "data" / "0000000000.png").stat().st_mtime_ns == stamp


def test_cli_rejects_bad_counts(tmp_path):
    for bad in (["--drives", "0"], ["--jobs", "0"], ["--azimuth-decimation", "7"]):
        with pytest.raises(SystemExit):
            cli.main(["--out", os.fspath(tmp_path), "--frames", "1", *bad, "--no-progress"])


def test_contact_sheet_shows_rgb_depth_and_lidar(engine_drive):
    _, path = engine_drive
    sheet = viz.drive_contact_sheet(path, num_frames=2, scale=1.0)
    # Two columns of three 375-row panels.
    assert sheet.shape == (3 * 375, 2 * (1242 + 4), 3) and sheet.dtype == np.uint8
    lidar_rows = sheet[2 * 375 + 40:, :1242].astype(int)
    rgb_rows = sheet[40:375, :1242].astype(int)
    # The overlay dims the image and paints points: strongly saturated dots over grey.
    saturation = lambda a: (a.max(axis=2) - a.min(axis=2)).mean()  # noqa: E731
    assert saturation(lidar_rows) > saturation(rgb_rows)
    overlay = viz.lidar_overlay(np.full((8, 8, 3), 200, np.uint8),
                                np.pad(np.array([[10.0]], np.float32), ((3, 4), (3, 4))),
                                dot_px=1)
    assert (overlay[3, 3] != 90).any() and (overlay[0, 0] == 90).all()


def test_motion_skew_splits_the_sweep_behind_the_car():
    # Walls 20 m ahead and 20 m behind; the sensor moves forward at 10 m/s during the sweep.
    scene = StreetScene.empty().with_boxes([[20.0, -30.0, 0.0], [-21.0, -30.0, 0.0]],
                                           [[21.0, 30.0, 8.0], [-20.0, 30.0, 8.0]],
                                           pattern=(3.0, 2.5, 0.0, 0.0))
    model = LidarModel(range_noise_m=0.0, azimuth_decimation=4)
    sectors = 16
    fractions = (np.arange(sectors) + 0.5) / sectors - 0.5
    poses = np.repeat(np.eye(4)[None], sectors, axis=0)
    poses[:, 0, 3] = 10.0 * 0.1 * fractions
    poses[:, 2, 3] = 1.73
    # Identical poses in every sector: the same sweep as one pose.
    same = cast_lidar(scene, np.repeat(poses[sectors // 2][None], sectors, axis=0), model)
    np.testing.assert_array_equal(same.points, cast_lidar(scene, poses[sectors // 2],
                                                          model).points)
    scan = cast_lidar(scene, poses, model)
    level = scan.beam == 6  # the level beam (0°): meets the walls, never the ground
    back = level & (np.abs(scan.points[:, 1]) < 0.5) & (scan.points[:, 0] < 0)
    first = back & (scan.column < model.num_columns // 2)  # fired at the sweep's start
    last = back & (scan.column >= model.num_columns // 2)  # and at its end
    assert first.sum() >= 2 and last.sum() >= 2
    # The rear wall seam: ~0.1 s of driving (1 m) between the sweep's two ends.
    gap = np.mean(-scan.points[last, 0]) - np.mean(-scan.points[first, 0])
    assert gap == pytest.approx(10.0 * 0.1 * (1 - 1 / sectors), abs=0.05)
    front = level & (np.abs(scan.points[:, 1]) < 0.5) & (scan.points[:, 0] > 0)
    # Forward, half a sweep in, the sensor is where the camera fires: 20 m, to within 4 cm.
    np.testing.assert_allclose(scan.points[front, 0], 20.0, atol=0.04)


def test_drive_with_motion_skew_is_its_own_drive(tmp_path):
    kwargs = {"num_frames": 2, "width": 96, "height": 32, "progress": False,
              "stereo": False, "azimuth_decimation": 8}
    path = write_synthetic_drive(tmp_path, **kwargs)
    bin_path = path / "velodyne_points" / "data" / "0000000001.bin"
    still = kitti.read_velodyne_bin(bin_path)
    assert write_synthetic_drive(tmp_path, lidar_motion_skew=True, **kwargs) == path
    info = json.loads((path / drive.PARAMS_FILE).read_text())
    assert info["lidar_motion_skew"] is True
    skewed = kitti.read_velodyne_bin(bin_path)
    assert len(skewed) > 0 and not np.array_equal(still, skewed)
