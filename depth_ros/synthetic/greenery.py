"""Vegetation and fences of a street block: street trees on wide sidewalks, hedges, fences and
garden trees in front of set-back buildings, and a distant tree line behind everything.

A tree is a trunk box and a crown of 2–4 overlapping ``FOLIAGE`` boxes: few enough that a row
of near trees costs little to ray-cast, enough that its outline is not one block. Nothing here
ever reaches past a kerb into the road, and nothing is placed inside a building or around a
lamp post or sign pole.

``add_block_greenery`` is given the block's other boxes and draws from its own random stream,
so the buildings, cars and furniture of a seed stay what they were without it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from depth_ros.synthetic.materials import door_centres_m
from depth_ros.synthetic.scene import BoxKind, StreetLayout

# A building whose street face is at least this far behind the sidewalk has a front garden.
MIN_GARDEN_M = 2.5
# The frontage row of buildings stands within this of the sidewalk (the taller row behind
# starts at 28 m, see procedural._add_buildings).
_FRONTAGE_DEPTH_M = 12.0
# Lateral range of the far tree line's front (metres from the street's centre line): beyond
# the second building row, and mostly past the 200 m of depth the ground truth keeps.
TREE_LINE_Y_RANGE_M = (110.0, 170.0)
TREE_LINE_HEIGHT_RANGE_M = (12.0, 35.0)
_CLEARANCE_M = 0.3

_CROWN_COLOURS = np.array([(0.22, 0.36, 0.11), (0.28, 0.42, 0.14), (0.18, 0.30, 0.12),
                           (0.34, 0.44, 0.16), (0.24, 0.33, 0.18)])
_HEDGE_COLOURS = np.array([(0.16, 0.30, 0.10), (0.20, 0.34, 0.12), (0.14, 0.26, 0.12)])
_FAR_TREE_COLOURS = np.array([(0.16, 0.26, 0.12), (0.20, 0.28, 0.15), (0.14, 0.22, 0.12)])
_BARK_COLOURS = np.array([(0.30, 0.22, 0.15), (0.36, 0.30, 0.24), (0.24, 0.18, 0.13)])
_FENCE_COLOURS = np.array([(0.52, 0.38, 0.25), (0.55, 0.52, 0.48), (0.86, 0.86, 0.83),
                           (0.20, 0.28, 0.20), (0.32, 0.22, 0.15)])
# FOLIAGE pattern: (leaf size, clump size, gap strength, unused); see materials.
_CROWN_PATTERN = (0.12, 0.9, 0.9, 0.0)
_HEDGE_PATTERN = (0.06, 0.45, 0.5, 0.0)
_FAR_PATTERN = (0.8, 6.0, 0.6, 0.0)


class BoxSink(Protocol):
    """Where boxes go (procedural's box list)."""

    def add(self, lo: tuple[float, float, float], hi: tuple[float, float, float],
            kind: BoxKind, colour: np.ndarray, detail: np.ndarray = ...,
            pattern: tuple[float, ...] = ...) -> None: ...


def add_block_greenery(boxes: BoxSink, rng: np.random.Generator, layout: StreetLayout,
                       x0: float, x1: float, lines_m: tuple[float, float],
                       block: dict[str, np.ndarray]) -> None:
    """Trees, hedges, fences and the far tree line of the block [x0, x1].

    ``lines_m`` is the y of the back of the right and left sidewalks; ``block`` holds the
    block's boxes so far (``min``, ``max``, ``kind``, ``pattern`` arrays).
    """
    for side, line in zip((-1, 1), lines_m, strict=True):
        kerb = layout.kerb_right_m if side < 0 else layout.kerb_left_m
        frontage = _frontage(block, line, side)
        _add_gardens(boxes, rng, x0, x1, line, side, kerb, frontage)
        _add_street_trees(boxes, rng, x0, x1, line, side, kerb, frontage, block)
        _add_tree_line(boxes, rng, x0, x1, side)


def _frontage(block: dict[str, np.ndarray], line: float, side: int) -> list[dict]:
    """The frontage row's buildings on one side, by x: extent, setback, façade spacing."""
    rows = []
    for i in np.flatnonzero(block["kind"] == BoxKind.BUILDING):
        lo, hi = block["min"][i], block["max"][i]
        front = hi[1] if side < 0 else lo[1]
        setback = side * (front - line)
        if side * (lo[1] + hi[1]) > 0 and -0.01 <= setback <= _FRONTAGE_DEPTH_M:
            rows.append({"xa": lo[0], "xb": hi[0], "setback": setback,
                         "depth": hi[1] - lo[1], "spacing": block["pattern"][i, 1],
                         "windows": block["pattern"][i, 2] > 0})
    return sorted(rows, key=lambda r: r["xa"])


def _span(y_a: float, y_b: float) -> tuple[float, float]:
    return min(y_a, y_b), max(y_a, y_b)


def _box(boxes: BoxSink, xa: float, xb: float, y_a: float, y_b: float, za: float, zb: float,
         kind: BoxKind, colour: np.ndarray, detail: np.ndarray | tuple = (0.0, 0.0, 0.0),
         pattern: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)) -> None:
    ya, yb = _span(y_a, y_b)
    boxes.add((xa, ya, za), (xb, yb, zb), kind, np.clip(colour, 0, 1),
              np.clip(detail, 0, 1), pattern)


def _jittered(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> np.ndarray:
    return palette[rng.integers(len(palette))] + rng.uniform(-jitter, jitter, 3)


def add_tree(boxes: BoxSink, rng: np.random.Generator, x: float, y: float, radius_m: float,
             trunk_m: float) -> None:
    """A tree at (x, y): a trunk reaching half a metre into a crown that lies within
    ``radius_m`` of its axis (in x and y) and starts at about ``trunk_m`` up."""
    bark = _jittered(rng, _BARK_COLOURS, 0.03)
    half = rng.uniform(0.1, 0.2)
    _box(boxes, x - half, x + half, y - half, y + half, 0.0, trunk_m + 0.5, BoxKind.TRUNK, bark)
    colour = _jittered(rng, _CROWN_COLOURS, 0.03)
    tall = radius_m * rng.uniform(1.4, 2.2)
    r = radius_m
    # (half length in x, half width in y, x offset, bottom, top) as fractions of the crown.
    parts = [(1.0, rng.uniform(0.7, 1.0), 0.0, 0.0, 0.7),
             (rng.uniform(0.6, 0.85), 1.0, 0.0, 0.2, 0.9),
             (0.55, 0.55, 0.0, 0.5, 1.0),
             (0.5, 0.6, rng.uniform(-0.4, 0.4), -0.1, 0.55)][:int(rng.integers(2, 5))]
    for hx, hy, dx, bottom, top in parts:
        shade = colour * rng.uniform(0.93, 1.07)
        cx = x + dx * r
        half_x = min(hx * r, r - abs(dx) * r)  # stays inside the crown's footprint
        _box(boxes, cx - half_x, cx + half_x, y - hy * r, y + hy * r, trunk_m + bottom * tall,
             trunk_m + top * tall, BoxKind.FOLIAGE, shade, shade * 0.22, _CROWN_PATTERN)


def _door_gaps(building: dict) -> np.ndarray:
    if not building["windows"]:
        return np.zeros(0)
    return building["xa"] + door_centres_m(building["xb"] - building["xa"],
                                           building["spacing"])


def _runs(xa: float, xb: float, gaps: np.ndarray, half_gap: float) -> list[tuple[float, float]]:
    """[xa, xb] without the openings of half width ``half_gap`` around ``gaps``."""
    runs, start = [], xa
    for g in np.sort(gaps):
        if g - half_gap > start:
            runs.append((start, min(g - half_gap, xb)))
        start = max(start, g + half_gap)
    if xb > start:
        runs.append((start, xb))
    return [(a, b) for a, b in runs if b - a > 0.5]


def _add_gardens(boxes: BoxSink, rng: np.random.Generator, x0: float, x1: float, line: float,
                 side: int, kerb: float, frontage: list[dict]) -> None:
    """Front hedges or fences (open at the doors), side fences and garden trees of set-back
    buildings."""
    gardens = [b for b in frontage if b["setback"] >= MIN_GARDEN_M]
    sidewalk = side * (line - kerb)
    for k, b in enumerate(gardens):
        # Property lines half-way to the neighbours, or a few metres out, inside the block.
        start = (gardens[k - 1]["xb"] + b["xa"]) / 2 if k else max(x0 + 0.3, b["xa"] - 4.0)
        end = (b["xb"] + gardens[k + 1]["xa"]) / 2 if k + 1 < len(gardens) else min(
            x1 - 0.3, b["xb"] + 4.0)
        doors = _door_gaps(b)
        front = rng.choice(3, p=[0.4, 0.35, 0.25])  # hedge, fence, open lawn
        if front == 0:
            colour = _jittered(rng, _HEDGE_COLOURS, 0.03)
            height, thick = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0)
            for xa, xb in _runs(start + 0.2, end - 0.2, doors, 0.8):
                _box(boxes, xa, xb, line + side * 0.1, line + side * (0.1 + thick), 0.0,
                     height, BoxKind.FOLIAGE, colour, colour * 0.3, _HEDGE_PATTERN)
        elif front == 1:
            fence = _fence_style(rng)
            height = rng.uniform(0.9, 1.5)
            for xa, xb in _runs(start + 0.1, end - 0.1, doors, 0.7):
                _box(boxes, xa, xb, line + side * 0.15, line + side * 0.19, 0.0, height,
                     BoxKind.FENCE, *fence)
        if k + 1 < len(gardens) and rng.random() < 0.6:  # between this garden and the next
            fence = _fence_style(rng)
            reach = min(b["setback"], gardens[k + 1]["setback"]) + 4.0
            _box(boxes, end - 0.02, end + 0.02, line + side * 1.2, line + side * reach, 0.0,
                 rng.uniform(1.2, 1.8), BoxKind.FENCE, *fence)
        if rng.random() < 0.55:
            r = min(rng.uniform(1.2, 2.6), (b["setback"] + sidewalk) / 2 - _CLEARANCE_M)
            near = max(1.5, r - sidewalk + 1.5)  # may overhang the walk, not its lamps and signs
            far = b["setback"] - _CLEARANCE_M - r  # but not touch the façade
            x_lo, x_hi = start + r + _CLEARANCE_M, end - r - _CLEARANCE_M
            if r >= 0.9 and far > near and x_hi > x_lo:
                x = rng.uniform(x_lo, x_hi)
                add_tree(boxes, rng, x, line + side * rng.uniform(near, far), r,
                         rng.uniform(1.8, 3.0))


def _fence_style(rng: np.random.Generator) -> tuple[np.ndarray, tuple, tuple[float, ...]]:
    """(colour, detail, pattern) of a board fence."""
    colour = _jittered(rng, _FENCE_COLOURS, 0.03)
    pattern = (rng.uniform(0.09, 0.15), rng.uniform(0.01, 0.03), rng.uniform(1.8, 2.5), 0.0)
    return colour, (0.0, 0.0, 0.0), pattern


def _add_street_trees(boxes: BoxSink, rng: np.random.Generator, x0: float, x1: float,
                      line: float, side: int, kerb: float, frontage: list[dict],
                      block: dict[str, np.ndarray]) -> None:
    """A row of trees along a wide sidewalk, crowns kept between the kerb and the façades."""
    sidewalk = side * (line - kerb)
    if sidewalk < 3.0 or rng.random() < 0.3:
        return
    d = rng.uniform(1.4, sidewalk / 2)  # trunk from the kerb
    trunk = rng.uniform(2.6, 3.4)  # pedestrians and signs pass under the crowns
    poles = np.flatnonzero(np.isin(block["kind"], (BoxKind.POLE, BoxKind.SIGN))
                           & (side * (block["min"][:, 1] + block["max"][:, 1]) > 0))
    x = x0 + rng.uniform(2.0, 8.0)
    while x < x1 - 2.0:
        r = rng.uniform(1.3, 2.4)
        behind = [b["setback"] for b in frontage if b["xa"] < x + r and b["xb"] > x - r]
        room = sidewalk - d + (min(behind) if behind else 3.0) - _CLEARANCE_M
        r = min(r, d - 0.15, room)
        lo, hi = x - r - _CLEARANCE_M, x + r + _CLEARANCE_M
        clear = not np.any((block["min"][poles, 0] < hi) & (block["max"][poles, 0] > lo))
        if r >= 0.8 and clear and x - r > x0 and x + r < x1:
            add_tree(boxes, rng, x, kerb + side * d, r, trunk)
        x += rng.uniform(7.0, 14.0)


def _add_tree_line(boxes: BoxSink, rng: np.random.Generator, x0: float, x1: float,
                   side: int) -> None:
    """Wooded hills far behind the buildings: a skyline of a few tall FOLIAGE boxes, some
    with a hump on top, and the odd clearing. Tall enough to show above the back row of
    buildings, so distant surfaces (and their depths) exist where there would be sky."""
    y = side * rng.uniform(*TREE_LINE_Y_RANGE_M)
    cuts = np.sort(rng.uniform(x0, x1, int(rng.integers(1, 4))))
    colour = _jittered(rng, _FAR_TREE_COLOURS, 0.02)
    for xa, xb in zip(np.concatenate([[x0], cuts]), np.concatenate([cuts, [x1]]), strict=True):
        if xb - xa < 1.0 or rng.random() < 0.15:
            continue
        depth, height = rng.uniform(15.0, 40.0), rng.uniform(*TREE_LINE_HEIGHT_RANGE_M)
        tint = colour * rng.uniform(0.9, 1.1)
        _box(boxes, xa, xb, y, y + side * depth, 0.0, height, BoxKind.FOLIAGE, tint,
             tint * 0.3, _FAR_PATTERN)
        if rng.random() < 0.5:
            width = (xb - xa) * rng.uniform(0.4, 0.7)
            start = rng.uniform(xa, xb - width)
            _box(boxes, start, start + width, y + side * 0.3 * depth, y + side * depth, height,
                 height + rng.uniform(5.0, 15.0), BoxKind.FOLIAGE, tint * 0.95, tint * 0.3,
                 _FAR_PATTERN)
