"""Ray casting of a ``StreetScene``: exact z-depth and which surface every pixel sees, then
shading (``materials.py``) and sensor effects.

Every pixel's ray is ``o + t · R · ((u − cx)/fx, (v − cy)/fy, 1)``; because the camera-frame
direction has z = 1, the ray parameter ``t`` of a hit *is* its depth along the optical axis.
The ground is one analytic ray–plane intersection over the whole image. Boxes are split into
their camera-facing axis-aligned faces; each face is projected (clipped against the near
plane) to a screen rectangle and tested only on the pixels of that rectangle, nearest faces
first, skipping faces whose rectangle is already entirely covered by something nearer.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from depth_ros.geometry import PinholeCamera, normalised_pixel_coordinates
from depth_ros.synthetic import materials
from depth_ros.synthetic.pose import CameraPose
from depth_ros.synthetic.raycast import FAR_CULL_M, RayHits, intersect_face, visible_faces
from depth_ros.synthetic.scene import StreetScene

MAX_DEPTH_M = 200.0
NEAR_M = 0.05
SENSOR_NOISE_STD = 1.6 / 255.0
# Light lost in the image corner farthest from the principal point, relative to the centre:
# one lens per scene (so per drive), drawn from this range; a mild, KITTI-like darkening.
VIGNETTING_RANGE = (0.10, 0.25)
# Auto-exposure aims the frame's mean luminance (after vignetting) at this and corrects by
# (target / mean) ** AE_STRENGTH within AE_GAIN_RANGE: a partial correction, so a street in
# shadow still comes out darker than a sunlit one, as with a real camera.
AE_TARGET_LUMINANCE = 0.35
AE_STRENGTH = 0.5
AE_GAIN_RANGE = (0.8, 1.25)
# Rec. 709 luma weights of linear RGB.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
_STREAM_SENSOR = 4
_STREAM_LENS = 10

# Face corners in (normal axis, first in-plane axis, second in-plane axis) order.
_QUAD = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])


def world_ray_directions(pose: CameraPose, camera: PinholeCamera
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-frame ray directions (x, y, z components, H×W float32) with unit optical z."""
    x, y = normalised_pixel_coordinates(camera)
    r = pose.rotation.astype(np.float32)
    # Each component is affine in the normalised image coordinates: three broadcasts.
    dx, dy, dz = ((r[a, 0] * x + r[a, 1] * y) + r[a, 2] for a in range(3))
    return dx, dy, dz


def _face_rectangles(scene: StreetScene, pose: CameraPose, camera: PinholeCamera,
                     box: np.ndarray, axis: np.ndarray, plane: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Conservative pixel rectangles (u0, u1, v0, v1; exclusive ends) and nearest depths."""
    n = len(box)
    corners = np.empty((n, 4, 3))
    a1, a2 = (axis + 1) % 3, (axis + 2) % 3
    rows, cols = np.arange(n)[:, None], np.arange(4)[None, :]
    corners[rows, cols, axis[:, None]] = plane[:, None]
    bounds = np.stack([scene.box_min[box], scene.box_max[box]], axis=1)  # n×2×3
    corners[rows, cols, a1[:, None]] = bounds[rows, _QUAD[None, :, 0], a1[:, None]]
    corners[rows, cols, a2[:, None]] = bounds[rows, _QUAD[None, :, 1], a2[:, None]]
    cam = pose.world_to_camera(corners.reshape(-1, 3)).reshape(n, 4, 3)
    # Clip each quad against the near plane: its clipped outline's vertices are the corners in
    # front plus the points where edges cross the plane.
    nxt = np.roll(cam, -1, axis=1)
    z0, z1 = cam[..., 2], nxt[..., 2]
    crosses = (z0 >= NEAR_M) != (z1 >= NEAR_M)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(crosses, (NEAR_M - z0) / (z1 - z0), 0.0)
    points = np.concatenate([cam, cam + s[..., None] * (nxt - cam)], axis=1)
    valid = np.concatenate([z0 >= NEAR_M, crosses], axis=1)
    z = np.where(valid, points[..., 2], 1.0)
    u = camera.fx * points[..., 0] / z + camera.cx
    v = camera.fy * points[..., 1] / z + camera.cy
    inf = np.inf
    rect = np.stack([
        np.floor(np.where(valid, u, inf).min(axis=1) - 1e-3),
        np.floor(np.where(valid, u, -inf).max(axis=1) + 1e-3) + 1,
        np.floor(np.where(valid, v, inf).min(axis=1) - 1e-3),
        np.floor(np.where(valid, v, -inf).max(axis=1) + 1e-3) + 1,
    ], axis=1)
    near = np.where(valid, points[..., 2], inf).min(axis=1)
    with np.errstate(invalid="ignore"):
        rect = np.nan_to_num(rect, nan=0.0, posinf=1e9, neginf=-1e9)
    limits = np.array([camera.width, camera.width, camera.height, camera.height])
    rect = np.clip(rect, 0, limits).astype(np.int64)
    return rect, near


def cast_rays(scene: StreetScene, pose: CameraPose, camera: PinholeCamera) -> RayHits:
    """Nearest hit of every pixel's ray: ground plane, box faces or sky."""
    dirs = world_ray_directions(pose, camera)
    o = pose.position
    with np.errstate(divide="ignore"):
        inv = [np.float32(1.0) / d for d in dirs]
    depth = np.full((camera.height, camera.width), np.inf, dtype=np.float32)
    if o[2] > 0:
        ground_t = inv[2] * np.float32(-o[2])
        np.copyto(depth, ground_t, where=ground_t > 0)
    face = np.full(depth.shape, -1, dtype=np.int32)

    box, axis, sign, plane = visible_faces(scene, o)
    rect, near = _face_rectangles(scene, pose, camera, box, axis, plane)
    keep = np.flatnonzero((rect[:, 0] < rect[:, 1]) & (rect[:, 2] < rect[:, 3])
                          & (near < FAR_CULL_M))
    keep = keep[np.argsort(near[keep], kind="stable")]
    box, axis, sign, plane, rect, near = (box[keep], axis[keep], sign[keep], plane[keep],
                                          rect[keep], near[keep])
    lo, hi = scene.box_min, scene.box_max
    with np.errstate(invalid="ignore"):  # 0 · inf for rays exactly parallel to a face: no hit
        for i in range(len(box)):
            intersect_face(depth, face, dirs, inv, o, rect[i], near[i], axis[i],
                            plane[i], lo[box[i]], hi[box[i]], i)
    return RayHits(depth, face, dirs, box, axis, sign)


def render_frame(scene: StreetScene, pose: CameraPose, camera: PinholeCamera, *,
                 noise_seed: int = 0, max_depth_m: float = MAX_DEPTH_M,
                 cast_shadows: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame: (RGB uint8 H×W×3, depth float32 H×W metres).

    Depth is the exact z-depth along the optical axis; NaN where the ray sees sky or where the
    surface is further than ``max_depth_m`` (default 200 m; KITTI's PNGs hold < 256 m).
    ``noise_seed`` selects the sensor noise so that a sequence's frames differ in noise but
    every run of it is identical. ``cast_shadows=False`` leaves out the boxes' shadows (the
    depth is the same either way).
    """
    hits = cast_rays(scene, pose, camera)
    linear = materials.shade(scene, pose, camera, hits, cast_shadows)
    rng = np.random.default_rng([scene.seed, _STREAM_SENSOR, noise_seed])
    rgb = _sensor(linear, rng, vignetting(camera, corner_falloff_of(scene)))
    depth = hits.depth.copy()
    depth[~(depth <= max_depth_m)] = np.nan
    return rgb, depth


def corner_falloff_of(scene: StreetScene) -> float:
    """The fraction of light the scene's lens loses in the farthest image corner."""
    return float(np.random.default_rng([scene.seed, _STREAM_LENS]).uniform(*VIGNETTING_RANGE))


def vignetting(camera: PinholeCamera, corner_falloff: float) -> np.ndarray:
    """Relative illumination (H×W float32, 1 at the principal point) of a lens that loses
    ``corner_falloff`` of the light at the pixel farthest from the principal point.

    The shape is the cos⁴ law's, (1 + (r/f)²)⁻², with an effective f that gives the corner
    that loss: the bare law at KITTI's field angle would darken the corners by ~70 %, which
    real lenses largely design out. Read-only and cached per camera.
    """
    if not 0 <= corner_falloff < 1:
        raise ValueError(f"corner_falloff must be in [0, 1), got {corner_falloff}")
    return _vignetting(float(camera.cx), float(camera.cy), int(camera.width),
                       int(camera.height), float(corner_falloff))


@functools.lru_cache(maxsize=8)
def _vignetting(cx: float, cy: float, width: int, height: int, corner_falloff: float
                ) -> np.ndarray:
    du2 = (np.arange(width) - cx) ** 2
    dv2 = (np.arange(height) - cy) ** 2
    corner_r2 = max(du2[0], du2[-1]) + max(dv2[0], dv2[-1])
    k = (1 - corner_falloff) ** -0.5 - 1
    out = ((1 + k * (dv2[:, None] + du2[None, :]) / corner_r2) ** -2).astype(np.float32)
    out.setflags(write=False)
    return out


def auto_exposure_gain(linear: np.ndarray) -> float:
    """The auto-exposure's gain for a linear RGB frame (H×W×3): metered on every fourth pixel
    each way, which is plenty for a mean, and quantised like a camera's exposure steps."""
    luminance = float((linear[::4, ::4] @ _LUMA).mean())
    gain = (AE_TARGET_LUMINANCE / max(luminance, 1e-6)) ** AE_STRENGTH
    return float(np.round(np.clip(gain, *AE_GAIN_RANGE) * 256) / 256)


def _sensor(linear: np.ndarray, rng: np.random.Generator, relative_illumination: np.ndarray
            ) -> np.ndarray:
    """Optics blur and vignetting, auto-exposure with jitter, read noise; linear RGB in
    [0, 1] → uint8."""
    image = cv2.GaussianBlur(linear, (3, 3), 0.55)
    # Vignetting acts on the light reaching the sensor: before exposure and noise.
    image *= relative_illumination[..., None]
    gain = np.float32(255.0 * rng.uniform(0.95, 1.05) * auto_exposure_gain(image))
    image *= gain
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(
        SENSOR_NOISE_STD * 255.0)
    image += np.float32(0.5)
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8)
