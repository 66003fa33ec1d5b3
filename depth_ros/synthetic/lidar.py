"""A spinning 64-beam LiDAR (Velodyne HDL-64E-like, as on KITTI's car) ray-cast in a
``StreetScene`` from its own mount, so parallax between it and the camera is real.

Beams: the upper block's 32 lasers from +2° down at 1/3° steps, the lower block's 32 from
−8.83° to −24.8° (the HDL-64E's quoted field of view; its datasheet's 1/2° lower spacing would
end at −24.33°, so the spacing is stretched to 0.515°). Azimuth: 4000 steps of 0.09° per
revolution by default (at 10 Hz the real sensor manages about half that: ~120k points, which
``azimuth_decimation=2`` matches); ``azimuth_decimation`` keeps every k-th. A sweep is cast from
one pose, or from one pose per azimuth sector to reproduce the motion skew of a moving,
uncompensated scan (``cast_lidar``).

Every ray is a column of a beam × azimuth grid, cast with the camera's face-by-face scheme
(``raycast.intersect_face``): each box face is bounded by a conservative block of beams and
azimuth columns, and only those rays are tested. Returns are lost on dark or grazing surfaces
(too little light comes back) and beyond ``max_range_m``; ranges get Gaussian noise.
Reflectance is the surface albedo (``materials.surface_albedo``) times the incidence cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_ros.synthetic import materials
from depth_ros.synthetic.raycast import FAR_CULL_M, intersect_face, visible_faces
from depth_ros.synthetic.scene import StreetScene

_STREAM_LIDAR = 6
_TWO_PI = 2 * np.pi


def hdl64_elevations_deg() -> np.ndarray:
    """The 64 beam elevations (degrees, descending from +2° to −24.8°)."""
    upper = 2.0 - np.arange(32) / 3.0
    lower = np.linspace(-8.83, -24.8, 32)
    return np.concatenate([upper, lower])


@dataclass(frozen=True)
class LidarModel:
    """Beam pattern and sensor behaviour of a spinning LiDAR."""

    elevations_deg: tuple[float, ...] = tuple(float(e) for e in hdl64_elevations_deg())
    azimuth_steps: int = 4000
    azimuth_decimation: int = 1
    max_range_m: float = 120.0
    min_range_m: float = 0.9
    range_noise_m: float = 0.02
    beam_divergence_rad: float = 2e-3
    # A return needs reflectance / max(range / reference, 1)² above the threshold; between
    # threshold and threshold + ramp it is detected with rising probability.
    detection_threshold: float = 0.01
    detection_ramp: float = 0.02
    detection_reference_m: float = 30.0

    def __post_init__(self) -> None:
        # Beam blocks are found by binary search over the elevations (see _face_blocks).
        if len(self.elevations_deg) < 1 or np.any(np.diff(self.elevations_deg) >= 0):
            raise ValueError("elevations_deg must be non-empty and strictly descending")
        if self.azimuth_steps < 8 or self.azimuth_decimation < 1:
            raise ValueError("azimuth_steps must be ≥ 8 and azimuth_decimation ≥ 1")
        if self.azimuth_steps % self.azimuth_decimation:
            raise ValueError(f"azimuth_decimation {self.azimuth_decimation} must divide "
                             f"azimuth_steps {self.azimuth_steps}")

    @property
    def num_columns(self) -> int:
        """Azimuth columns actually cast."""
        return self.azimuth_steps // self.azimuth_decimation

    def azimuths_rad(self) -> np.ndarray:
        """Column azimuths (LiDAR frame, 0 = forward, counter-clockwise positive) in firing
        order: the head spins clockwise seen from above, starting and ending behind the car."""
        n = self.num_columns
        return np.pi - (np.arange(n) + 0.5) * (_TWO_PI / n)

    def unit_directions(self) -> np.ndarray:
        """Ray directions in the LiDAR frame, beams × columns × 3."""
        el = np.radians(np.asarray(self.elevations_deg))[:, None]
        az = self.azimuths_rad()[None, :]
        return np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                                            np.sin(el)), axis=-1)


@dataclass(frozen=True, eq=False)
class LidarScan:
    """One sweep: ``points`` N×4 float32 (x, y, z, reflectance; LiDAR frame, x forward, y
    left, z up), and the beam and column of each point."""

    points: np.ndarray
    beam: np.ndarray
    column: np.ndarray


def _face_blocks(scene: StreetScene, box: np.ndarray, axis: np.ndarray, plane: np.ndarray,
                 velo_to_world: np.ndarray, model: LidarModel
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conservative beam ranges (b0, b1), column ranges (c0, c1; c1 may exceed the column
    count, meaning wrap-around) and nearest distances of faces seen from the LiDAR."""
    n = len(box)
    lo = scene.box_min[box].copy()
    hi = scene.box_max[box].copy()
    rows = np.arange(n)
    lo[rows, axis] = plane
    hi[rows, axis] = plane
    origin = velo_to_world[:3, 3]
    near = np.linalg.norm(np.clip(origin, lo, hi) - origin, axis=1)
    # The face's 8 (degenerate) box corners in the LiDAR frame, and their bounding box there:
    # it contains the face, and elevation / azimuth bounds of a box are easy to make safe.
    corners = np.stack([np.where(np.array([i & 1, i & 2, i & 4], bool), hi, lo)
                        for i in range(8)], axis=1)
    local = (corners - origin) @ velo_to_world[:3, :3]
    bmin, bmax = local.min(axis=1), local.max(axis=1)
    dx = np.maximum(np.maximum(bmin[:, 0], -bmax[:, 0]), 0)
    dy = np.maximum(np.maximum(bmin[:, 1], -bmax[:, 1]), 0)
    r_min = np.hypot(dx, dy)
    r_max = np.hypot(np.maximum(np.abs(bmin[:, 0]), np.abs(bmax[:, 0])),
                     np.maximum(np.abs(bmin[:, 1]), np.abs(bmax[:, 1])))
    with np.errstate(divide="ignore", invalid="ignore"):
        el_hi = np.arctan2(bmax[:, 2], np.where(bmax[:, 2] > 0, r_min, r_max))
        el_lo = np.arctan2(bmin[:, 2], np.where(bmin[:, 2] > 0, r_max, r_min))
    elevations = np.radians(np.asarray(model.elevations_deg))
    pad = np.radians(0.05)
    # Beams are in descending elevation: those inside [el_lo, el_hi] form one block.
    ascending = elevations[::-1]
    m = len(elevations)
    b0 = m - np.searchsorted(ascending, el_hi + pad, side="right")
    b1 = m - np.searchsorted(ascending, el_lo - pad, side="left")

    # Azimuth span of the bounding box's xy rectangle, from its corners unless it surrounds
    # the LiDAR's axis (then every column).
    cx = np.stack([bmin[:, 0], bmax[:, 0], bmax[:, 0], bmin[:, 0]], axis=1)
    cy = np.stack([bmin[:, 1], bmin[:, 1], bmax[:, 1], bmax[:, 1]], axis=1)
    centre = np.arctan2(cy.mean(axis=1), cx.mean(axis=1))
    rel = np.mod(np.arctan2(cy, cx) - centre[:, None] + np.pi, _TWO_PI) - np.pi
    az_lo, az_hi = centre + rel.min(axis=1), centre + rel.max(axis=1)
    surrounds = (dx == 0) & (dy == 0)
    ncol = model.num_columns
    step = _TWO_PI / ncol
    # Column c has azimuth pi − (c + 0.5)·step: the highest azimuth gives the first column.
    c0 = np.floor((np.pi - az_hi) / step - 0.5).astype(np.int64) - 1
    c1 = np.ceil((np.pi - az_lo) / step - 0.5).astype(np.int64) + 2
    shift = np.floor_divide(c0, ncol) * ncol
    c0, c1 = c0 - shift, c1 - shift
    full = surrounds | (c1 - c0 >= ncol)
    c0 = np.where(full, 0, c0)
    c1 = np.where(full, ncol, c1)
    return np.stack([b0, b1], axis=1), np.stack([c0, c1], axis=1), near


def _sweep_sector(scene: StreetScene, velo_to_world: np.ndarray, model: LidarModel,
                  local_dirs: np.ndarray, first: int, stop: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cast columns ``first:stop`` from one pose: (beam, column, range, reflectance) of every
    ray that hits something between the minimum and maximum range."""
    local = local_dirs[:, first:stop]
    rot = np.asarray(velo_to_world, np.float64)[:3, :3]
    origin = np.asarray(velo_to_world, np.float64)[:3, 3]
    world = local @ rot.T
    dirs = tuple(np.ascontiguousarray(world[..., a], dtype=np.float32) for a in range(3))
    with np.errstate(divide="ignore"):
        inv = [np.float32(1.0) / d for d in dirs]
    shape = dirs[0].shape
    rng_limit = np.float32(model.max_range_m)
    depth = np.full(shape, rng_limit, dtype=np.float32)
    if origin[2] > 0:
        ground_t = inv[2] * np.float32(-origin[2])
        np.copyto(depth, ground_t, where=(ground_t > 0) & (ground_t < rng_limit))
    face = np.full(shape, -1, dtype=np.int32)

    box, axis, sign, plane = visible_faces(scene, origin)
    blocks, cols, near = _face_blocks(scene, box, axis, plane, velo_to_world, model)
    keep = np.flatnonzero((blocks[:, 0] < blocks[:, 1]) & (near < min(FAR_CULL_M, rng_limit)))
    keep = keep[np.argsort(near[keep], kind="stable")]
    ncol = model.num_columns
    lo, hi = scene.box_min, scene.box_max
    with np.errstate(invalid="ignore"):
        for order, i in enumerate(keep):
            b0, b1 = blocks[i]
            c0, c1 = cols[i]
            spans = [(c0, min(c1, ncol))] + ([(0, c1 - ncol)] if c1 > ncol else [])
            for s0, s1 in spans:
                # The face's columns that this sector fires, in the sector's own numbering.
                s0, s1 = max(s0, first) - first, min(s1, stop) - first
                if s0 < s1:
                    intersect_face(depth, face, dirs, inv, origin, (s0, s1, b0, b1),
                                    near[i], axis[i], plane[i], lo[box[i]], hi[box[i]], order)
    hit = depth < rng_limit
    hit &= depth > np.float32(model.min_range_m)
    beam, column = np.nonzero(hit)
    t = depth[beam, column].astype(np.float64)
    face_hit = face[beam, column]
    d_world = world[beam, column]
    points_world = origin + t[:, None] * d_world

    face_axis = axis[keep].astype(np.intp)
    normal_axis = np.full(len(t), 2, np.intp)  # the ground's normal is z
    on_face = face_hit >= 0
    normal_axis[on_face] = face_axis[face_hit[on_face]]
    cosine = np.abs(d_world[np.arange(len(t)), normal_axis])
    footprint = t * model.beam_divergence_rad / np.maximum(cosine, 0.05)
    albedo = materials.surface_albedo(scene, points_world, face_hit, box[keep], face_axis,
                                      sign[keep], footprint)
    return beam, column + first, t, albedo.mean(axis=1) * cosine


def cast_lidar(scene: StreetScene, velo_to_world: np.ndarray, model: LidarModel | None = None,
               *, noise_seed: int = 0, sector_times_s: np.ndarray | None = None) -> LidarScan:
    """Sweep the LiDAR once through ``scene``.

    ``velo_to_world`` is the sensor's 4×4 pose, or K×4×4 poses for K equal azimuth sectors in
    firing order: then each sector is cast from its own pose and its points are written in
    that pose's frame, uncompensated, as a moving velodyne records them (KITTI's raw scans).
    ``sector_times_s`` (K, optional) gives each sector's scene time: it is cast through
    ``scene.at_time(t)``, so moving cars are skewed too. Without it every sector sees
    ``scene`` as it is.
    """
    model = model or LidarModel()
    poses = np.asarray(velo_to_world, np.float64).reshape(-1, 4, 4)
    ncol = model.num_columns
    if len(poses) > ncol:
        raise ValueError(f"{len(poses)} sector poses for only {ncol} columns")
    if sector_times_s is None:
        scenes = [scene] * len(poses)
    else:
        times = np.asarray(sector_times_s, np.float64).reshape(-1)
        if len(times) != len(poses):
            raise ValueError(f"{len(times)} sector times for {len(poses)} sector poses")
        scenes = [scene.at_time(float(t)) for t in times]
    local_dirs = model.unit_directions()
    bounds = np.linspace(0, ncol, len(poses) + 1).round().astype(int)
    parts = [_sweep_sector(sector_scene, pose, model, local_dirs, int(first), int(stop))
             for sector_scene, pose, first, stop
             in zip(scenes, poses, bounds[:-1], bounds[1:], strict=True)]
    beam, column, t, reflectance = (np.concatenate(x) for x in zip(*parts, strict=True))
    # Firing order (column by column, each column's beams top to bottom) before the random
    # draws, so they do not depend on how the sweep was split.
    order = np.lexsort((beam, column))
    beam, column, t, reflectance = beam[order], column[order], t[order], reflectance[order]
    rng = np.random.default_rng([scene.seed, _STREAM_LIDAR, noise_seed])
    signal = reflectance / np.maximum(t / model.detection_reference_m, 1.0) ** 2
    p_return = np.clip((signal - model.detection_threshold) / model.detection_ramp, 0, 1)
    returned = rng.random(len(t)) < p_return
    noisy = t + rng.standard_normal(len(t)) * model.range_noise_m
    returned &= noisy <= model.max_range_m
    points = np.empty((int(returned.sum()), 4), np.float32)
    points[:, :3] = local_dirs[beam[returned], column[returned]] * noisy[returned, None]
    points[:, 3] = np.clip(reflectance[returned], 0, 1)
    return LidarScan(points, beam[returned].astype(np.int16),
                     column[returned].astype(np.int32))
