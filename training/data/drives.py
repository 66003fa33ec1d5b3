"""KITTI-layout drives (the data engine's or real raw drives with ground truth) as training
sets (``data.dataset: drives``).

Frames are decoded and resized to the network input size once, at start-up, and kept in
memory (a few hundred MB for ~1000 frames at 416×128): every epoch then costs only the
augmentation. The data engine renders the configured synthetic drives first if they are
absent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_ros.geometry import resize_sparse_depth
from depth_ros.inference.preprocessing import resize_rgb
from depth_ros.kitti import KittiDrive, KittiFormatError, RawDrive, find_drives, read_depth_png
from depth_ros.readers import DepthFrame
from depth_ros.synthetic import write_synthetic_drive
from training.config import ConfigError, SyntheticSplit, TrainConfig
from training.data.sources import DataSplits, DepthDataset
from training.data.transforms import KBCrop, RandomCrop, TensorAugment, resize_depth
from training.distributed import DistContext

LOG = logging.getLogger("depth_ros.training")


def _render_one(root: str, split: SyntheticSplit, index: int, width: int, height: int) -> Path:
    # The varied profile draws each drive's image size itself: width/height are the kitti
    # profile's.
    kitti = split.camera_profile == "kitti"
    return write_synthetic_drive(root, num_frames=split.frames, seed=split.seed + index,
                                 drive=index + 1, width=width if kitti else None,
                                 height=height if kitti else None, progress=False,
                                 azimuth_decimation=split.azimuth_decimation,
                                 stereo=split.stereo, camera_profile=split.camera_profile)


def ensure_synthetic_drives(root: str | Path, split: SyntheticSplit, width: int = 1242,
                            height: int = 375, workers: int = 1) -> list[Path]:
    """Render the split's drives under ``root`` (drive i+1 has seed ``seed + i``) unless they
    are already complete; returns their directories."""
    args = [(str(root), split, i, width, height) for i in range(split.drives)]
    if workers <= 1:
        return [_render_one(*a) for a in args]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_render_one, *zip(*args, strict=True)))


@dataclass
class FrameArrays:
    """Resized frames held in memory, a frame reader: ``rgb`` N×H×W×3 uint8, ``depth`` N×H×W
    float32 metres (0 = no data), ``K`` N×3×3 float64 (intrinsics at the resized resolution),
    ``sparse`` N×H×W float32 LiDAR metres (0 = no return) or None when loaded without LiDAR."""

    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    sparse: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rgb)

    @property
    def focal_px(self) -> np.ndarray:
        """fx of every frame (N float64)."""
        return self.K[:, 0, 0]

    def frame(self, index: int) -> DepthFrame:
        """The index-th frame."""
        return DepthFrame(self.rgb[index], self.K[index], self.depth[index],
                          None if self.sparse is None else self.sparse[index])


def drive_sparse_depth(drive: RawDrive, index: int) -> np.ndarray:
    """The index-th frame's LiDAR as a full-size sparse depth image: the drive's
    ``proj_depth/velodyne_raw`` PNG, else its velodyne scan projected into the camera."""
    path = drive.velodyne_raw_path(index)
    if path.is_file():
        return read_depth_png(path)
    if drive.has_velodyne():
        return drive.sparse_depth(index)
    raise FileNotFoundError(f"no LiDAR for frame {drive.frames[index]} of {drive.path}: "
                            f"neither {path} nor velodyne_points with calib_velo_to_cam.txt")


def load_frames(drives: Sequence[KittiDrive], height: int, width: int,
                threads: int = 1, sparse: bool = False) -> FrameArrays:
    """Decode and resize every frame with ground truth from ``drives``; with ``sparse`` also
    its LiDAR (see ``drive_sparse_depth``), resized without losing points."""
    drives = [RawDrive(d.path, d.camera) for d in drives]
    jobs = [(drive, i) for drive in drives for i in range(len(drive))
            if drive.groundtruth_path(i).is_file()]
    if not jobs:
        raise FileNotFoundError("no frames with ground-truth depth in "
                                + ", ".join(str(d.path) for d in drives))
    intrinsics = {drive.path: drive.camera_model().resized(width, height).K for drive in drives}

    def load(job: tuple[RawDrive, int]) -> tuple[np.ndarray, ...]:
        drive, i = job
        out = (resize_rgb(drive.rgb(i), width, height),
               resize_depth(drive.groundtruth(i), width, height))
        if sparse:
            out += (resize_sparse_depth(drive_sparse_depth(drive, i), width, height),)
        return out

    # OpenCV releases the GIL while decoding and resizing, so threads do run in parallel.
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        frames = list(pool.map(load, jobs))
    return FrameArrays(np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames]),
                       np.stack([np.asarray(intrinsics[d.path], np.float64) for d, _ in jobs]),
                       np.stack([f[2] for f in frames]) if sparse else None)


def split_root(config: TrainConfig, split: str) -> Path:
    """``<data.root>/<split>``."""
    return Path(config.data.root) / split


def drive_splits(config: TrainConfig, dist: DistContext, lidar: bool) -> DataSplits:
    """The drives under ``<data.root>/train`` and ``/val``, rendered first where the config
    asks for synthetic ones; a missing or malformed drive is a ConfigError."""
    data = config.data
    splits = (("train", data.synthetic), ("val", data.val_synthetic))
    # Rank 0 renders what is missing while the others wait: one writer per drive.
    for split, synthetic in splits:
        if synthetic is not None and dist.is_main:
            LOG.info("%s drives: %d synthetic (seeds %d..%d, %d frames) under %s", split,
                     synthetic.drives, synthetic.seed, synthetic.seed + synthetic.drives - 1,
                     synthetic.frames, split_root(config, split))
            ensure_synthetic_drives(split_root(config, split), synthetic, data.image_width,
                                    data.image_height, data.render_workers)
    dist.barrier()
    # crop: random keeps the engine's full resolution (completion models: the LiDAR must
    # never be resampled) and crops; otherwise frames are resized to the input size.
    full_resolution = data.crop == "random"
    load_height, load_width = ((data.image_height, data.image_width) if full_resolution
                               else (data.input_height, data.input_width))
    frames = {}
    for split, _ in splits:
        try:
            drives = find_drives(split_root(config, split))
            t0 = time.monotonic()
            frames[split] = load_frames(drives, load_height, load_width,
                                        data.load_threads, sparse=lidar)
        except (KittiFormatError, FileNotFoundError) as exc:
            raise ConfigError(f"{split} data: {exc}") from exc
        LOG.info("%s: %d frames from %d drives loaded in %.1f s", split,
                 len(frames[split]), len(drives), time.monotonic() - t0)
    # One canonical focal for both splits: the one the model learns and reports.
    focal = float(np.median(frames["train"].focal_px))
    train_crop = val_crop = None
    if full_resolution:
        train_crop = RandomCrop(data.input_height, data.input_width)
        val_crop = KBCrop(data.val_height or data.input_height,
                          data.val_width or data.input_width)
    return DataSplits(
        DepthDataset(frames["train"], focal, train_crop, lidar=lidar,
                     augment=TensorAugment(config.augment, photometric=True)),
        DepthDataset(frames["val"], focal, val_crop, lidar=lidar), focal, _describe(config))


def _describe(config: TrainConfig) -> str:
    data = config.data
    parts = []
    for split, synthetic in (("train", data.synthetic), ("val", data.val_synthetic)):
        if synthetic is None:
            parts.append(f"{split}: drives under {split_root(config, split)}")
        else:
            parts.append(f"{split}: {synthetic.drives} drives x {synthetic.frames} frames, "
                         f"seeds {synthetic.seed}..{synthetic.seed + synthetic.drives - 1}"
                         + (f", LiDAR azimuth decimation {synthetic.azimuth_decimation}"
                            if synthetic.azimuth_decimation != 1 else ""))
    source = "depth_ros synthetic engine" if data.synthetic else "KITTI-format drives"
    return f"{source} ({data.image_width}x{data.image_height}); " + "; ".join(parts)
