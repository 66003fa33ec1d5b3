"""Training signals that need no labels: the projected LiDAR of a bag as sparse supervision,
and photometric self-supervision between consecutive frames (monodepth2, Godard et al. 2019).

Sparse supervision: real scans see the background past a near object's edge (the LiDAR sits
above and behind the camera), so a return with a much nearer return just above or beside it
in the image is dropped (``occlusion_filter``), and the rest are fitted with an L1 loss on log
depth, which one bad return cannot dominate (``log_l1_loss``).

Photometric: each source frame (t−1, t+1) is warped into the target with the predicted depth
and the relative pose; the loss is 0.85 · (1 − SSIM)/2 + 0.15 · L1, the per-pixel minimum over
the sources (occlusions), over the pixels that the warp explains better than the unwarped
source does (auto-masking: a static camera or an object moving with it), plus an edge-aware
smoothness term on mean-normalised inverse depth.

Poses come from the bag's odometry where it has one; else from the LiDAR of the two frames,
point-to-point ICP (``icp``) on their back-projected returns. Tensors are N×C×H×W, intrinsics
N×3×3 for the image size the loss runs at, poses N×4×4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

from depth_ros.models.prefill import occlusion_filter
from training.losses import completion_loss, weighted_depth_loss

SSIM_WEIGHT = 0.85  # monodepth2's α
SMOOTHNESS_WEIGHT = 1e-3
AUTOMASK_MARGIN = 1e-5  # how much better than the unwarped source a warp must be


# --- Sparse LiDAR supervision ---------------------------------------------------------------


def log_l1_loss(pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor
                ) -> torch.Tensor:
    """Mean |ln pred − ln target| over ``valid_mask`` (zero, still attached, when empty): a
    relative error, robust to the few returns the occlusion filter misses."""
    if pred.shape != target.shape or pred.shape != valid_mask.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target "
                         f"{tuple(target.shape)}, mask {tuple(valid_mask.shape)}")
    if not valid_mask.any():
        return pred.sum() * 0.0
    return (torch.log(pred[valid_mask].clamp(min=1e-3))
            - torch.log(target[valid_mask].clamp(min=1e-3))).abs().mean()


def sparse_supervision_loss(pred: torch.Tensor, sparse: torch.Tensor,
                            valid_mask: torch.Tensor | None = None, radius: int = 3,
                            margin: float = 0.1) -> torch.Tensor:
    """``log_l1_loss`` of ``pred`` against the returns of ``sparse`` that pass the
    ``occlusion_filter`` (and ``valid_mask``, when given)."""
    keep = occlusion_filter(sparse, radius, margin)
    if valid_mask is not None:
        keep = keep & valid_mask
    return log_l1_loss(pred, torch.where(keep, sparse, torch.ones_like(sparse)), keep)


# --- Geometry -------------------------------------------------------------------------------


def relative_pose(world_from_target: np.ndarray, world_from_source: np.ndarray) -> np.ndarray:
    """``source_from_target`` (4×4): maps points in the target camera's frame to the
    source camera's, from the two cameras' poses in a world frame."""
    return np.linalg.inv(world_from_source) @ world_from_target


def warp_source(source: torch.Tensor, depth: torch.Tensor, K: torch.Tensor,  # noqa: N803
                source_from_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The source image resampled at the target's pixels (bilinear), and the pixels whose
    projection lands inside the source (bool N×1×H×W) and in front of its camera.

    Args:
        source: N×C×H×W source image.
        depth: N×1×H×W target depth, metres, for the camera ``K``.
        K: N×3×3 intrinsics at H×W (the same camera for target and source).
        source_from_target: N×4×4 rigid transform.
    """
    n, _, height, width = depth.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=depth.dtype, device=depth.device),
                            torch.arange(width, dtype=depth.dtype, device=depth.device),
                            indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)]).reshape(1, 3, -1)
    rays = torch.linalg.inv(K.to(depth.dtype)) @ pixels
    points = rays * depth.reshape(n, 1, -1)
    transform = source_from_target.to(depth.dtype)
    moved = transform[:, :3, :3] @ points + transform[:, :3, 3:]
    projected = K.to(depth.dtype) @ moved
    z = projected[:, 2:3]
    uv = projected[:, :2] / z.clamp(min=1e-3)
    u = uv[:, 0].reshape(n, height, width)
    v = uv[:, 1].reshape(n, height, width)
    # Pixel centres at integers: align_corners=True maps 0 and W − 1 to ±1.
    grid = torch.stack([2.0 * u / max(width - 1, 1) - 1.0, 2.0 * v / max(height - 1, 1) - 1.0],
                       dim=-1)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="border",
                           align_corners=True)
    # A pixel's footprint reaches half a pixel past its centre.
    inside = ((u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
              & (z.reshape(n, height, width) > 1e-3))
    return warped, inside[:, None]


# --- Photometric loss -----------------------------------------------------------------------


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM over 3×3 windows (reflection-padded), N×C×H×W, as monodepth2."""
    c1, c2 = 0.01**2, 0.03**2
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    return (numerator / denominator).clamp(-1.0, 1.0)


def photometric_error(pred: torch.Tensor, target: torch.Tensor,
                      alpha: float = SSIM_WEIGHT) -> torch.Tensor:
    """``α (1 − SSIM)/2 + (1 − α) |pred − target|``, averaged over channels: N×1×H×W."""
    l1 = (pred - target).abs().mean(1, keepdim=True)
    structure = ((1.0 - ssim(pred, target)) / 2.0).mean(1, keepdim=True)
    return alpha * structure + (1.0 - alpha) * l1


def smoothness_loss(depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of mean-normalised inverse depth (monodepth2): its gradients,
    down-weighted by ``exp(−|∇ image|)`` where the image has edges."""
    disparity = 1.0 / depth.clamp(min=1e-3)
    disparity = disparity / disparity.mean((2, 3), keepdim=True).clamp(min=1e-6)
    grad_x = (disparity[..., :, :-1] - disparity[..., :, 1:]).abs()
    grad_y = (disparity[..., :-1, :] - disparity[..., 1:, :]).abs()
    image_x = (image[..., :, :-1] - image[..., :, 1:]).abs().mean(1, keepdim=True)
    image_y = (image[..., :-1, :] - image[..., 1:, :]).abs().mean(1, keepdim=True)
    return (grad_x * torch.exp(-image_x)).mean() + (grad_y * torch.exp(-image_y)).mean()


@dataclass(frozen=True)
class PhotometricTerms:
    """The photometric objective: its total, its terms and the share of pixels in the loss."""

    total: torch.Tensor
    reprojection: torch.Tensor
    smoothness: torch.Tensor
    mask_share: float


def photometric_loss(target: torch.Tensor, sources: torch.Tensor, depth: torch.Tensor,
                     K: torch.Tensor, source_from_target: torch.Tensor,  # noqa: N803
                     source_ok: torch.Tensor, smoothness_weight: float = SMOOTHNESS_WEIGHT,
                     automask: bool = True) -> PhotometricTerms:
    """Monodepth2's minimum reprojection loss with auto-masking, plus edge-aware smoothness.

    Args:
        target: N×3×H×W target image in [0, 1].
        sources: N×S×3×H×W source images (e.g. t−1 and t+1).
        depth: N×1×H×W predicted target depth in metres for ``K``.
        K: N×3×3 intrinsics at H×W.
        source_from_target: N×S×4×4 relative poses.
        source_ok: N×S bool; a false source (none in the segment, excluded) is ignored.
        smoothness_weight: the smoothness term's weight.
        automask: drop the pixels that an unwarped source explains at least as well.

    Returns:
        ``PhotometricTerms``; the reprojection term is zero (attached) where no pixel of any
        image has a usable source.
    """
    n, count = sources.shape[:2]
    big = torch.full_like(depth, 1e4)
    reprojection, identity = [], []
    for s in range(count):
        warped, inside = warp_source(sources[:, s], depth, K, source_from_target[:, s])
        ok = source_ok[:, s].view(n, 1, 1, 1)
        error = photometric_error(warped, target)
        reprojection.append(torch.where(inside & ok, error, big))
        if automask:
            identity.append(torch.where(ok, photometric_error(sources[:, s], target), big))
    best = torch.cat(reprojection, 1).min(1, keepdim=True).values
    used = best < big
    if automask:
        # A tie (a static camera, flat areas) counts as static: monodepth2 breaks ties with
        # random noise, which would keep half of a static pair's pixels in the loss.
        still = torch.cat(identity, 1).min(1, keepdim=True).values
        used = used & (best + AUTOMASK_MARGIN < still)
    term = best[used].mean() if used.any() else depth.sum() * 0.0
    smooth = smoothness_loss(depth, target)
    return PhotometricTerms(term + smoothness_weight * smooth, term, smooth,
                            float(used.float().mean()))


# --- The loss of a batch of bag items ------------------------------------------------------


def _zero(like: torch.Tensor) -> torch.Tensor:
    return like.sum() * 0.0


def bag_batch_loss(trainer: Any, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The loss of one micro-batch of ``training.data.adapt`` items (bag frames and engine
    frames together, one forward pass of ``trainer.net``).

    Engine frames: what normal training uses — ``trainer.loss_fn`` (SILog) against the exact
    depth for mono models (the engine's 0 is sky, trained as the far bound), the completion
    loss for fusion models. Bag frames: the occlusion-filtered LiDAR — log-L1 (mono), or the
    completion loss with ``loss.holdout_fraction`` of the input returns withheld and
    supervised with ``loss.holdout_weight`` (fusion) — times ``loss.sparse_weight``, plus
    ``loss.photometric_weight`` × ``photometric_loss`` against t−1 and t+1.
    """
    device = trainer.device
    image, depth, sparse, sources, K, poses, ok, scale, is_bag = (  # noqa: N806
        t.to(device, non_blocking=True) for t in batch)
    model, loss_config = trainer.model, trainer.config.loss
    low, high = model.min_depth_m, model.max_depth_m
    bag, engine = is_bag, ~is_bag
    fusion = trainer.completion
    held = None
    with torch.autocast(device.type, dtype=trainer.amp_dtype, enabled=trainer.amp):
        if fusion:
            given = sparse
            if loss_config.holdout_fraction > 0:
                held = (sparse > 0) & (torch.rand_like(sparse) < loss_config.holdout_fraction)
                given = torch.where(held, torch.zeros_like(sparse), sparse)
            outputs = trainer.net(image, given, aux=True)
            outputs = {k: v.float() for k, v in outputs.items()}
            pred = outputs["depth"]
        else:
            pred = trainer.net(image).float()
    total = _zero(pred)
    if engine.any():
        target = depth[engine]
        if fusion:
            far = target <= 0
            target = torch.where(far, torch.full_like(target, high), target)
            terms = completion_loss({k: v[engine] for k, v in outputs.items()},
                                    target.clamp(low, high), torch.ones_like(far), far,
                                    loss_config.far_weight, loss_config.l2_weight,
                                    loss_config.log_weight, loss_config.initial_weight,
                                    loss_config.confidence_weight, model.confidence_threshold)
            total = total + terms.total
        else:
            # Rendered depth: 0 is sky, trained as the far bound (as the engine's models).
            target = torch.where(target > 0, target, torch.full_like(target, high))
            total = total + trainer.loss_fn(pred[engine], target.clamp(low, high),
                                            torch.ones_like(target, dtype=torch.bool))
    if not bag.any():
        return total
    lidar = depth[bag]
    keep = occlusion_filter(lidar, loss_config.occlusion_radius_px)
    target = torch.where(keep, lidar, torch.ones_like(lidar)).clamp(low, high)
    if fusion:
        terms = completion_loss({k: v[bag] for k, v in outputs.items()}, target, keep, None,
                                loss_config.far_weight, loss_config.l2_weight,
                                loss_config.log_weight, loss_config.initial_weight,
                                loss_config.confidence_weight, model.confidence_threshold)
        sparse_term = terms.total
        if held is not None and loss_config.holdout_weight > 0:
            weight = (held[bag] & keep).to(pred.dtype)
            sparse_term = sparse_term + loss_config.holdout_weight * weighted_depth_loss(
                pred[bag], target, weight, loss_config.l2_weight, loss_config.log_weight)
    else:
        sparse_term = log_l1_loss(pred[bag], target, keep)
    total = total + loss_config.sparse_weight * sparse_term
    if loss_config.photometric_weight > 0 and ok[bag].any():
        # The model's depth is at its training focal length: back to metres for the warp.
        metres = pred[bag] / scale[bag].view(-1, 1, 1, 1)
        photo = photometric_loss(image[bag], sources[bag], metres, K[bag], poses[bag],
                                 ok[bag], loss_config.smoothness_weight)
        total = total + loss_config.photometric_weight * photo.total
    return total


# --- Scan-to-scan pose ----------------------------------------------------------------------


def sparse_to_points(sparse: np.ndarray, K: np.ndarray) -> np.ndarray:  # noqa: N803
    """The returns of a sparse depth image (H×W metres, 0 = none) as camera-frame points
    (M×3 float64)."""
    v, u = np.nonzero(sparse > 0)
    z = sparse[v, u].astype(np.float64)
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1)


def _rigid_fit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rigid transform (4×4) that best maps points ``a`` onto ``b`` (Kabsch)."""
    ca, cb = a.mean(0), b.mean(0)
    u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
    sign = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = cb - rotation @ ca
    return out


def icp(moving: np.ndarray, fixed: np.ndarray, init: np.ndarray | None = None,
        iterations: int = 100, max_distance_m: float = 2.0, trim: float = 0.9,
        tolerance_m: float = 1e-6) -> np.ndarray:
    """Point-to-point ICP: the rigid transform T (4×4) with ``T · moving ≈ fixed``.

    Nearest neighbours come from OpenCV's FLANN k-d tree (scipy is not a dependency); each
    iteration keeps the pairs closer than ``max_distance_m`` and, of those, the ``trim`` share
    with the smallest distances (two scans never sample the same points, and each sees parts
    the other does not), then solves the rigid fit in closed form. Enough for the few
    metres between consecutive frames; it is a local method and needs ``init`` for more.

    Args:
        moving, fixed: M×3 and K×3 points, metres.
        init: starting transform; None: identity.
        iterations: at most this many; stops early when the update moves points less than
            ``tolerance_m``.
    """
    if len(moving) < 3 or len(fixed) < 3:
        raise ValueError(f"ICP needs at least 3 points in each cloud, got {len(moving)} and "
                         f"{len(fixed)}")
    transform = np.eye(4) if init is None else np.asarray(init, np.float64).copy()
    index = cv2.flann_Index(np.ascontiguousarray(fixed, np.float32),
                            {"algorithm": 1, "trees": 4})
    for _ in range(iterations):
        moved = moving @ transform[:3, :3].T + transform[:3, 3]
        nearest, distance2 = index.knnSearch(moved.astype(np.float32), 1, params={"checks": 64})
        nearest, distance = nearest[:, 0], np.sqrt(distance2[:, 0].astype(np.float64))
        close = distance < max_distance_m
        if close.sum() < 3:
            raise ValueError(f"ICP lost the scans: fewer than 3 pairs within "
                             f"{max_distance_m} m")
        limit = np.quantile(distance[close], trim)
        pairs = close & (distance <= limit)
        # Refine against the exact neighbour positions (FLANN works in float32).
        step = _rigid_fit(moved[pairs], fixed[nearest[pairs]])
        transform = step @ transform
        shift = np.abs(moved[pairs] @ step[:3, :3].T + step[:3, 3] - moved[pairs]).max()
        if shift < tolerance_m:
            break
    return transform


def lidar_relative_pose(target_sparse: np.ndarray, source_sparse: np.ndarray,
                        K: np.ndarray,  # noqa: N803
                        max_points: int = 5000, seed: int = 0) -> np.ndarray:
    """``source_from_target`` (4×4) from the two frames' projected LiDAR (H×W metres; ``K``
    of that image): ICP of the target's returns onto the source's. At most ``max_points`` of
    the target's returns are used (a fixed random subset)."""
    moving = sparse_to_points(target_sparse, K)
    fixed = sparse_to_points(source_sparse, K)
    if len(moving) > max_points:
        keep = np.random.default_rng(seed).choice(len(moving), max_points, replace=False)
        moving = moving[keep]
    return icp(moving, fixed)
