"""OXTS RT3003 GPS/IMU packets generated for a synthetic drive (the format, its reader and the
devkit's poses are in ``depth_ros.kitti.oxts``).

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

from depth_ros.kitti.oxts import (
    OXTS_FIELDS,
    lat_to_scale,
    latlon_to_mercator,
    mercator_to_latlon,
    rotation_z,
    rpy_from_matrix,
)

GRAVITY_MPS2 = 9.81
# Karlsruhe, where KITTI was recorded; altitude of the OXTS unit over the ground plane's datum.
START_LAT_DEG = 49.0110
START_LON_DEG = 8.4160
GROUND_ALTITUDE_M = 113.0
_DIFF_STEP_S = 1e-3

# navstat 4 (ready), RTK-integer position/velocity modes, as in most KITTI packets.
_STATUS = (4, 9, 5, 5, 6)


def oxts_packets(imu_to_world: Callable[[float], np.ndarray], times_s: np.ndarray,
                 heading_rad: float, start_lat_deg: float = START_LAT_DEG,
                 start_lon_deg: float = START_LON_DEG) -> np.ndarray:
    """N×30 OXTS packets at ``times_s`` (seconds into the drive) for the OXTS unit's
    4×4 pose ``imu_to_world(t)`` in the synthetic world, whose x axis points ``heading_rad``
    (0 = east, counter-clockwise) and whose origin lies at the start latitude/longitude."""
    enu_from_world = rotation_z(heading_rad)
    scale = lat_to_scale(start_lat_deg)
    mx0, my0 = latlon_to_mercator(start_lat_deg, start_lon_deg, scale)
    origin = imu_to_world(float(times_s[0]))[:3, 3]
    h = _DIFF_STEP_S
    packets = np.zeros((len(times_s), len(OXTS_FIELDS)))
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
        level = rotation_z(yaw).T
        lat, lon = mercator_to_latlon(mx0 + pos[0], my0 + pos[1], scale)
        packets[i, :23] = [lat, lon, GROUND_ALTITUDE_M + now[2, 3], roll, pitch, yaw,
                           vel[1], vel[0], *(level @ vel), *(rot.T @ force), *(level @ force),
                           *omega_body, *(level @ (rot @ omega_body))]
        packets[i, 23:] = (0.02, 0.02, *_STATUS)
    return packets
