"""The label-free training signals: occlusion filter and robust sparse loss, the photometric
warp with minimum reprojection and auto-masking, smoothness, and scan-to-scan ICP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.selfsup import (
    icp,
    lidar_relative_pose,
    occlusion_filter,
    photometric_loss,
    relative_pose,
    smoothness_loss,
    sparse_supervision_loss,
    warp_source,
)

HEIGHT, WIDTH = 48, 96
K = np.array([[80.0, 0.0, 47.5], [0.0, 80.0, 23.5], [0.0, 0.0, 1.0]])
WALL_M = 10.0


def _texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth colour pattern on the wall (metres → RGB in [0, 1])."""
    return np.stack([0.5 + 0.4 * np.sin(2.1 * x) * np.cos(1.3 * y),
                     0.5 + 0.4 * np.cos(1.7 * x + 0.5 * y),
                     0.5 + 0.3 * np.sin(0.9 * x - 2.3 * y)])


def _render_wall(camera_from_target: np.ndarray) -> np.ndarray:
    """The wall z = WALL_M (target frame) seen by a camera at ``camera_from_target``:
    ray-cast per pixel, 3×H×W float32."""
    target_from_camera = np.linalg.inv(camera_from_target)
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)])
    rays = np.tensordot(target_from_camera[:3, :3], rays, axes=1)
    origin = target_from_camera[:3, 3]
    t = (WALL_M - origin[2]) / rays[2]
    return _texture(origin[0] + t * rays[0], origin[1] + t * rays[1]).astype(np.float32)


def _pose(tx: float, ty: float, tz: float, yaw_deg: float = 0.0) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    out = np.eye(4)
    out[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    out[:3, 3] = [tx, ty, tz]
    return out


def _pair(source_from_target: np.ndarray):
    target = torch.from_numpy(_render_wall(np.eye(4)))[None]
    source = torch.from_numpy(_render_wall(source_from_target))[None]
    k = torch.from_numpy(K)[None].float()
    pose = torch.from_numpy(source_from_target)[None, None].float()
    return target, source[:, None], k, pose


def test_the_true_depth_and_pose_explain_the_source_and_a_wrong_depth_does_not() -> None:
    source_from_target = _pose(-0.4, 0.05, -1.0, yaw_deg=1.5)
    target, sources, k, pose = _pair(source_from_target)
    ok = torch.ones(1, 1, dtype=torch.bool)
    depth = torch.full((1, 1, HEIGHT, WIDTH), WALL_M)
    right = photometric_loss(target, sources, depth, k, pose, ok)
    wrong = photometric_loss(target, sources, depth * 0.7, k, pose, ok)
    unwarped = photometric_loss(target, sources, depth, k, torch.eye(4)[None, None], ok,
                                automask=False)
    assert right.reprojection.item() < 0.01
    assert wrong.reprojection.item() > 5 * right.reprojection.item()
    assert unwarped.reprojection.item() > 5 * right.reprojection.item()
    assert right.mask_share > 0.7  # kept, but for pixels that leave the source
    # The gradient points the depth towards the wall.
    guess = torch.full((1, 1, HEIGHT, WIDTH), WALL_M * 0.8, requires_grad=True)
    photometric_loss(target, sources, guess, k, pose, ok).total.backward()
    assert guess.grad.mean().item() < 0


def test_auto_masking_drops_a_static_camera_pair_and_unusable_sources() -> None:
    target, _, k, _ = _pair(np.eye(4))
    sources = target[:, None].clone()
    still = torch.eye(4)[None, None]
    ok = torch.ones(1, 1, dtype=torch.bool)
    terms = photometric_loss(target, sources, torch.full((1, 1, HEIGHT, WIDTH), 3.0), k,
                             still, ok)
    assert terms.mask_share == 0.0
    assert terms.reprojection.item() == 0.0
    # A source marked unusable (another segment, excluded) contributes nothing either.
    _, moving, _, pose = _pair(_pose(-0.4, 0.0, -1.0))
    none = photometric_loss(target, moving, torch.full((1, 1, HEIGHT, WIDTH), WALL_M), k, pose,
                            torch.zeros(1, 1, dtype=torch.bool))
    assert none.mask_share == 0.0


def test_the_minimum_over_sources_ignores_a_source_that_cannot_see_the_pixel() -> None:
    target, good, k, good_pose = _pair(_pose(-0.3, 0.0, -0.5))
    depth = torch.full((1, 1, HEIGHT, WIDTH), WALL_M)
    noise = torch.rand(1, 1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))
    sources = torch.cat([good, noise], 1)
    poses = torch.cat([good_pose, good_pose], 1)
    ok = torch.ones(1, 2, dtype=torch.bool)
    both = photometric_loss(target, sources, depth, k, poses, ok)
    alone = photometric_loss(target, good, depth, k, good_pose, ok[:, :1])
    assert both.reprojection.item() == pytest.approx(alone.reprojection.item(), abs=2e-3)


def test_warp_marks_pixels_that_leave_the_source() -> None:
    depth = torch.full((1, 1, HEIGHT, WIDTH), 5.0)
    k = torch.from_numpy(K)[None].float()
    # Moving 2 m sideways at 5 m depth shifts the image by 32 px: a third leaves the frame.
    pose = torch.from_numpy(_pose(-2.0, 0.0, 0.0))[None].float()
    _, inside = warp_source(torch.rand(1, 3, HEIGHT, WIDTH), depth, k, pose)
    assert inside[..., :, 33:].all()
    assert not inside[..., :, :31].any()


def test_smoothness_is_zero_for_constant_depth_and_smaller_across_image_edges() -> None:
    image = torch.zeros(1, 3, 8, 8)
    flat = smoothness_loss(torch.full((1, 1, 8, 8), 4.0), image)
    assert flat.item() == pytest.approx(0.0, abs=1e-7)
    step = torch.full((1, 1, 8, 8), 4.0)
    step[..., 4:] = 8.0
    edged = image.clone()
    edged[..., 4:] = 1.0
    assert smoothness_loss(step, edged).item() < 0.5 * smoothness_loss(step, image).item()


def _scan_with_see_through(seed: int = 0):
    """A far wall (30 m) behind a near box (8 m), scanned every second row, with far returns
    injected inside the box (what the LiDAR sees past its edge); the injected positions."""
    sparse = torch.zeros(1, 1, 64, 128)
    sparse[..., ::2, :] = 30.0
    box = (slice(20, 50), slice(40, 90))
    sparse[..., box[0], box[1]] = torch.where(sparse[..., box[0], box[1]] > 0, 8.0, 0.0)
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.arange(22, 48, 2), 40)
    cols = rng.integers(42, 88, 40)
    injected = torch.zeros_like(sparse, dtype=torch.bool)
    injected[0, 0, rows, cols] = True
    sparse = torch.where(injected, torch.full_like(sparse, 30.0), sparse)
    return sparse, injected


def test_occlusion_filter_removes_injected_see_through_returns() -> None:
    sparse, injected = _scan_with_see_through()
    keep = occlusion_filter(sparse)
    count = int(injected.sum())
    assert count > 30
    assert int((injected & ~keep).sum()) == count  # every injected return removed
    clean = (sparse > 0) & ~injected
    # Only the wall's returns just beside the box's sides (≤ 3 px) and the two scan rows
    # below its lower edge go too: the price of the filter at a real depth edge.
    assert int((clean & ~keep).sum()) <= 2 * 3 * 15 + 2 * 50
    assert float((clean & keep).sum() / clean.sum()) > 0.95


def test_sparse_supervision_loss_ignores_see_through_returns() -> None:
    sparse, injected = _scan_with_see_through()
    truth = torch.where(injected, torch.full_like(sparse, 8.0), sparse)
    pred = torch.where(truth > 0, truth, torch.full_like(truth, 8.0))
    assert sparse_supervision_loss(pred, sparse).item() < 1e-6
    # Without the filter the injected returns would cost ln(30/8) each.
    naive = (torch.log(pred[sparse > 0]) - torch.log(sparse[sparse > 0])).abs().mean()
    assert naive.item() > 0.01


def _scene_points(seed: int = 0) -> np.ndarray:
    """Points on a street-like scene in camera axes (x right, y down, z forward)."""
    rng = np.random.default_rng(seed)
    n = 1500
    ground = np.stack([rng.uniform(-8, 8, n), np.full(n, 1.7), rng.uniform(2, 40, n)], 1)
    left = np.stack([np.full(n, -6.0), rng.uniform(-4, 1.7, n), rng.uniform(2, 40, n)], 1)
    right = np.stack([np.full(n, 7.0), rng.uniform(-4, 1.7, n), rng.uniform(2, 40, n)], 1)
    half = np.array([1.0, 0.8, 2.0])
    objects = []
    for cx, cz in ((-2.0, 12.0), (3.0, 20.0), (-4.0, 28.0)):  # parked cars: box surfaces
        p = rng.uniform(-1, 1, (n // 3, 3)) * half
        face = rng.integers(0, 3, len(p))
        p[np.arange(len(p)), face] = np.sign(p[np.arange(len(p)), face]) * half[face]
        objects.append(p + np.array([cx, 0.9, cz]))
    for side in (-5.5, 6.5):  # poles every 5 m: what pins the motion along the street
        for cz in np.arange(4.0, 40.0, 5.0):
            angle = rng.uniform(0, 2 * np.pi, 100)
            objects.append(np.stack([side + 0.15 * np.cos(angle), rng.uniform(-4, 1.7, 100),
                                     cz + 0.15 * np.sin(angle)], 1))
    return np.concatenate([ground, left, right, *objects])


def test_icp_recovers_a_known_motion() -> None:
    points = _scene_points()
    truth = _pose(0.12, 0.03, 0.9, yaw_deg=1.2)
    moved = points @ truth[:3, :3].T + truth[:3, 3]
    found = icp(points, moved)
    error_m = np.linalg.norm(found[:3, 3] - truth[:3, 3])
    cos = (np.trace(found[:3, :3].T @ truth[:3, :3]) - 1) / 2
    error_deg = math.degrees(math.acos(np.clip(cos, -1, 1)))
    assert error_m < 0.01
    assert error_deg < 0.1


def test_lidar_relative_pose_from_two_projected_scans() -> None:
    # Two projections of the same scene from cameras 0.8 m apart: different pixels sample
    # it, so ICP works on genuinely different points, as with two real scans.
    from depth_ros.geometry import project_points

    points = _scene_points(1)
    source_from_target = _pose(0.0, 0.0, -0.8, yaw_deg=0.5)
    k = np.array([[300.0, 0, 320], [0, 300.0, 120], [0, 0, 1]])
    target = project_points(points, k, 640, 240)
    moved = points @ source_from_target[:3, :3].T + source_from_target[:3, 3]
    source = project_points(moved, k, 640, 240)
    found = lidar_relative_pose(target, source, k)
    assert np.linalg.norm(found[:3, 3] - source_from_target[:3, 3]) < 0.05
    assert np.allclose(relative_pose(np.eye(4), np.linalg.inv(source_from_target)),
                       source_from_target)


def test_icp_refuses_clouds_without_points() -> None:
    with pytest.raises(ValueError, match="at least 3 points"):
        icp(np.zeros((2, 3)), np.zeros((10, 3)))
