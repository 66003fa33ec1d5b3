"""NYU Depth v2: the official labelled ``.mat`` and the BTS ``sync`` folder layout.

``nyu_depth_v2_labeled.mat`` is MATLAB v7.3, i.e. HDF5. MATLAB stores arrays column-major and
h5py shows them with the axes reversed: ``images`` reads as N×3×W×H uint8 and ``depths`` as
N×W×H float32 metres, so an image is ``images[i].transpose(2, 1, 0)`` (H×W×3) and a depth map
``depths[i].T`` (H×W). The BTS ``sync`` layout holds ``<scene>/rgb_<index>.jpg`` with
``<scene>/sync_depth_<index>.png`` (uint16 millimetres, 0 = no data).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from depth_ros.geometry import PinholeCamera
from depth_ros.kitti.formats import read_depth_png, read_rgb_png
from depth_ros.kitti.splits import read_split_file
from depth_ros.readers.frame import DepthFrame

# NYU Depth v2's colour camera (the toolbox's camera_params.m), for its 640×480 images.
NYU_CAMERA = PinholeCamera(518.8579, 519.4696, 325.5824, 253.7362, 640, 480)
NYU_DEPTH_PNG_SCALE = 1000.0  # sync_depth_*.png: millimetres


class NyuFormatError(ValueError):
    """A NYU Depth v2 file is missing, malformed or inconsistent."""


def read_nyu_depth_png(path: str | os.PathLike) -> np.ndarray:
    """Read a ``sync_depth_*.png`` (uint16 millimetres) as float32 metres, 0 = no data."""
    return read_depth_png(path, NYU_DEPTH_PNG_SCALE, NyuFormatError)


def read_nyu_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an ``rgb_*.jpg`` as H×W×3 uint8 RGB."""
    return read_rgb_png(path, NyuFormatError)


class NyuLabeled:
    """The 1449 labelled frames of ``nyu_depth_v2_labeled.mat``, read lazily through h5py.

    The file is opened on first access in each process: HDF5 handles do not survive the fork
    of a DataLoader worker.
    """

    def __init__(self, mat_path: str | os.PathLike) -> None:
        self.mat_path = Path(mat_path)
        self._file = None
        self._pid = -1
        self._length = self._open()["images"].shape[0]

    def _open(self):
        import h5py  # optional dependency: only this reader needs it

        if self._file is None or self._pid != os.getpid():
            if not self.mat_path.is_file():
                raise NyuFormatError(f"NYU .mat file not found: {self.mat_path}")
            try:
                handle = h5py.File(self.mat_path, "r")
            except OSError as exc:
                raise NyuFormatError(f"{self.mat_path}: not an HDF5 (MATLAB v7.3) file: {exc}"
                                     ) from None
            for key in ("images", "depths"):
                if key not in handle:
                    raise NyuFormatError(f"{self.mat_path}: no {key!r} dataset")
            images, depths = handle["images"], handle["depths"]
            if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
                raise NyuFormatError(f"{self.mat_path}: 'images' must be N×3×W×H uint8, got "
                                     f"{images.shape} {images.dtype}")
            expected = (images.shape[0], images.shape[2], images.shape[3])
            if depths.shape != expected or depths.dtype.kind != "f":
                raise NyuFormatError(f"{self.mat_path}: 'depths' is {depths.shape} "
                                     f"{depths.dtype}, expected float metres {expected} to "
                                     "match 'images'")
            self._file, self._pid = handle, os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        # An open HDF5 handle cannot be pickled (spawned DataLoader workers): reopen there.
        return {**self.__dict__, "_file": None, "_pid": -1}

    def __len__(self) -> int:
        return self._length

    def frame(self, index: int) -> DepthFrame:
        """The index-th labelled frame with NYU's intrinsics."""
        handle = self._open()
        rgb = np.ascontiguousarray(handle["images"][index].transpose(2, 1, 0))
        depth = np.ascontiguousarray(handle["depths"][index].T, dtype=np.float32)
        # The labelled depths are inpainted (dense); only non-finite values mean no data.
        depth[~np.isfinite(depth)] = 0.0
        return DepthFrame(rgb, _camera_for(rgb).K, depth, None, f"{self.mat_path}[{index}]")


def _camera_for(rgb: np.ndarray) -> PinholeCamera:
    height, width = rgb.shape[:2]
    if (width, height) == (NYU_CAMERA.width, NYU_CAMERA.height):
        return NYU_CAMERA
    return NYU_CAMERA.resized(width, height)


class NyuSync:
    """The BTS ``sync`` layout: every ``<scene>/rgb_<index>.jpg`` with its
    ``sync_depth_<index>.png``, or the entries of a BTS split list
    (``/<scene>/rgb_<index>.jpg /<scene>/sync_depth_<index>.png 518.8579``) when
    ``split_path`` is given."""

    def __init__(self, root: str | os.PathLike, split_path: str | os.PathLike | None = None
                 ) -> None:
        self.root = Path(root)
        if split_path is not None:
            self.pairs = [(e.image, e.depth) for e in read_split_file(split_path, NyuFormatError)]
        else:
            images = sorted(self.root.glob("*/rgb_*.jpg"))
            self.pairs = [(str(p.relative_to(self.root)),
                           str(p.with_name(p.name.replace("rgb_", "sync_depth_", 1))
                               .with_suffix(".png").relative_to(self.root))) for p in images]
        if not self.pairs:
            raise NyuFormatError(f"no <scene>/rgb_*.jpg frames under {self.root}")

    def __len__(self) -> int:
        return len(self.pairs)

    def frame(self, index: int) -> DepthFrame:
        """The index-th frame with NYU's intrinsics."""
        image, depth_name = self.pairs[index]
        rgb = read_nyu_rgb(self.root / image)
        depth = None if depth_name is None else read_nyu_depth_png(self.root / depth_name)
        if depth is not None and depth.shape != rgb.shape[:2]:
            raise NyuFormatError(f"{self.root / depth_name}: depth {depth.shape} does not match "
                                 f"image {self.root / image} {rgb.shape[:2]}")
        return DepthFrame(rgb, _camera_for(rgb).K, depth, None, str(self.root / image))
