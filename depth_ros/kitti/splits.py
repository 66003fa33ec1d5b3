"""Split lists in the format the BTS / DepthFormer toolboxes write (KITTI Eigen, NYU):
``<image> <depth or None> <focal>`` per line, paths relative to the data root."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from depth_ros.kitti.formats import KittiFormatError, text_lines


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
    entries = []
    for lineno, line in text_lines(path, "split file", error):
        fields = line.split()
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
