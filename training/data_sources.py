"""The training and validation sets of a configuration (``data.dataset``).

``drives``: KITTI-layout drives under ``<root>/train`` and ``<root>/val`` (the data engine's,
rendered first when ``data.synthetic`` asks and they are absent, or real raw drives with
ground truth), decoded and resized once and held in memory. ``kitti_eigen``,
``kitti_completion`` and ``nyu`` are read frame by frame through their readers
(``training.real_data``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from depth_ros.kitti import KittiFormatError, find_drives
from training.config import ConfigError, TrainConfig
from training.datasets import DataSplits, DepthFrames, ensure_synthetic_drives, load_frames
from training.distributed import DistContext
from training.real_data import real_splits

LOG = logging.getLogger("depth_ros.training")


def split_root(config: TrainConfig, split: str) -> Path:
    """``<data.root>/<split>``."""
    return Path(config.data.root) / split


def _drive_splits(config: TrainConfig, dist: DistContext, lidar: bool) -> DataSplits:
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
    frames = {}
    for split, _ in splits:
        try:
            drives = find_drives(split_root(config, split))
            t0 = time.monotonic()
            frames[split] = load_frames(drives, data.input_height, data.input_width,
                                        data.load_threads, sparse=lidar)
        except (KittiFormatError, FileNotFoundError) as exc:
            raise ConfigError(f"{split} data: {exc}") from exc
        LOG.info("%s: %d frames from %d drives loaded in %.1f s", split,
                 len(frames[split]), len(drives), time.monotonic() - t0)
    # One canonical focal for both splits: the one the model learns and reports.
    focal = float(np.median(frames["train"].focal_px))
    return DataSplits(DepthFrames(frames["train"], focal, config.augment),
                      DepthFrames(frames["val"], focal, None), focal,
                      _describe_drives(config))


def _describe_drives(config: TrainConfig) -> str:
    data = config.data
    parts = []
    for split, synthetic in (("train", data.synthetic), ("val", data.val_synthetic)):
        if synthetic is None:
            parts.append(f"{split}: drives under {split_root(config, split)}")
        else:
            parts.append(f"{split}: {synthetic.drives} drives x {synthetic.frames} frames, "
                         f"seeds {synthetic.seed}..{synthetic.seed + synthetic.drives - 1}")
    source = "depth_ros synthetic engine" if data.synthetic else "KITTI-format drives"
    return f"{source} ({data.image_width}x{data.image_height}); " + "; ".join(parts)


Builder = Callable[[TrainConfig, DistContext, bool], DataSplits]
BUILDERS: dict[str, Builder] = {"drives": _drive_splits, "kitti_eigen": real_splits,
                                "kitti_completion": real_splits, "nyu": real_splits}


def build_datasets(config: TrainConfig, dist: DistContext, lidar: bool) -> DataSplits:
    """The configured sets; ``lidar``: items carry sparse depth (for fusion models)."""
    return BUILDERS[config.data.dataset](config, dist, lidar)
