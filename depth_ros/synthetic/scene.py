"""Street scenes as data: a flat ground plane with a road cross-section, and axis-aligned
boxes (buildings, cars, poles, signs) along it. ``procedural.py`` fills them from a seed,
``render.py`` draws them.

World frame: x forward along the street, y left, z up, ground at z = 0 (REP 103). The ego lane
is centred on y = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np

NOISE_TILE_SIZE = 256
# Random stream of the noise texture below a seed (procedural.py numbers the others).
STREAM_NOISE = 2


class BoxKind(IntEnum):
    """What a box is; selects its surface pattern."""

    BUILDING = 0
    CAR_BODY = 1
    CAR_CABIN = 2
    POLE = 3
    SIGN = 4
    FOLIAGE = 5  # tree crowns, hedges and the distant tree line
    TRUNK = 6
    FENCE = 7


@dataclass(frozen=True)
class StreetLayout:
    """The street's cross-section (y, metres, left positive) and its ground colours."""

    lane_width_m: float = 3.5
    num_lanes: int = 2
    ego_lane: int = 0
    forward_lanes: int = 1
    parking_right_m: float = 0.0
    parking_left_m: float = 0.0
    sidewalk_right_m: float = 3.0
    sidewalk_left_m: float = 3.0
    asphalt_rgb: tuple[float, float, float] = (0.33, 0.33, 0.34)
    sidewalk_rgb: tuple[float, float, float] = (0.62, 0.62, 0.60)
    verge_rgb: tuple[float, float, float] = (0.30, 0.42, 0.18)
    tile_m: float = 0.5
    # Traffic speed of each lane along its direction of travel (m/s, 0 for a queue); one
    # speed per lane, so cars in a lane never run into each other. Missing lanes stand still.
    lane_speeds_mps: tuple[float, ...] = ()

    @property
    def road_right_m(self) -> float:
        """y of the right edge of the carriageway (the right edge line)."""
        return -self.lane_width_m * (self.ego_lane + 0.5)

    @property
    def road_left_m(self) -> float:
        """y of the left edge of the carriageway."""
        return self.road_right_m + self.num_lanes * self.lane_width_m

    @property
    def kerb_right_m(self) -> float:
        """y of the right kerb (road side of the sidewalk)."""
        return self.road_right_m - self.parking_right_m

    @property
    def kerb_left_m(self) -> float:
        """y of the left kerb."""
        return self.road_left_m + self.parking_left_m

    def lane_centre_m(self, lane: int) -> float:
        """y of the centre of a lane, counted from the right from 0."""
        return self.road_right_m + (lane + 0.5) * self.lane_width_m


@dataclass(frozen=True)
class Lighting:
    """Sun, sky and haze of a scene."""

    sun_direction: tuple[float, float, float] = (0.4, -0.5, 0.77)
    ambient: float = 0.45
    sun_rgb: tuple[float, float, float] = (1.0, 0.97, 0.9)
    sky_horizon_rgb: tuple[float, float, float] = (0.80, 0.85, 0.92)
    sky_zenith_rgb: tuple[float, float, float] = (0.32, 0.52, 0.85)
    fog_distance_m: float = 600.0
    cloud_cover: float = 0.3


def empty_boxes() -> dict[str, np.ndarray]:
    """Zero-length box arrays of the right shapes and dtypes, keyed like ``StreetScene``'s."""
    return {"min": np.zeros((0, 3)), "max": np.zeros((0, 3)), "kind": np.zeros(0, np.int8),
            "colour": np.zeros((0, 3), np.float32), "detail": np.zeros((0, 3), np.float32),
            "pattern": np.zeros((0, 4), np.float32), "velocity": np.zeros((0, 3))}


def noise_tile(seed: int, size: int = NOISE_TILE_SIZE) -> np.ndarray:
    """A tileable, smooth, zero-mean unit-variance noise image (periodic by construction)."""
    white = np.random.default_rng([seed, STREAM_NOISE]).standard_normal((size, size))
    freq = np.fft.fftfreq(size)
    radius2 = freq[:, None] ** 2 + freq[None, :] ** 2
    # A 1/f-ish spectrum with a soft cut-off: structure at several scales but no pixel grain.
    spectrum = np.exp(-radius2 / (2 * 0.06**2)) / np.maximum(np.sqrt(radius2), 1.0 / size)
    tile = np.fft.ifft2(np.fft.fft2(white) * spectrum).real
    tile = (tile - tile.mean()) / tile.std()
    return tile.astype(np.float32)


@dataclass(frozen=True, eq=False)
class StreetScene:
    """A street: layout, lighting, noise texture and N axis-aligned boxes (world metres).

    Box arrays: ``box_min``/``box_max`` N×3, ``box_kind`` N (``BoxKind``), ``box_colour`` N×3
    (base albedo in [0, 1]), ``box_detail`` N×3 (window glass, tyres, sign border),
    ``box_pattern`` N×4 (per-kind parameters, see ``materials.py``) and ``box_velocity`` N×3
    (m/s, world frame; zero for static boxes). The box coordinates are those at scene time 0;
    ``at_time`` moves the moving ones.
    """

    seed: int
    layout: StreetLayout
    lighting: Lighting
    noise: np.ndarray
    box_min: np.ndarray = field(default_factory=lambda: empty_boxes()["min"])
    box_max: np.ndarray = field(default_factory=lambda: empty_boxes()["max"])
    box_kind: np.ndarray = field(default_factory=lambda: empty_boxes()["kind"])
    box_colour: np.ndarray = field(default_factory=lambda: empty_boxes()["colour"])
    box_detail: np.ndarray = field(default_factory=lambda: empty_boxes()["detail"])
    box_pattern: np.ndarray = field(default_factory=lambda: empty_boxes()["pattern"])
    box_velocity: np.ndarray | None = None  # None: all static (zeros of the right shape)

    def __post_init__(self) -> None:
        n = len(self.box_min)
        if self.box_velocity is None:
            # Frozen: set through object's own setattr, once, before anyone sees the scene.
            object.__setattr__(self, "box_velocity", np.zeros((n, 3)))
        shapes = {"box_max": (n, 3), "box_kind": (n,), "box_colour": (n, 3),
                  "box_detail": (n, 3), "box_pattern": (n, 4), "box_velocity": (n, 3)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name} has shape {np.shape(getattr(self, name))}, "
                                 f"expected {shape}")
        if n and not np.all(self.box_max > self.box_min):
            raise ValueError("every box needs box_max > box_min on all three axes")

    @property
    def num_boxes(self) -> int:
        """Number of boxes in the scene."""
        return len(self.box_min)

    @property
    def moving(self) -> np.ndarray:
        """Boolean mask (N) of the boxes with a non-zero velocity."""
        return np.any(self.box_velocity != 0, axis=1)

    def at_time(self, time_s: float) -> StreetScene:
        """The scene ``time_s`` seconds after time 0: every box moved by velocity · time.

        Static boxes keep their arrays; a scene without moving boxes (or time 0) is returned
        as it is, so static streets cost nothing.
        """
        if time_s == 0 or not np.any(self.box_velocity):
            return self
        shift = self.box_velocity * float(time_s)
        # Velocities stay: the result is a time-0 scene of its own, at_time composes.
        return replace(self, box_min=self.box_min + shift, box_max=self.box_max + shift)

    @classmethod
    def empty(cls, seed: int = 0, layout: StreetLayout | None = None,
              lighting: Lighting | None = None) -> StreetScene:
        """Ground and sky only: the default layout and lighting unless given."""
        return cls(seed, layout or StreetLayout(), lighting or Lighting(), noise_tile(seed))

    def with_boxes(self, box_min: np.ndarray, box_max: np.ndarray,
                   kind: BoxKind | np.ndarray = BoxKind.BUILDING,
                   colour: np.ndarray | tuple[float, float, float] = (0.7, 0.7, 0.7),
                   detail: np.ndarray | tuple[float, float, float] = (0.15, 0.18, 0.22),
                   pattern: np.ndarray | tuple[float, ...] = (3.0, 2.5, 0.5, 0.5),
                   velocity: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0)
                   ) -> StreetScene:
        """A copy with more boxes appended; per-box fields broadcast over the new boxes
        (``velocity`` in m/s, static by default)."""
        new_min = np.atleast_2d(np.asarray(box_min, dtype=np.float64))
        n = len(new_min)
        new = {"min": new_min,
               "max": np.atleast_2d(np.asarray(box_max, dtype=np.float64)),
               "kind": np.broadcast_to(np.asarray(kind, dtype=np.int8), (n,)),
               "colour": np.broadcast_to(np.asarray(colour, dtype=np.float32), (n, 3)),
               "detail": np.broadcast_to(np.asarray(detail, dtype=np.float32), (n, 3)),
               "pattern": np.broadcast_to(np.asarray(pattern, dtype=np.float32), (n, 4)),
               "velocity": np.broadcast_to(np.asarray(velocity, dtype=np.float64), (n, 3))}
        return replace(
            self,
            box_min=np.concatenate([self.box_min, new["min"]]),
            box_max=np.concatenate([self.box_max, new["max"]]),
            box_kind=np.concatenate([self.box_kind, new["kind"]]),
            box_colour=np.concatenate([self.box_colour, new["colour"]]),
            box_detail=np.concatenate([self.box_detail, new["detail"]]),
            box_pattern=np.concatenate([self.box_pattern, new["pattern"]]),
            box_velocity=np.concatenate([self.box_velocity, new["velocity"]]))
