"""The frame every reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DepthFrame:
    """One training/evaluation sample as read from disk.

    Attributes:
        rgb: H×W×3 uint8 RGB.
        K: 3×3 float64 intrinsics of ``rgb`` (pixel centres at integer coordinates).
        depth: H×W float32 ground truth in metres, 0 = no data; None when the set has none.
        sparse_depth: H×W float32 LiDAR depth in metres, 0 = no return; None without LiDAR.
        name: where the frame came from, for logs and error messages.
    """

    rgb: np.ndarray
    K: np.ndarray
    depth: np.ndarray | None = None
    sparse_depth: np.ndarray | None = None
    name: str = ""
