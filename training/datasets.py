"""Training data: KITTI-layout drives (the data engine's or real ones) as a torch Dataset.

Frames are decoded and resized to the network input size once, at start-up, and kept in
memory (a few hundred MB for ~1000 frames at 416×128): every epoch then costs only the
augmentation. Ground-truth depth is expressed for one canonical focal length (the training
focal, recorded in the model metadata), so drives with other intrinsics train consistently.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from depth_ros.geometry import resize_sparse_depth
from depth_ros.inference.estimator import resize_rgb
from depth_ros.kitti import KittiDrive, RawDrive, find_drives, read_depth_png
from depth_ros.readers import (
    DepthFrame,
    KittiCompletionSplit,
    KittiEigenSplit,
    KittiRawFrames,
    KittiValSelection,
    NyuLabeled,
    NyuSync,
)
from training.config import AugmentConfig, SyntheticSplit
from training.transforms import Sample, to_tensors


def _render_one(root: str, split: SyntheticSplit, index: int, width: int, height: int) -> Path:
    from depth_ros.synthetic import write_synthetic_drive

    return write_synthetic_drive(root, num_frames=split.frames, seed=split.seed + index,
                                 drive=index + 1, width=width, height=height, progress=False)


def ensure_synthetic_drives(root: str | Path, split: SyntheticSplit, width: int = 1242,
                            height: int = 375, workers: int = 1) -> list[Path]:
    """Render the split's drives under ``root`` (drive i+1 has seed ``seed + i``) unless they
    are already complete; returns their directories."""
    args = [(str(root), split, i, width, height) for i in range(split.drives)]
    if workers <= 1:
        return [_render_one(*a) for a in args]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_render_one, *zip(*args, strict=True)))


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize sparse or dense ground truth by nearest pixel centre: never blends a depth
    with a neighbour's or with 'no data'."""
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


@dataclass
class FrameArrays:
    """Resized frames: ``rgb`` N×H×W×3 uint8, ``depth`` N×H×W float32 metres (0 = no data),
    ``focal_px`` N float64 (fx at the resized resolution), ``sparse`` N×H×W float32 LiDAR
    metres (0 = no return) or None when loaded without LiDAR."""

    rgb: np.ndarray
    depth: np.ndarray
    focal_px: np.ndarray
    sparse: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rgb)


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
    focal = {drive.path: drive.camera_model().resized(width, height).fx for drive in drives}

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
                       np.array([focal[d.path] for d, _ in jobs]),
                       np.stack([f[2] for f in frames]) if sparse else None)




@dataclass
class DataSplits:
    """A configuration's training and validation sets, the focal length their depth is
    expressed for (the model's ``train_focal_px``) and a line describing them."""

    train: Dataset
    val: Dataset
    canonical_focal_px: float
    description: str


class DepthFrames(Dataset):
    """Frames as ``(image 3×H×W float32 in [0, 1], depth 1×H×W float32 metres)`` pairs, or
    ``(image, depth, sparse_depth 1×H×W)`` triples when the frames carry LiDAR.

    Depth and LiDAR are rescaled to ``canonical_focal_px`` (``depth · canonical / fx``: what a
    camera with that focal length would need for the same picture); 0 stays 'no data'.

    Args:
        frames: the resized frames.
        canonical_focal_px: the focal length the model learns depth for.
        augment: random flip, colour jitter and LiDAR thinning; None for validation.
    """

    def __init__(self, frames: FrameArrays, canonical_focal_px: float,
                 augment: AugmentConfig | None = None) -> None:
        self.frames = frames
        self.canonical_focal_px = float(canonical_focal_px)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image = torch.from_numpy(self.frames.rgb[index]).permute(2, 0, 1).float() / 255.0
        scale = np.float32(self.canonical_focal_px / self.frames.focal_px[index])
        depth = torch.from_numpy(self.frames.depth[index] * scale)[None]
        if self.frames.sparse is None:
            if self.augment is not None:
                image, depth = augment_pair(image, depth, self.augment)
            return image, depth
        sparse = torch.from_numpy(self.frames.sparse[index] * scale)[None]
        if self.augment is not None:
            image, depth, sparse = augment_pair(image, depth, self.augment, sparse)
            sparse = augment_lidar(sparse, self.augment)
        return image, depth, sparse


def _uniform(spread: float) -> float:
    return 1.0 + spread * (2.0 * torch.rand(()).item() - 1.0)


def augment_pair(image: torch.Tensor, depth: torch.Tensor, config: AugmentConfig,
                 sparse: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Random horizontal flip (image, depth and ``sparse`` if given) and
    brightness/contrast/saturation jitter (image only); returns ``(image, depth)``, or
    ``(image, depth, sparse)`` when ``sparse`` is given.

    Draws from torch's global generator, which the trainer seeds and checkpoints.
    """
    if torch.rand(()).item() < config.hflip_prob:
        image, depth = image.flip(-1), depth.flip(-1)
        sparse = None if sparse is None else sparse.flip(-1)
    # Rec. 601 luma, as torchvision's colour jitter uses.
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    image = image * _uniform(config.brightness)
    image = (image - gray.mean()) * _uniform(config.contrast) + gray.mean()
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    image = (image - gray) * _uniform(config.saturation) + gray
    if sparse is None:
        return image.clamp(0.0, 1.0), depth
    return image.clamp(0.0, 1.0), depth, sparse


def augment_lidar(sparse: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """With probability ``lidar_drop_prob`` no LiDAR at all (all zeros); else each return kept
    with probability f, f drawn from [``lidar_keep_min``, ``lidar_keep_max``] (a sparser
    sensor). Draws from torch's global generator."""
    if config.lidar_drop_prob > 0 and torch.rand(()).item() < config.lidar_drop_prob:
        return torch.zeros_like(sparse)
    if config.lidar_keep_min >= 1.0:
        return sparse
    keep = config.lidar_keep_min + (config.lidar_keep_max - config.lidar_keep_min) * float(
        torch.rand(()).item())
    return torch.where(torch.rand(sparse.shape) < keep, sparse, torch.zeros_like(sparse))


class EpochSampler(Sampler[int]):
    """A fresh permutation each epoch from ``seed + epoch``, optionally sharded over
    ``num_replicas`` processes and starting part-way in (``start``): a resumed run sees
    exactly the samples it had not yet seen that epoch.

    Sharding is ``DistributedSampler``'s, index for index: every rank draws the same
    permutation, pads it to a multiple of ``num_replicas`` with its first indices and takes
    every ``num_replicas``-th from ``rank``. ``start`` counts this rank's samples; skipping them
    here (rather than in the loader) means they are neither loaded nor augmented.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0, start: int = 0, rank: int = 0,
                 num_replicas: int = 1) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.size, self.seed, self.epoch, self.start = size, seed, epoch, start
        self.rank, self.num_replicas = rank, num_replicas

    @property
    def shard_size(self) -> int:
        """Samples each rank gets per epoch (the padded total over ``num_replicas``)."""
        return math.ceil(self.size / self.num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the permutation of ``epoch``, skipping this rank's first ``start`` samples."""
        self.epoch, self.start = epoch, start

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        indices = torch.randperm(self.size, generator=generator).tolist()
        total = self.shard_size * self.num_replicas
        indices = (indices * math.ceil(total / max(self.size, 1)))[:total]
        return iter(indices[self.rank::self.num_replicas][self.start:])

    def __len__(self) -> int:
        return max(self.shard_size - self.start, 0)


def seed_worker(worker_id: int) -> None:
    """``DataLoader`` ``worker_init_fn``: seed numpy and ``random`` from the torch seed the
    loader gave this worker (its generator's draw + ``worker_id``), so that any augmentation
    is repeatable, whichever library it draws from."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class FrameReader(Protocol):
    """What ``FrameDataset`` needs of a reader (every class in ``depth_ros.readers`` has it)."""

    def __len__(self) -> int: ...

    def frame(self, index: int) -> DepthFrame: ...


def frame_to_sample(frame: DepthFrame) -> Sample:
    """A reader's frame as a transform sample: RGB in [0, 1], zeros for missing depth."""
    zeros = np.zeros(frame.rgb.shape[:2], np.float32)
    return {"rgb": frame.rgb.astype(np.float32) / np.float32(255.0),
            "depth": zeros if frame.depth is None else frame.depth,
            "sparse_depth": zeros if frame.sparse_depth is None else frame.sparse_depth,
            "K": np.asarray(frame.K, dtype=np.float64)}


class FrameDataset(Dataset):
    """Any reader's frames as dicts of tensors, decoded on access (for data too large to hold).

    Items: ``image`` 3×H×W float32 in [0, 1], ``depth`` and ``sparse_depth`` 1×H×W float32
    metres (0 where there is none), ``depth_mask`` and ``sparse_mask`` 1×H×W bool, ``K`` 3×3
    float32 for the transformed image.

    Args:
        reader: a ``depth_ros.readers`` reader.
        transform: applied to the numpy sample (see ``training.transforms``), or None.
    """

    def __init__(self, reader: FrameReader,
                 transform: Callable[[Sample], Sample] | None = None) -> None:
        self.reader = reader
        self.transform = transform

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = frame_to_sample(self.reader.frame(index))
        if self.transform is not None:
            sample = self.transform(sample)
        return to_tensors(sample)


def engine_drive_dataset(root: str | Path, camera: int = 2,
                         transform: Callable[[Sample], Sample] | None = None) -> FrameDataset:
    """Every drive under ``root`` (the data engine's or real KITTI raw with ground truth);
    ``sparse_depth`` is the projected velodyne scan where the drive has one, else zeros."""
    return FrameDataset(KittiRawFrames(find_drives(root, camera)), transform)


def kitti_eigen_dataset(split_path: str | Path, raw_root: str | Path,
                        depth_root: str | Path | None, velodyne: bool = True,
                        transform: Callable[[Sample], Sample] | None = None) -> FrameDataset:
    """The frames of an Eigen split list (BTS format); see ``KittiEigenSplit``."""
    return FrameDataset(KittiEigenSplit(split_path, raw_root, depth_root, velodyne), transform)


def kitti_completion_dataset(velodyne_root: str | Path, raw_root: str | Path,
                             groundtruth_root: str | Path | None = None,
                             transform: Callable[[Sample], Sample] | None = None
                             ) -> FrameDataset:
    """A KITTI depth-completion split (``velodyne_raw`` input, ``groundtruth`` target)."""
    return FrameDataset(KittiCompletionSplit(velodyne_root, raw_root, groundtruth_root),
                        transform)


def kitti_val_selection_dataset(root: str | Path,
                                transform: Callable[[Sample], Sample] | None = None
                                ) -> FrameDataset:
    """``depth_selection/val_selection_cropped``."""
    return FrameDataset(KittiValSelection(root), transform)


def nyu_dataset(path: str | Path, split_path: str | Path | None = None,
                transform: Callable[[Sample], Sample] | None = None) -> FrameDataset:
    """NYU Depth v2: ``nyu_depth_v2_labeled.mat`` when ``path`` is a file, else a BTS
    ``sync`` folder (optionally restricted to a split list)."""
    path = Path(path)
    reader = NyuLabeled(path) if path.is_file() else NyuSync(path, split_path)
    return FrameDataset(reader, transform)
