"""The ray-casting kernel shared by the camera (``render.py``) and the LiDAR (``lidar.py``):
which box faces can face a sensor, and the depth test of one axis-aligned face over a block of
rays.

A ray is ``o + t · d``; both sensors scale ``d`` so that ``t`` is the depth they record (the
camera: z-depth, ``d`` with unit optical z; the LiDAR: range, unit ``d``). Results are written
in place into a depth buffer (nearest ``t`` so far) and a face-index buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from depth_ros.synthetic.scene import StreetScene

# Faces whose nearest point is further than this are not drawn (fog has swallowed them).
FAR_CULL_M = 400.0


@dataclass(frozen=True, eq=False)
class RayHits:
    """What each pixel's ray hits.

    ``depth`` H×W float32 (metres along the optical axis, inf for sky); ``face`` H×W int32
    (index into the face arrays, −1 for ground or sky); ``dirs`` the three H×W world-frame
    ray direction components; per face: ``face_box``, ``face_axis`` (0/1/2 = x/y/z normal)
    and ``face_sign`` (±1, the outward normal's sign along that axis).
    """

    depth: np.ndarray
    face: np.ndarray
    dirs: tuple[np.ndarray, np.ndarray, np.ndarray]
    face_box: np.ndarray
    face_axis: np.ndarray
    face_sign: np.ndarray


def visible_faces(scene: StreetScene, origin: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Faces whose outer side holds the sensor at ``origin``: (box, axis, sign, plane
    coordinate), one entry per face."""
    lo, hi = scene.box_min, scene.box_max
    boxes, axes, signs, planes = [], [], [], []
    for axis in range(3):
        for sign, bound in ((-1, lo), (1, hi)):
            idx = np.flatnonzero(sign * (origin[axis] - bound[:, axis]) > 0)
            boxes.append(idx)
            axes.append(np.full(len(idx), axis, np.int8))
            signs.append(np.full(len(idx), sign, np.int8))
            planes.append(bound[idx, axis])
    return (np.concatenate(boxes), np.concatenate(axes), np.concatenate(signs),
            np.concatenate(planes))


def intersect_face(depth: np.ndarray, face: np.ndarray, dirs: tuple[np.ndarray, ...],
                   inv: list[np.ndarray], o: np.ndarray, rect: Sequence[int],
                   near: float, a: int, plane: float, lo: np.ndarray, hi: np.ndarray,
                   index: int) -> None:
    """Depth-test one axis-aligned face (normal axis ``a`` at ``plane``, bounds ``lo``/``hi``)
    on the rays of ``rect`` (columns u0:u1, rows v0:v1 of the ray grid), in place: where it is
    hit nearer than ``depth``, ``depth`` takes the hit and ``face`` takes ``index``. ``inv``
    holds the reciprocal direction components; ``near`` is the face's nearest depth."""
    u0, u1, v0, v1 = rect
    region = (slice(v0, v1), slice(u0, u1))
    depth_region = depth[region]
    if depth_region.max() < near:  # already hidden behind nearer surfaces
        return
    t = inv[a][region] * np.float32(plane - o[a])
    hit = t > 0
    hit &= t < depth_region
    # Compare the in-plane offsets from the camera with the face's bounds, shifted once.
    for ax in ((a + 1) % 3, (a + 2) % 3):
        p = dirs[ax][region] * t
        hit &= p >= np.float32(lo[ax] - o[ax])
        hit &= p <= np.float32(hi[ax] - o[ax])
    np.copyto(depth_region, t, where=hit)
    np.copyto(face[region], np.int32(index), where=hit)
