"""KITTI depth benchmark layouts: Eigen split lists, depth-completion train/val, and
``val_selection_cropped``.

Depth-completion layout (``data_depth_velodyne`` / ``data_depth_annotated``; images come
from the raw tree, ``<raw>/<date>/<drive>/image_0X/data/<frame>.png``)::

    <split>/<drive>/proj_depth/velodyne_raw/image_0X/<frame>.png
    <split>/<drive>/proj_depth/groundtruth/image_0X/<frame>.png

``val_selection_cropped`` (``depth_selection``), one flat folder per kind::

    image/<drive>_image_<frame>_image_0X.png
    velodyne_raw/<drive>_velodyne_raw_<frame>_image_0X.png
    groundtruth_depth/<drive>_groundtruth_depth_<frame>_image_0X.png
    intrinsics/<drive>_image_<frame>_image_0X.txt        (the 9 numbers of K, row-major)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from depth_ros.kitti.calibration import KittiRawCalibration, calib_array
from depth_ros.kitti.formats import (
    KittiFormatError,
    read_calib_file,
    read_depth_png,
    read_rgb_png,
    read_velodyne_bin,
)
from depth_ros.kitti.splits import read_split_file
from depth_ros.readers.frame import DepthFrame

_CAMERA_DIR = re.compile(r"image_0([0-3])")


def _camera_of(path: str, source: Path) -> int:
    match = _CAMERA_DIR.search(path)
    if match is None:
        raise KittiFormatError(f"{source}: no image_0X camera folder in {path!r}")
    return int(match.group(1))


def _rect_K(cam_to_cam_path: Path, camera: int) -> np.ndarray:  # noqa: N802
    calib = read_calib_file(cam_to_cam_path)
    p_rect = calib_array(calib, f"P_rect_{camera:02d}", 12, cam_to_cam_path).reshape(3, 4)
    return p_rect[:, :3].copy()


class KittiEigenSplit:
    """Frames of an Eigen split list (``eigen_train_files_with_gt.txt`` and the like).

    Args:
        split_path: the list (``<date>/<drive>/image_0X/data/<frame>.png <depth|None> <focal>``).
        raw_root: the KITTI raw tree the image paths are relative to.
        depth_root: where the depth paths point (``data_depth_annotated`` with ``train`` and
            ``val`` merged, as BTS expects); None reads no ground truth.
        velodyne: also project the raw velodyne scan as ``sparse_depth``.
    """

    def __init__(self, split_path: str | os.PathLike, raw_root: str | os.PathLike,
                 depth_root: str | os.PathLike | None = None, velodyne: bool = True) -> None:
        self.split_path = Path(split_path)
        self.entries = read_split_file(self.split_path)
        self.raw_root = Path(raw_root)
        self.depth_root = None if depth_root is None else Path(depth_root)
        self.velodyne = velodyne
        self._calib: dict[tuple[Path, int], KittiRawCalibration | np.ndarray] = {}
        for entry in self.entries:
            _camera_of(entry.image, self.split_path)

    def __len__(self) -> int:
        return len(self.entries)

    def _date_dir(self, image: str) -> Path:
        return self.raw_root / Path(image).parts[0]

    def _calibration(self, image: str, camera: int) -> KittiRawCalibration | np.ndarray:
        """The full chain when velodyne is wanted, else just K."""
        key = (self._date_dir(image), camera)
        if key not in self._calib:
            date = key[0]
            if self.velodyne:
                self._calib[key] = KittiRawCalibration.from_files(
                    date / "calib_cam_to_cam.txt", date / "calib_velo_to_cam.txt", camera=camera)
            else:
                self._calib[key] = _rect_K(date / "calib_cam_to_cam.txt", camera)
        return self._calib[key]

    def velodyne_path(self, index: int) -> Path:
        """The raw scan of the index-th entry (``velodyne_points/data/<frame>.bin``)."""
        image = Path(self.entries[index].image)
        drive = image.parents[2]
        return self.raw_root / drive / "velodyne_points" / "data" / f"{image.stem}.bin"

    def frame(self, index: int) -> DepthFrame:
        """The index-th entry of the list."""
        entry = self.entries[index]
        image_path = self.raw_root / entry.image
        rgb = read_rgb_png(image_path)
        camera = _camera_of(entry.image, self.split_path)
        calib = self._calibration(entry.image, camera)
        depth = None
        if entry.depth is not None and self.depth_root is not None:
            depth = read_depth_png(self.depth_root / entry.depth)
        sparse = None
        if isinstance(calib, KittiRawCalibration):
            height, width = rgb.shape[:2]
            sparse = calib.sparse_depth(read_velodyne_bin(self.velodyne_path(index)), width,
                                        height)
            K = calib.K  # noqa: N806
        else:
            K = calib  # noqa: N806
        return DepthFrame(rgb, K, depth, sparse, str(image_path))


class KittiCompletionSplit:
    """The depth-completion ``train`` or ``val`` split, images from the raw tree.

    Args:
        velodyne_root: ``data_depth_velodyne/<split>`` (holds ``<drive>/proj_depth/velodyne_raw``).
        raw_root: the KITTI raw tree (``<date>/<drive>/image_0X/data`` and calibration).
        groundtruth_root: ``data_depth_annotated/<split>``; None: the same as velodyne_root
            (both archives unpacked into one folder, as most toolboxes do).
        cameras: which of image_02 / image_03 to use.
    """

    def __init__(self, velodyne_root: str | os.PathLike, raw_root: str | os.PathLike,
                 groundtruth_root: str | os.PathLike | None = None,
                 cameras: tuple[int, ...] = (2, 3)) -> None:
        self.velodyne_root = Path(velodyne_root)
        self.raw_root = Path(raw_root)
        self.groundtruth_root = Path(groundtruth_root or velodyne_root)
        self.items: list[tuple[str, int, str]] = []  # (drive, camera, frame)
        self._K: dict[tuple[str, int], np.ndarray] = {}
        for drive_dir in sorted(p for p in self.velodyne_root.iterdir() if p.is_dir()):
            for camera in cameras:
                self.items += [(drive_dir.name, camera, f)
                               for f in self._drive_frames(drive_dir.name, camera)]
        if not self.items:
            raise KittiFormatError(f"no proj_depth/velodyne_raw frames under {velodyne_root}")

    def _drive_frames(self, drive: str, camera: int) -> list[str]:
        image_dir = f"image_{camera:02d}"
        sparse_dir = self.velodyne_root / drive / "proj_depth" / "velodyne_raw" / image_dir
        gt_dir = self.groundtruth_root / drive / "proj_depth" / "groundtruth" / image_dir
        if not sparse_dir.is_dir():
            return []
        sparse = sorted(p.stem for p in sparse_dir.glob("*.png"))
        truth = sorted(p.stem for p in gt_dir.glob("*.png"))
        if sparse != truth:
            raise KittiFormatError(f"drive {drive}: {len(sparse)} velodyne_raw frames in "
                                   f"{sparse_dir} but {len(truth)} groundtruth frames in {gt_dir}")
        return sparse

    def __len__(self) -> int:
        return len(self.items)

    def paths(self, index: int) -> tuple[Path, Path, Path]:
        """(image, velodyne_raw, groundtruth) paths of the index-th frame."""
        drive, camera, frame = self.items[index]
        image_dir = f"image_{camera:02d}"
        return (self.raw_root / drive[:10] / drive / image_dir / "data" / f"{frame}.png",
                self.velodyne_root / drive / "proj_depth" / "velodyne_raw" / image_dir
                / f"{frame}.png",
                self.groundtruth_root / drive / "proj_depth" / "groundtruth" / image_dir
                / f"{frame}.png")

    def frame(self, index: int) -> DepthFrame:
        """The index-th frame."""
        drive, camera, _ = self.items[index]
        image_path, sparse_path, gt_path = self.paths(index)
        if (drive, camera) not in self._K:
            self._K[(drive, camera)] = _rect_K(
                self.raw_root / drive[:10] / "calib_cam_to_cam.txt", camera)
        return DepthFrame(read_rgb_png(image_path), self._K[(drive, camera)].copy(),
                          read_depth_png(gt_path), read_depth_png(sparse_path), str(image_path))


class KittiValSelection:
    """``depth_selection/val_selection_cropped`` (1000 cropped frames, each with its own K), or
    the anonymous test sets beside it (``test_depth_completion_anonymous``,
    ``test_depth_prediction_anonymous``: ``0000000000.png`` in every folder, no ground truth).

    A folder that is absent (no ``groundtruth_depth`` in a test set, no ``velodyne_raw`` for
    depth prediction) gives None; a file missing from a folder that exists is an error.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.images = sorted((self.root / "image").glob("*.png"))
        if not self.images:
            raise KittiFormatError(f"no images in {self.root / 'image'}")

    def __len__(self) -> int:
        return len(self.images)

    def paths(self, index: int) -> dict[str, Path]:
        """The image, velodyne_raw, groundtruth_depth and intrinsics files of a frame."""
        image = self.images[index]
        # "<drive>_sync_image_<frame>_image_0X": only the first "_image_" names the kind.
        name = image.name
        return {
            "image": image,
            "velodyne_raw": self.root / "velodyne_raw"
            / name.replace("_sync_image_", "_sync_velodyne_raw_", 1),
            "groundtruth_depth": self.root / "groundtruth_depth"
            / name.replace("_sync_image_", "_sync_groundtruth_depth_", 1),
            "intrinsics": self.root / "intrinsics" / f"{image.stem}.txt",
        }

    @staticmethod
    def read_intrinsics(path: Path) -> np.ndarray:
        """The 3×3 K of an ``intrinsics/*.txt`` (9 numbers)."""
        if not path.is_file():
            raise KittiFormatError(f"intrinsics file not found: {path}")
        try:
            values = np.array(path.read_text().split(), dtype=np.float64)
        except ValueError as exc:
            raise KittiFormatError(f"{path}: {exc}") from None
        if values.size != 9:
            raise KittiFormatError(f"{path}: expected the 9 numbers of K, got {values.size}")
        return values.reshape(3, 3)

    def frame(self, index: int) -> DepthFrame:
        """The index-th frame."""
        paths = self.paths(index)
        depth, sparse = (read_depth_png(paths[key]) if paths[key].parent.is_dir() else None
                         for key in ("groundtruth_depth", "velodyne_raw"))
        return DepthFrame(read_rgb_png(paths["image"]), self.read_intrinsics(paths["intrinsics"]),
                          depth, sparse, str(paths["image"]))
