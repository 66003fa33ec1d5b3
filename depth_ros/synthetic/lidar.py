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

``LidarModel()`` is an ideal sensor (the ray-cast geometry, noise and the light budget only);
``LidarModel.kitti()`` adds what makes KITTI's real scans look as they do (tuned against
kitti_dev with ``bench/lidar_realism.py``, see docs/kitti_dev.md):

- *per-beam calibration error*: each beam really fires a little off its nominal elevation and
  azimuth (a fixed offset per drive, drawn from the scene seed), but its points are written
  along the nominal direction, so near a depth edge a range from one side lands on the other;
- *mixed-pixel returns*: a beam footprint straddling a depth edge (the next column of the same
  beam is farther) returns, with some probability, the far range or a range in between: the
  near object's pixels get background depths;
- *see-through*: beams pass car windows (the cabin's side, front and back faces) and find the
  gaps in tree crowns, hedges and fences, returning what is behind (a second sweep without
  those boxes) while the camera sees the glass or the leaves: real KITTI's most common
  background-through-foreground returns;
- *range dropout*: real scans lose a growing share of their returns with range (dark, grazing
  and glossy surfaces at distance), beyond what the light budget alone removes;
- *uneven beam spacing* (``kitti_elevations_deg``), as a real sensor's calibration table has.

The see-through effect casts a second sweep (without the see-through boxes), so a
``LidarModel.kitti()`` sweep costs about twice the ideal one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from depth_ros.synthetic import materials
from depth_ros.synthetic.raycast import FAR_CULL_M, intersect_face, visible_faces
from depth_ros.synthetic.scene import BoxKind, StreetScene

_STREAM_LIDAR = 6
_STREAM_CALIBRATION = 8
_STREAM_MIXED = 10
_STREAM_POROUS = 12
# Surfaces with gaps a beam can find (see LidarModel.foliage_gap_prob).
_GAPPY = (BoxKind.FOLIAGE, BoxKind.FENCE)
_TWO_PI = 2 * np.pi


def hdl64_elevations_deg() -> np.ndarray:
    """The 64 beam elevations (degrees, descending from +2° to −24.8°)."""
    upper = 2.0 - np.arange(32) / 3.0
    lower = np.linspace(-8.83, -24.8, 32)
    return np.concatenate([upper, lower])


def kitti_elevations_deg(jitter_deg: float = 0.1) -> np.ndarray:
    """``hdl64_elevations_deg`` with each beam off its even spacing by a fixed amount
    (σ ``jitter_deg``, clipped at 40 % of the spacing; the same for every drive): a real
    HDL-64E's lasers are not evenly spaced (its calibration table lists each one's angle),
    and its rows in the image are uneven as kitti_dev's are."""
    nominal = hdl64_elevations_deg()
    gaps = -np.diff(nominal)
    spacing = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
    offsets = np.random.default_rng(64).standard_normal(len(nominal)) * jitter_deg
    return nominal + np.clip(offsets, -0.4 * spacing, 0.4 * spacing)


KITTI_ELEVATIONS_DEG = tuple(float(e) for e in kitti_elevations_deg())


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
    # Per-beam calibration error (standard deviations, degrees; offsets clipped at 2σ).
    calibration_elevation_deg: float = 0.0
    calibration_azimuth_deg: float = 0.0
    # Probability that a beam whose next column (same beam) is farther by more than
    # ``mixed_edge_ratio`` returns a mixed range: the far one with probability
    # ``mixed_far_share``, else one uniformly in between.
    mixed_pixel_prob: float = 0.0
    mixed_far_share: float = 0.5
    mixed_edge_ratio: float = 1.1
    # Share of beams hitting a tree crown, hedge or fence that find a gap, and of beams
    # hitting a car cabin's
    # side, front or back (its windows) that pass through the glass.
    foliage_gap_prob: float = 0.0
    glass_pass_prob: float = 0.0
    # Extra dropout: a return is kept with probability 1 − max·t² / (t² + half²), t the
    # range: near returns are barely touched, far ones lose up to ``range_dropout_max``.
    range_dropout_max: float = 0.0
    range_dropout_half_m: float = 30.0

    @classmethod
    def kitti(cls, azimuth_decimation: int = 2, **overrides: float) -> LidarModel:
        """The HDL-64E as KITTI's real scans show it (tuned against kitti_dev: share of
        background-through-foreground returns and density by range; see the module
        docstring). Decimation 2 gives KITTI's ~120k points a sweep. ``overrides`` replace
        single fields (for tuning and tests)."""
        fields = dict(elevations_deg=KITTI_ELEVATIONS_DEG, azimuth_decimation=azimuth_decimation,
                      calibration_elevation_deg=0.05, calibration_azimuth_deg=0.4,
                      mixed_pixel_prob=0.5, mixed_far_share=0.5, foliage_gap_prob=0.5,
                      glass_pass_prob=0.5, range_dropout_max=0.6, range_dropout_half_m=45.0)
        fields.update(overrides)
        return cls(**fields)

    def __post_init__(self) -> None:
        # Beam blocks are found by binary search over the elevations (see _face_blocks).
        if len(self.elevations_deg) < 1 or np.any(np.diff(self.elevations_deg) >= 0):
            raise ValueError("elevations_deg must be non-empty and strictly descending")
        if self.azimuth_steps < 8 or self.azimuth_decimation < 1:
            raise ValueError("azimuth_steps must be ≥ 8 and azimuth_decimation ≥ 1")
        if self.azimuth_steps % self.azimuth_decimation:
            raise ValueError(f"azimuth_decimation {self.azimuth_decimation} must divide "
                             f"azimuth_steps {self.azimuth_steps}")
        probabilities = (self.mixed_pixel_prob, self.mixed_far_share, self.range_dropout_max,
                         self.foliage_gap_prob, self.glass_pass_prob)
        if not all(0.0 <= p <= 1.0 for p in probabilities):
            raise ValueError("mixed_pixel_prob, mixed_far_share, range_dropout_max, "
                             "foliage_gap_prob and glass_pass_prob must be in [0, 1]")
        if (self.calibration_elevation_deg < 0 or self.calibration_azimuth_deg < 0
                or self.mixed_edge_ratio < 1 or self.range_dropout_half_m <= 0):
            raise ValueError("calibration errors must be ≥ 0, mixed_edge_ratio ≥ 1 and "
                             "range_dropout_half_m > 0")

    @property
    def num_columns(self) -> int:
        """Azimuth columns actually cast."""
        return self.azimuth_steps // self.azimuth_decimation

    def azimuths_rad(self) -> np.ndarray:
        """Column azimuths (LiDAR frame, 0 = forward, counter-clockwise positive) in firing
        order: the head spins clockwise seen from above, starting and ending behind the car."""
        n = self.num_columns
        return np.pi - (np.arange(n) + 0.5) * (_TWO_PI / n)

    def unit_directions(self, azimuth_offsets_rad: np.ndarray | None = None) -> np.ndarray:
        """Ray directions in the LiDAR frame, beams × columns × 3 (each beam's azimuths
        shifted by ``azimuth_offsets_rad`` where given)."""
        el = np.radians(np.asarray(self.elevations_deg))[:, None]
        az = self.azimuths_rad()[None, :]
        if azimuth_offsets_rad is not None:
            az = az + np.asarray(azimuth_offsets_rad, np.float64)[:, None]
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
                 velo_to_world: np.ndarray, model: LidarModel, azimuth_pad_rad: float = 0.0
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
    # Beams fired off their nominal azimuth (calibration error) widen the span.
    az_lo = centre + rel.min(axis=1) - azimuth_pad_rad
    az_hi = centre + rel.max(axis=1) + azimuth_pad_rad
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
                  local_dirs: np.ndarray, first: int, stop: int, azimuth_pad_rad: float = 0.0
                  ) -> tuple[np.ndarray, ...]:
    """Cast columns ``first:stop`` from one pose: (beam, column, range, reflectance, box kind
    or −1 for the ground, vertical face?) of every ray that hits something between the
    minimum and maximum range."""
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
    blocks, cols, near = _face_blocks(scene, box, axis, plane, velo_to_world, model,
                                      azimuth_pad_rad)
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
    # What was hit: the box kind (−1 for the ground) and whether the face is vertical.
    kind = np.full(len(t), -1, np.int16)
    kind[on_face] = scene.box_kind[box[keep][face_hit[on_face]]]
    vertical = normal_axis != 2
    return beam, column + first, t, albedo.mean(axis=1) * cosine, kind, vertical


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
    cast_model, azimuth_offsets = _calibration_error(model, scene.seed)
    cast_dirs = (local_dirs if cast_model is model
                 else cast_model.unit_directions(azimuth_offsets))
    pad = float(np.abs(azimuth_offsets).max())
    bounds = np.linspace(0, ncol, len(poses) + 1).round().astype(int)

    def sweep(sector_scenes: list[StreetScene]) -> tuple[np.ndarray, ...]:
        parts = [_sweep_sector(sector_scene, pose, cast_model, cast_dirs, int(first),
                               int(stop), pad)
                 for sector_scene, pose, first, stop
                 in zip(sector_scenes, poses, bounds[:-1], bounds[1:], strict=True)]
        out = [np.concatenate(x) for x in zip(*parts, strict=True)]
        # Firing order (column by column, each column's beams top to bottom) before the
        # random draws, so they do not depend on how the sweep was split.
        order = np.lexsort((out[0], out[1]))
        return tuple(x[order] for x in out)

    beam, column, t, reflectance, kind, vertical = sweep(scenes)
    keep = np.ones(len(t), bool)
    porous = _porous(kind, vertical, model)
    if porous.any():
        # Beams that find a gap in a tree crown or pass through a car window return what is
        # behind (a second sweep without those boxes), or nothing if that is open sky.
        gaps = np.random.default_rng([scene.seed, _STREAM_POROUS, noise_seed])
        through = porous & (gaps.random(len(t)) < porous.astype(np.float64)
                            * np.where(np.isin(kind, _GAPPY), model.foliage_gap_prob,
                                       model.glass_pass_prob))
        if through.any():
            b2, c2, t2, r2, _, _ = sweep([_without_porous(sc, model) for sc in scenes])
            grid_t = np.full((len(model.elevations_deg), ncol), np.nan)
            grid_r = np.zeros_like(grid_t)
            grid_t[b2, c2], grid_r[b2, c2] = t2, r2
            behind_t = grid_t[beam[through], column[through]]
            t = t.copy()
            reflectance = reflectance.copy()
            t[through] = np.nan_to_num(behind_t, nan=0.0)
            reflectance[through] = grid_r[beam[through], column[through]]
            keep[through] = np.isfinite(behind_t)
    if model.mixed_pixel_prob > 0 or model.range_dropout_max > 0:
        # Own stream: the ideal sensor's draws below stay what they were.
        extra = np.random.default_rng([scene.seed, _STREAM_MIXED, noise_seed])
        t = _mixed_pixels(t, beam, column, model, extra, keep)
        keep &= extra.random(len(t)) >= (model.range_dropout_max * t ** 2
                                        / (t ** 2 + model.range_dropout_half_m ** 2))
    rng = np.random.default_rng([scene.seed, _STREAM_LIDAR, noise_seed])
    signal = reflectance / np.maximum(t / model.detection_reference_m, 1.0) ** 2
    p_return = np.clip((signal - model.detection_threshold) / model.detection_ramp, 0, 1)
    returned = (rng.random(len(t)) < p_return) & keep
    noisy = t + rng.standard_normal(len(t)) * model.range_noise_m
    returned &= noisy <= model.max_range_m
    points = np.empty((int(returned.sum()), 4), np.float32)
    points[:, :3] = local_dirs[beam[returned], column[returned]] * noisy[returned, None]
    points[:, 3] = np.clip(reflectance[returned], 0, 1)
    return LidarScan(points, beam[returned].astype(np.int16),
                     column[returned].astype(np.int32))


def _calibration_error(model: LidarModel, seed: int) -> tuple[LidarModel, np.ndarray]:
    """The beams' true elevations (as a model to cast with) and azimuth offsets (radians):
    nominal plus a fixed per-beam error drawn from ``seed``, clipped at 2σ (and below 40 % of
    the nearest beam spacing, so the beams stay in order)."""
    nominal = np.asarray(model.elevations_deg, np.float64)
    n = len(nominal)
    if model.calibration_elevation_deg == 0 and model.calibration_azimuth_deg == 0:
        return model, np.zeros(n)
    rng = np.random.default_rng([seed, _STREAM_CALIBRATION])
    el = rng.standard_normal(n) * model.calibration_elevation_deg
    az = rng.standard_normal(n) * model.calibration_azimuth_deg
    limit = 2 * model.calibration_elevation_deg
    if n > 1:
        gaps = -np.diff(nominal)
        spacing = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
        limit = np.minimum(limit, 0.4 * spacing)
    el = np.clip(el, -limit, limit)
    az = np.clip(az, -2 * model.calibration_azimuth_deg, 2 * model.calibration_azimuth_deg)
    true_model = replace(model, elevations_deg=tuple(float(e) for e in nominal + el))
    return true_model, np.radians(az)


def _mixed_pixels(t: np.ndarray, beam: np.ndarray, column: np.ndarray, model: LidarModel,
                  rng: np.random.Generator, valid: np.ndarray) -> np.ndarray:
    """Ranges with mixed-pixel returns: where a beam's neighbouring column (either side, same
    beam) hit something more than ``mixed_edge_ratio`` farther, the footprint straddles the
    edge; with probability ``mixed_pixel_prob`` the return is the far range
    (``mixed_far_share``) or one uniformly in between. Draws: two per return, in order."""
    ncol = model.num_columns
    grid = np.full((len(model.elevations_deg), ncol), np.nan)
    grid[beam[valid], column[valid]] = t[valid]
    left = grid[beam, (column - 1) % ncol]
    right = grid[beam, (column + 1) % ncol]
    # The farther neighbour that is beyond the edge ratio (NaN: no return there).
    far = np.fmax(np.where(left > model.mixed_edge_ratio * t, left, np.nan),
                  np.where(right > model.mixed_edge_ratio * t, right, np.nan))
    u_mix, u_where = rng.random(len(t)), rng.random(len(t))
    mixed = valid & np.isfinite(far) & (u_mix < model.mixed_pixel_prob)
    fraction = np.where(u_where < model.mixed_far_share, 1.0,
                        (u_where - model.mixed_far_share)
                        / max(1.0 - model.mixed_far_share, 1e-9))
    out = t.copy()
    out[mixed] = t[mixed] + fraction[mixed] * (far[mixed] - t[mixed])
    return out


def _porous(kind: np.ndarray, vertical: np.ndarray, model: LidarModel) -> np.ndarray:
    """Returns a beam could have passed: foliage and fences, and car cabins' vertical faces
    (glass)."""
    out = np.zeros(len(kind), bool)
    if model.foliage_gap_prob > 0:
        out |= np.isin(kind, _GAPPY)
    if model.glass_pass_prob > 0:
        out |= (kind == BoxKind.CAR_CABIN) & vertical
    return out


def _without_porous(scene: StreetScene, model: LidarModel) -> StreetScene:
    """``scene`` without the boxes a beam may pass (see ``_porous``)."""
    drop = np.zeros(scene.num_boxes, bool)
    if model.foliage_gap_prob > 0:
        drop |= np.isin(scene.box_kind, _GAPPY)
    if model.glass_pass_prob > 0:
        drop |= scene.box_kind == BoxKind.CAR_CABIN
    kept = ~drop
    return replace(scene, box_min=scene.box_min[kept], box_max=scene.box_max[kept],
                   box_kind=scene.box_kind[kept], box_colour=scene.box_colour[kept],
                   box_detail=scene.box_detail[kept], box_pattern=scene.box_pattern[kept],
                   box_velocity=(None if scene.box_velocity is None
                                 else scene.box_velocity[kept]))
