"""The engine's KITTI-like LiDAR (``LidarModel.kitti``): each artefact of real scans it adds
(per-beam calibration error, mixed pixels at depth edges, beams through car windows and
foliage gaps, range dropout) is deterministic by seed and does what it says, and a small engine
drive lands in the band of kitti_dev's real scans (docs/kitti_dev.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from depth_ros.synthetic import StreetScene, plan_drive, rig, write_synthetic_drive
from depth_ros.synthetic import lidar as lidar_module
from depth_ros.synthetic.lidar import LidarModel, cast_lidar
from depth_ros.synthetic.scene import BoxKind

REPO = Path(__file__).resolve().parents[1]
# kitti_dev's real scans, measured by bench/lidar_realism.py (docs/kitti_dev.md).
REAL_BG_FG_PCT = 8.68
REAL_DENSITY_PCT = {"density_0_10": 5.63, "density_10_20": 7.99, "density_20_40": 10.1,
                    "density_40_80": 10.7}
PLAIN = (3.0, 2.5, 0.0, 0.0)  # box pattern without windows or stripes


def _level_pose(height: float = 1.73) -> np.ndarray:
    pose = np.eye(4)
    pose[2, 3] = height
    return pose


def _ranges(scan) -> np.ndarray:
    return np.linalg.norm(scan.points[:, :3], axis=1)


def _keyed(scan) -> dict[tuple[int, int], float]:
    return dict(zip(zip(scan.beam.tolist(), scan.column.tolist(), strict=True),
                    _ranges(scan).tolist(), strict=True))


def _realism():
    """bench/lidar_realism.py as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("lidar_realism",
                                                  REPO / "bench" / "lidar_realism.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kitti_model_scan_is_deterministic_by_seed_and_frame():
    plan = plan_drive(2, seed=9, width=320, height=96)
    velo_to_world = rig.sensor_to_world(plan.poses[1], 2, "velo")
    model = LidarModel.kitti(azimuth_decimation=4)
    a, b, c = (cast_lidar(plan.scene, velo_to_world, model, noise_seed=k) for k in (1, 1, 2))
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.beam, b.beam)
    assert len(a.points) != len(c.points) or not np.array_equal(a.points, c.points)
    # The artefacts change the scan: it is not the ideal sensor's.
    ideal = cast_lidar(plan.scene, velo_to_world, LidarModel(azimuth_decimation=4),
                       noise_seed=1)
    assert len(ideal.points) != len(a.points) or not np.array_equal(ideal.points, a.points)


def test_calibration_error_is_fixed_per_drive_and_bounded():
    model = LidarModel.kitti()
    true_a, az_a = lidar_module._calibration_error(model, 5)
    true_b, az_b = lidar_module._calibration_error(model, 5)
    _, az_c = lidar_module._calibration_error(model, 6)
    assert true_a == true_b
    np.testing.assert_array_equal(az_a, az_b)
    assert not np.array_equal(az_a, az_c)
    offsets = np.asarray(true_a.elevations_deg) - np.asarray(model.elevations_deg)
    assert 0 < np.abs(offsets).max() <= 2 * model.calibration_elevation_deg + 1e-12
    assert 0 < np.abs(np.degrees(az_a)).max() <= 2 * model.calibration_azimuth_deg + 1e-12
    assert np.all(np.diff(true_a.elevations_deg) < 0)
    # The ideal sensor fires where it says.
    ideal = LidarModel()
    assert lidar_module._calibration_error(ideal, 5)[0] is ideal


def test_calibration_error_writes_points_along_the_nominal_beams():
    # The beams hit the ground off their nominal elevation, but the points are written along
    # the nominal one: their ranges are those of the true beams.
    model = LidarModel(range_noise_m=0.0, calibration_elevation_deg=0.05,
                       calibration_azimuth_deg=0.3, azimuth_decimation=4)
    scene = StreetScene.empty(seed=3)
    scan = cast_lidar(scene, _level_pose(), model)
    pts = scan.points
    elevation = np.degrees(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
    np.testing.assert_allclose(elevation, np.asarray(model.elevations_deg)[scan.beam],
                               atol=1e-3)
    true_model, _ = lidar_module._calibration_error(model, scene.seed)
    true_el = np.radians(np.asarray(true_model.elevations_deg)[scan.beam])
    np.testing.assert_allclose(_ranges(scan), 1.73 / np.sin(-true_el), rtol=1e-4)
    assert np.abs(pts[:, 2] + 1.73).max() > 0.01  # so not on the ground as written


@pytest.mark.parametrize("kind, field", [(BoxKind.CAR_CABIN, "glass_pass_prob"),
                                         (BoxKind.FOLIAGE, "foliage_gap_prob")])
def test_beams_pass_windows_and_gaps_to_what_is_behind(kind, field):
    # A see-through box 8 m ahead, its top above the LiDAR (only its vertical face is seen),
    # in front of a tall wall 20 m ahead: the beams that hit its front face in the ideal scan
    # go on, with the model's probability, to the ground behind it or the wall.
    scene = (StreetScene.empty()
             .with_boxes([8.0, -2.0, 0.5], [9.5, 2.0, 2.6], kind=kind, colour=(0.8, 0.8, 0.8),
                         pattern=PLAIN)
             .with_boxes([20.0, -30.0, 0.0], [21.0, 30.0, 8.0], colour=(0.8, 0.8, 0.8),
                         pattern=PLAIN))
    shares = {}
    for prob in (0.0, 0.5, 1.0):
        model = LidarModel(range_noise_m=0.0, azimuth_decimation=4, **{field: prob})
        scan = cast_lidar(scene, _level_pose(), model)
        if prob == 0.0:
            on_face = ((scan.points[:, 0] > 7.99) & (scan.points[:, 0] < 8.01)
                       & (np.abs(scan.points[:, 1]) < 2.0))
            aimed = set(zip(scan.beam[on_face].tolist(), scan.column[on_face].tolist(),
                            strict=True))
            assert len(aimed) > 100
        x = {key: float(p[0]) for key, p in zip(zip(scan.beam.tolist(), scan.column.tolist(),
                                                    strict=True), scan.points, strict=True)}
        # Passed: a return beyond the box (lost ones, on a dark part behind, count as not).
        shares[prob] = float(np.mean([x.get(key, 0.0) > 9.6 for key in aimed]))
    assert shares[0.0] == 0.0
    assert shares[1.0] > 0.9
    assert 0.3 < shares[0.5] < 0.65


def test_mixed_pixels_put_far_ranges_on_the_near_edge():
    # A narrow post 8 m ahead before a wall 20 m ahead: with every straddling beam mixed to
    # the far range, the post's edge columns read the wall; nothing else changes.
    scene = (StreetScene.empty()
             .with_boxes([8.0, -0.5, 0.0], [8.5, 0.5, 4.0], colour=(0.8, 0.8, 0.8),
                         pattern=PLAIN)
             .with_boxes([20.0, -30.0, 0.0], [21.0, 30.0, 8.0], colour=(0.8, 0.8, 0.8),
                         pattern=PLAIN))
    ideal = cast_lidar(scene, _level_pose(), LidarModel(range_noise_m=0.0))
    mixed = cast_lidar(scene, _level_pose(),
                       LidarModel(range_noise_m=0.0, mixed_pixel_prob=1.0, mixed_far_share=1.0))
    before, after = _keyed(ideal), _keyed(mixed)
    assert before.keys() == after.keys()
    changed = [k for k in before if abs(before[k] - after[k]) > 1e-3]
    ncol = LidarModel().num_columns
    for beam, column in changed:
        # Each took the range of its farther neighbour in the same beam, > 10 % farther (that
        # neighbour's own return may have been lost to the light budget: then it is unseen).
        sides = [before.get((beam, (column + d) % ncol), 0.0) for d in (-1, 1)]
        assert after[beam, column] >= max(sides) - 1e-3
        assert after[beam, column] > 1.1 * before[beam, column]
    # The post's two edges, in every beam that hits it, read the wall.
    post_edges = [k for k in changed if before[k] < 9.0 and after[k] > 19.0]
    # (The post spans ±3.6° around straight ahead, column ncol / 2.)
    post_beams = {b for (b, c), r in before.items() if 8.0 < r < 8.8 and abs(c - ncol / 2) < 30}
    assert len(post_edges) >= len(post_beams) >= 5
    # Without mixing, the same model is the ideal scan.
    none = cast_lidar(scene, _level_pose(), LidarModel(range_noise_m=0.0, mixed_pixel_prob=0.0))
    np.testing.assert_array_equal(none.points, ideal.points)


def test_range_dropout_follows_its_curve():
    scene = StreetScene.empty()
    ideal = _keyed(cast_lidar(scene, _level_pose(), LidarModel()))
    model = LidarModel(range_dropout_max=0.8, range_dropout_half_m=35.0)
    kept = _keyed(cast_lidar(scene, _level_pose(), model))
    assert kept.keys() <= ideal.keys()
    ranges = np.array(list(ideal.values()))
    survived = np.array([k in kept for k in ideal])
    for lo, hi in ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 80.0)):
        sel = (ranges > lo) & (ranges <= hi)
        t = ranges[sel]
        expected = np.mean(1 - 0.8 * t**2 / (t**2 + 35.0**2))
        sigma = np.sqrt(expected * (1 - expected) / sel.sum())
        assert abs(survived[sel].mean() - expected) < 5 * sigma + 1e-3, (lo, hi)
    # Near returns barely drop, far ones mostly do.
    assert survived[ranges < 10].mean() > 0.95 and survived[ranges > 40].mean() < 0.5


def test_model_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="glass_pass_prob"):
        LidarModel(glass_pass_prob=1.5)
    with pytest.raises(ValueError, match="mixed_edge_ratio"):
        LidarModel(mixed_edge_ratio=0.5)
    with pytest.raises(ValueError, match="calibration"):
        LidarModel(calibration_azimuth_deg=-0.1)


@pytest.fixture(scope="module")
def realism_drives(tmp_path_factory):
    """Default and ideal-LiDAR engine drives at KITTI size, and their statistics."""
    realism = _realism()
    out = {}
    for ideal in (False, True):
        root = tmp_path_factory.mktemp("realism")
        write_synthetic_drive(root, num_frames=6, seed=11, progress=False, ideal_lidar=ideal)
        out[ideal] = realism.summarise(realism._scans(root))
    return out


def test_engine_scans_have_kitti_dev_background_through_foreground(realism_drives):
    kitti_like, ideal = realism_drives[False], realism_drives[True]
    assert abs(kitti_like["bg_fg_pct"][0] - REAL_BG_FG_PCT) < 1.5
    # The ideal sensor's edges alone give well under half of it.
    assert ideal["bg_fg_pct"][0] < 0.5 * REAL_BG_FG_PCT


def test_engine_scans_have_kitti_dev_density_by_range(realism_drives):
    kitti_like, ideal = realism_drives[False], realism_drives[True]
    for key, real in REAL_DENSITY_PCT.items():
        assert kitti_like[key][0] == pytest.approx(real, rel=0.2), key
    # Without range dropout the far scan is far too dense.
    assert ideal["density_40_80"][0] > 1.4 * REAL_DENSITY_PCT["density_40_80"]
    # Decimation 2 by default: KITTI's share of pixels, not twice it.
    assert 2.5 < kitti_like["share_pct"][0] < 4.5
