"""Surface appearance of a ray-cast street: procedural albedo, Lambertian sun + sky light, haze.

Patterns (lane markings, paving joints, windows) are box-filtered over each pixel's footprint
on the surface, so they fade to their mean colour with distance instead of aliasing into
flicker; noise octaves likewise drop out once they are finer than a pixel. Both keep the
perspective cues (texture gradients) a depth network should learn, without the moiré.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from depth_ros.geometry import PinholeCamera
from depth_ros.synthetic import shadows
from depth_ros.synthetic.pose import CameraPose
from depth_ros.synthetic.scene import BoxKind, StreetScene

if TYPE_CHECKING:
    from depth_ros.synthetic.raycast import RayHits

DIFFUSE = 0.75
EXPOSURE = 1.1
CLOUD_HEIGHT_M = 1500.0
_MARKING_RGB = np.array([0.86, 0.86, 0.83], np.float32)
_KERB_RGB = np.array([0.68, 0.68, 0.66], np.float32)
_ROOF_RGB = np.array([0.30, 0.30, 0.31], np.float32)
_DASH_PERIOD_M, _DASH_LENGTH_M = 9.0, 3.0
_KERB_WIDTH_M = 0.25
# Façades: doors in the middle window column and every ~12 m; brick courses and joints.
_DOOR_STRIDE_M = 12.0
_DOOR_WIDTH_RANGE_M = (1.0, 1.2)
_DOOR_HEIGHT_RANGE_M = (2.1, 2.3)
_DOOR_RGB = np.array([(0.26, 0.16, 0.10), (0.16, 0.16, 0.17), (0.10, 0.20, 0.14),
                      (0.32, 0.09, 0.08), (0.20, 0.23, 0.28)], np.float32)
_BRICK_COURSE_M, _BRICK_LENGTH_M, _MORTAR_M = 0.075, 0.25, 0.012
_MORTAR_RGB = np.array([0.72, 0.70, 0.65], np.float32)
# Foliage: dark gaps where the leaf-scale noise falls below the threshold (ramping over the
# softness), so about a fifth of a crown is shadowed holes, plus rarer, larger ones.
_GAP_THRESHOLD, _BIG_GAP_THRESHOLD, _GAP_SOFTNESS = -0.55, -1.1, 0.5

# Ground bands and the amplitude of the (coarse, medium, fine) noise octaves on each.
_ROAD, _PARKING, _KERB, _SIDEWALK, _VERGE = range(5)
_GROUND_NOISE = np.array([[0.07, 0.06, 0.07], [0.06, 0.06, 0.08], [0.03, 0.03, 0.04],
                          [0.05, 0.04, 0.03], [0.15, 0.15, 0.12]], np.float32)
_GROUND_FEATURES_M = (8.0, 1.0, 0.12)


def _noise(tile: np.ndarray, u: np.ndarray, v: np.ndarray, feature_m: float,
           offset: int) -> np.ndarray:
    """Sample the periodic noise tile at surface coordinates (metres), features ~feature_m."""
    size = tile.shape[0]
    scale = np.float32(10.0 / feature_m)  # the tile's features span about ten texels
    bias = np.float32(1 << 20)  # keeps indices positive so truncation is a floor
    iu = (u * scale + bias).astype(np.int32) + offset
    iv = (v * scale + bias).astype(np.int32) + 3 * offset
    return np.take(tile.ravel(), ((iv & (size - 1)) * size) + (iu & (size - 1)))


def _octave_weight(feature_m: float, footprint: np.ndarray) -> np.ndarray:
    """1 while a pixel is well below the feature size, fading to 0 at half of it."""
    return np.clip(np.float32(feature_m) / (2 * footprint) - 1, 0, 1)


def _pulse_integral(x: np.ndarray, period: float, width: float) -> np.ndarray:
    whole = np.floor(x / np.float32(period))
    return whole * np.float32(width) + np.minimum(x - whole * np.float32(period),
                                                  np.float32(width))


def pulse_train(x: np.ndarray, footprint: np.ndarray, period: float, start: float,
                width: float) -> np.ndarray:
    """Fraction of [x − f/2, x + f/2] covered by the intervals [start + kP, start + kP + w]."""
    f = np.maximum(footprint, np.float32(1e-4))
    a = x - np.float32(start) - f / 2
    return (_pulse_integral(a + f, period, width) - _pulse_integral(a, period, width)) / f


def interval(x: np.ndarray, footprint: np.ndarray, lo: float | np.ndarray,
             hi: float | np.ndarray) -> np.ndarray:
    """Fraction of [x − f/2, x + f/2] inside [lo, hi]."""
    f = np.maximum(footprint, np.float32(1e-4))
    return np.clip(np.minimum(x + f / 2, hi) - np.maximum(x - f / 2, lo), 0, None) / f


def _blend(base: np.ndarray, colour: np.ndarray, cover: np.ndarray) -> np.ndarray:
    return base + (np.asarray(colour, np.float32) - base) * cover[:, None]


def _ground_albedo(scene: StreetScene, x: np.ndarray, y: np.ndarray, fp_lat: np.ndarray,
                   fp_along: np.ndarray) -> np.ndarray:
    lay = scene.layout
    right_walk = lay.kerb_right_m - _KERB_WIDTH_M
    left_walk = lay.kerb_left_m + _KERB_WIDTH_M
    band = np.select(
        [(y >= lay.road_right_m) & (y <= lay.road_left_m),
         (y >= lay.kerb_right_m) & (y <= lay.kerb_left_m),
         (y >= right_walk) & (y <= left_walk),
         (y >= right_walk - lay.sidewalk_right_m) & (y <= left_walk + lay.sidewalk_left_m)],
        [_ROAD, _PARKING, _KERB, _SIDEWALK], _VERGE).astype(np.intp)
    asphalt = np.array(lay.asphalt_rgb, np.float32)
    palette = np.stack([asphalt, asphalt * 0.92 + 0.03, _KERB_RGB,
                        np.array(lay.sidewalk_rgb, np.float32),
                        np.array(lay.verge_rgb, np.float32)])
    albedo = palette[band]

    footprint = np.sqrt(fp_lat * fp_along)
    amp = _GROUND_NOISE[band]
    texture = np.ones_like(x)
    for k, feature in enumerate(_GROUND_FEATURES_M):
        texture += amp[:, k] * _octave_weight(feature, footprint) * _noise(
            scene.noise, x, y, feature, 17 * k + 1)
    albedo *= texture[:, None]

    # Paving joints on the sidewalk.
    tile = lay.tile_m
    joint_x = pulse_train(x, fp_along, tile, 0.0, 0.02)
    joint_y = pulse_train(y, fp_lat, tile, 0.0, 0.02)
    joints = (joint_x + joint_y - joint_x * joint_y) * (band == _SIDEWALK)
    albedo *= (1 - 0.4 * joints)[:, None]

    paint = _lane_markings(scene, x, y, fp_lat, fp_along) * (band == _ROAD)
    return _blend(albedo, _MARKING_RGB, paint)


def _lane_markings(scene: StreetScene, x: np.ndarray, y: np.ndarray, fp_lat: np.ndarray,
                   fp_along: np.ndarray) -> np.ndarray:
    """Paint coverage in [0, 1] of lane and edge lines (German-style white markings)."""
    lay = scene.layout
    paint = interval(y, fp_lat, lay.road_right_m + 0.2, lay.road_right_m + 0.35)
    paint += interval(y, fp_lat, lay.road_left_m - 0.35, lay.road_left_m - 0.2)
    dashes = pulse_train(x, fp_along, _DASH_PERIOD_M, 0.0, _DASH_LENGTH_M)
    for k in range(1, lay.num_lanes):
        centre = lay.road_right_m + k * lay.lane_width_m
        if k == lay.forward_lanes and lay.num_lanes >= 4:  # double solid between directions
            paint += interval(y, fp_lat, centre - 0.17, centre - 0.05)
            paint += interval(y, fp_lat, centre + 0.05, centre + 0.17)
        elif k == lay.forward_lanes and lay.num_lanes == 3:
            paint += interval(y, fp_lat, centre - 0.06, centre + 0.06)
        else:
            paint += interval(y, fp_lat, centre - 0.06, centre + 0.06) * dashes
    return np.minimum(paint, 1)


def _face_light(scene: StreetScene, axis: np.ndarray, sign: np.ndarray,
                sun_visible: np.ndarray) -> np.ndarray:
    """Irradiance (RGB, N×3) of N surface points whose outward normals point ``sign`` along
    ``axis``: bluish sky ambient plus the sun's Lambert term where ``sun_visible`` (1 in sun,
    0 in a cast shadow, which keeps only the sky's light)."""
    light = scene.lighting
    sun = np.asarray(light.sun_direction, np.float32)
    cosine = np.maximum(sign.astype(np.float32) * sun[axis], 0) * sun_visible
    ambient = np.float32(light.ambient) * np.array([0.92, 0.96, 1.04], np.float32)
    return ambient + DIFFUSE * cosine[:, None] * np.asarray(light.sun_rgb, np.float32)


def _hash01(*ints: np.ndarray) -> np.ndarray:
    """A deterministic per-cell pseudo-random value in [0, 1) from integer cell indices."""
    h = np.zeros(np.shape(ints[0]), np.int64)
    for value, prime in zip(ints, (73856093, 19349663, 83492791), strict=False):
        h ^= np.asarray(value, np.int64) * prime
    return ((h >> 4) & 1023).astype(np.float32) / np.float32(1024)


def facade_pattern(floor_h_m: float, spacing_m: float, window_w: float, window_h: float,
                   brick: bool = False) -> tuple[float, float, float, float]:
    """``box_pattern`` of a building: floor height and window column spacing (metres), window
    width and height as fractions of a column and a floor.

    A brick façade adds 1 to the window height fraction: the box arrays have no other field
    free for it, and a fraction never reaches 1.
    """
    return (floor_h_m, spacing_m, window_w, window_h + (1.0 if brick else 0.0))


def door_centres_m(width_m: float, spacing_m: float) -> np.ndarray:
    """Door centres along a street-facing façade (metres from its start): the window column
    in the middle, and on wide façades every ``_DOOR_STRIDE_M`` or so from it."""
    margin = np.mod(width_m, spacing_m) / 2
    count = int(np.round((width_m - 2 * margin) / spacing_m))
    stride = max(2, int(np.round(_DOOR_STRIDE_M / spacing_m)))
    columns = np.arange(count)
    doors = columns[np.mod(columns - count // 2, stride) == 0]
    return margin + (doors + 0.5) * spacing_m


def _building_albedo(scene: StreetScene, s: dict[str, np.ndarray]) -> np.ndarray:
    floor_h, spacing, win_w, win_h = (s["pattern"][:, k] for k in range(4))
    brick = win_h >= 1  # see facade_pattern
    win_h = win_h - brick
    h, z, fp = s["h"], s["z"], s["fp"]
    albedo = s["colour"] * (1 + 0.05 * _octave_weight(3.0, fp) * _noise(
        scene.noise, h, z, 3.0, 101) + 0.04 * _octave_weight(0.4, fp) * _noise(
        scene.noise, h, z, 0.4, 211))[:, None]
    wall = s["axis"] != 2
    laid = np.flatnonzero(brick & wall)
    if len(laid):
        albedo[laid] = _brickwork(albedo[laid], h[laid], z[laid], fp[laid], s["box"][laid])
    margin = np.mod(s["width"], spacing) / 2  # centres the window columns on the facade
    hc = h - margin
    cols = interval(hc, fp, 0, s["width"] - 2 * margin)  # no part-windows at the corners
    across = _pulse_unit(hc / spacing, fp / spacing, (1 - win_w) / 2, win_w)
    floors = np.floor((s["height"] - 0.3) / floor_h)
    up = _pulse_unit(z / floor_h, fp / floor_h, 0.3, win_h) * (z < floors * floor_h)
    column = np.floor(hc / spacing)
    door = _doors(scene, s, column, hc, spacing) * (win_w > 0)  # blank walls get none
    # The door takes the place of its column's ground-floor window.
    window = across * up * cols * wall * ~((door > 0) & (z < floor_h))
    glass = s["detail"] * (0.6 + 0.9 * _hash01(column, np.floor(z / floor_h),
                                                 s["box"]))[:, None]
    albedo = albedo + (glass - albedo) * window[:, None]
    panel = _DOOR_RGB[(_hash01(s["box"], 5) * len(_DOOR_RGB)).astype(np.intp)]
    albedo = albedo + (panel - albedo) * door[:, None]
    roof = s["axis"] == 2
    albedo[roof] = _ROOF_RGB
    return albedo


def _doors(scene: StreetScene, s: dict[str, np.ndarray], column: np.ndarray, hc: np.ndarray,
           spacing: np.ndarray) -> np.ndarray:
    """Coverage of ground-floor doors (with a darker frame) at the columns that
    ``door_centres_m`` picks, on the building faces that look at the street (y = 0)."""
    box, width, fp, z = s["box"], s["width"], s["fp"], s["z"]
    centre_y = scene.box_min[box, 1] + scene.box_max[box, 1]
    street = (s["axis"] == 1) & (s["sign"] * centre_y < 0)
    count = np.round((width - 2 * np.mod(width, spacing) / 2) / spacing)
    stride = np.maximum(2, np.round(_DOOR_STRIDE_M / spacing))
    chosen = street & (np.mod(column - np.floor(count / 2), stride) == 0) & (column >= 0) & (
        column < count)
    sel = np.flatnonzero(chosen)
    cover = np.zeros(len(z), np.float32)
    if not len(sel):
        return cover
    mid = (column[sel] + 0.5) * spacing[sel]
    half = np.clip(0.45 * spacing[sel], *_DOOR_WIDTH_RANGE_M) / 2
    tall = _DOOR_HEIGHT_RANGE_M[0] + (_DOOR_HEIGHT_RANGE_M[1] - _DOOR_HEIGHT_RANGE_M[0]) * (
        _hash01(box[sel], 11))
    x, f, zz = hc[sel], fp[sel], z[sel]
    outer = interval(x, f, mid - half, mid + half) * interval(zz, f, -1.0, tall)
    inner = interval(x, f, mid - half + 0.07, mid + half - 0.07) * interval(zz, f, -1.0,
                                                                           tall - 0.07)
    # The frame is drawn as a part-covered door: the panel colour blended 60 % in.
    cover[sel] = inner + 0.6 * (outer - inner)
    return cover


def _brickwork(albedo: np.ndarray, h: np.ndarray, z: np.ndarray, fp: np.ndarray,
               box: np.ndarray) -> np.ndarray:
    """Running-bond brick courses over a façade's base colour, with lighter mortar joints."""
    course, length, joint = _BRICK_COURSE_M, _BRICK_LENGTH_M, _MORTAR_M
    row = np.floor(z / course)
    shifted = h + np.mod(row, 2) * (length / 2)  # every other course is offset half a brick
    bed = pulse_train(z, fp, course, 0.0, joint)
    # Head joints and per-brick tints follow the course a pixel lands in: once a pixel spans
    # several courses they would alias, so they fade to their means first.
    sharp = _octave_weight(4 * course, fp)
    head = sharp * pulse_train(shifted, fp, length, 0.0, joint) + (1 - sharp) * (joint / length)
    tint = 1 + 0.2 * sharp * (_hash01(np.floor(shifted / length), row, box) - 0.5)
    mortar = bed + head - bed * head
    return _blend(albedo * tint[:, None], _MORTAR_RGB, mortar)


def _pulse_unit(x: np.ndarray, fp: np.ndarray, start: np.ndarray, width: np.ndarray
                ) -> np.ndarray:
    """``pulse_train`` with period 1 and per-element start and width."""
    f = np.maximum(fp, np.float32(1e-4))
    a = x - start - f / 2

    def integral(v: np.ndarray) -> np.ndarray:
        whole = np.floor(v)
        return whole * width + np.minimum(v - whole, width)

    return (integral(a + f) - integral(a)) / f


def _car_albedo(s: dict[str, np.ndarray]) -> np.ndarray:
    h, z, fp, width, height = s["h"], s["z"], s["fp"], s["width"], s["height"]
    side, end = s["axis"] == 1, s["axis"] == 0
    albedo = s["colour"].copy()
    sill = interval(z, fp, -1.0, 0.28)
    wheels = (interval(h, fp, 0.5, 1.2) + interval(h, fp, width - 1.2, width - 0.5)) * interval(
        z, fp, -1.0, 0.62) * side
    albedo = _blend(albedo, np.array([0.05, 0.05, 0.05], np.float32), np.minimum(
        sill + wheels, 1) * (s["axis"] != 2))
    front = s["sign"] == s["pattern"][:, 0]
    lamps = (interval(h, fp, 0.08, 0.35) + interval(h, fp, width - 0.35, width - 0.08)) * (
        interval(z, fp, height - 0.3, height - 0.12)) * end
    lamp_rgb = np.where(front[:, None], np.float32([0.95, 0.95, 0.85]),
                        np.float32([0.75, 0.06, 0.05]))
    albedo = albedo + (lamp_rgb - albedo) * lamps[:, None]
    plate = interval(h, fp, width / 2 - 0.26, width / 2 + 0.26) * interval(
        z, fp, 0.33, 0.45) * end
    return _blend(albedo, np.array([0.9, 0.9, 0.88], np.float32), plate)


def _cabin_albedo(s: dict[str, np.ndarray]) -> np.ndarray:
    h, z, fp, width, height = s["h"], s["z"], s["fp"], s["width"], s["height"]
    glass = interval(h, fp, 0.06, width - 0.06) * interval(z, fp, 0.04, height - 0.07) * (
        s["axis"] != 2)
    tint = s["detail"] + (0.18 * z / height)[:, None]  # the sky reflects in the upper glass
    return s["colour"] + (tint - s["colour"]) * glass[:, None]


def _sign_albedo(s: dict[str, np.ndarray]) -> np.ndarray:
    h, z, fp, width, height = s["h"], s["z"], s["fp"], s["width"], s["height"]
    inner = interval(h, fp, 0.05, width - 0.05) * interval(z, fp, 0.05, height - 0.05)
    border = (1 - inner) * (s["axis"] == 0)
    return s["colour"] + (s["detail"] - s["colour"]) * border[:, None]


def _along(s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates across a face (horizontal, then vertical or y on tops), so textures
    run on across neighbouring boxes, e.g. a tree's overlapping crown boxes."""
    axis = s["axis"]
    return np.where(axis == 0, s["y"], s["x"]), np.where(axis == 2, s["y"], s["z"])


def _foliage_albedo(scene: StreetScene, s: dict[str, np.ndarray]) -> np.ndarray:
    """Leaves: clumps and leaf-scale brightness noise, and dark gaps into the crown.

    ``pattern`` = (leaf size, clump size, gap strength, unused); ``detail`` is the gap colour.
    The gaps are thresholded noise, so once a pixel covers many leaves they fade to the
    fraction of the noise tile below the threshold rather than to a blotchy minority.
    """
    leaf, clump, strength = (s["pattern"][:, k] for k in range(3))
    u, v = _along(s)
    fp, tile = s["fp"], scene.noise
    texture = 1 + 0.25 * _octave_weight(clump, fp) * _noise(tile, u, v, clump, 307) + (
        0.2 * _octave_weight(leaf, fp) * _noise(tile, u, v, leaf, 401))
    albedo = s["colour"] * texture[:, None]
    # Small holes between leaves and a few larger ones between twigs.
    holes = _holes(tile, u, v, 0.5 * leaf, fp, _GAP_THRESHOLD, 503)
    holes = holes + (1 - holes) * 0.7 * _holes(tile, u, v, 3 * leaf, fp, _BIG_GAP_THRESHOLD, 509)
    return albedo + (s["detail"] - albedo) * (holes * strength)[:, None]


def _holes(tile: np.ndarray, u: np.ndarray, v: np.ndarray, feature_m: np.ndarray,
           fp: np.ndarray, threshold: float, offset: int) -> np.ndarray:
    """Coverage of the places where noise of ``feature_m`` falls below ``threshold``; pixels
    larger than the features see the tile's mean coverage instead of a sampled one."""
    ramp = lambda n: np.clip((threshold - n) / _GAP_SOFTNESS, 0, 1)  # noqa: E731
    sharp = _octave_weight(feature_m, fp)
    return sharp * ramp(_noise(tile, u, v, feature_m, offset)) + (1 - sharp) * ramp(tile).mean()


def _trunk_albedo(scene: StreetScene, s: dict[str, np.ndarray]) -> np.ndarray:
    """Bark: vertical streaks (noise stretched six times along the trunk)."""
    u, _ = _along(s)
    streaks = _octave_weight(0.08, s["fp"]) * _noise(scene.noise, u, s["z"] / 6, 0.08, 601)
    return s["colour"] * (1 + 0.3 * streaks)[:, None]


def _fence_albedo(scene: StreetScene, s: dict[str, np.ndarray]) -> np.ndarray:
    """A board fence: vertical slats with dark joints, darker posts, a top rail and grain.

    ``pattern`` = (slat width, joint width, post spacing, unused), metres. Only the two long
    faces carry the boards; ends and the top are plain wood.
    """
    slat, joint, post = (s["pattern"][:, k] for k in range(3))
    h, z, fp = s["h"], s["z"], s["fp"]
    u, _ = _along(s)
    grain = 1 + 0.12 * _octave_weight(0.05, fp) * _noise(scene.noise, u, z / 8, 0.05, 701)
    albedo = s["colour"] * grain[:, None]
    boards = (s["axis"] != 2) & (s["width"] > 0.3)
    joints = _pulse_unit(h / slat, fp / slat, 0.0, joint / slat)
    posts = _pulse_unit(h / post, fp / post, 0.0, 0.1 / post)
    rail = interval(z, fp, s["height"] - 0.1, s["height"])
    dark = np.minimum(0.55 * joints * (1 - rail) + 0.3 * posts + 0.15 * rail, 0.8) * boards
    return albedo * (1 - dark)[:, None]


def _box_colours(scene: StreetScene, hits: RayHits, camera: PinholeCamera, pose: CameraPose,
                 idx: np.ndarray, cast_shadows: bool = True) -> np.ndarray:
    """Shaded colour of the box pixels ``idx`` (flat indices)."""
    face = hits.face.ravel()[idx]
    t = hits.depth.ravel()[idx]
    d = [c.ravel()[idx] for c in hits.dirs]
    o = pose.position.astype(np.float32)
    p = [o[a] + t * d[a] for a in range(3)]
    axis = hits.face_axis.astype(np.intp)
    norm = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    cosine = np.abs(np.choose(axis[face], d)) / norm
    # Footprint of a pixel on the face, stretched where the face is seen at a grazing angle.
    fp = t * norm / np.float32(camera.fx) / np.maximum(cosine, np.float32(0.05))
    albedo = _box_albedo(scene, p, face, hits.face_box, axis, hits.face_sign, fp)
    normal_axis, normal_sign = axis[face], hits.face_sign[face]
    sun_visible = shadows.sun_visibility(scene, np.stack(p, axis=1), normal_axis,
                                         normal_sign) if cast_shadows else np.float32(1)
    light = _face_light(scene, normal_axis, normal_sign, sun_visible)
    return _haze(scene, albedo * light, t)


def _box_albedo(scene: StreetScene, p: list[np.ndarray], face: np.ndarray,
                box_of_face: np.ndarray, axis: np.ndarray, face_sign: np.ndarray,
                fp: np.ndarray) -> np.ndarray:
    """Albedo (N×3) at world points ``p`` on faces ``face``, filtered over footprints ``fp``."""
    lo = scene.box_min[box_of_face].astype(np.float32)
    hi = scene.box_max[box_of_face].astype(np.float32)
    # Surface coordinates: h runs along the face horizontally (x for y- and z-facing faces, y
    # for x-facing ones), z up from the box's base.
    h_axis = np.where(axis == 0, 1, 0)
    rows = np.arange(len(axis))
    f = {"h0": lo[rows, h_axis], "width": hi[rows, h_axis] - lo[rows, h_axis],
         "z0": lo[:, 2], "height": hi[:, 2] - lo[:, 2]}
    h_axis_px = h_axis[face]
    s = {"h": np.where(h_axis_px == 1, p[1], p[0]) - f["h0"][face], "z": p[2] - f["z0"][face],
         "width": f["width"][face], "height": f["height"][face], "axis": axis[face],
         "sign": face_sign[face].astype(np.float32), "box": box_of_face[face], "fp": fp,
         "x": p[0], "y": p[1]}
    b = s["box"]
    s["colour"], s["detail"], s["pattern"] = (scene.box_colour[b], scene.box_detail[b],
                                              scene.box_pattern[b])
    kind = scene.box_kind[b]
    albedo = s["colour"].copy()
    for value, fn in ((BoxKind.BUILDING, lambda sub: _building_albedo(scene, sub)),
                      (BoxKind.CAR_BODY, _car_albedo), (BoxKind.CAR_CABIN, _cabin_albedo),
                      (BoxKind.SIGN, _sign_albedo),
                      (BoxKind.FOLIAGE, lambda sub: _foliage_albedo(scene, sub)),
                      (BoxKind.TRUNK, lambda sub: _trunk_albedo(scene, sub)),
                      (BoxKind.FENCE, lambda sub: _fence_albedo(scene, sub))):
        sel = np.flatnonzero(kind == value)
        if len(sel):
            albedo[sel] = fn({k: v[sel] for k, v in s.items()})
    return albedo


def surface_albedo(scene: StreetScene, points: np.ndarray, face: np.ndarray,
                   face_box: np.ndarray, face_axis: np.ndarray, face_sign: np.ndarray,
                   footprint_m: np.ndarray) -> np.ndarray:
    """Albedo (N×3 float32) of the surface at N world points, for sensors other than the
    camera (the LiDAR's reflectance).

    ``face`` indexes the face arrays (−1 for the ground), as in ``RayHits``; ``footprint_m``
    is the sensor's spot size on the surface, over which patterns are averaged.
    """
    points = np.asarray(points, np.float32)
    fp = np.asarray(footprint_m, np.float32)
    albedo = np.empty((len(points), 3), np.float32)
    ground = face < 0
    idx = np.flatnonzero(ground)
    albedo[idx] = _ground_albedo(scene, points[idx, 0], points[idx, 1], fp[idx], fp[idx])
    idx = np.flatnonzero(~ground)
    if len(idx):
        p = [points[idx, a] for a in range(3)]
        albedo[idx] = _box_albedo(scene, p, face[idx], face_box, face_axis.astype(np.intp),
                                  face_sign, fp[idx])
    return albedo


def _haze(scene: StreetScene, colour: np.ndarray, distance: np.ndarray) -> np.ndarray:
    keep = np.exp(-distance / np.float32(scene.lighting.fog_distance_m))[:, None]
    haze = np.asarray(scene.lighting.sky_horizon_rgb, np.float32)
    return haze + (colour * np.float32(EXPOSURE) - haze) * keep


def _sky_colours(scene: StreetScene, pose: CameraPose, d: list[np.ndarray]) -> np.ndarray:
    light = scene.lighting
    norm = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    elevation = np.clip(d[2] / norm, 0, 1)
    g = np.sqrt(elevation)[:, None]
    horizon = np.asarray(light.sky_horizon_rgb, np.float32)
    colour = horizon + (np.asarray(light.sky_zenith_rgb, np.float32) - horizon) * g
    if light.cloud_cover > 0:
        o = pose.position
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.float32(CLOUD_HEIGHT_M - o[2]) / np.maximum(d[2], np.float32(1e-6))
        cx, cy = np.float32(o[0]) + reach * d[0], np.float32(o[1]) + reach * d[1]
        density = _noise(scene.noise, cx, cy, 2000.0, 7) + 0.5 * _noise(
            scene.noise, cx, cy, 500.0, 13)
        threshold = np.float32(1.6 - 2.4 * light.cloud_cover)
        density = np.clip((density - threshold) / 1.2, 0, 1) * np.clip(elevation / 0.08, 0, 1)
        colour = colour + (np.float32(0.95) - colour) * (0.85 * density)[:, None]
    return colour


def shade(scene: StreetScene, pose: CameraPose, camera: PinholeCamera, hits: RayHits,
          cast_shadows: bool = True) -> np.ndarray:
    """Linear RGB (H×W×3 float32, roughly [0, 1]) of the ray-cast frame.

    ``cast_shadows=False`` lights every surface that faces the sun as if nothing stood in the
    way (what the frame looked like before shadows; for tests and comparisons).
    """
    out = np.empty((camera.height * camera.width, 3), np.float32)
    depth = hits.depth.ravel()
    face = hits.face.ravel()
    sky = ~np.isfinite(depth)
    idx = np.flatnonzero(sky)
    out[idx] = _sky_colours(scene, pose, [c.ravel()[idx] for c in hits.dirs])

    idx = np.flatnonzero(~sky & (face < 0))
    t = depth[idx]
    o = pose.position.astype(np.float32)
    x = o[0] + t * hits.dirs[0].ravel()[idx]
    y = o[1] + t * hits.dirs[1].ravel()[idx]
    fp_lat = t / np.float32(camera.fx)
    # Along the view the ground is foreshortened by (distance / camera height).
    fp_along = fp_lat * np.maximum(t / np.float32(max(o[2], 0.1)), 1)
    albedo = _ground_albedo(scene, x, y, fp_lat, fp_along)
    up, one = np.full(len(idx), 2, np.intp), np.ones(len(idx), np.int8)
    sun_visible = shadows.sun_visibility(scene, np.stack([x, y, np.zeros_like(x)], axis=1),
                                         up, one) if cast_shadows else np.float32(1)
    light = _face_light(scene, up, one, sun_visible)
    out[idx] = _haze(scene, albedo * light, t)

    idx = np.flatnonzero(face >= 0)
    if len(idx):
        out[idx] = _box_colours(scene, hits, camera, pose, idx, cast_shadows)
    return out.reshape(camera.height, camera.width, 3)
