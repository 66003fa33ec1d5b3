"""Street content of the synthetic engine: trees, hedges, fences, the far tree line, doors and
brick façades, and the procedural textures of the new surfaces."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ros.synthetic import (
    KITTI_CAMERA,
    BoxKind,
    CameraPose,
    StreetScene,
    greenery,
    materials,
    render_frame,
)
from depth_ros.synthetic.procedural import _building_line_m, generate_street
from depth_ros.synthetic.render import world_ray_directions

SEEDS = range(6)
LEVEL = CameraPose.from_euler((0.0, 0.0, 1.65))
_NEW_KINDS = (BoxKind.FOLIAGE, BoxKind.TRUNK, BoxKind.FENCE)


class _Boxes:
    """Collects what the greenery functions add, as procedural's box list does."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, lo, hi, kind, colour, detail=(0.0, 0.0, 0.0), pattern=(0.0,) * 4) -> None:
        self.rows.append((lo, hi, kind, colour, detail, pattern))

    def scene(self, base: StreetScene | None = None) -> StreetScene:
        lo, hi, kind, colour, detail, pattern = zip(*self.rows, strict=True)
        return (base or StreetScene.empty()).with_boxes(
            np.array(lo), np.array(hi), np.array(kind), np.array(colour), np.array(detail),
            np.array(pattern))


def _street(seed: int) -> StreetScene:
    return generate_street(seed, x_min_m=-40.0, x_max_m=400.0)


def _kind(scene: StreetScene, kind: BoxKind) -> np.ndarray:
    return np.flatnonzero(scene.box_kind == kind)


def _albedo_on_face(scene: StreetScene, points: np.ndarray, axis: int, sign: int,
                    footprint_m: float, box: int = 0) -> np.ndarray:
    """Albedo of points on one face of ``box`` (the face arrays hold just that face)."""
    n = len(points)
    return materials.surface_albedo(scene, points, np.zeros(n, np.int32), np.array([box]),
                                    np.array([axis], np.int8), np.array([sign], np.int8),
                                    np.full(n, footprint_m, np.float32))


def test_every_new_kind_appears_in_generated_streets():
    counts = {kind: 0 for kind in _NEW_KINDS}
    for seed in SEEDS:
        scene = _street(seed)
        for kind in _NEW_KINDS:
            counts[kind] += len(_kind(scene, kind))
    assert counts[BoxKind.TRUNK] >= 20
    assert counts[BoxKind.FOLIAGE] >= 3 * counts[BoxKind.TRUNK]
    assert counts[BoxKind.FENCE] >= 10


@pytest.mark.parametrize("seed", SEEDS)
def test_greenery_and_fences_stay_behind_the_kerbs(seed):
    scene = _street(seed)
    lay = scene.layout
    new = np.flatnonzero(np.isin(scene.box_kind, _NEW_KINDS))
    right = scene.box_max[new, 1] <= lay.kerb_right_m
    left = scene.box_min[new, 1] >= lay.kerb_left_m
    assert np.all(right | left)
    # None of it stands inside a building.
    buildings = _kind(scene, BoxKind.BUILDING)
    overlap = np.all((scene.box_min[new, None] < scene.box_max[None, buildings] - 1e-6)
                     & (scene.box_max[new, None] > scene.box_min[None, buildings] + 1e-6),
                     axis=-1)
    assert not overlap.any()


@pytest.mark.parametrize("tree", range(20))
def test_a_tree_is_a_trunk_under_two_to_four_crown_boxes(tree):
    boxes = _Boxes()
    radius, trunk = 1.0 + 0.1 * tree, 2.0 + 0.05 * tree
    greenery.add_tree(boxes, np.random.default_rng(tree), 5.0, -7.0, radius, trunk)
    scene = boxes.scene()
    assert scene.box_kind[0] == BoxKind.TRUNK
    assert np.all(scene.box_kind[1:] == BoxKind.FOLIAGE) and 2 <= scene.num_boxes - 1 <= 4
    assert scene.box_min[0, 2] == 0.0 and trunk < scene.box_max[0, 2] < trunk + 1
    crown = slice(1, None)
    centre = np.array([5.0, -7.0])
    assert np.all(scene.box_min[crown, :2] >= centre - radius - 1e-9)
    assert np.all(scene.box_max[crown, :2] <= centre + radius + 1e-9)
    assert np.all(scene.box_min[crown, 2] > 0.5 * trunk)
    # The trunk reaches into the crown, whose boxes overlap into one piece.
    top = scene.box_max[0, 2]
    assert np.any((scene.box_min[crown, 2] < top) & (scene.box_max[crown, 2] > top))


@pytest.mark.parametrize("seed", SEEDS)
def test_every_street_trunk_carries_a_crown(seed):
    scene = _street(seed)
    crowns = _kind(scene, BoxKind.FOLIAGE)
    for t in _kind(scene, BoxKind.TRUNK):
        axis = (scene.box_min[t, :2] + scene.box_max[t, :2]) / 2
        top = scene.box_max[t, 2]
        holds = np.all((scene.box_min[crowns, :2] < axis) & (scene.box_max[crowns, :2] > axis),
                       axis=1) & (scene.box_min[crowns, 2] < top) & (
                           scene.box_max[crowns, 2] > top)
        assert holds.any()


@pytest.mark.parametrize("seed", SEEDS)
def test_hedges_and_fences_front_set_back_buildings(seed):
    scene = _street(seed)
    low = np.concatenate([_kind(scene, BoxKind.FENCE),
                          [i for i in _kind(scene, BoxKind.FOLIAGE) if scene.box_max[i, 2] < 2]])
    buildings = _kind(scene, BoxKind.BUILDING)
    for i in low:
        side = 1 if scene.box_min[i, 1] > 0 else -1
        line = _building_line_m(scene.layout, side)
        near_edge = scene.box_max[i, 1] if side < 0 else scene.box_min[i, 1]
        assert side * (near_edge - line) >= -1e-6  # behind the sidewalk
        near = (scene.box_min[buildings, 0] < scene.box_max[i, 0] + 6.5) & (
            scene.box_max[buildings, 0] > scene.box_min[i, 0] - 6.5)
        front = np.where(side < 0, scene.box_max[buildings, 1], scene.box_min[buildings, 1])
        setback = side * (front - line)
        assert np.any(near & (setback >= greenery.MIN_GARDEN_M) & (setback < 12))


@pytest.mark.parametrize("seed", SEEDS)
def test_front_hedges_and_fences_open_at_the_doors(seed):
    scene = _street(seed)
    low = np.concatenate([_kind(scene, BoxKind.FENCE),
                          [i for i in _kind(scene, BoxKind.FOLIAGE) if scene.box_max[i, 2] < 2]])
    doors = 0
    for b in _kind(scene, BoxKind.BUILDING):
        side = 1 if scene.box_min[b, 1] > 0 else -1
        line = _building_line_m(scene.layout, side)
        front = scene.box_max[b, 1] if side < 0 else scene.box_min[b, 1]
        if not greenery.MIN_GARDEN_M <= side * (front - line) < 12:
            continue
        spacing = scene.box_pattern[b, 1]
        for x in scene.box_min[b, 0] + materials.door_centres_m(
                scene.box_max[b, 0] - scene.box_min[b, 0], spacing):
            doors += 1
            path = (scene.box_min[low, 0] < x + 0.5) & (scene.box_max[low, 0] > x - 0.5) & (
                scene.box_min[low, 1] < max(line, line + side * 1.1)) & (
                scene.box_max[low, 1] > min(line, line + side * 1.1))
            assert not path.any()
    assert doors > 0 or seed not in (0, 2)  # these seeds have gardens


def test_far_tree_line_lines_both_sides():
    scene = _street(3)
    far = _kind(scene, BoxKind.FOLIAGE)
    far = far[np.abs(scene.box_min[far, 1] + scene.box_max[far, 1]) / 2 > 100]
    for side in (-1, 1):
        mine = far[side * scene.box_min[far, 1] > 0]
        humps = mine[scene.box_min[mine, 2] > 0]
        mine = mine[scene.box_min[mine, 2] == 0]
        # A hump stands on a segment of the tree line, behind its front.
        for h in humps:
            under = mine[(scene.box_max[mine, 2] == scene.box_min[h, 2])
                         & (scene.box_min[mine, 0] <= scene.box_min[h, 0])
                         & (scene.box_max[mine, 0] >= scene.box_max[h, 0])]
            assert len(under) == 1
        front = np.where(side < 0, scene.box_max[mine, 1], scene.box_min[mine, 1])
        assert np.all((np.abs(front) >= greenery.TREE_LINE_Y_RANGE_M[0])
                      & (np.abs(front) <= greenery.TREE_LINE_Y_RANGE_M[1]))
        covered = np.sum(scene.box_max[mine, 0] - scene.box_min[mine, 0])
        assert covered > 0.6 * 440
        assert np.all(scene.box_max[mine, 2] >= greenery.TREE_LINE_HEIGHT_RANGE_M[0])


def test_far_tree_line_fills_sky_with_far_depth():
    lo, hi = (-50.0, 110.0, 0.0), (600.0, 130.0, 20.0)
    scene = StreetScene.empty(seed=1).with_boxes(lo, hi, BoxKind.FOLIAGE, (0.2, 0.3, 0.1),
                                                  (0.05, 0.08, 0.03), (0.8, 6.0, 0.6, 0.0))
    _, depth = render_frame(scene, LEVEL, KITTI_CAMERA)
    _, bare = render_frame(StreetScene.empty(seed=1), LEVEL, KITTI_CAMERA)
    gained = np.isfinite(depth) & ~np.isfinite(bare)
    assert gained.sum() > 2000
    # Its front face is at y = 110 m: depth = 110 / tan(azimuth) along the optical axis.
    assert np.nanmin(depth[gained]) > 110.0 / np.tan(np.arctan(KITTI_CAMERA.cx
                                                               / KITTI_CAMERA.fx)) - 1
    assert np.isnan(depth[0]).mean() > 0.3  # sky above it is still sky


def _foliage_patch(footprint_m: float) -> np.ndarray:
    scene = StreetScene.empty(seed=4).with_boxes((10.0, -20.0, 0.0), (11.0, 20.0, 10.0),
                                                 BoxKind.FOLIAGE, (0.25, 0.40, 0.12),
                                                 (0.05, 0.09, 0.03), (0.12, 0.9, 0.9, 0.0))
    y, z = np.meshgrid(np.linspace(-18, 18, 240), np.linspace(0.5, 9.5, 60))
    points = np.stack([np.full(y.size, 10.0), y.ravel(), z.ravel()], axis=1)
    return _albedo_on_face(scene, points, 0, -1, footprint_m)


def test_foliage_is_green_textured_and_fades_to_its_mean():
    near = _foliage_patch(0.005)
    mean = near.mean(axis=0)
    assert mean[1] > 1.3 * mean[0] and mean[1] > 1.3 * mean[2]
    luminance = near.mean(axis=1)
    assert luminance.std() > 0.25 * luminance.mean()
    assert np.mean(luminance < 0.5 * luminance.mean()) > 0.05  # dark gaps
    far = _foliage_patch(50.0)
    assert far.mean(axis=1).std() < 0.05 * luminance.std()
    np.testing.assert_allclose(far.mean(axis=0), mean, rtol=0.12)


_WALL_RGB = (0.8, 0.78, 0.72)


def _facade(brick: bool = False, windows: float = 0.5, colour: tuple = _WALL_RGB
            ) -> tuple[StreetScene, float]:
    """A 30 m wide, 3-floor building right of the street; returns it and its street face."""
    pattern = materials.facade_pattern(3.0, 2.5, windows, 0.5, brick)
    scene = StreetScene.empty().with_boxes((0.0, -25.0, 0.0), (30.0, -10.0, 9.5),
                                           BoxKind.BUILDING, colour, (0.15, 0.18, 0.22),
                                           pattern)
    return scene, -10.0


def test_doors_are_on_street_facing_ground_floors_only():
    scene, front = _facade()
    centres = materials.door_centres_m(30.0, 2.5)
    # Twelve columns: doors at the middle one (the 7th) and five columns either side of it.
    np.testing.assert_allclose(centres, [3.75, 16.25, 28.75])
    n = len(centres)
    pts = lambda y, z: np.stack([centres, np.full(n, y), np.full(n, z)], axis=1)  # noqa: E731
    wall = np.float32(_WALL_RGB)
    door = _albedo_on_face(scene, pts(front, 0.5), 1, 1, 0.005)
    assert np.all(door.mean(axis=1) < 0.4 * wall.mean())
    # Beside the door at the same height: wall again (the door is 1.0–1.2 m wide).
    beside = _albedo_on_face(scene, pts(front, 0.5) + np.array([0.75, 0, 0]), 1, 1, 0.005)
    np.testing.assert_allclose(beside, np.broadcast_to(wall, beside.shape), rtol=0.15)
    # Above the door (2.4 m: no door is taller than 2.3 m) and on the upper floors: no door.
    for z in (2.45, 3.5):
        above = _albedo_on_face(scene, pts(front, z), 1, 1, 0.005)
        assert not np.allclose(above, door, atol=0.03)
    # The back face looks away from the street (below the sills: no window there either).
    back = _albedo_on_face(scene, pts(-25.0, 0.5), 1, -1, 0.005)
    np.testing.assert_allclose(back, np.broadcast_to(wall, back.shape), rtol=0.15)
    # A blank wall has no doors either.
    blank, _ = _facade(windows=0.0)
    plain = _albedo_on_face(blank, pts(front, 0.5), 1, 1, 0.005)
    np.testing.assert_allclose(plain, np.broadcast_to(wall, plain.shape), rtol=0.15)


@pytest.mark.parametrize("brick", [True, False])
def test_brick_facades_show_mortar_courses(brick):
    scene, front = _facade(brick=brick, colour=(0.60, 0.30, 0.22))
    # Below the ground-floor windows, clear of head joints: bed joints and brick faces.
    z = np.arange(3, 11) * 0.075  # course bottoms
    mortar = np.stack([np.full(len(z), 0.06), np.full(len(z), front), z + 0.006], axis=1)
    bricks = mortar + np.array([0.0, 0.0, 0.035])
    lighter = (_albedo_on_face(scene, mortar, 1, 1, 0.002).mean(axis=1)
               / _albedo_on_face(scene, bricks, 1, 1, 0.002).mean(axis=1))
    if brick:
        assert np.median(lighter) > 1.1
    else:
        assert np.all(np.abs(lighter - 1) < 0.1)


def _slab_depth(scene: StreetScene, pose: CameraPose) -> tuple[np.ndarray, np.ndarray]:
    """Reference z-depth of every pixel (the nearest slab entry over all boxes, or the ground)
    and whether a box is what it sees."""
    d = np.stack(world_ray_directions(pose, KITTI_CAMERA), axis=-1).astype(np.float64)
    o = pose.position
    best = np.where(d[..., 2] < 0, -o[2] / np.minimum(d[..., 2], -1e-12), np.inf)
    on_box = np.zeros(best.shape, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for lo, hi in zip(scene.box_min, scene.box_max, strict=True):
            t0, t1 = (lo - o) / d, (hi - o) / d
            enter = np.nanmax(np.minimum(t0, t1), axis=-1)
            leave = np.nanmin(np.maximum(t0, t1), axis=-1)
            hit = (enter <= leave) & (enter > 0)
            nearer = hit & (enter < best)
            best = np.where(nearer, enter, best)
            on_box |= nearer
    return best, on_box


def test_rendered_tree_has_analytic_depth():
    boxes = _Boxes()
    greenery.add_tree(boxes, np.random.default_rng(3), 14.0, -3.5, 2.0, 2.5)
    scene = boxes.scene()
    assert scene.box_kind[0] == BoxKind.TRUNK and 2 <= scene.num_boxes - 1 <= 4
    _, depth = render_frame(scene, LEVEL, KITTI_CAMERA, max_depth_m=1e4)
    reference, on_tree = _slab_depth(scene, LEVEL)
    assert on_tree.sum() > 20_000
    # Pixel edges of boxes can go either way; away from them depth is exact.
    finite = np.where(np.isfinite(reference), reference, 1e6)
    inner = on_tree & (np.abs(np.diff(finite, axis=1, prepend=0)) < 0.01) & (
        np.abs(np.diff(finite, axis=0, prepend=0)) < 0.01)
    np.testing.assert_allclose(depth[inner], reference[inner], rtol=1e-4)
    # The middle of the trunk's front face, 1 m up: its depth is the face's x.
    front = scene.box_min[0, 0]
    u = int(round(KITTI_CAMERA.cx + KITTI_CAMERA.fx * 3.5 / front))
    v = int(round(KITTI_CAMERA.cy + KITTI_CAMERA.fy * (1.65 - 1.0) / front))
    assert depth[v, u] == pytest.approx(front, abs=1e-4)


def test_foliage_lidar_returns_are_darker_than_a_white_wall():
    from depth_ros.synthetic.lidar import LidarModel, cast_lidar

    boxes = _Boxes()
    greenery.add_tree(boxes, np.random.default_rng(5), 8.0, 0.0, 2.0, 1.0)
    scene = boxes.scene().with_boxes((20.0, -30.0, 0.0), (21.0, 30.0, 10.0),
                                     BoxKind.BUILDING, (0.9, 0.9, 0.9),
                                     pattern=(3.0, 2.5, 0.0, 0.0))
    pose = np.eye(4)
    pose[2, 3] = 1.73
    scan = cast_lidar(scene, pose, LidarModel(range_noise_m=0.0, azimuth_decimation=4))
    crown = _kind(scene, BoxKind.FOLIAGE)
    pts = scan.points[:, :3] + [0, 0, 1.73]
    inside = np.zeros(len(pts), bool)
    for i in crown:
        inside |= np.all((pts > scene.box_min[i] - 0.05) & (pts < scene.box_max[i] + 0.05),
                         axis=1)
    wall = np.abs(pts[:, 0] - 20.0) < 0.1
    assert inside.sum() > 50 and wall.sum() > 500
    assert np.median(scan.points[inside, 3]) < 0.6 * np.median(scan.points[wall, 3])
