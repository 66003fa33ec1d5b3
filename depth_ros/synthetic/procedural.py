"""Procedural street content from a seed: cross-section, lighting, and per 60 m block the
buildings (a frontage row and a taller row behind), parked and moving-lane cars, street lamps
and signs; then its trees, hedges, fences and far tree line (``greenery.py``).

Each block draws from its own random stream, so the content at a given x depends only on the
seed, not on how long a piece of street was asked for.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from depth_ros.synthetic.greenery import add_block_greenery
from depth_ros.synthetic.materials import facade_pattern
from depth_ros.synthetic.scene import (
    BoxKind,
    Lighting,
    StreetLayout,
    StreetScene,
    empty_boxes,
    noise_tile,
)

BLOCK_LENGTH_M = 60.0
# Random streams below a seed (scene.STREAM_NOISE is 2; render, lidar and drive use 4–7
# and 9), so one never shifts another.
_STREAM_LAYOUT = 1
_STREAM_BLOCK = 3
_STREAM_TRAFFIC = 8
_STREAM_GREENERY = 10
_BLOCK_INDEX_OFFSET = 1 << 20  # SeedSequence takes non-negative entropy only
# Lane traffic: 18–50 km/h, urban; a lane is a stopped queue with this probability.
TRAFFIC_SPEED_RANGE_MPS = (5.0, 14.0)
_QUEUED_LANE_PROBABILITY = 0.2

_FACADE_COLOURS = np.array([
    (0.80, 0.72, 0.58), (0.88, 0.85, 0.75), (0.60, 0.30, 0.22), (0.45, 0.25, 0.20),
    (0.62, 0.62, 0.60), (0.88, 0.88, 0.86), (0.90, 0.80, 0.50), (0.60, 0.70, 0.80),
    (0.85, 0.60, 0.50), (0.55, 0.45, 0.35), (0.35, 0.36, 0.38), (0.55, 0.65, 0.55),
])
_CAR_COLOURS = np.array([
    (0.90, 0.90, 0.90), (0.70, 0.72, 0.74), (0.08, 0.08, 0.09), (0.30, 0.31, 0.33),
    (0.70, 0.10, 0.10), (0.15, 0.25, 0.60), (0.10, 0.12, 0.30), (0.15, 0.35, 0.20),
    (0.90, 0.75, 0.15), (0.75, 0.68, 0.55), (0.85, 0.40, 0.10),
])
# Which façade colours are laid in brick (red, dark and light red, brown); the rest plaster.
_FACADE_BRICK = np.isin(np.arange(len(_FACADE_COLOURS)), [2, 3, 8, 9])
# Real traffic is mostly white, grey and black.
_CAR_COLOUR_WEIGHTS = np.array([4, 4, 4, 3, 1.5, 1.5, 1, 1, 0.5, 1, 0.5])
_SIGN_COLOURS = np.array([(0.10, 0.25, 0.70), (0.80, 0.10, 0.10), (0.95, 0.80, 0.10),
                          (0.92, 0.92, 0.92), (0.10, 0.50, 0.25)])
_SIDEWALK_COLOURS = np.array([(0.62, 0.62, 0.60), (0.70, 0.66, 0.58), (0.60, 0.45, 0.40),
                              (0.55, 0.56, 0.58)])
_VERGE_COLOURS = np.array([(0.30, 0.42, 0.18), (0.38, 0.45, 0.22), (0.52, 0.48, 0.40)])


class _BoxList:
    """Accumulates boxes during generation."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, lo: tuple[float, float, float], hi: tuple[float, float, float],
            kind: BoxKind, colour: np.ndarray, detail: np.ndarray = (0.0, 0.0, 0.0),
            pattern: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0), *,
            velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        self.rows.append((lo, hi, int(kind), colour, detail, pattern, velocity))

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.rows:
            return empty_boxes()
        lo, hi, kind, colour, detail, pattern, velocity = zip(*self.rows, strict=True)
        return {"min": np.array(lo, np.float64), "max": np.array(hi, np.float64),
                "kind": np.array(kind, np.int8),
                "colour": np.clip(np.array(colour, np.float32), 0, 1),
                "detail": np.clip(np.array(detail, np.float32), 0, 1),
                "pattern": np.array(pattern, np.float32),
                "velocity": np.array(velocity, np.float64)}


def generate_street(seed: int, x_min_m: float = -40.0, x_max_m: float = 400.0,
                    ego_lane_clear_until_m: float | None = None) -> StreetScene:
    """The street of ``seed`` between ``x_min_m`` and ``x_max_m`` (whole blocks, trimmed).

    Cars in the ego lane are only placed beyond ``ego_lane_clear_until_m`` (default
    ``x_min_m``, i.e. none).
    """
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if x_max_m <= x_min_m:
        raise ValueError(f"empty street extent [{x_min_m}, {x_max_m}]")
    rng = np.random.default_rng([seed, _STREAM_LAYOUT])
    layout = _random_layout(rng)
    layout = replace(layout, lane_speeds_mps=_lane_speeds(seed, layout.num_lanes))
    scene = StreetScene(seed, layout, _random_lighting(rng), noise_tile(seed))
    clear_until = x_min_m if ego_lane_clear_until_m is None else ego_lane_clear_until_m
    boxes = _BoxList()
    first = int(np.floor(x_min_m / BLOCK_LENGTH_M))
    last = int(np.ceil(x_max_m / BLOCK_LENGTH_M))
    for block in range(first, last):
        block_rng = np.random.default_rng([seed, _STREAM_BLOCK, block + _BLOCK_INDEX_OFFSET])
        start = len(boxes.rows)
        _populate_block(boxes, block_rng, layout, block * BLOCK_LENGTH_M, clear_until)
        # Trees, hedges and fences fit around the block's buildings and poles, from a stream
        # of their own so that the rest of the block does not depend on them.
        placed = {k: v[start:] for k, v in boxes.arrays().items()}
        green_rng = np.random.default_rng([seed, _STREAM_GREENERY,
                                           block + _BLOCK_INDEX_OFFSET])
        add_block_greenery(boxes, green_rng, layout, block * BLOCK_LENGTH_M,
                           (block + 1) * BLOCK_LENGTH_M,
                           (_building_line_m(layout, -1), _building_line_m(layout, 1)), placed)
    arrays = boxes.arrays()
    # Whole blocks were generated; drop what lies entirely outside the asked extent.
    keep = (arrays["max"][:, 0] >= x_min_m) & (arrays["min"][:, 0] <= x_max_m)
    return replace(scene, box_min=arrays["min"][keep], box_max=arrays["max"][keep],
                   box_kind=arrays["kind"][keep], box_colour=arrays["colour"][keep],
                   box_detail=arrays["detail"][keep], box_pattern=arrays["pattern"][keep],
                   box_velocity=arrays["velocity"][keep])


def _pick(rng: np.random.Generator, palette: np.ndarray, jitter: float = 0.04,
          weights: np.ndarray | None = None) -> np.ndarray:
    p = None if weights is None else weights / weights.sum()
    return palette[rng.choice(len(palette), p=p)] + rng.uniform(-jitter, jitter, 3)


def _random_layout(rng: np.random.Generator) -> StreetLayout:
    num_lanes = int(rng.choice([2, 2, 3, 4]))
    forward = (num_lanes + 1) // 2
    grey = rng.uniform(0.25, 0.40)
    return StreetLayout(
        lane_width_m=float(rng.uniform(3.2, 3.75)),
        num_lanes=num_lanes,
        ego_lane=int(rng.integers(0, forward)),
        forward_lanes=forward,
        parking_right_m=float(rng.choice([0.0, 2.2], p=[0.35, 0.65])),
        parking_left_m=float(rng.choice([0.0, 2.2], p=[0.35, 0.65])),
        sidewalk_right_m=float(rng.uniform(2.0, 5.0)),
        sidewalk_left_m=float(rng.uniform(2.0, 5.0)),
        asphalt_rgb=tuple(float(c) for c in grey + rng.uniform(-0.015, 0.015, 3)),
        sidewalk_rgb=tuple(float(c) for c in _pick(rng, _SIDEWALK_COLOURS, 0.03)),
        verge_rgb=tuple(float(c) for c in _pick(rng, _VERGE_COLOURS, 0.03)),
        tile_m=float(rng.choice([0.3, 0.5, 0.6])),
    )


def _random_lighting(rng: np.random.Generator) -> Lighting:
    elevation = rng.uniform(np.radians(20), np.radians(65))
    azimuth = rng.uniform(0, 2 * np.pi)
    sun = (np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
           np.sin(elevation))
    warmth = rng.uniform(0.0, 0.12)
    return Lighting(
        sun_direction=tuple(float(c) for c in sun),
        ambient=float(rng.uniform(0.35, 0.55)),
        sun_rgb=(1.0, float(1.0 - warmth * 0.4), float(1.0 - warmth)),
        sky_horizon_rgb=tuple(float(c) for c in np.array([0.80, 0.85, 0.92])
                              + rng.uniform(-0.05, 0.05, 3)),
        sky_zenith_rgb=tuple(float(c) for c in np.array([0.30, 0.50, 0.85])
                             + rng.uniform(-0.08, 0.08, 3)),
        fog_distance_m=float(rng.uniform(350.0, 900.0)),
        cloud_cover=float(rng.uniform(0.0, 0.7)),
    )


def _populate_block(boxes: _BoxList, rng: np.random.Generator, layout: StreetLayout,
                    x0: float, ego_clear_until_m: float) -> None:
    x1 = x0 + BLOCK_LENGTH_M
    for side in (-1, 1):
        _add_buildings(boxes, rng, layout, x0, x1, side)
        _add_parked_cars(boxes, rng, layout, x0, x1, side)
        _add_street_furniture(boxes, rng, layout, x0, x1, side)
    _add_lane_cars(boxes, rng, layout, x0, x1, ego_clear_until_m)


def _building_line_m(layout: StreetLayout, side: int) -> float:
    """y of the back of the sidewalk on one side (side = -1 right, +1 left)."""
    if side < 0:
        return layout.kerb_right_m - layout.sidewalk_right_m
    return layout.kerb_left_m + layout.sidewalk_left_m


def _add_building(boxes: _BoxList, rng: np.random.Generator, xa: float, xb: float,
                  front_y: float, depth: float, floors: int, side: int) -> None:
    floor_h = rng.uniform(2.8, 3.5)
    height = floors * floor_h + rng.uniform(0.3, 1.2)  # parapet above the top floor
    y_near, y_far = front_y, front_y + side * depth
    # The same draws as _pick, keeping the palette index: brick façades come in brick colours.
    index = rng.choice(len(_FACADE_COLOURS))
    colour = _FACADE_COLOURS[index] + rng.uniform(-0.05, 0.05, 3)
    glass = np.array([0.12, 0.15, 0.19]) + rng.uniform(-0.04, 0.08)
    pattern = facade_pattern(floor_h, rng.uniform(1.8, 3.6), rng.uniform(0.35, 0.65),
                             rng.uniform(0.4, 0.65), bool(_FACADE_BRICK[index]))
    boxes.add((xa, min(y_near, y_far), 0.0), (xb, max(y_near, y_far), height),
              BoxKind.BUILDING, colour, glass, pattern)


def _add_buildings(boxes: _BoxList, rng: np.random.Generator, layout: StreetLayout,
                   x0: float, x1: float, side: int) -> None:
    line = _building_line_m(layout, side)
    urban = rng.random() < 0.6
    x = x0 + (rng.uniform(0, 3) if urban else rng.uniform(0, 10))
    while x < x1 - 4.0:
        width = rng.uniform(10, 30) if urban else rng.uniform(8, 16)
        xb = min(x + width, x1)
        setback = rng.uniform(0, 1.5) if urban else rng.uniform(3, 10)
        floors = int(rng.integers(3, 9) if urban else rng.integers(1, 4))
        _add_building(boxes, rng, x, xb, line + side * setback, rng.uniform(10, 20), floors,
                      side)
        gap = rng.uniform(0, 2) if urban and rng.random() < 0.3 else (
            0.0 if urban else rng.uniform(3, 12))
        x = xb + gap
    # A taller row behind, seen through gaps and above low frontages: far depths in the data.
    x = x0 + rng.uniform(0, 10)
    while x < x1 - 8.0:
        xb = min(x + rng.uniform(15, 40), x1)
        if rng.random() < 0.7:
            _add_building(boxes, rng, x, xb, line + side * rng.uniform(28, 50),
                          rng.uniform(12, 25), int(rng.integers(4, 13)), side)
        x = xb + rng.uniform(0, 8)


def _car_boxes(boxes: _BoxList, rng: np.random.Generator, x_centre: float, y_centre: float,
               facing: int, velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
    """A car as a body box and a cabin box (moving together at ``velocity``, m/s);
    ``facing`` = +1 for a car pointing along +x."""
    kind = rng.choice(3, p=[0.65, 0.25, 0.10])  # saloon/hatchback, SUV, van
    length, width, height, body_top, front_frac, rear_frac = {
        0: (rng.uniform(3.8, 4.9), rng.uniform(1.70, 1.85), rng.uniform(1.40, 1.50),
            rng.uniform(0.80, 0.90), 0.30, 0.15),
        1: (rng.uniform(4.4, 4.9), rng.uniform(1.85, 1.95), rng.uniform(1.65, 1.80),
            rng.uniform(0.95, 1.05), 0.25, 0.05),
        2: (rng.uniform(4.8, 5.5), rng.uniform(1.90, 2.00), rng.uniform(1.90, 2.30),
            rng.uniform(1.00, 1.10), 0.12, 0.02),
    }[int(kind)]
    colour = _pick(rng, _CAR_COLOURS, 0.03, _CAR_COLOUR_WEIGHTS)
    xa, xb = x_centre - length / 2, x_centre + length / 2
    ya, yb = y_centre - width / 2, y_centre + width / 2
    pattern = (float(facing), length, 0.0, 0.0)
    boxes.add((xa, ya, 0.0), (xb, yb, body_top), BoxKind.CAR_BODY, colour,
              (0.05, 0.05, 0.05), pattern, velocity=velocity)
    front, rear = front_frac * length, rear_frac * length
    ca, cb = (xa + rear, xb - front) if facing > 0 else (xa + front, xb - rear)
    glass = np.array([0.10, 0.12, 0.15]) + rng.uniform(0, 0.06)
    boxes.add((ca, ya + 0.1, body_top), (cb, yb - 0.1, height), BoxKind.CAR_CABIN, colour,
              glass, pattern, velocity=velocity)


def _add_parked_cars(boxes: _BoxList, rng: np.random.Generator, layout: StreetLayout,
                     x0: float, x1: float, side: int) -> None:
    strip = layout.parking_right_m if side < 0 else layout.parking_left_m
    if strip <= 0:
        return
    edge = layout.road_right_m if side < 0 else layout.road_left_m
    y = edge + side * strip / 2
    x = x0 + rng.uniform(0, 4)
    occupancy = rng.uniform(0.4, 0.9)
    while x < x1 - 5.5:
        slot = rng.uniform(5.5, 7.0)
        if rng.random() < occupancy:
            _car_boxes(boxes, rng, x + slot / 2, y + rng.uniform(-0.15, 0.15),
                       int(rng.choice([-1, 1])))
        x += slot


def _lane_speeds(seed: int, num_lanes: int) -> tuple[float, ...]:
    """Traffic speed of each lane (m/s along its direction), from the seed's own stream."""
    rng = np.random.default_rng([seed, _STREAM_TRAFFIC])
    speeds = rng.uniform(*TRAFFIC_SPEED_RANGE_MPS, num_lanes)
    queued = rng.random(num_lanes) < _QUEUED_LANE_PROBABILITY
    return tuple(float(v) for v in np.where(queued, 0.0, speeds))


def _add_lane_cars(boxes: _BoxList, rng: np.random.Generator, layout: StreetLayout,
                   x0: float, x1: float, ego_clear_until_m: float) -> None:
    """Cars driving (or queued) in the lanes: forward lanes along +x, oncoming ones along −x.

    All cars of a lane share its speed, so their gaps never close. Ego-lane cars only start
    beyond ``ego_clear_until_m`` and never drive backwards, so the ego never reaches one.
    """
    speeds = layout.lane_speeds_mps
    for lane in range(layout.num_lanes):
        # The first car's rear clears the previous block's last car (centre < x1 − 3 m, half
        # length ≤ 2.75 m), so no two cars overlap across a block boundary.
        x = x0 + rng.uniform(3, 20)
        facing = 1 if lane < layout.forward_lanes else -1
        speed = speeds[lane] if lane < len(speeds) else 0.0
        while x < x1 - 3.0:
            if rng.random() < 0.5:
                # A car in the ego lane's clear stretch (with its half length) is still drawn
                # from the stream, then dropped: the rest of the block must not depend on it.
                cleared = lane == layout.ego_lane and x - 3.0 <= ego_clear_until_m
                _car_boxes(_BoxList() if cleared else boxes, rng, x,
                           layout.lane_centre_m(lane) + rng.uniform(-0.25, 0.25), facing,
                           (facing * speed, 0.0, 0.0))
            x += rng.uniform(10, 35)


def _add_street_furniture(boxes: _BoxList, rng: np.random.Generator, layout: StreetLayout,
                          x0: float, x1: float, side: int) -> None:
    kerb = layout.kerb_right_m if side < 0 else layout.kerb_left_m
    metal = np.array([0.35, 0.36, 0.37]) + rng.uniform(-0.08, 0.08)
    x = x0 + rng.uniform(0, 30)
    while x < x1:  # street lamps with an arm over the road
        y = kerb + side * 0.6
        height = rng.uniform(6.0, 8.0)
        boxes.add((x - 0.09, y - 0.09, 0.0), (x + 0.09, y + 0.09, height), BoxKind.POLE, metal)
        arm_end = y - side * 1.8  # over the road
        boxes.add((x - 0.07, min(y, arm_end), height - 0.15), (x + 0.07, max(y, arm_end), height),
                  BoxKind.POLE, metal)
        head_end = arm_end - side * 0.6
        boxes.add((x - 0.2, min(arm_end, head_end), height - 0.3),
                  (x + 0.2, max(arm_end, head_end), height - 0.1), BoxKind.POLE, metal + 0.3)
        x += rng.uniform(25, 40)
    for _ in range(int(rng.integers(0, 3))):  # traffic signs facing the traffic
        x = rng.uniform(x0, x1)
        y = kerb + side * rng.uniform(0.4, 1.0)
        top = rng.uniform(2.4, 3.0)
        boxes.add((x - 0.035, y - 0.035, 0.0), (x + 0.035, y + 0.035, top), BoxKind.POLE, metal)
        size = rng.uniform(0.5, 0.8)
        boxes.add((x - 0.06, y - size / 2, top - 0.05),
                  (x - 0.035, y + size / 2, top + size - 0.05), BoxKind.SIGN,
                  _pick(rng, _SIGN_COLOURS, 0.03), (0.95, 0.95, 0.95))
