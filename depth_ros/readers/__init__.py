"""Readers for real depth datasets (KITTI raw, KITTI depth, NYU Depth v2) as ``DepthFrame``s.

Every reader has ``len(reader)`` and ``reader.frame(index) -> DepthFrame``, so one torch
Dataset (``training/data/sources.py``) serves them all. Malformed input raises an error naming
the file and what is wrong (``KittiFormatError`` or ``NyuFormatError``), never a silent zero.
"""

from depth_ros.readers.frame import DepthFrame, SplitEntry, read_split_file
from depth_ros.readers.kitti_depth import KittiCompletionSplit, KittiEigenSplit, KittiValSelection
from depth_ros.readers.kitti_raw import (
    OXTS_DTYPE,
    OXTS_FIELDS,
    KittiRawCalibration,
    KittiRawFrames,
    RawDrive,
    read_oxts,
    read_oxts_dir,
    read_rigid_transform,
    velo_to_image_projection,
)
from depth_ros.readers.nyu import (
    NYU_CAMERA,
    NyuFormatError,
    NyuLabeled,
    NyuSync,
    read_nyu_depth_png,
)

__all__ = [
    "NYU_CAMERA",
    "OXTS_DTYPE",
    "OXTS_FIELDS",
    "DepthFrame",
    "KittiCompletionSplit",
    "KittiEigenSplit",
    "KittiRawCalibration",
    "KittiRawFrames",
    "KittiValSelection",
    "NyuFormatError",
    "NyuLabeled",
    "NyuSync",
    "RawDrive",
    "SplitEntry",
    "read_nyu_depth_png",
    "read_oxts",
    "read_oxts_dir",
    "read_rigid_transform",
    "read_split_file",
    "velo_to_image_projection",
]
