"""Cameras of the synthetic data engine: an explicit camera sees the seed's own street, two
cameras agree on the depth of every ray they share, the varied profile draws sensors, lenses
and heights far from KITTI's with the LiDAR on its mount, and bad cameras fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from depth_ros import kitti
from depth_ros.geometry import PinholeCamera, backproject_depth
from depth_ros.synthetic import plan_drive, rig, write_synthetic_drive
from depth_ros.synthetic.cli import main as cli_main
from depth_ros.synthetic.drive import (
    CAMERA_HEIGHT_M,
    PARAMS_FILE,
    VARIED_CAMERA_HEIGHT_RANGE_M,
    VARIED_HFOV_RANGE_DEG,
    VARIED_SENSOR_SIZES,
    _parameters,
    drive_camera,
    drive_camera_height,
    varied_drive_camera,
)
from depth_ros.synthetic.render import cast_rays

SEED = 21


def _depth(plan, index: int = 1) -> np.ndarray:
    return cast_rays(plan.scene_at(index), plan.poses[index], plan.camera).depth


def test_an_explicit_camera_sees_the_seeds_own_scene_and_trajectory():
    default = plan_drive(3, seed=SEED, width=160, height=48)
    camera = PinholeCamera(100.0, 100.0, 40.0, 30.0, 80, 60)
    explicit = plan_drive(3, seed=SEED, camera=camera)
    assert explicit.camera == camera
    assert explicit.trajectory == default.trajectory
    for a, b in zip(explicit.poses, default.poses, strict=True):
        np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(explicit.scene.box_min, default.scene.box_min)
    np.testing.assert_array_equal(explicit.scene.box_max, default.scene.box_max)
    np.testing.assert_array_equal(explicit.timestamps, default.timestamps)


@pytest.mark.parametrize("k", [(0, 0), (3, -5)])
def test_two_cameras_give_the_same_depth_on_every_ray_they_share(k):
    # A: a KITTI-wide camera; B: a 4:3 camera at half A's focal length whose pixel centres
    # fall exactly on every other pixel centre of A (shifted by k pixels of B), and which
    # sees above and below A's frame. Same seed, same frame: the same rays must hit the same
    # surfaces at the same depth.
    a = PinholeCamera(180.0, 180.0, 150.0, 44.0, 310, 94)
    kx, ky = k
    b = PinholeCamera(90.0, 90.0, a.cx / 2 - kx, a.cy / 2 - ky, 120, 90)
    depth_a = _depth(plan_drive(2, seed=SEED, camera=a))
    depth_b = _depth(plan_drive(2, seed=SEED, camera=b))
    vb, ub = np.mgrid[0:b.height, 0:b.width]
    ua, va = 2 * (ub + kx), 2 * (vb + ky)  # = cx_a + 2 (u_b - cx_b), exactly
    inside = (ua >= 0) & (ua < a.width) & (va >= 0) & (va < a.height)
    assert 0.2 < inside.mean() < 0.8  # B sees much that A does not, and shares much with it
    shared_a, shared_b = depth_a[va[inside], ua[inside]], depth_b[inside]
    np.testing.assert_array_equal(np.isfinite(shared_a), np.isfinite(shared_b))
    finite = np.isfinite(shared_a)
    assert finite.sum() > 1000
    np.testing.assert_allclose(shared_b[finite], shared_a[finite], rtol=1e-5)


def test_depth_projected_from_one_camera_into_another_agrees():
    # Cameras of different fields of view and aspect ratios whose pixels share no rays:
    # A's depth, back-projected and projected into B, lands on B's depth at that pixel
    # (nearest pixel: off only at depth edges).
    a = PinholeCamera(248.0, 248.0, 207.0, 60.0, 414, 125)
    b = PinholeCamera(125.0, 125.0, 80.3, 59.6, 160, 120)
    depth_a = _depth(plan_drive(2, seed=SEED, camera=a))
    depth_b = _depth(plan_drive(2, seed=SEED, camera=b))
    valid = np.isfinite(depth_a)
    points = backproject_depth(np.where(valid, depth_a, 0.0), a.K)[valid]
    u = np.rint(b.fx * points[:, 0] / points[:, 2] + b.cx).astype(int)
    v = np.rint(b.fy * points[:, 1] / points[:, 2] + b.cy).astype(int)
    seen = (u >= 0) & (u < b.width) & (v >= 0) & (v < b.height)
    target = depth_b[v[seen], u[seen]]
    ok = np.isfinite(target)
    assert ok.sum() > 5000
    rel = np.abs(target[ok] - points[seen, 2][ok]) / points[seen, 2][ok]
    assert np.median(rel) < 0.01
    assert np.mean(rel < 0.05) > 0.95


def test_the_kitti_profile_is_todays_draw_with_todays_parameters():
    plan = plan_drive(1, seed=SEED, width=320, height=96)
    assert plan.camera == drive_camera(SEED, 320, 96)
    assert plan.trajectory.height_m == CAMERA_HEIGHT_M == drive_camera_height(SEED)
    assert plan_drive(1, seed=SEED).camera == drive_camera(SEED)
    # No new keys for kitti drives: drives rendered before cameras could be chosen still
    # count as complete and are not rendered again.
    params = _parameters(2, SEED, 1, "2011_09_26", 320, 96, False, True, 2, False)
    assert set(params) == {"engine_version", "num_frames", "seed", "drive", "date", "width",
                           "height", "stereo", "lidar", "azimuth_decimation",
                           "lidar_motion_skew", "ideal_lidar"}


def test_the_varied_profile_draws_sensors_lenses_and_heights_far_from_kittis():
    seeds = range(300)
    cameras = [varied_drive_camera(s) for s in seeds]
    heights = np.array([drive_camera_height(s, "varied") for s in seeds])
    assert {(c.width, c.height) for c in cameras} == set(VARIED_SENSOR_SIZES)
    assert {(640, 480), (1280, 720), (1242, 375)} <= set(VARIED_SENSOR_SIZES)
    hfov = np.degrees([2 * np.arctan(c.width / 2 / c.fx) for c in cameras])
    assert VARIED_HFOV_RANGE_DEG[0] <= hfov.min() < 50 and 95 < hfov.max() <= 100
    assert all(c.fx == c.fy for c in cameras)
    offsets = np.array([((c.cx - (c.width - 1) / 2) / c.width,
                         (c.cy - (c.height - 1) / 2) / c.height) for c in cameras])
    assert np.abs(offsets).max() <= 0.02 and np.abs(offsets).max() > 0.015
    assert VARIED_CAMERA_HEIGHT_RANGE_M[0] <= heights.min() < 1.4
    assert 1.8 < heights.max() <= VARIED_CAMERA_HEIGHT_RANGE_M[1]
    assert varied_drive_camera(7) == varied_drive_camera(7)
    plan = plan_drive(2, seed=7, camera_profile="varied")
    assert plan.camera == varied_drive_camera(7)
    assert abs(plan.poses[0].position[2] - drive_camera_height(7, "varied")) < 0.011
    # The velodyne rides on KITTI's mount: ~8 cm above the camera, whatever its height.
    velo = rig.sensor_to_world(plan.poses[0], 2, "velo")
    assert 0.06 < velo[2, 3] - plan.poses[0].position[2] < 0.1


def test_a_varied_drive_records_its_camera_and_its_scans_project_onto_its_depth(tmp_path):
    seed = next(s for s in range(100) if varied_drive_camera(s).width == 640)
    camera = varied_drive_camera(seed)
    path = write_synthetic_drive(tmp_path, num_frames=1, seed=seed, progress=False,
                                 stereo=False, camera_profile="varied", threads=1)
    info = json.loads((path / PARAMS_FILE).read_text())
    assert info["camera_profile"] == "varied"
    assert (info["width"], info["height"]) == (640, 480)
    assert info["camera_height_m"] == pytest.approx(drive_camera_height(seed, "varied"))
    calib = kitti.read_calib_file(path / "calib_cam_to_cam.txt")
    np.testing.assert_allclose(calib["P_rect_02"].reshape(3, 4)[:, :3], camera.K, rtol=1e-6)
    rgb = kitti.read_rgb_png(path / "image_02" / "data" / "0000000000.png")
    assert rgb.shape == (480, 640, 3)
    dense = kitti.read_depth_png(path / "proj_depth" / "groundtruth" / "image_02"
                                 / "0000000000.png")
    sparse = kitti.read_depth_png(path / "proj_depth" / "velodyne_raw" / "image_02"
                                  / "0000000000.png")
    both = (sparse > 0) & (dense > 0)
    assert both.sum() > 2000
    rel = np.abs(sparse[both] - dense[both]) / dense[both]
    assert np.median(rel) < 0.02
    # Written again with the same request: found complete, nothing rendered.
    stamp = (path / PARAMS_FILE).stat().st_mtime_ns
    assert write_synthetic_drive(tmp_path, num_frames=1, seed=seed, progress=False,
                                 stereo=False, camera_profile="varied") == path
    assert (path / PARAMS_FILE).stat().st_mtime_ns == stamp


def test_an_explicit_camera_drive_is_written_and_rewritten_only_when_the_camera_changes(
        tmp_path):
    camera = PinholeCamera(60.0, 58.0, 31.5, 24.0, 64, 48)
    path = write_synthetic_drive(tmp_path, num_frames=1, seed=SEED, progress=False,
                                 stereo=False, lidar=False, camera=camera)
    info = json.loads((path / PARAMS_FILE).read_text())
    assert info["camera"] == [60.0, 58.0, 31.5, 24.0, 64, 48]
    assert "camera_profile" not in info and "camera_height_m" not in info
    depth = kitti.read_depth_png(path / "proj_depth" / "groundtruth" / "image_02"
                                 / "0000000000.png")
    assert depth.shape == (48, 64)
    calib = kitti.read_calib_file(path / "calib_cam_to_cam.txt")
    np.testing.assert_allclose(calib["P_rect_02"].reshape(3, 4)[:, :3], camera.K, rtol=1e-6)
    other = PinholeCamera(50.0, 50.0, 31.5, 24.0, 64, 48)
    write_synthetic_drive(tmp_path, num_frames=1, seed=SEED, progress=False, stereo=False,
                          lidar=False, camera=other)
    assert json.loads((path / PARAMS_FILE).read_text())["camera"][0] == 50.0


@pytest.mark.parametrize("kwargs, message", [
    ({"camera": PinholeCamera(0.0, 50.0, 30.0, 20.0, 64, 48)}, "focal lengths must be positive"),
    ({"camera": PinholeCamera(50.0, -1.0, 30.0, 20.0, 64, 48)}, "focal lengths must be positive"),
    ({"camera": PinholeCamera(50.0, 50.0, np.nan, 20.0, 64, 48)}, "must be finite"),
    ({"camera": PinholeCamera(50.0, 50.0, 3.0, 2.0, 6, 48)}, "too small"),
    ({"camera": PinholeCamera(50.0, 50.0, 30.0, 20.0, 64, 48), "width": 100}, "disagree"),
    ({"camera": PinholeCamera(50.0, 50.0, 30.0, 20.0, 64, 48), "camera_profile": "varied"},
     "not both"),
    ({"camera_profile": "varied", "width": 640}, "leave width/height out"),
    ({"camera_profile": "fisheye"}, "camera_profile must be one of kitti, varied"),
    ({"width": 4, "height": 100}, "too small"),
])
def test_bad_cameras_fail_with_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_drive(1, seed=SEED, **kwargs)


@pytest.mark.parametrize("argv, message", [
    (["--camera", "500,500,320,240,640"], "six numbers"),
    (["--camera", "500,500,320,240,640.5,480"], "whole pixel counts"),
    (["--camera=-5,500,320,240,640,480"], "focal lengths must be positive"),
    (["--camera", "500,500,2,2,4,4"], "too small"),
    (["--camera", "500,500,320,240,640,480", "--width", "640"], "leave out --width"),
    (["--camera", "500,500,320,240,640,480", "--camera-profile", "varied"],
     "exclude each other"),
    (["--camera-profile", "varied", "--height", "480"], "leave out --width/--height"),
    (["--camera-profile", "wide"], "invalid choice"),
])
def test_the_cli_rejects_nonsense_cameras(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--out", str(tmp_path), "--no-progress", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_cli_renders_through_an_explicit_camera(tmp_path, capsys):
    assert cli_main(["--out", str(tmp_path), "--no-progress", "--frames", "1", "--no-stereo",
                     "--no-lidar", "--seed", "4", "--camera", "40,40,23.5,15.5,48,32"]) == 0
    path = capsys.readouterr().out.split()[-1]
    info = json.loads((tmp_path / path / PARAMS_FILE).read_text())
    assert info["camera"] == [40.0, 40.0, 23.5, 15.5, 48, 32]
    assert info["seed"] == 4


def test_training_renders_a_split_with_its_camera_profile(tmp_path):
    from training.config import ConfigError, SyntheticSplit, load_config
    from training.data.drives import ensure_synthetic_drives

    split = SyntheticSplit(drives=2, frames=1, seed=40, stereo=False, camera_profile="varied")
    paths = ensure_synthetic_drives(tmp_path, split, width=320, height=96)
    for offset, path in enumerate(paths):
        info = json.loads((path / PARAMS_FILE).read_text())
        camera = varied_drive_camera(40 + offset)
        assert info["camera_profile"] == "varied"
        assert (info["width"], info["height"]) == (camera.width, camera.height)
    kitti_paths = ensure_synthetic_drives(tmp_path / "k", SyntheticSplit(frames=1, stereo=False),
                                          width=64, height=24)
    assert json.loads((kitti_paths[0] / PARAMS_FILE).read_text())["width"] == 64
    with pytest.raises(ConfigError, match=r"data\.synthetic\.camera_profile must be kitti or"):
        load_config(overrides=["data.synthetic={drives: 1, camera_profile: wide}"])
