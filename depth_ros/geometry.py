"""Pinhole camera model and back-projection (camera optical frame, REP 103: x right, y down,
z forward)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of a rectified pinhole camera, in pixels, for an image of width × height."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the conventional name of the matrix
        """The 3×3 intrinsic matrix."""
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> PinholeCamera:  # noqa: N802, N803
        """Build from a 3×3 intrinsic matrix (or the left 3×3 of a 3×4 projection matrix)."""
        K = np.asarray(K, dtype=np.float64)  # noqa: N806
        if K.shape not in ((3, 3), (3, 4)):
            raise ValueError(f"expected a 3x3 or 3x4 matrix, got shape {K.shape}")
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                   int(width), int(height))

    def resized(self, width: int, height: int) -> PinholeCamera:
        """The same camera for the image resized to width × height.

        Pixel centres are at integer coordinates, so the principal point maps as
        (c + 0.5) · s − 0.5, which is what cv2.resize does to the image.
        """
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                             (self.cy + 0.5) * sy - 0.5, int(width), int(height))


@lru_cache(maxsize=8)
def _normalised_rays(fx: float, fy: float, cx: float, cy: float, width: int,
                     height: int) -> tuple[np.ndarray, np.ndarray]:
    # Cached: a node back-projects every frame with the same intrinsics.
    x = ((np.arange(width, dtype=np.float32) - np.float32(cx)) / np.float32(fx))[None, :]
    y = ((np.arange(height, dtype=np.float32) - np.float32(cy)) / np.float32(fy))[:, None]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def normalised_pixel_coordinates(camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """((u − cx)/fx as 1×W, (v − cy)/fy as H×1), float32, read-only and cached per camera.

    A pixel's viewing ray in the optical frame is (x, y, 1) with these broadcast together.
    """
    return _normalised_rays(camera.fx, camera.fy, camera.cx, camera.cy, camera.width,
                            camera.height)


def backproject_depth(depth: np.ndarray, K: np.ndarray, out: np.ndarray | None = None  # noqa: N803
                      ) -> np.ndarray:
    """Back-project an H×W depth image (metres along the optical axis) to H×W×3 points.

    Pixels with NaN depth give NaN points. ``out`` (H×W×3 float32, or any array whose last
    axis holds x, y, z such as a structured view) is filled in place when given.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be H×W, got shape {depth.shape}")
    h, w = depth.shape
    K = np.asarray(K, dtype=np.float64)  # noqa: N806
    x, y = _normalised_rays(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), w, h)
    if out is None:
        out = np.empty((h, w, 3), dtype=np.float32)
    np.multiply(depth, x, out=out[..., 0])
    np.multiply(depth, y, out=out[..., 1])
    out[..., 2] = depth
    return out
