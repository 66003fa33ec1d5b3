"""The frame every reader returns, and the split-file format the BTS toolboxes write."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_ros.kitti import KittiFormatError


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


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split file: image path, depth path (None: no ground truth), focal."""

    image: str
    depth: str | None
    focal_px: float


def read_split_file(path: str | os.PathLike,
                    error: type[ValueError] = KittiFormatError) -> list[SplitEntry]:
    """Parse a BTS / DepthFormer split list: ``<image> <depth or None> <focal>`` per line.

    Blank lines are skipped; any other line that does not parse raises ``error`` naming the
    file, the line number and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"split file not found: {path}")
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise error(f"{path}:{lineno}: expected '<image> <depth|None> <focal>', got "
                        f"{len(fields)} fields in {line!r}")
        try:
            focal = float(fields[2])
        except ValueError:
            raise error(f"{path}:{lineno}: focal length {fields[2]!r} is not a number") from None
        if not np.isfinite(focal) or focal <= 0:
            raise error(f"{path}:{lineno}: focal length must be positive, got {fields[2]}")
        depth = None if fields[1] == "None" else fields[1]
        # BTS's NYU lists start paths with '/': they are relative to the data root all the same.
        entries.append(SplitEntry(fields[0].lstrip("/"), depth and depth.lstrip("/"), focal))
    if not entries:
        raise error(f"{path}: no entries")
    return entries
