"""KITTI-layout drives (the data engine's or real raw drives with ground truth) as training
sets (``data.dataset: drives``).

Frames are decoded and resized to the network input size once, at start-up, and kept in
memory (a few hundred MB for ~1000 frames at 416×128): every epoch then costs only the
augmentation. With ``data.resize_policy: canonical`` they are kept at their own resolution
instead (``FrameList``: ~2.3 MB a 1242×375 frame, depth as the PNGs' uint16) and every sample
is resized and cropped for the canonical camera (``CanonicalResizeCrop``). The data engine
renders the configured synthetic drives first if they are absent.
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
from depth_ros.kitti import (
    DEPTH_PNG_SCALE,
    KittiDrive,
    KittiFormatError,
    RawDrive,
    find_drives,
    read_depth_png,
)
from depth_ros.readers import DepthFrame
from depth_ros.synthetic import write_synthetic_drive
from training.config import ConfigError, DataConfig, SyntheticSplit, TrainConfig
from training.data.sources import DataSplits, DepthDataset
from training.data.transforms import (
    CanonicalResizeCrop,
    CanonicalResizePad,
    KBCrop,
    RandomCrop,
    TensorAugment,
    canonical_size,
    resize_depth,
)
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


@dataclass
class FrameList:
    """Frames at their own resolution (cameras may differ), a frame reader: per frame ``rgb``
    H×W×3 uint8, ``depth`` H×W uint16 (metres × 256 as in the PNGs: exact, half of float32's
    memory; 0 = no data), ``K`` 3×3 float64 and ``sparse`` H×W float32 LiDAR metres (or None
    when loaded without LiDAR)."""

    rgb: list[np.ndarray]
    depth: list[np.ndarray]
    K: list[np.ndarray]
    sparse: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.rgb)

    @property
    def focal_px(self) -> np.ndarray:
        """fx of every frame (N float64)."""
        return np.array([k[0, 0] for k in self.K], np.float64)

    def size(self, index: int) -> tuple[int, int]:
        """(height, width) of the index-th frame."""
        height, width = self.rgb[index].shape[:2]
        return height, width

    def frame(self, index: int) -> DepthFrame:
        """The index-th frame."""
        depth = self.depth[index].astype(np.float32) * np.float32(1 / DEPTH_PNG_SCALE)
        return DepthFrame(self.rgb[index], self.K[index], depth,
                          None if self.sparse is None else self.sparse[index])


def load_full_frames(drives: Sequence[KittiDrive], threads: int = 1, sparse: bool = False
                     ) -> FrameList:
    """Decode every frame with ground truth from ``drives`` at its own resolution; with
    ``sparse`` also its LiDAR (``drive_sparse_depth``)."""
    drives = [RawDrive(d.path, d.camera) for d in drives]
    jobs = [(drive, i) for drive in drives for i in range(len(drive))
            if drive.groundtruth_path(i).is_file()]
    if not jobs:
        raise FileNotFoundError("no frames with ground-truth depth in "
                                + ", ".join(str(d.path) for d in drives))
    cameras = {drive.path: drive.camera_model() for drive in drives}

    def load(job: tuple[RawDrive, int]) -> tuple[np.ndarray | None, ...]:
        drive, i = job
        rgb, depth = drive.rgb(i), drive.groundtruth(i)
        if depth.shape != rgb.shape[:2]:
            raise KittiFormatError(f"{drive.groundtruth_path(i)} is {depth.shape}, its image "
                                   f"{rgb.shape[:2]}")
        camera = cameras[drive.path]
        if (camera.height, camera.width) != rgb.shape[:2]:  # calibrated at another size
            camera = camera.resized(rgb.shape[1], rgb.shape[0])
        # The PNGs hold metres × 256 as integers: back to them exactly.
        depth16 = np.rint(depth * DEPTH_PNG_SCALE).astype(np.uint16)
        lidar = drive_sparse_depth(drive, i).astype(np.float32) if sparse else None
        return rgb, depth16, np.asarray(camera.K, np.float64), lidar

    with ThreadPoolExecutor(max(threads, 1)) as pool:
        frames = list(pool.map(load, jobs))
    return FrameList([f[0] for f in frames], [f[1] for f in frames], [f[2] for f in frames],
                     [f[3] for f in frames] if sparse else None)


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
    """The drives under ``<data.root>/train`` (and ``data.extra_train``'s roots) and ``/val``,
    rendered first where the config asks for synthetic ones; a missing or malformed drive is a
    ConfigError."""
    data = config.data
    splits = (("train", data.synthetic), ("val", data.val_synthetic))
    # Rank 0 renders what is missing while the others wait: one writer per drive.
    if dist.is_main:
        for split, synthetic in splits:
            if synthetic is not None:
                _render_split(split_root(config, split), split, synthetic, data)
        for extra in data.extra_train:
            if extra.synthetic is not None:
                _render_split(Path(extra.root), "train", extra.synthetic, data)
    dist.barrier()
    if data.resize_policy == "canonical":
        return _canonical_splits(config, lidar)
    # crop: random keeps the engine's full resolution (completion models: the LiDAR must
    # never be resampled) and crops; otherwise frames are resized to the input size.
    full_resolution = data.crop == "random"
    load_height, load_width = ((data.image_height, data.image_width) if full_resolution
                               else (data.input_height, data.input_width))
    frames = {}
    for split, _ in splits:
        try:
            drives = _split_drives(config, split)
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


def _render_split(root: Path, split: str, synthetic: SyntheticSplit, data: DataConfig
                  ) -> None:
    LOG.info("%s drives: %d synthetic (seeds %d..%d, %d frames, %s cameras) under %s", split,
             synthetic.drives, synthetic.seed, synthetic.seed + synthetic.drives - 1,
             synthetic.frames, synthetic.camera_profile, root)
    ensure_synthetic_drives(root, synthetic, data.image_width, data.image_height,
                            data.render_workers)


def _split_drives(config: TrainConfig, split: str) -> list[KittiDrive]:
    """The drives of ``split``: under ``<root>/<split>``, for train also ``extra_train``'s."""
    drives = find_drives(split_root(config, split))
    if split == "train":
        for extra in config.data.extra_train:
            drives += find_drives(extra.root)
    return drives


def _canonical_splits(config: TrainConfig, lidar: bool) -> DataSplits:
    """``resize_policy: canonical``: full-resolution frames, resized per sample."""
    data = config.data
    frames = {}
    for split in ("train", "val"):
        try:
            drives = _split_drives(config, split)
            t0 = time.monotonic()
            frames[split] = load_full_frames(drives, data.load_threads, sparse=lidar)
        except (KittiFormatError, FileNotFoundError) as exc:
            raise ConfigError(f"{split} data: {exc}") from exc
        sizes = sorted({f"{w}x{h}" for h, w in map(frames[split].size,
                                                    range(len(frames[split])))})
        LOG.info("%s: %d frames from %d drives (%s) loaded at full resolution in %.1f s",
                 split, len(frames[split]), len(drives), ", ".join(sizes),
                 time.monotonic() - t0)
    focal = data.canonical_focal_px
    val = frames["val"]
    # Every validation frame at the canonical focal length, padded to one common size (a
    # multiple of the stride) so that they batch: the largest of them, rounded up.
    resized = [canonical_size(*val.size(i), float(val.K[i][0, 0]), focal)
               for i in range(len(val))]
    multiple = data.val_pad_multiple
    pad_h, pad_w = (-(-max(size[axis] for size in resized) // multiple) * multiple
                    for axis in (0, 1))
    LOG.info("canonical camera: fx %.1f px; training crops %dx%d, scale jitter %s; "
             "validation at %dx%d", focal, data.input_width, data.input_height,
             data.scale_jitter, pad_w, pad_h)
    train_crop = CanonicalResizeCrop(focal, data.scale_jitter, data.input_height,
                                     data.input_width)
    return DataSplits(
        DepthDataset(frames["train"], focal, train_crop, lidar=lidar,
                     augment=TensorAugment(config.augment, photometric=True)),
        DepthDataset(val, focal, CanonicalResizePad(focal, pad_h, pad_w), lidar=lidar),
        focal, _describe(config))


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
    for extra in data.extra_train:
        synthetic = extra.synthetic
        parts.append(f"train: drives under {extra.root}" if synthetic is None else
                     f"train: {synthetic.drives} drives x {synthetic.frames} frames, seeds "
                     f"{synthetic.seed}..{synthetic.seed + synthetic.drives - 1}, "
                     f"{synthetic.camera_profile} cameras")
    if data.resize_policy == "canonical":
        low, high = data.scale_jitter
        parts.append(f"canonical camera fx {data.canonical_focal_px:g} px, scale jitter "
                     f"{low:g}-{high:g}, crops {data.input_width}x{data.input_height}")
    source = "depth_ros synthetic engine" if data.synthetic else "KITTI-format drives"
    return f"{source} ({data.image_width}x{data.image_height}); " + "; ".join(parts)
