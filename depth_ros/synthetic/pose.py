"""Camera poses in the synthetic world frame.

The world frame follows REP 103 for a vehicle: x forward along the street, y left, z up, with
the ground at z = 0. A pose maps the camera optical frame (x right, y down, z forward) into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Optical axes expressed in the world frame for a level camera looking along +x: optical z
# (forward) is world x, optical x (right) is world -y, optical y (down) is world -z.
OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class CameraPose:
    """Camera-to-world transform: ``p_world = rotation @ p_camera + position``."""

    rotation: np.ndarray
    position: np.ndarray

    def __post_init__(self) -> None:
        rotation = np.array(self.rotation, dtype=np.float64).reshape(3, 3)
        position = np.array(self.position, dtype=np.float64).reshape(3)
        rotation.setflags(write=False)
        position.setflags(write=False)
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "position", position)

    @classmethod
    def from_euler(cls, position: np.ndarray | tuple[float, float, float], yaw: float = 0.0,
                   pitch: float = 0.0, roll: float = 0.0) -> CameraPose:
        """A camera at ``position`` (world metres) with vehicle yaw/pitch/roll in radians.

        Yaw turns left about world z, pitch is about the vehicle's y (left) axis, so positive
        pitch tips the view down, and roll is about the viewing direction.
        """
        body = _rot_z(yaw) @ _rot_y(pitch) @ _rot_x(roll)
        return cls(body @ OPTICAL_TO_BODY, np.asarray(position, dtype=np.float64))

    @property
    def matrix(self) -> np.ndarray:
        """The 4×4 homogeneous camera-to-world matrix."""
        out = np.eye(4)
        out[:3, :3] = self.rotation
        out[:3, 3] = self.position
        return out

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """Transform N×3 world points into the camera optical frame."""
        return (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation
