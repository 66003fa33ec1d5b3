"""Where a rosbag2 bag is, as ``ros2 bag play`` accepts it (ROS-free: the player and the
training data read bags through the same check)."""

from __future__ import annotations

from pathlib import Path

from depth_ros.errors import DepthRosError

STORAGE_FILES = (".mcap", ".db3")  # bare storage files rosbags (>= 0.11) reads on their own


class BagError(DepthRosError, ValueError):
    """A bag that is not there or cannot be read; the message names it."""


def bag_location(path: str | Path) -> Path:
    """What ``ros2 bag play`` accepts: a bag directory (with ``metadata.yaml``) or one
    storage file (``.mcap``, ``.db3``) on its own, e.g. an MCAP file copied out of its bag or
    written by another tool. Raises ``BagError`` for anything else."""
    path = Path(path)
    if path.is_dir():
        if not (path / "metadata.yaml").is_file():
            raise BagError(f"not a rosbag2 bag (no metadata.yaml in the directory): {path}")
        return path
    if not path.exists():
        raise BagError(f"no such bag: {path}")
    if path.suffix not in STORAGE_FILES:
        raise BagError(f"not a rosbag2 bag: {path} is neither a bag directory nor a "
                       f"{' or '.join(STORAGE_FILES)} file")
    return path
