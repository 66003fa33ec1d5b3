"""Readers for real depth datasets (KITTI raw, KITTI depth, NYU Depth v2) as ``DepthFrame``s.

Every reader has ``len(reader)`` and ``reader.frame(index) -> DepthFrame``, so one torch
Dataset (``training/data/sources.py``) serves them all. Malformed input raises an error naming
the file and what is wrong (``KittiFormatError`` or ``NyuFormatError``), never a silent zero.
The KITTI files themselves (drives, calibration, OXTS, split lists) are read by
``depth_ros.kitti``.
"""

from depth_ros.readers.frame import DepthFrame
from depth_ros.readers.kitti_depth import KittiCompletionSplit, KittiEigenSplit, KittiValSelection
from depth_ros.readers.kitti_raw import KittiRawFrames
from depth_ros.readers.nyu import (
    NYU_CAMERA,
    NyuFormatError,
    NyuLabeled,
    NyuSync,
    read_nyu_depth_png,
)

__all__ = [
    "NYU_CAMERA",
    "DepthFrame",
    "KittiCompletionSplit",
    "KittiEigenSplit",
    "KittiRawFrames",
    "KittiValSelection",
    "NyuFormatError",
    "NyuLabeled",
    "NyuSync",
    "read_nyu_depth_png",
]
