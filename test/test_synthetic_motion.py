"""Moving traffic and per-drive intrinsics of the synthetic data engine: boxes moving with their
velocities, the ego path kept clear of them, the camera and LiDAR seeing one scene time, and
each drive's own camera written to and read back from its calibration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from depth_ros import kitti
from depth_ros.geometry import backproject_depth, project_velodyne
from depth_ros.kitti import KittiRawCalibration
from depth_ros.synthetic import (
    FRAME_PERIOD_S,
    KITTI_CAMERA,
    BoxKind,
    CameraPose,
    StreetScene,
    plan_drive,
    render_frame,
    rig,
    write_synthetic_drive,
)
from depth_ros.synthetic.drive import (
    FOCAL_RANGE_PX,
    PRINCIPAL_X_RANGE_PX,
    PRINCIPAL_Y_RANGE_PX,
    drive_camera,
)
from depth_ros.synthetic.lidar import LidarModel, cast_lidar
from depth_ros.synthetic.procedural import TRAFFIC_SPEED_RANGE_MPS
from depth_ros.synthetic.render import cast_rays

SMALL = KITTI_CAMERA.resized(320, 96)
LEVEL = CameraPose.from_euler((0.0, 0.0, 1.65))
CAR_KINDS = (BoxKind.CAR_BODY, BoxKind.CAR_CABIN)


def _world_points(depth: np.ndarray, pose: CameraPose, camera) -> np.ndarray:
    points = backproject_depth(depth, camera.K).reshape(-1, 3).astype(np.float64)
    return (points @ pose.rotation.T + pose.position).reshape((*depth.shape, 3))


def _two_car_scene() -> StreetScene:
    """A static wall far ahead, a car driving away 20 m ahead and one crossing 30 m ahead."""
    return (StreetScene.empty(seed=3)
            .with_boxes([60.0, -20.0, 0.0], [61.0, 20.0, 12.0])
            .with_boxes([20.0, -1.0, 0.0], [24.0, 1.0, 1.5], kind=BoxKind.CAR_BODY,
                        velocity=(8.0, 0.0, 0.0))
            .with_boxes([30.0, -8.0, 0.0], [32.0, -4.0, 1.5], kind=BoxKind.CAR_BODY,
                        velocity=(0.0, 5.0, 0.0)))


def test_at_time_moves_only_the_moving_boxes():
    scene = _two_car_scene()
    assert scene.at_time(0.0) is scene
    static = StreetScene.empty().with_boxes([5.0, -1.0, 0.0], [6.0, 1.0, 2.0])
    assert static.at_time(3.0) is static  # nothing moves: no copy at all
    np.testing.assert_array_equal(static.box_velocity, np.zeros((1, 3)))
    np.testing.assert_array_equal(scene.moving, [False, True, True])
    later = scene.at_time(0.25)
    np.testing.assert_array_equal(later.box_min[0], scene.box_min[0])
    np.testing.assert_allclose(later.box_min[1:] - scene.box_min[1:],
                               [[2.0, 0.0, 0.0], [0.0, 1.25, 0.0]], atol=1e-12)
    np.testing.assert_allclose(later.box_max - later.box_min, scene.box_max - scene.box_min,
                               atol=1e-12)
    np.testing.assert_allclose(later.at_time(0.5).box_min, scene.at_time(0.75).box_min,
                               atol=1e-12)
    with pytest.raises(ValueError, match="box_velocity"):
        StreetScene(0, scene.layout, scene.lighting, scene.noise, box_min=scene.box_min,
                    box_max=scene.box_max, box_kind=scene.box_kind,
                    box_colour=scene.box_colour, box_detail=scene.box_detail,
                    box_pattern=scene.box_pattern, box_velocity=np.zeros((2, 3)))


def test_generated_scene_at_time_zero_is_the_scene():
    plan = plan_drive(10, seed=3, width=64, height=32)
    at_zero = plan.scene_at(0)
    np.testing.assert_array_equal(at_zero.box_min, plan.scene.box_min)
    np.testing.assert_array_equal(at_zero.box_max, plan.scene.box_max)
    later = plan.scene_at(9)
    moving = plan.scene.moving
    assert moving.sum() >= 4
    np.testing.assert_array_equal(later.box_min[~moving], plan.scene.box_min[~moving])
    np.testing.assert_allclose(later.box_min[moving] - plan.scene.box_min[moving],
                               plan.scene.box_velocity[moving] * 9 * FRAME_PERIOD_S, atol=1e-9)


def test_moving_car_depth_moves_by_velocity_times_the_frame_period():
    scene = _two_car_scene()
    _, depth0 = render_frame(scene, LEVEL, SMALL)
    _, depth1 = render_frame(scene.at_time(FRAME_PERIOD_S), LEVEL, SMALL)
    u, v = int(SMALL.cx), int(SMALL.cy + SMALL.fy * 1.0 / 25)  # the receding car's rear
    assert depth0[v, u] == pytest.approx(20.0, rel=1e-6)
    assert depth1[v, u] == pytest.approx(20.0 + 8.0 * FRAME_PERIOD_S, rel=1e-6)
    # The crossing car's left edge (y = −4 + 0.5 m) moves fx · 0.5 / 30 px left in the image.
    row = int(SMALL.cy + SMALL.fy * 1.0 / 31)
    edge = [np.flatnonzero(np.abs(d[row] - 30.0) < 1e-3).min() for d in (depth0, depth1)]
    expected = [SMALL.cx + SMALL.fx * y / 30.0 for y in (4.0, 3.5)]
    np.testing.assert_allclose(edge, np.ceil(expected), atol=1)
    assert edge[0] - edge[1] == pytest.approx(SMALL.fx * 0.5 / 30.0, abs=1.01)
    # The static wall is untouched wherever neither car covers it.
    wall = (np.abs(depth0 - 60.0) < 1e-3) & (np.abs(depth1 - 60.0) < 1e-3)
    assert wall.sum() > 2000
    np.testing.assert_array_equal(depth0[wall], depth1[wall])


def _moving_mask(scene: StreetScene, pose: CameraPose, camera) -> np.ndarray:
    hits = cast_rays(scene, pose, camera)
    return (hits.face >= 0) & scene.moving[hits.face_box][np.maximum(hits.face, 0)]


@pytest.mark.parametrize("seed", [1, 6, 7])
def test_drive_frames_move_cars_and_keep_static_pixels(seed):
    plan = plan_drive(6, seed=seed, width=320, height=96)
    camera, pose = plan.camera, plan.poses[3]
    # One pose, two consecutive frame times: only what moving cars cover may change.
    scenes = [plan.scene_at(3), plan.scene_at(4)]
    depths = [render_frame(s, pose, camera)[1] for s in scenes]
    moving = _moving_mask(scenes[0], pose, camera) | _moving_mask(scenes[1], pose, camera)
    assert moving.sum() > 200
    np.testing.assert_array_equal(depths[0][~moving], depths[1][~moving])
    # (A car seen from the side keeps its depth as it slides along; from behind it does not.)
    assert np.sum(np.nan_to_num(depths[0]) != np.nan_to_num(depths[1])) > 20
    # Every x-facing face of a moving car seen in consecutive frames: its world x (from the
    # rendered depth, through each frame's own pose) moved by velocity · 0.1 s.
    frames = []
    for index in range(6):
        scene = plan.scene_at(index)
        hits = cast_rays(scene, plan.poses[index], camera)
        face = np.maximum(hits.face, 0)
        points = _world_points(render_frame(scene, plan.poses[index], camera)[1],
                               plan.poses[index], camera)
        frames.append((np.where(hits.face >= 0, hits.face_box[face], -1),
                       np.where(hits.face >= 0, hits.face_axis[face] * 3 + hits.face_sign[face],
                                -9), points))
    checked = 0
    for (box0, key0, pts0), (box1, key1, pts1) in itertools.pairwise(frames):
        for box in np.flatnonzero(plan.scene.moving):
            for key in (-1, 1):  # the x faces: rear (−x) and front (+x)
                x0 = pts0[(box0 == box) & (key0 == key), 0]
                x1 = pts1[(box1 == box) & (key1 == key), 0]
                if min(len(x0), len(x1)) < 5:
                    continue
                shift = np.median(x1) - np.median(x0)
                assert shift == pytest.approx(
                    plan.scene.box_velocity[box, 0] * FRAME_PERIOD_S, abs=2e-3)
                checked += 1
    assert checked >= 2


@pytest.mark.parametrize("seed", range(8))
def test_lane_cars_drive_in_their_direction_and_parked_ones_stand(seed):
    scene = plan_drive(2, seed=seed, width=64, height=32).scene
    layout = scene.layout
    velocity = scene.box_velocity
    assert np.all(velocity[:, 1:] == 0)
    assert np.all(np.isin(scene.box_kind[scene.moving], CAR_KINDS))
    speeds = np.asarray(layout.lane_speeds_mps)
    assert len(speeds) == layout.num_lanes
    assert np.all((speeds == 0) | ((speeds >= TRAFFIC_SPEED_RANGE_MPS[0])
                                   & (speeds <= TRAFFIC_SPEED_RANGE_MPS[1])))
    y = (scene.box_min[:, 1] + scene.box_max[:, 1]) / 2
    cars = np.isin(scene.box_kind, CAR_KINDS)
    on_road = (y > layout.road_right_m) & (y < layout.road_left_m)
    assert np.all(velocity[cars & ~on_road] == 0)  # parked
    lane = np.floor((y - layout.road_right_m) / layout.lane_width_m).astype(int)
    for k in range(layout.num_lanes):
        in_lane = cars & on_road & (lane == k)
        direction = 1.0 if k < layout.forward_lanes else -1.0
        np.testing.assert_allclose(velocity[in_lane, 0], direction * speeds[k])
    # A car's body and cabin (consecutive boxes) move together.
    body = np.flatnonzero(scene.box_kind == BoxKind.CAR_BODY)
    body = body[body + 1 < scene.num_boxes]
    body = body[scene.box_kind[body + 1] == BoxKind.CAR_CABIN]
    np.testing.assert_array_equal(velocity[body], velocity[body + 1])


def test_traffic_has_moving_and_queued_lanes_across_seeds():
    speeds = np.concatenate([plan_drive(1, seed=s, width=64, height=32).scene.layout
                             .lane_speeds_mps for s in range(30)])
    assert 0.05 < np.mean(speeds == 0) < 0.45
    moving = speeds[speeds > 0]
    assert moving.min() >= 5.0 and moving.max() <= 14.0 and np.ptp(moving) > 5.0


def _rig_positions(plan, times: np.ndarray) -> np.ndarray:
    """World positions of both cameras and the velodyne at ``times``."""
    out = []
    for t in times:
        pose = plan.trajectory.pose(t)
        out += [pose.position] + [rig.sensor_to_world(pose, 2, s)[:3, 3]
                                  for s in ("cam3", "velo")]
    return np.array(out).reshape(len(times), 3, 3)


@pytest.mark.parametrize("seed", range(10))
def test_no_moving_car_reaches_the_ego_path_or_another_car(seed):
    plan = plan_drive(150, seed=seed, width=64, height=32)
    scene = plan.scene
    times = np.arange(0.0, plan.times_s[-1] + 1e-9, 0.05)  # twice per frame
    positions = _rig_positions(plan, times)
    cars = np.flatnonzero(scene.box_kind == BoxKind.CAR_BODY)
    moving = scene.moving
    assert moving[cars].sum() >= 3
    # Over the drive, the closest any car comes to the rig's sensors (box distance).
    for t, sensors in zip(times, positions, strict=True):
        now = scene.at_time(t)
        lo, hi = now.box_min[moving] - 1.0, now.box_max[moving] + 1.0
        inside = np.all((sensors[:, None] > lo[None]) & (sensors[:, None] < hi[None]), axis=-1)
        assert not inside.any(), f"a moving car is within 1 m of the rig at t = {t:.2f} s"
    # Cars sharing a lane keep their gaps: no moving body ever overlaps another car body.
    for t in (0.0, plan.times_s[-1] / 2, plan.times_s[-1]):
        now = scene.at_time(t)
        lo, hi = now.box_min[cars], now.box_max[cars]
        overlap = np.all((lo[:, None] < hi[None]) & (hi[:, None] > lo[None]), axis=-1)
        np.fill_diagonal(overlap, False)
        involved = overlap & (moving[cars][:, None] | moving[cars][None, :])
        assert not involved.any(), f"moving cars overlap at t = {t:.2f} s"


def test_intrinsics_vary_by_seed_within_kitti_like_ranges():
    cameras = [drive_camera(seed) for seed in range(40)]
    fx = np.array([c.fx for c in cameras])
    assert all(c.fy == c.fx and (c.width, c.height) == (1242, 375) for c in cameras)
    assert np.all((fx >= FOCAL_RANGE_PX[0]) & (fx <= FOCAL_RANGE_PX[1]))
    assert FOCAL_RANGE_PX[0] < 707.0 and FOCAL_RANGE_PX[1] > 721.5  # KITTI's raw dates
    assert np.ptp(fx) > 40.0  # spread over most of the ±5 %
    cx = np.array([c.cx for c in cameras])
    cy = np.array([c.cy for c in cameras])
    assert np.all((cx >= PRINCIPAL_X_RANGE_PX[0]) & (cx <= PRINCIPAL_X_RANGE_PX[1]))
    assert np.all((cy >= PRINCIPAL_Y_RANGE_PX[0]) & (cy <= PRINCIPAL_Y_RANGE_PX[1]))
    assert np.all(np.abs(cx - 1242 / 2) < 25) and np.all(np.abs(cy - 375 / 2) < 20)
    assert len({round(c.fx, 6) for c in cameras}) == 40
    assert drive_camera(5) == drive_camera(5)
    assert drive_camera(5, 320, 96) == drive_camera(5).resized(320, 96)
    # The plan's camera is the drive's, at its image size.
    assert plan_drive(1, seed=5, width=320, height=96).camera == drive_camera(5, 320, 96)


@pytest.fixture(scope="module")
def two_drives(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_motion")
    return [write_synthetic_drive(root, num_frames=2, seed=seed, drive=seed, width=320,
                                  height=96, progress=False, azimuth_decimation=4)
            for seed in (1, 2)]


def test_written_calibration_reads_back_each_drives_intrinsics(two_drives):
    read = []
    for seed, path in zip((1, 2), two_drives, strict=True):
        camera = plan_drive(2, seed=seed, width=320, height=96, drive=seed).camera
        for cam, x_m in ((2, -0.06), (3, 0.48)):
            calib = KittiRawCalibration.from_files(path / "calib_cam_to_cam.txt",
                                                   path / "calib_velo_to_cam.txt",
                                                   path / "calib_imu_to_velo.txt", camera=cam)
            np.testing.assert_allclose(calib.K, camera.K, rtol=1e-6)
            assert calib.P_rect[0, 3] == pytest.approx(-x_m * camera.fx, rel=1e-6)
            assert (calib.width, calib.height) == (320, 96)
            # The stored velodyne_raw is the reader's projection of the stored scan.
            name = kitti.frame_name(1)
            points = kitti.read_velodyne_bin(path / "velodyne_points" / "data" / f"{name}.bin")
            stored = kitti.read_depth_png(path / "proj_depth" / "velodyne_raw"
                                          / f"image_{cam:02d}" / f"{name}.png")
            np.testing.assert_allclose(stored, calib.sparse_depth(points),
                                       atol=0.5 / 256 + 1e-6)
            assert np.count_nonzero(stored) > 300
        model = kitti.KittiDrive(path).camera_model()
        np.testing.assert_allclose([model.fx, model.fy, model.cx, model.cy],
                                   [camera.fx, camera.fy, camera.cx, camera.cy], rtol=1e-6)
        cam00 = kitti.read_calib_file(path / "calib_cam_to_cam.txt")
        for index in (0, 1):  # cameras 00 and 01 share the intrinsics
            np.testing.assert_allclose(cam00[f"K_{index:02d}"].reshape(3, 3), camera.K,
                                       rtol=1e-6)
        read.append(model)
    assert abs(read[0].fx - read[1].fx) > 0.5 or abs(read[0].cy - read[1].cy) > 0.5


def test_lidar_and_camera_see_a_moving_car_at_the_frame_time():
    # A car 15 m ahead driving away at 10 m/s, seen at t = 0.3 s: the camera and a LiDAR
    # swept at the same scene time agree on it; one swept through the time-0 scene does not.
    scene = StreetScene.empty(seed=4).with_boxes(
        [15.0, -1.0, 0.0], [19.0, 1.0, 1.6], kind=BoxKind.CAR_BODY, colour=(0.8, 0.8, 0.8),
        velocity=(10.0, 0.0, 0.0))
    t = 0.3
    camera = KITTI_CAMERA
    _, depth = render_frame(scene.at_time(t), LEVEL, camera)
    velo_to_world = rig.sensor_to_world(LEVEL, 2, "velo")
    model = LidarModel(range_noise_m=0.0, azimuth_decimation=2)
    calib = kitti.cam_to_cam_calibration(camera)

    def car_error(scan) -> np.ndarray:
        sparse = project_velodyne(scan.points, rig.velo_to_cam_matrix(), calib["R_rect_00"],
                                  calib["P_rect_02"], camera.width, camera.height)
        on_car = (sparse > 0) & (np.abs(depth - 18.0) < 0.02)  # the rear face, 15 + 3 m
        assert on_car.sum() > 50
        return np.abs(sparse[on_car] - depth[on_car]) / depth[on_car]

    # Most returns agree to the range noise-free millimetre; the rest are at the face's edges.
    assert np.mean(car_error(cast_lidar(scene.at_time(t), velo_to_world, model)) < 1e-4) > 0.9
    # Sector times: the forward sectors fire within a few ms of t, the car barely moved.
    sectors = 16
    times = t + ((np.arange(sectors) + 0.5) / sectors - 0.5) * 0.1
    skewed = cast_lidar(scene, np.repeat(velo_to_world[None], sectors, axis=0), model,
                        sector_times_s=times)
    assert np.median(car_error(skewed)) < 10.0 * 0.1 / sectors / 18.0
    stale = cast_lidar(scene, velo_to_world, model)
    sparse = project_velodyne(stale.points, rig.velo_to_cam_matrix(), calib["R_rect_00"],
                              calib["P_rect_02"], camera.width, camera.height)
    assert np.sum((sparse > 0) & (np.abs(sparse - 15.0) < 0.05)) > 50  # where it was at 0 s
    with pytest.raises(ValueError, match="sector times"):
        cast_lidar(scene, np.repeat(velo_to_world[None], sectors, axis=0), model,
                   sector_times_s=times[:3])
