"""The synthetic data engine: determinism, exact depth, KITTI output, drives, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from depth_ros import kitti
from depth_ros.geometry import backproject_depth
from depth_ros.synthetic import (
    FRAME_PERIOD_S,
    KITTI_CAMERA,
    MAX_DEPTH_M,
    BoxKind,
    CameraPose,
    StreetScene,
    cli,
    drive,
    plan_drive,
    render_frame,
    write_synthetic_drive,
)
from depth_ros.synthetic.procedural import generate_street
from depth_ros.synthetic.render import cast_rays

SMALL = KITTI_CAMERA.resized(320, 96)
LEVEL = CameraPose.from_euler((0.0, 0.0, 1.65))
CALIB_PREFIXES = ("S_", "K_", "D_", "R_", "T_", "S_rect_", "R_rect_", "P_rect_")


def _world_points(depth: np.ndarray, pose: CameraPose, camera) -> np.ndarray:
    points = backproject_depth(depth, camera.K).reshape(-1, 3).astype(np.float64)
    return (points @ pose.rotation.T + pose.position).reshape((*depth.shape, 3))


@pytest.fixture(scope="module")
def small_drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    path = write_synthetic_drive(root, num_frames=5, seed=7, drive=3, width=320, height=96,
                                 progress=False)
    return root, path


def test_same_seed_same_frame_other_seed_differs():
    frames = []
    for seed, global_seed in ((4, 1), (4, 2), (5, 1)):
        np.random.seed(global_seed)  # the engine must not depend on global RNG state
        plan = plan_drive(3, seed=seed, width=320, height=96)
        frames.append(render_frame(plan.scene, plan.poses[2], plan.camera, noise_seed=2))
    np.testing.assert_array_equal(frames[0][0], frames[1][0])
    np.testing.assert_array_equal(frames[0][1], frames[1][1])
    assert not np.array_equal(frames[0][0], frames[2][0])
    assert not np.array_equal(frames[0][1], frames[2][1], equal_nan=True)


def test_sensor_noise_differs_between_frames_but_depth_does_not():
    plan = plan_drive(1, seed=1, width=320, height=96)
    rgb_a, depth_a = render_frame(plan.scene, plan.poses[0], plan.camera, noise_seed=0)
    rgb_b, depth_b = render_frame(plan.scene, plan.poses[0], plan.camera, noise_seed=1)
    np.testing.assert_array_equal(depth_a, depth_b)
    diff = rgb_a.astype(int) - rgb_b.astype(int)
    assert 0 < np.abs(diff).mean() < 6


def test_ground_depth_is_exact_and_sky_is_nan():
    camera = KITTI_CAMERA
    rgb, depth = render_frame(StreetScene.empty(), LEVEL, camera)
    assert rgb.shape == (375, 1242, 3) and rgb.dtype == np.uint8
    assert depth.shape == (375, 1242) and depth.dtype == np.float32
    v = np.arange(camera.height, dtype=np.float64)
    with np.errstate(divide="ignore"):
        expected = np.where(v > camera.cy, 1.65 * camera.fy / (v - camera.cy), np.nan)
    expected[expected > MAX_DEPTH_M] = np.nan
    expected = np.broadcast_to(expected[:, None], depth.shape)
    np.testing.assert_allclose(depth, expected, rtol=2e-6)
    assert np.isnan(depth[: int(camera.cy)]).all()
    # The nearest ground row: 1.65 m · fy / (374 − cy).
    assert depth[-1, 600] == pytest.approx(1.65 * 721.5377 / (374 - 172.854), rel=1e-6)


def test_box_faces_have_analytic_depth():
    ahead = ([40.0, -3.0, 0.0], [45.0, 3.0, 5.0])  # facing the camera 40 m ahead
    beside = ([8.0, -12.0, 0.0], [18.0, -5.0, 15.0])  # a wall to the right, seen obliquely
    scene = StreetScene.empty().with_boxes([ahead[0], beside[0]], [ahead[1], beside[1]])
    camera = KITTI_CAMERA
    _, depth = render_frame(scene, LEVEL, camera)
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    u = np.arange(int(cx - fx * 2.9 / 40), int(cx + fx * 2.9 / 40))
    v = np.arange(int(cy - fy * 3.2 / 40), int(cy + fy * 1.5 / 40))
    assert len(u) > 90 and len(v) > 80
    np.testing.assert_allclose(depth[np.ix_(v, u)], 40.0, rtol=1e-6)
    # The wall's street face (y = −5): z-depth 5 · fx / (u − cx) where it is between 8 and 18 m.
    cols = np.arange(int(cx + fx * 5 / 17.5) + 1, int(cx + fx * 5 / 8.5))
    np.testing.assert_allclose(depth[int(cy), cols], 5 * fx / (cols - cx), rtol=1e-5)
    assert np.isnan(depth[: int(cy - fy * 3.45 / 40), int(cx)]).all()  # sky above the box
    row = int(cy + fy * 1.8 / 40)  # ground in front of it
    assert depth[row, int(cx)] == pytest.approx(1.65 * fy / (row - cy), rel=1e-6)


@pytest.mark.parametrize("yaw, pitch, roll", [(0.0, 0.0, 0.0), (0.15, 0.03, -0.02),
                                              (-0.3, -0.05, 0.04)])
def test_backprojected_hits_lie_on_the_surfaces(yaw, pitch, roll):
    lo, hi = np.array([15.0, -4.0, 0.0]), np.array([22.0, 3.0, 6.0])
    scene = StreetScene.empty().with_boxes(lo, hi, kind=BoxKind.CAR_BODY)
    pose = CameraPose.from_euler((0.5, 0.2, 1.7), yaw, pitch, roll)
    hits = render_frame(scene, pose, SMALL)[1]
    points = _world_points(hits, pose, SMALL)
    valid = np.isfinite(hits)
    on_ground = np.abs(points[..., 2]) < 1e-3
    on_box = np.zeros_like(valid)
    for axis in range(3):
        for bound in (lo, hi):
            near_plane = np.abs(points[..., axis] - bound[axis]) < 1e-3 * np.maximum(hits, 1)
            inside = np.all((points >= lo - 1e-2) & (points <= hi + 1e-2), axis=-1)
            on_box |= near_plane & inside
    assert valid.sum() > 0.3 * valid.size
    assert on_box.sum() > 500
    assert np.all(on_ground[valid] | on_box[valid])


def test_generated_street_does_not_depend_on_its_extent():
    short = generate_street(11, x_min_m=-40, x_max_m=150, ego_lane_clear_until_m=60)
    long = generate_street(11, x_min_m=-40, x_max_m=700, ego_lane_clear_until_m=60)
    keep = long.box_max[:, 0] <= 120
    in_short = short.box_max[:, 0] <= 120
    np.testing.assert_array_equal(long.box_min[keep], short.box_min[in_short])
    np.testing.assert_array_equal(long.box_colour[keep], short.box_colour[in_short])
    kinds = set(long.box_kind.tolist())
    assert {BoxKind.BUILDING, BoxKind.CAR_BODY, BoxKind.CAR_CABIN, BoxKind.POLE} <= kinds


@pytest.mark.parametrize("seed", range(6))
def test_camera_path_stays_clear_of_every_box(seed):
    plan = plan_drive(200, seed=seed, width=64, height=32)
    positions = np.array([p.position for p in plan.poses])
    lo, hi = plan.scene.box_min - 0.5, plan.scene.box_max + 0.5
    inside = np.all((positions[:, None] > lo[None]) & (positions[:, None] < hi[None]), axis=-1)
    assert not inside.any()
    assert 8.0 <= plan.trajectory.speed_mps <= 12.0


def test_written_drive_reads_back(small_drive):
    root, path = small_drive
    assert path == root / "2011_09_26" / "2011_09_26_drive_0003_sync"
    reader = kitti.KittiDrive(path)
    assert len(reader) == 5
    stamps = reader.timestamps()
    np.testing.assert_allclose(np.diff(stamps), FRAME_PERIOD_S, atol=1e-6)
    plan = plan_drive(5, seed=7, width=320, height=96, drive=3)
    model = reader.camera_model()
    assert (model.width, model.height) == (320, 96)
    cam = plan.camera
    np.testing.assert_allclose([model.fx, model.fy, model.cx, model.cy],
                               [cam.fx, cam.fy, cam.cx, cam.cy], rtol=1e-6)
    for index in (0, 4):
        rgb, depth = render_frame(plan.scene_at(index), plan.poses[index], cam,
                                  noise_seed=index)
        np.testing.assert_array_equal(reader.rgb(index), rgb)
        gt = reader.groundtruth(index)
        valid = np.isfinite(depth)
        assert valid.mean() > 0.5
        np.testing.assert_array_equal(gt > 0, valid)
        np.testing.assert_allclose(gt[valid], depth[valid], atol=0.5 / 256 + 1e-6)
    assert [d.path for d in kitti.find_drives(root)] == [path]


def test_calibration_has_kitti_keys_and_baselines(small_drive):
    root, path = small_drive
    calib = kitti.read_calib_file(root / "2011_09_26" / "calib_cam_to_cam.txt")
    assert isinstance(calib["calib_time"], str)
    assert calib["corner_dist"].shape == (1,)
    for cam in range(4):
        for prefix in CALIB_PREFIXES:
            assert f"{prefix}{cam:02d}" in calib
    camera = plan_drive(5, seed=7, width=320, height=96, drive=3).camera
    fx = camera.fx
    p_rect = {cam: calib[f"P_rect_{cam:02d}"].reshape(3, 4) for cam in range(4)}
    assert p_rect[0][0, 3] == 0.0
    assert p_rect[1][0, 3] == pytest.approx(-0.54 * fx, rel=1e-6)
    assert p_rect[2][0, 3] == pytest.approx(0.06 * fx, rel=1e-6)
    assert p_rect[3][0, 3] == pytest.approx(-0.48 * fx, rel=1e-6)
    assert (p_rect[2][0, 3] - p_rect[3][0, 3]) / fx == pytest.approx(0.54, rel=1e-6)
    np.testing.assert_allclose(p_rect[2][:, :3], camera.K, rtol=1e-6)
    np.testing.assert_allclose(calib["S_rect_02"], [320, 96])
    # The drive keeps its own copy, which KittiDrive reads first.
    assert kitti.KittiDrive(path).calib_path() == path / "calib_cam_to_cam.txt"


def test_consecutive_frames_agree_on_the_static_scene(small_drive):
    _, path = small_drive
    info = json.loads((path / "depth_ros_synthetic.json").read_text())
    step = info["speed_mps"] * FRAME_PERIOD_S
    rows = np.loadtxt(path / "poses.txt").reshape(-1, 3, 4)
    assert len(rows) == 5
    np.testing.assert_allclose(rows[0], np.eye(4)[:3], atol=1e-12)
    moves = np.diff(rows[:, :, 3], axis=0)
    np.testing.assert_allclose(np.linalg.norm(moves, axis=1), step, rtol=2e-3)
    assert np.all(moves[:, 2] > 0.99 * step)  # forward along the optical axis
    plan = plan_drive(5, seed=7, width=320, height=96, drive=3)
    np.testing.assert_allclose(np.diff([p.position[0] for p in plan.poses]), step, rtol=1e-12)

    # Warp frame 1's depth into frame 2 with the logged poses: the static scene must agree
    # (pixels that see a moving car in either frame are left out).
    reader = kitti.KittiDrive(path)
    depth1, depth2 = reader.groundtruth(1), reader.groundtruth(2)
    cam = plan.camera

    def on_moving_box(index: int) -> np.ndarray:
        scene = plan.scene_at(index)
        hits = cast_rays(scene, plan.poses[index], cam)
        face_moves = scene.moving[hits.face_box]
        return (hits.face >= 0) & face_moves[np.maximum(hits.face, 0)]

    moving1, moving2 = on_moving_box(1), on_moving_box(2)
    valid = (depth1 > 0) & ~moving1
    points = backproject_depth(depth1, cam.K)[valid].astype(np.float64)
    pose1, pose2 = np.eye(4), np.eye(4)
    pose1[:3], pose2[:3] = rows[1], rows[2]
    relative = np.linalg.inv(pose2) @ pose1
    moved = points @ relative[:3, :3].T + relative[:3, 3]
    u = np.round(cam.fx * moved[:, 0] / moved[:, 2] + cam.cx).astype(int)
    v = np.round(cam.fy * moved[:, 1] / moved[:, 2] + cam.cy).astype(int)
    inside = (moved[:, 2] > 0) & (u >= 0) & (u < 320) & (v >= 0) & (v < 96)
    seen = np.where(moving2, 0.0, depth2)[v[inside], u[inside]]
    ok = seen > 0
    error = np.abs(seen[ok] - moved[inside][ok, 2]) / seen[ok]
    assert ok.sum() > 0.5 * valid.sum()
    assert np.median(error) < 0.005


def test_rerun_skips_complete_drive_and_redoes_changed_one(small_drive, monkeypatch):
    root, path = small_drive
    image = path / "image_02" / "data" / "0000000000.png"
    stamp = image.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("rendered although the drive was complete")

    monkeypatch.setattr(drive, "render_frame", fail)
    assert write_synthetic_drive(root, num_frames=5, seed=7, drive=3, width=320, height=96,
                                 progress=False) == path
    assert image.stat().st_mtime_ns == stamp


def test_changed_parameters_regenerate(tmp_path):
    path = write_synthetic_drive(tmp_path, num_frames=2, seed=1, width=64, height=32,
                                 progress=False)
    assert len(kitti.KittiDrive(path)) == 2
    again = write_synthetic_drive(tmp_path, num_frames=3, seed=1, width=64, height=32,
                                  progress=False)
    assert again == path and len(kitti.KittiDrive(path)) == 3
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_interrupted_run_leaves_no_drive(tmp_path, monkeypatch):
    real_render = drive.render_frame
    calls = []

    def interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(drive, "render_frame", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_drive(tmp_path, num_frames=3, width=64, height=32, progress=False)
    date_dir = tmp_path / "2011_09_26"
    assert not (date_dir / "2011_09_26_drive_0001_sync").exists()
    assert [p for p in date_dir.iterdir() if p.is_dir()] == []


def test_leftover_work_directories_do_not_count(tmp_path):
    date_dir = tmp_path / "2011_09_26"
    name = "2011_09_26_drive_0001_sync"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = socket.gethostname()
    foreign = date_dir / f".{name}.partial-elsewhere-1-abcd"
    abandoned = date_dir / f".{name}.partial-{host}-{dead.stdout.strip()}-abcd"
    for work in (foreign, abandoned):
        rgb = np.zeros((32, 64, 3), np.uint8)
        kitti.write_rgb_png(work / "image_02" / "data" / "0000000000.png", rgb)
    with pytest.raises(kitti.KittiFormatError):
        kitti.find_drives(tmp_path)
    # A half-written drive directory (no parameter file) is not complete either.
    kitti.write_rgb_png(date_dir / name / "image_02" / "data" / "0000000000.png",
                        np.zeros((32, 64, 3), np.uint8))
    path = write_synthetic_drive(tmp_path, num_frames=2, width=64, height=32, progress=False)
    assert [d.path for d in kitti.find_drives(tmp_path)] == [path]
    assert len(kitti.KittiDrive(path)) == 2
    assert foreign.exists()  # another host's writer may still be running
    assert not abandoned.exists()


def test_cli_writes_a_drive(tmp_path, capsys):
    assert cli.main(["--out", os.fspath(tmp_path), "--frames", "2", "--seed", "3", "--drive",
                     "9", "--width", "96", "--height", "32", "--no-progress"]) == 0
    path = tmp_path / "2011_09_26" / "2011_09_26_drive_0009_sync"
    assert capsys.readouterr().out.strip() == os.fspath(path)
    reader = kitti.KittiDrive(path)
    assert len(reader) == 2 and reader.rgb(1).shape == (32, 96, 3)
    info = json.loads((path / "depth_ros_synthetic.json").read_text())
    assert (info["seed"], info["drive"], info["num_frames"]) == (3, 9, 2)


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["--out", os.fspath(tmp_path), "--frames", "0"])
