"""Lighting of the synthetic engine: Embree cast shadows, vignetting and auto-exposure."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from depth_ros.synthetic import (
    KITTI_CAMERA,
    CameraPose,
    Lighting,
    StreetScene,
    cast_rays,
    materials,
    plan_drive,
    render,
    render_frame,
    shadows,
)

SMALL = KITTI_CAMERA.resized(320, 96)
# A sun ahead of the camera and to its right, so a box ahead casts its shadow toward it.
SUN = tuple(float(c) for c in np.array([0.55, -0.35, 0.76]) / np.linalg.norm([0.55, -0.35, 0.76]))
BOX_MIN, BOX_MAX = np.array([14.0, -1.5, 0.0]), np.array([16.0, 1.0, 2.5])


def _single_box_scene() -> StreetScene:
    # No haze, so shaded colour is exactly albedo × irradiance × exposure.
    lighting = Lighting(sun_direction=SUN, ambient=0.4, fog_distance_m=1e12, cloud_cover=0.0)
    return StreetScene.empty(3, lighting=lighting).with_boxes(BOX_MIN, BOX_MAX)


def _shadow_polygon(sun: np.ndarray) -> np.ndarray:
    """The box's shadow on the ground: the convex hull of its corners projected along the sun."""
    corners = np.array([[x, y, z] for x in (BOX_MIN[0], BOX_MAX[0])
                        for y in (BOX_MIN[1], BOX_MAX[1]) for z in (0.0, BOX_MAX[2])])
    ground = corners[:, :2] - corners[:, 2:] / sun[2] * sun[:2]
    return cv2.convexHull(ground.astype(np.float32))


def _ground_points(hits, pose: CameraPose) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the ground pixels and their world (x, y)."""
    depth, face = hits.depth.ravel(), hits.face.ravel()
    idx = np.flatnonzero(np.isfinite(depth) & (face < 0))
    xy = np.stack([pose.position[a] + depth[idx] * hits.dirs[a].ravel()[idx]
                   for a in range(2)], axis=1)
    return idx, xy


def test_box_triangles_cover_each_box_surface_once():
    lo, hi = np.array([[0.0, 0.0, 0.0], [5.0, -2.0, 1.0]]), np.array([[1.0, 2.0, 3.0],
                                                                       [6.5, 0.0, 1.5]])
    tris = shadows.box_triangles(lo, hi)
    assert tris.shape == (24, 3, 3) and tris.dtype == np.float32
    tris = tris.astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]),
                                axis=1)
    size = hi - lo
    surface = 2 * (size[:, 0] * size[:, 1] + size[:, 1] * size[:, 2] + size[:, 0] * size[:, 2])
    np.testing.assert_allclose(area.reshape(2, 12).sum(axis=1), surface, rtol=1e-6)
    # Every vertex is a corner of its own box.
    for box in range(2):
        vertices = tris[12 * box:12 * (box + 1)].reshape(-1, 3)
        assert np.all((vertices == lo[box]) | (vertices == hi[box]))


def test_occluded_is_any_hit_along_the_ray_only():
    caster = shadows.ShadowCaster(BOX_MIN, BOX_MAX)
    assert caster.num_triangles == 12
    origins = np.array([[15.0, 0.0, -1.0],    # below the box, looking up: blocked
                        [15.0, 0.0, 3.0],     # above it, looking up: free
                        [15.0, 5.0, 1.0],     # beside it, looking up: free
                        [10.0, 0.0, 1.0]])    # in front of it, looking up: free
    np.testing.assert_array_equal(caster.occluded(origins, np.array([0.0, 0.0, 1.0])),
                                  [True, False, False, False])
    # Any direction length works, and a ray toward the box from the side is blocked.
    assert caster.occluded(origins[3:], np.array([5.0, 0.0, 0.0])).tolist() == [True]
    assert shadows.ShadowCaster(np.zeros((0, 3)), np.zeros((0, 3))).occluded(
        origins, np.array([0.0, 0.0, 1.0])).tolist() == [False] * 4


def test_ground_shadow_matches_the_analytic_footprint():
    scene = _single_box_scene()
    pose = CameraPose.from_euler((0.0, 0.0, 3.0), pitch=0.25)
    camera = KITTI_CAMERA
    hits = cast_rays(scene, pose, camera)
    lit = materials.shade(scene, pose, camera, hits, cast_shadows=False).reshape(-1, 3)
    shaded = materials.shade(scene, pose, camera, hits).reshape(-1, 3)
    idx, xy = _ground_points(hits, pose)
    polygon = _shadow_polygon(np.array(SUN))
    signed = np.array([cv2.pointPolygonTest(polygon, (float(x), float(y)), True)
                       for x, y in xy])
    inside, outside = idx[signed > 0.02], idx[signed < -0.02]
    assert len(inside) > 2000 and len(outside) > 100_000
    # In the shadow only the sky's light is left: colour scales by ambient / (ambient + sun).
    light = scene.lighting
    ambient = light.ambient * np.array([0.92, 0.96, 1.04])
    direct = materials.DIFFUSE * SUN[2] * np.array(light.sun_rgb)
    np.testing.assert_allclose(shaded[inside] / lit[inside],
                               np.broadcast_to(ambient / (ambient + direct), (len(inside), 3)),
                               rtol=1e-4)
    np.testing.assert_array_equal(shaded[outside], lit[outside])
    # The pixels the footprint leaves out are only those within its 2 cm boundary band.
    # Only ground pixels change (the box's sunlit faces see the sun), none outside the band.
    changed = np.flatnonzero(np.any(shaded != lit, axis=1))
    assert np.all(np.isin(changed, idx[signed > -0.02]))


def test_faces_turned_away_from_the_sun_are_untouched_and_nothing_brightens():
    plan = plan_drive(12, seed=5, width=640, height=192)
    scene, pose = plan.scene, plan.poses[6]
    hits = cast_rays(scene, pose, plan.camera)
    lit = materials.shade(scene, pose, plan.camera, hits, cast_shadows=False).reshape(-1, 3)
    shaded = materials.shade(scene, pose, plan.camera, hits).reshape(-1, 3)
    face = hits.face.ravel()
    sun = np.asarray(scene.lighting.sun_direction)
    boxes = np.flatnonzero(face >= 0)
    facing = hits.face_sign[face[boxes]] * sun[hits.face_axis[face[boxes]]] > 0
    away = boxes[~facing]
    assert len(away) > 1000
    np.testing.assert_array_equal(shaded[away], lit[away])
    assert np.all(shaded <= lit)
    # This street does have shadows: a fair share of the sunlit pixels fall in them.
    changed = np.any(shaded < lit, axis=1)
    assert 0.05 < changed.mean() < 0.9


@pytest.mark.parametrize("seed", [0, 5])
def test_shadows_change_colour_not_depth(seed):
    plan = plan_drive(4, seed=seed, width=320, height=96)
    rgb_lit, depth_lit = render_frame(plan.scene, plan.poses[3], plan.camera, noise_seed=3,
                                      cast_shadows=False)
    rgb, depth = render_frame(plan.scene, plan.poses[3], plan.camera, noise_seed=3)
    assert depth.dtype == depth_lit.dtype == np.float32
    np.testing.assert_array_equal(depth, depth_lit)
    assert not np.array_equal(rgb, rgb_lit)


def test_frames_are_deterministic_with_a_fresh_shadow_bvh():
    frames = []
    for _ in range(2):  # each plan builds a new scene object, hence a new BVH
        plan = plan_drive(3, seed=9, width=320, height=96)
        frames.append(render_frame(plan.scene, plan.poses[2], plan.camera, noise_seed=2)[0])
    np.testing.assert_array_equal(frames[0], frames[1])


def test_shadow_bvh_follows_the_scene_object_and_its_boxes():
    scene = _single_box_scene()
    caster = shadows.shadow_caster(scene)
    assert shadows.shadow_caster(scene) is caster
    # A scene at another time (boxes moved) is another object: its own BVH, its own shadow.
    shift = np.array([0.0, 10.0, 0.0])
    moved = replace(scene, box_min=scene.box_min + shift, box_max=scene.box_max + shift)
    other = shadows.shadow_caster(moved)
    assert other is not caster and other.holds(moved.box_min, moved.box_max)
    point = np.array([[15.0, 0.0, 0.0]])  # under the box: shadowed at time 0 only
    up = np.array([2]), np.array([1])
    assert shadows.sun_visibility(scene, point, *up).tolist() == [0.0]
    assert shadows.sun_visibility(moved, point, *up).tolist() == [1.0]
    # Boxes edited in place are noticed too.
    moved.box_min[:] = scene.box_min
    moved.box_max[:] = scene.box_max
    assert shadows.sun_visibility(moved, point, *up).tolist() == [0.0]


@pytest.mark.parametrize("camera", [KITTI_CAMERA, SMALL, KITTI_CAMERA.resized(400, 400)])
@pytest.mark.parametrize("falloff", [0.1, 0.2])
def test_vignetting_darkens_the_farthest_corner_by_its_falloff(camera, falloff):
    relative = render.vignetting(camera, falloff)
    assert relative.shape == (camera.height, camera.width) and relative.dtype == np.float32
    corners = relative[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.min() == pytest.approx(1 - falloff, abs=1e-6)
    assert np.all(corners < 1 - 0.4 * falloff)  # every corner is clearly darker
    centre = relative[int(round(camera.cy)), int(round(camera.cx))]
    assert centre == pytest.approx(1.0, abs=1e-4) and relative.max() <= 1.0
    # Radial: darker with distance from the principal point along the middle row.
    row = relative[int(round(camera.cy)), int(round(camera.cx)):]
    assert np.all(np.diff(row) <= 0)


def test_vignetting_applies_before_noise_on_a_uniform_frame():
    camera, falloff = KITTI_CAMERA, 0.2
    relative = render.vignetting(camera, falloff)
    linear = np.full((camera.height, camera.width, 3), 0.4, np.float32)
    rgb = render._sensor(linear, np.random.default_rng(0), relative).astype(np.float64)
    patch = (slice(-12, None), slice(-12, None))  # the bottom-right, farthest corner
    centre = (slice(int(camera.cy) - 6, int(camera.cy) + 6),
              slice(int(camera.cx) - 6, int(camera.cx) + 6))
    ratio = rgb[patch].mean() / rgb[centre].mean()
    expected = relative[patch].mean() / relative[centre].mean()
    assert expected < 0.82
    assert ratio == pytest.approx(expected, abs=0.01)


def test_lens_falloff_is_per_scene_and_in_range():
    values = [render.corner_falloff_of(StreetScene.empty(seed)) for seed in range(8)]
    low, high = render.VIGNETTING_RANGE
    assert all(low <= v <= high for v in values) and len(set(values)) == 8
    assert render.corner_falloff_of(StreetScene.empty(3)) == values[3]
    with pytest.raises(ValueError, match="corner_falloff"):
        render.vignetting(SMALL, 1.0)


@pytest.mark.parametrize(("luminance", "gain"), [
    (render.AE_TARGET_LUMINANCE, 1.0),
    (render.AE_TARGET_LUMINANCE * 1.21, 1 / 1.1),   # brighter than the target: a bit darker
    (render.AE_TARGET_LUMINANCE / 1.21, 1.1),       # only partly corrected (strength 0.5)
    (render.AE_TARGET_LUMINANCE / 4, render.AE_GAIN_RANGE[1]),
    (0.0, render.AE_GAIN_RANGE[1]),
    (1.0, render.AE_GAIN_RANGE[0]),
])
def test_auto_exposure_partly_corrects_mean_luminance(luminance, gain):
    frame = np.full((40, 60, 3), luminance, np.float32)
    assert render.auto_exposure_gain(frame) == pytest.approx(gain, abs=1 / 512)


@pytest.mark.parametrize("use_embree", [True, False])
def test_both_tracers_answer_the_any_hit_query(use_embree):
    caster = shadows.ShadowCaster(BOX_MIN, BOX_MAX, use_embree=use_embree)
    origins = np.array([[15.0, 0.0, -1.0], [15.0, 0.0, 3.0], [15.0, 5.0, 1.0], [10.0, 0.0, 1.0]])
    assert caster.occluded(origins, np.array([0.0, 0.0, 1.0])).tolist() == [
        True, False, False, False]
    assert caster.occluded(origins[3:], np.array([5.0, 0.0, 0.0])).tolist() == [True]
    assert caster.occluded(origins[3:], np.array([-5.0, 0.0, 0.0])).tolist() == [False]


def test_numpy_fallback_casts_the_shadows_embree_casts():
    """The fallback for platforms without an embreex wheel (Jetson) gives the same sun
    visibility on a generated street frame, to float rounding at shadow edges."""
    plan = plan_drive(3, seed=5)
    camera = KITTI_CAMERA.resized(414, 125)
    hits = cast_rays(plan.scene, plan.poses[1], camera)
    depth, face = hits.depth.ravel(), hits.face.ravel()
    idx = np.flatnonzero(np.isfinite(depth))
    points = np.stack([plan.poses[1].position[a] + depth[idx] * hits.dirs[a].ravel()[idx]
                       for a in range(3)], axis=1)
    on_box = face[idx] >= 0
    axis = np.where(on_box, hits.face_axis[np.maximum(face[idx], 0)], 2)
    sign = np.where(on_box, hits.face_sign[np.maximum(face[idx], 0)], 1)
    sun = plan.scene.lighting.sun_direction
    fast = shadows.ShadowCaster(plan.scene.box_min, plan.scene.box_max, use_embree=True)
    slow = shadows.ShadowCaster(plan.scene.box_min, plan.scene.box_max, use_embree=False)
    a = fast.sun_visibility(points, axis, sign, sun)
    b = slow.sun_visibility(points, axis, sign, sun)
    assert 0.05 < 1 - a.mean() < 0.95  # the frame has both shade and sun
    assert np.mean(a == b) > 0.999
