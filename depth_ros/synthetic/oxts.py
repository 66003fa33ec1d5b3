"""OXTS RT3003 GPS/IMU packets of a synthetic drive, in KITTI's 30-field ``oxts`` format.

The synthetic world (x along the street, y left, z up) is placed on the globe at a start
latitude/longitude near Karlsruhe with the street at a compass heading. Positions go through
the exact inverse of the KITTI devkit's Mercator projection (``latToScale``/``latlonToMercator``
with the scale of the first packet's latitude), so the devkit's ``convertOxtsToPose`` gives back
the synthetic trajectory of the OXTS unit. Velocities, accelerations and angular rates are
central differences of that trajectory; accelerations are specific forces, i.e. they include
gravity, as the unit's accelerometers measure it (az ≈ 9.81 m/s² at rest).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EARTH_RADIUS_M = 6378137.0
GRAVITY_MPS2 = 9.81
# Karlsruhe, where KITTI was recorded; altitude of the OXTS unit over the ground plane's datum.
START_LAT_DEG = 49.0110
START_LON_DEG = 8.4160
GROUND_ALTITUDE_M = 113.0
_DIFF_STEP_S = 1e-3

FIELDS = ("lat", "lon", "alt", "roll", "pitch", "yaw", "vn", "ve", "vf", "vl", "vu", "ax", "ay",
          "az", "af", "al", "au", "wx", "wy", "wz", "wf", "wl", "wu", "pos_accuracy",
          "vel_accuracy", "navstat", "numsats", "posmode", "velmode", "orimode")

DATAFORMAT = """\
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

# navstat 4 (ready), RTK-integer position/velocity modes, as in most KITTI packets.
_STATUS = (4, 9, 5, 5, 6)


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


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


def rpy_from_matrix(rotation: np.ndarray) -> tuple[float, float, float]:
    """(roll, pitch, yaw) with ``rotation = Rz(yaw) · Ry(pitch) · Rx(roll)`` (KITTI's order)."""
    r = rotation
    return (float(np.arctan2(r[2, 1], r[2, 2])), float(-np.arcsin(np.clip(r[2, 0], -1, 1))),
            float(np.arctan2(r[1, 0], r[0, 0])))


def oxts_packets(imu_to_world: Callable[[float], np.ndarray], times_s: np.ndarray,
                 heading_rad: float, start_lat_deg: float = START_LAT_DEG,
                 start_lon_deg: float = START_LON_DEG) -> np.ndarray:
    """N×30 OXTS packets at ``times_s`` (seconds into the drive) for the OXTS unit's
    4×4 pose ``imu_to_world(t)`` in the synthetic world, whose x axis points ``heading_rad``
    (0 = east, counter-clockwise) and whose origin lies at the start latitude/longitude."""
    enu_from_world = _rot_z(heading_rad)
    scale = lat_to_scale(start_lat_deg)
    mx0, my0 = latlon_to_mercator(start_lat_deg, start_lon_deg, scale)
    origin = imu_to_world(float(times_s[0]))[:3, 3]
    h = _DIFF_STEP_S
    packets = np.zeros((len(times_s), len(FIELDS)))
    for i, t in enumerate(np.asarray(times_s, dtype=np.float64)):
        before, now, after = (imu_to_world(float(t) + k * h) for k in (-1, 0, 1))
        pos = enu_from_world @ (now[:3, 3] - origin)
        rot = enu_from_world @ now[:3, :3]
        vel = enu_from_world @ (after[:3, 3] - before[:3, 3]) / (2 * h)
        acc = enu_from_world @ (after[:3, 3] - 2 * now[:3, 3] + before[:3, 3]) / (h * h)
        force = acc + np.array([0.0, 0.0, GRAVITY_MPS2])
        rate_skew = now[:3, :3].T @ (after[:3, :3] - before[:3, :3]) / (2 * h)
        omega_body = np.array([rate_skew[2, 1], rate_skew[0, 2], rate_skew[1, 0]])
        roll, pitch, yaw = rpy_from_matrix(rot)
        # f/l/u axes: the heading's frame, level with the earth's surface.
        level = _rot_z(yaw).T
        lat, lon = mercator_to_latlon(mx0 + pos[0], my0 + pos[1], scale)
        packets[i, :23] = [lat, lon, GROUND_ALTITUDE_M + now[2, 3], roll, pitch, yaw,
                           vel[1], vel[0], *(level @ vel), *(rot.T @ force), *(level @ force),
                           *omega_body, *(level @ (rot @ omega_body))]
        packets[i, 23:] = (0.02, 0.02, *_STATUS)
    return packets


def format_packet(packet: np.ndarray) -> str:
    """One ``oxts/data/*.txt`` line: KITTI's number formats, status fields as integers."""
    floats = " ".join(f"{v:.14g}" if k < 2 else f"{v:.10g}" for k, v in enumerate(packet[:25]))
    return floats + " " + " ".join(str(int(v)) for v in packet[25:]) + "\n"


def oxts_poses(packets: np.ndarray) -> np.ndarray:
    """The devkit's ``convertOxtsToPose``: N×4×4 OXTS poses relative to the first packet."""
    scale = lat_to_scale(packets[0, 0])
    mx, my = latlon_to_mercator(packets[:, 0], packets[:, 1], scale)
    poses = np.zeros((len(packets), 4, 4))
    for i, p in enumerate(packets):
        roll, pitch, yaw = p[3:6]
        cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
        rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
        ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
        poses[i, :3, :3] = _rot_z(yaw) @ ry @ rx
        poses[i, :3, 3] = (mx[i], my[i], p[2])
        poses[i, 3, 3] = 1.0
    return np.linalg.inv(poses[0]) @ poses
