"""OXTS RT3003 GPS/IMU packets in KITTI's format (``oxts/data/*.txt``, one 30-field packet per
file) and the KITTI devkit's poses from them (``convertOxtsToPose``).

Angles follow KITTI's order, ``rotation = Rz(yaw) · Ry(pitch) · Rx(roll)`` in east-north-up;
positions go through the devkit's Mercator projection (``latToScale``/``latlonToMercator``)
with the scale of the first packet's latitude.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from depth_ros.kitti.formats import KittiFormatError, text_lines

EARTH_RADIUS_M = 6378137.0

# The packet as the KITTI raw devkit's dataformat.txt lists it.
OXTS_FIELDS = (
    "lat", "lon", "alt", "roll", "pitch", "yaw", "vn", "ve", "vf", "vl", "vu",
    "ax", "ay", "az", "af", "al", "au", "wx", "wy", "wz", "wf", "wl", "wu",
    "pos_accuracy", "vel_accuracy", "navstat", "numsats", "posmode", "velmode", "orimode",
)
_OXTS_INT_FIELDS = frozenset(("navstat", "numsats", "posmode", "velmode", "orimode"))
OXTS_DTYPE = np.dtype([(name, np.int32 if name in _OXTS_INT_FIELDS else np.float64)
                       for name in OXTS_FIELDS])
# The devkit's own field descriptions, written beside the packets as ``oxts/dataformat.txt``.
OXTS_DATAFORMAT = """\
lat:   latitude of the oxts-unit (deg)
lon:   longitude of the oxts-unit (deg)
alt:   altitude of the oxts-unit (m)
roll:  roll angle (rad),    0 = level, positive = left side up,      range: -pi   .. +pi
pitch: pitch angle (rad),   0 = level, positive = front down,        range: -pi/2 .. +pi/2
yaw:   heading (rad),       0 = east,  positive = counter clockwise, range: -pi   .. +pi
vn:    velocity towards north (m/s)
ve:    velocity towards east (m/s)
vf:    forward velocity, i.e. parallel to earth-surface (m/s)
vl:    leftward velocity, i.e. parallel to earth-surface (m/s)
vu:    upward velocity, i.e. perpendicular to earth-surface (m/s)
ax:    acceleration in x, i.e. in direction of vehicle front (m/s^2)
ay:    acceleration in y, i.e. in direction of vehicle left (m/s^2)
az:    acceleration in z, i.e. in direction of vehicle top (m/s^2)
af:    forward acceleration (m/s^2)
al:    leftward acceleration (m/s^2)
au:    upward acceleration (m/s^2)
wx:    angular rate around x (rad/s)
wy:    angular rate around y (rad/s)
wz:    angular rate around z (rad/s)
wf:    angular rate around forward axis (rad/s)
wl:    angular rate around leftward axis (rad/s)
wu:    angular rate around upward axis (rad/s)
pos_accuracy:  velocity accuracy (north/east in m)
vel_accuracy:  velocity accuracy (north/east in m/s)
navstat:       navigation status (see navstat_to_string)
numsats:       number of satellites tracked by primary GPS receiver
posmode:       position mode of primary GPS receiver (see gps_mode_to_string)
velmode:       velocity mode of primary GPS receiver (see gps_mode_to_string)
orimode:       orientation mode of primary GPS receiver (see gps_mode_to_string)
"""


def read_oxts(path: str | os.PathLike) -> np.ndarray:
    """Read an oxts packet file (30 numbers per line) as a structured ``OXTS_DTYPE`` array."""
    rows = []
    for lineno, line in text_lines(path, "oxts file"):
        fields = line.split()
        if len(fields) != len(OXTS_FIELDS):
            raise KittiFormatError(f"{path}:{lineno}: expected {len(OXTS_FIELDS)} oxts fields, "
                                   f"got {len(fields)}")
        try:
            values = [float(f) for f in fields]
        except ValueError as exc:
            raise KittiFormatError(f"{path}:{lineno}: {exc}") from None
        rows.append(tuple(int(v) if name in _OXTS_INT_FIELDS else v
                          for name, v in zip(OXTS_FIELDS, values, strict=True)))
    if not rows:
        raise KittiFormatError(f"{path}: empty oxts file")
    return np.array(rows, dtype=OXTS_DTYPE)


def read_oxts_dir(directory: str | os.PathLike) -> np.ndarray:
    """Every packet of ``oxts/data/*.txt`` in frame order, one structured record per file."""
    directory = Path(directory)
    files = sorted(directory.glob("*.txt"))
    if not files:
        raise KittiFormatError(f"no oxts packets in {directory}")
    return np.concatenate([read_oxts(f)[:1] for f in files])


def format_oxts_packet(packet: np.ndarray) -> str:
    """One ``oxts/data/*.txt`` line: KITTI's number formats, status fields as integers."""
    floats = " ".join(f"{v:.14g}" if k < 2 else f"{v:.10g}" for k, v in enumerate(packet[:25]))
    return floats + " " + " ".join(str(int(v)) for v in packet[25:]) + "\n"


def rotation_z(angle: float) -> np.ndarray:
    """3×3 rotation by ``angle`` radians about z (counter-clockwise seen from above)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """``Rz(yaw) · Ry(pitch) · Rx(roll)``: the OXTS unit's orientation in ENU (KITTI's order)."""
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    return (rotation_z(yaw)
            @ np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
            @ np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]]))


def rpy_from_matrix(rotation: np.ndarray) -> tuple[float, float, float]:
    """(roll, pitch, yaw) with ``rotation = Rz(yaw) · Ry(pitch) · Rx(roll)`` (KITTI's order)."""
    r = rotation
    return (float(np.arctan2(r[2, 1], r[2, 2])), float(-np.arcsin(np.clip(r[2, 0], -1, 1))),
            float(np.arctan2(r[1, 0], r[0, 0])))


def lat_to_scale(lat_deg: float) -> float:
    """The devkit's Mercator scale for a latitude."""
    return float(np.cos(np.radians(lat_deg)))


def latlon_to_mercator(lat_deg: np.ndarray, lon_deg: np.ndarray, scale: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The devkit's ``latlonToMercator``: (east, north) metres."""
    mx = scale * np.asarray(lon_deg) * np.pi * EARTH_RADIUS_M / 180.0
    my = scale * EARTH_RADIUS_M * np.log(np.tan((90.0 + np.asarray(lat_deg)) * np.pi / 360.0))
    return mx, my


def mercator_to_latlon(mx: np.ndarray, my: np.ndarray, scale: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``latlon_to_mercator``: (lat, lon) degrees."""
    lon = np.asarray(mx) * 180.0 / (scale * np.pi * EARTH_RADIUS_M)
    lat = 360.0 / np.pi * np.arctan(np.exp(np.asarray(my) / (scale * EARTH_RADIUS_M))) - 90.0
    return lat, lon


def oxts_poses(packets: np.ndarray) -> np.ndarray:
    """The devkit's ``convertOxtsToPose``: N×4×4 OXTS poses relative to the first packet, from
    N×30 float packets (the fields in ``OXTS_FIELDS`` order)."""
    scale = lat_to_scale(packets[0, 0])
    mx, my = latlon_to_mercator(packets[:, 0], packets[:, 1], scale)
    poses = np.zeros((len(packets), 4, 4))
    for i, p in enumerate(packets):
        poses[i, :3, :3] = rotation_from_rpy(*p[3:6])
        poses[i, :3, 3] = (mx[i], my[i], p[2])
        poses[i, 3, 3] = 1.0
    return np.linalg.inv(poses[0]) @ poses
