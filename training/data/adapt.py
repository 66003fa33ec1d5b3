"""A robot's own recording as training data (``data.dataset: bag``), for adapting a model
without labels (``training.adapt``).

The bag's frames (``training.data.bags.load_bag_frames``: images, projected LiDAR, poses
when the bag has odometry/TF) are held in memory at full resolution. A training item is a
frame at the model's resolution policy, with its neighbours t−1 and t+1 cut the same way as
photometric sources:

- mono models (``fixed`` / ``canonical``): the whole frame resized to the input size, LiDAR
  resized without losing a return;
- fusion models (``native``): a random input-size crop at full resolution (the LiDAR is never
  resampled), the crop's intrinsics shifted with it.

Depth is expressed as the model learns it: at its ``train_focal_px`` for mono models
(``depth · train_focal / fx``), in metres for native fusion models (which run at the camera's
own focal length). Items are ``(image, depth, sparse, sources, K, source_from_target,
source_ok, depth_scale, is_bag)``: ``depth`` the LiDAR (the supervision), ``sparse`` the
LiDAR input, ``sources`` 2×3×H×W, ``K`` of the item's pixels, ``source_from_target`` 2×4×4,
``source_ok`` 2 bools, ``depth_scale`` the factor from metres to the item's depth units.
Engine drives mixed in (``data.mix_engine_root``) come in the same shape, with their exact
depth and no usable source.

Poses: the bag's own where it has them; else point-to-point ICP between the two frames'
LiDAR returns (``training.selfsup.lidar_relative_pose``), computed once per consecutive pair
at start-up. Validation frames, and ``data.bag_exclude_photometric``, are never sources.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from depth_ros.geometry import PinholeCamera, resize_sparse_depth
from depth_ros.inference.preprocessing import resize_rgb
from depth_ros.kitti import KittiFormatError, find_drives
from training.config import ConfigError, TrainConfig
from training.data.drives import ensure_synthetic_drives, load_frames
from training.data.holdout import holdout_mask
from training.data.sources import DataSplits, DepthDataset
from training.data.transforms import RandomCrop, TensorAugment
from training.distributed import DistContext
from training.selfsup import lidar_relative_pose, relative_pose

LOG = logging.getLogger("depth_ros.training")
SOURCE_OFFSETS = (-1, 1)
VAL_EVERY = 10  # without data.bag_val_frames: every 10th frame is held out
HOLDOUT_CAMERA = 2  # the seed of kitti_dev's draw for camera 02


def parse_frame_spec(spec: str, count: int, what: str = "frames") -> list[int]:
    """Frame indices from ``"0-4,7,10-12"`` (inclusive ranges; empty: none), checked against
    ``count`` frames; a bad spec is one ``ConfigError`` line."""
    out: list[int] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ConfigError(f"data.{what}: {part!r} is not an index or a range a-b") from None
        if first < 0 or last < first:
            raise ConfigError(f"data.{what}: {part!r} is not a range a-b with 0 <= a <= b")
        if last >= count:
            raise ConfigError(f"data.{what}: frame {last} is beyond the bag's {count} frames")
        out.extend(range(first, last + 1))
    return sorted(set(out))


@dataclass
class FrameSelection:
    """Which bag frames train, which are scored, which may serve as photometric sources."""

    train: list[int]
    val: list[int]
    sources: set[int]


def select_frames(config: TrainConfig, count: int) -> FrameSelection:
    """``data.bag_frames`` / ``bag_val_frames`` / ``bag_exclude_photometric`` for ``count``
    frames: training and validation never overlap; validation frames are never sources."""
    data = config.data
    val = parse_frame_spec(data.bag_val_frames, count, "bag_val_frames")
    train = parse_frame_spec(data.bag_frames, count, "bag_frames")
    if not val:
        val = [i for i in range(count) if i % VAL_EVERY == VAL_EVERY - 1 and i not in train]
    if not train:
        train = [i for i in range(count) if i not in val]
    overlap = sorted(set(train) & set(val))
    if overlap:
        raise ConfigError(f"data.bag_frames and data.bag_val_frames share frames {overlap}: "
                          "scored frames must be held out of training")
    if not train or not val:
        raise ConfigError(f"the bag's {count} frames leave {len(train)} to train on and "
                          f"{len(val)} to score: set data.bag_frames and data.bag_val_frames")
    excluded = set(parse_frame_spec(data.bag_exclude_photometric, count,
                                    "bag_exclude_photometric")) | set(val)
    return FrameSelection(train, val, set(range(count)) - excluded)


def pair_poses(frames: Any, sources: set[int], progress: bool = True
               ) -> dict[tuple[int, int], np.ndarray]:
    """``(target, source) -> source_from_target`` for every frame and its neighbours within
    a segment that may serve as sources (in ``sources``): from the bag's poses where both
    frames have one, else by ICP of their LiDAR (one ICP per consecutive pair; the other
    direction is its inverse). A pair ICP cannot align is left out (a warning)."""
    count = len(frames.rgb)
    out: dict[tuple[int, int], np.ndarray] = {}
    pairs = [(i, i + 1) for i in range(count - 1)
             if frames.segments[i] == frames.segments[i + 1]
             and (i in sources or i + 1 in sources)]

    def known(i: int) -> bool:
        return frames.poses is not None and bool(np.isfinite(frames.poses[i]).all())

    icp_pairs = sum(1 for a, b in pairs if not (known(a) and known(b)))
    for a, b in tqdm(pairs, desc="frame-to-frame poses (LiDAR ICP)", unit="pair",
                     disable=not progress or icp_pairs == 0):
        if known(a) and known(b):
            b_from_a = relative_pose(frames.poses[a], frames.poses[b])
        else:  # no odometry/TF for these frames: scan-to-scan
            try:
                b_from_a = lidar_relative_pose(frames.sparse[a], frames.sparse[b], frames.K[a])
            except ValueError as exc:
                LOG.warning("frames %d-%d: no photometric pair (%s)", a, b, exc)
                continue
        if b in sources:
            out[(a, b)] = b_from_a
        if a in sources:
            out[(b, a)] = np.linalg.inv(b_from_a)
    return out


class BagFrameDataset(Dataset):
    """Training items from bag frames (see the module docstring).

    Args:
        frames: a ``BagFrames`` (rgb, K, sparse, segments at full resolution).
        indices: the frames to train on.
        poses: ``pair_poses``'s map; a neighbour without a pose is no source.
        height, width: the network input size.
        native: crop at full resolution (fusion) instead of resizing the frame (mono).
        train_focal_px: the model's focal length; depth is expressed for it unless native.
    """

    def __init__(self, frames: Any, indices: list[int],
                 poses: dict[tuple[int, int], np.ndarray], height: int, width: int,
                 native: bool, train_focal_px: float) -> None:
        self.frames, self.indices, self.poses = frames, list(indices), poses
        self.height, self.width, self.native = height, width, native
        self.train_focal_px = float(train_focal_px)
        full_h, full_w = frames.rgb.shape[1:3]
        if native and (full_h < height or full_w < width):
            raise ConfigError(f"the bag's images ({full_w}x{full_h}) are smaller than the "
                              f"input size {width}x{height}: lower data.input_height/width")

    def __len__(self) -> int:
        return len(self.indices)

    def _window(self) -> tuple[int, int]:
        full_h, full_w = self.frames.rgb.shape[1:3]
        top = int(torch.randint(full_h - self.height + 1, ()).item())
        left = int(torch.randint(full_w - self.width + 1, ()).item())
        return top, left

    def _cut(self, index: int, window: tuple[int, int] | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb float32 H×W×3 in [0, 1], sparse H×W metres, K) of one frame at the item's
        pixels."""
        rgb, sparse, K = self.frames.rgb[index], self.frames.sparse[index], self.frames.K[index]  # noqa: N806
        if window is None:
            full_h, full_w = rgb.shape[:2]
            camera = PinholeCamera.from_K(K, full_w, full_h).resized(self.width, self.height)
            rgb = resize_rgb(rgb, self.width, self.height)
            sparse = resize_sparse_depth(sparse, self.width, self.height)
            K = camera.K  # noqa: N806
        else:
            top, left = window
            rgb = rgb[top:top + self.height, left:left + self.width]
            sparse = sparse[top:top + self.height, left:left + self.width]
            K = np.array(K, np.float64)  # noqa: N806
            K[0, 2] -= left
            K[1, 2] -= top
        return rgb.astype(np.float32) / np.float32(255.0), np.asarray(sparse, np.float32), K

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        index = self.indices[item]
        window = self._window() if self.native else None
        rgb, sparse, K = self._cut(index, window)  # noqa: N806
        scale = 1.0 if self.native else self.train_focal_px / float(K[0, 0])
        sources = np.zeros((len(SOURCE_OFFSETS), *rgb.shape), np.float32)
        poses = np.tile(np.eye(4, dtype=np.float32), (len(SOURCE_OFFSETS), 1, 1))
        ok = np.zeros(len(SOURCE_OFFSETS), bool)
        for slot, offset in enumerate(SOURCE_OFFSETS):
            pose = self.poses.get((index, index + offset))
            if pose is None:
                continue
            sources[slot] = self._cut(index + offset, window)[0]
            poses[slot] = pose
            ok[slot] = True
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        depth = torch.from_numpy(sparse * np.float32(scale))[None]
        return (image, depth, depth.clone(),
                torch.from_numpy(np.ascontiguousarray(sources.transpose(0, 3, 1, 2))),
                torch.from_numpy(K.astype(np.float32)), torch.from_numpy(poses),
                torch.from_numpy(ok), torch.tensor(scale, dtype=torch.float32),
                torch.tensor(True))


class EngineItems(Dataset):
    """Engine-drive items (``DepthDataset``'s ``(image, depth[, sparse])``) in the bag item
    shape: no sources, ``is_bag`` false."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        image, depth, *rest = self.dataset[item]
        sparse = rest[0] if rest else torch.zeros_like(depth)
        height, width = image.shape[-2:]
        return (image, depth, sparse, torch.zeros(len(SOURCE_OFFSETS), 3, height, width),
                torch.eye(3), torch.eye(4).repeat(len(SOURCE_OFFSETS), 1, 1),
                torch.zeros(len(SOURCE_OFFSETS), dtype=torch.bool), torch.tensor(1.0),
                torch.tensor(False))


class MixedDataset(Dataset):
    """The bag's items followed by engine items: ``ratio`` of the whole are engine items,
    each drawn at random from ``engine`` (torch's generator, seeded per rank and worker)."""

    def __init__(self, bag: Dataset, engine: Dataset | None, ratio: float) -> None:
        self.bag, self.engine = bag, engine
        extra = 0 if engine is None or ratio <= 0 else round(len(bag) * ratio / (1.0 - ratio))
        self.extra = max(extra, 1) if engine is not None and ratio > 0 else 0

    def __len__(self) -> int:
        return len(self.bag) + self.extra

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        if item < len(self.bag):
            return self.bag[item]
        assert self.engine is not None
        return self.engine[int(torch.randint(len(self.engine), ()).item())]


class BagValidation(Dataset):
    """Held-out bag frames for the trainer's validation: ``(image, LiDAR reference[, LiDAR
    input])`` in the model's depth units. Mono: the frame resized to the input size, scored
    against every return. Fusion: the bottom-centre crop at full resolution; kitti_dev's
    protocol — 20 % of the returns (``training.data.holdout.holdout_mask`` with camera 2's
    draw: a KITTI drive's bag is scored as kitti_dev scores it) are withheld from the input
    and are the reference."""

    def __init__(self, frames: Any, indices: list[int], height: int, width: int,
                 native: bool, train_focal_px: float) -> None:
        self.frames, self.indices, self.native = frames, list(indices), native
        self.cropper = BagFrameDataset(frames, indices, {}, height, width, native,
                                       train_focal_px)

    def __len__(self) -> int:
        return len(self.indices)

    def window(self) -> tuple[int, int] | None:
        """The (top, left) of the scored crop (fusion), None for a resized frame."""
        if not self.native:
            return None
        full_h, full_w = self.frames.rgb.shape[1:3]
        return full_h - self.cropper.height, (full_w - self.cropper.width) // 2

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        index = self.indices[item]
        rgb, sparse, K = self.cropper._cut(index, self.window())  # noqa: N806
        scale = 1.0 if self.native else self.cropper.train_focal_px / float(K[0, 0])
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        sparse = sparse * np.float32(scale)
        if not self.native:
            return image, torch.from_numpy(sparse)[None]
        held = holdout_mask(index, HOLDOUT_CAMERA, sparse > 0)
        reference = np.where(held, sparse, 0.0).astype(np.float32)
        given = np.where(held, 0.0, sparse).astype(np.float32)
        return image, torch.from_numpy(reference)[None], torch.from_numpy(given)[None]


def engine_items(config: TrainConfig, lidar: bool, native: bool, focal: float) -> Dataset:
    """The engine drives under ``<data.mix_engine_root>/train`` as items, supervised with
    their exact depth (resized to the input size, or random crops at full resolution)."""
    data = config.data
    root = Path(data.mix_engine_root) / "train"
    try:
        drives = find_drives(root)
        if native:
            frames = load_frames(drives, data.image_height, data.image_width,
                                 data.load_threads, sparse=lidar)
        else:
            frames = load_frames(drives, data.input_height, data.input_width,
                                 data.load_threads, sparse=lidar)
    except (KittiFormatError, FileNotFoundError) as exc:
        raise ConfigError(f"data.mix_engine_root: {exc}") from exc
    crop = RandomCrop(data.input_height, data.input_width) if native else None
    augment = TensorAugment(config.augment, photometric=True)
    return EngineItems(DepthDataset(frames, focal, crop, lidar=lidar, augment=augment))


def load_bag(config: TrainConfig, dist: DistContext) -> tuple[Any, dict[str, int]]:
    """The configured bags' frames (``training.data.bags.load_bag_frames``); rank 0 decodes
    and caches first when a cache directory is set, the others then read the cache."""
    from training.data.bags import load_bag_frames

    data = config.data
    kwargs = {"camera_info_topic": data.camera_info_topic or None,
              "lidar_to_camera": (np.asarray(data.lidar_to_camera, np.float64).reshape(4, 4)
                                  if data.lidar_to_camera else None),
              "odometry_topic": data.odometry_topic or None,
              "world_frame": data.world_frame or None,
              "cache_dir": data.bag_cache_dir or None}

    def load(progress: bool) -> tuple[Any, dict[str, int]]:
        try:
            return load_bag_frames(data.bags, data.image_topic, data.lidar_topic,
                                   progress=progress, **kwargs)
        except ConfigError:  # BagDataError: already one line naming what is wrong
            raise
        except (ValueError, FileNotFoundError, KeyError) as exc:
            raise ConfigError(f"data.bags: {exc}") from exc

    if data.bag_cache_dir and dist.is_distributed:
        result = load(True) if dist.is_main else None
        dist.barrier()
        return result if result is not None else load(False)
    return load(dist.is_main)


def bag_splits(config: TrainConfig, dist: DistContext, lidar: bool,
               frames: Any = None) -> DataSplits:
    """``data.dataset: bag``: the bag's training frames (+ engine drives) and its held-out
    frames. ``frames``: already-loaded ``BagFrames`` (tests); None: read ``data.bags``."""
    data = config.data
    if frames is None:
        frames, dropped = load_bag(config, dist)
        if dropped:
            LOG.info("bag frames dropped: %s", ", ".join(f"{k} {v}" for k, v in
                                                          sorted(dropped.items())))
    native = lidar  # fusion models run at the camera's own resolution
    focal = _train_focal(config, frames, native)
    selection = select_frames(config, len(frames.rgb))
    poses = pair_poses(frames, selection.sources, progress=dist.is_main)
    bag = BagFrameDataset(frames, selection.train, poses, data.input_height, data.input_width,
                          native, focal)
    usable = sum(1 for i in selection.train for o in SOURCE_OFFSETS if (i, i + o) in poses)
    LOG.info("bag %s: %d frames train (%d photometric pairs), %d scored", frames.source,
             len(selection.train), usable, len(selection.val))
    engine = None
    if data.mix_engine_root and data.mix_engine_ratio > 0:
        mix_train = Path(data.mix_engine_root) / "train"
        # Rendered only where there are no drives yet: drives rendered with other parameters
        # (the mono recipe's training set, the default root) are used as they are, never
        # re-rendered with data.synthetic's (ensure_synthetic_drives would replace them).
        if data.synthetic is not None and dist.is_main and not _has_drives(mix_train):
            ensure_synthetic_drives(mix_train, data.synthetic,
                                    data.image_width, data.image_height, data.render_workers)
        dist.barrier()
        engine = engine_items(config, lidar, native, focal)
    train = MixedDataset(bag, engine, data.mix_engine_ratio)
    val = BagValidation(frames, selection.val, data.input_height, data.input_width, native,
                        focal)
    description = (f"bag {frames.source} ({len(selection.train)} frames"
                   + (f", engine drives under {data.mix_engine_root}" if engine else "") + ")")
    return DataSplits(train, val, focal, description)


def _has_drives(root: Path) -> bool:
    """Whether ``root`` holds at least one KITTI-layout drive."""
    try:
        return bool(find_drives(root))
    except KittiFormatError:
        return False


def _train_focal(config: TrainConfig, frames: Any, native: bool) -> float:
    """The focal length the model's depth is expressed for: the initial checkpoint's
    ``train_focal_px`` (the adapted model keeps it), else the bag camera's at the input
    size."""
    if config.init_checkpoint:
        from training.checkpoint import CheckpointError, load_checkpoint

        try:
            meta = load_checkpoint(config.init_checkpoint).get("metadata", {})
        except CheckpointError as exc:
            raise ConfigError(f"init_checkpoint: {exc}") from exc
        if "train_focal_px" in meta:
            return float(meta["train_focal_px"])
    fx = float(np.median(frames.K[:, 0, 0]))
    if native:
        return fx
    return fx * config.data.input_width / frames.rgb.shape[2]

