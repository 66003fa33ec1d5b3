"""Frames with ground truth from KITTI raw drives (real or the data engine's) as
``DepthFrame``s; the drive files themselves are read by ``depth_ros.kitti``."""

from __future__ import annotations

from collections.abc import Sequence

from depth_ros.kitti.drives import KittiDrive, RawDrive
from depth_ros.kitti.formats import KittiFormatError, read_depth_png
from depth_ros.readers.frame import DepthFrame


class KittiRawFrames:
    """Frames with ground truth from KITTI-layout drives (real or the data engine's).

    ``sparse_depth`` is the drive's ``proj_depth/velodyne_raw`` PNG where there is one, else
    the velodyne scan projected when the drive has scans and ``calib_velo_to_cam.txt``, else
    None (the engine's older drives have no LiDAR).
    """

    def __init__(self, drives: Sequence[KittiDrive], require_groundtruth: bool = True) -> None:
        self.drives = [d if isinstance(d, RawDrive) else RawDrive(d.path, d.camera)
                       for d in drives]
        for drive in self.drives:
            drive.check()
        self.index = [(drive, i) for drive in self.drives for i in range(len(drive))
                      if not require_groundtruth or drive.groundtruth_path(i).is_file()]
        if not self.index:
            raise KittiFormatError("no frames with ground-truth depth in "
                                   + ", ".join(str(d.path) for d in self.drives))
        self._velodyne = {drive.path: drive.has_velodyne() for drive in self.drives}
        self._K = {drive.path: drive.camera_model().K for drive in self.drives}

    def __len__(self) -> int:
        return len(self.index)

    def frame(self, index: int) -> DepthFrame:
        """The index-th frame."""
        drive, i = self.index[index]
        rgb = drive.rgb(i)
        gt_path = drive.groundtruth_path(i)
        depth = read_depth_png(gt_path) if gt_path.is_file() else None
        sparse = None
        raw_path = drive.velodyne_raw_path(i)
        if raw_path.is_file():
            sparse = read_depth_png(raw_path)
        elif self._velodyne[drive.path]:
            sparse = drive.sparse_depth(i)
        if sparse is not None:
            if sparse.shape != rgb.shape[:2]:
                raise KittiFormatError(f"drive {drive.path}: sparse depth of frame "
                                       f"{drive.frames[i]} is {sparse.shape[::-1]}, image "
                                       f"{drive.image_path(i)} is {rgb.shape[1::-1]}")
        return DepthFrame(rgb, self._K[drive.path].copy(), depth, sparse,
                          str(drive.image_path(i)))
