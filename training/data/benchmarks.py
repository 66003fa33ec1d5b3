"""Training and validation sets of the real benchmarks: KITTI Eigen, KITTI depth completion,
NYU Depth v2 (``data.dataset``), read frame by frame through ``depth_ros.readers``.

KITTI frames are first cut to the benchmark crop (352×1216, ``KBCrop``); then every frame
reaches the network input size by resizing (``data.crop: resize``) or by a random crop at
the native resolution (``data.crop: random``; validation takes the central crop). Depth
and LiDAR are rescaled to one canonical focal length, as for the drives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from depth_ros.readers import (
    KittiCompletionSplit,
    KittiEigenSplit,
    NyuLabeled,
    NyuSync,
)
from training.config import ConfigError, TrainConfig
from training.data.sources import DataSplits, DepthDataset, FrameReader, frame_to_sample
from training.data.transforms import (
    KB_CROP_HEIGHT,
    KB_CROP_WIDTH,
    CenterCrop,
    ColorJitter,
    Compose,
    KBCrop,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    Sample,
    TensorAugment,
)
from training.distributed import DistContext

NYU_SIZE = (480, 640)  # height, width of NYU Depth v2 frames


def geometry(config: TrainConfig, kitti: bool, train: bool) -> list[Callable[[Sample], Sample]]:
    """The crop/resize steps from a reader's frame to the network input size."""
    data = config.data
    height, width = data.input_height, data.input_width
    kb_crop = kitti and data.kb_crop
    steps: list[Callable[[Sample], Sample]] = [KBCrop()] if kb_crop else []
    if data.crop == "resize":
        return [*steps, Resize(width, height)]
    if kb_crop or not kitti:
        full_h, full_w = (KB_CROP_HEIGHT, KB_CROP_WIDTH) if kitti else NYU_SIZE
        if height > full_h or width > full_w:
            raise ConfigError(f"data.crop random: the input {height}x{width} is larger than "
                              f"the {full_h}x{full_w} frames")
    return [*steps, RandomCrop(height, width) if train else CenterCrop(height, width)]


def build_transform(config: TrainConfig, kitti: bool, train: bool
                    ) -> Callable[[Sample], Sample]:
    """Geometry, then for training a random flip and colour jitter."""
    steps = geometry(config, kitti, train)
    if train:
        aug = config.augment
        steps += [RandomHorizontalFlip(aug.hflip_prob),
                  ColorJitter(aug.brightness, aug.contrast, aug.saturation)]
    return Compose(steps)


def _existing(value: str, key: str, kind: str = "dir") -> Path:
    path = Path(value)
    ok = path.is_dir() if kind == "dir" else path.is_file() if kind == "file" else path.exists()
    if not ok:
        what = {"dir": "directory", "file": "file"}.get(kind, "path")
        raise ConfigError(f"data.{key}: {what} not found: {path}")
    return path


def _kitti_eigen_readers(config: TrainConfig, lidar: bool) -> dict[str, FrameReader]:
    data = config.data
    lists = {split: _existing(getattr(data, f"{split}_split"), f"{split}_split", "file")
             for split in ("train", "val")}
    raw, depth = _existing(data.raw_root, "raw_root"), _existing(data.depth_root, "depth_root")
    return {split: KittiEigenSplit(path, raw, depth, velodyne=lidar)
            for split, path in lists.items()}


def _kitti_completion_readers(config: TrainConfig, lidar: bool) -> dict[str, FrameReader]:
    data = config.data
    root, raw = _existing(data.root, "root"), _existing(data.raw_root, "raw_root")
    depth = _existing(data.depth_root, "depth_root") if data.depth_root else None
    readers = {}
    for split in ("train", "val"):
        velodyne = root / split
        if not velodyne.is_dir():
            raise ConfigError(f"data.root: {velodyne} not found (data_depth_velodyne/{split})")
        readers[split] = KittiCompletionSplit(velodyne, raw,
                                              None if depth is None else depth / split)
    return readers


def _nyu_readers(config: TrainConfig, lidar: bool) -> dict[str, FrameReader]:
    data = config.data
    if lidar:
        raise ConfigError("NYU Depth v2 has no LiDAR: a fusion model cannot train on it")
    if (data.train_path, data.train_split) == (data.val_path, data.val_split):
        raise ConfigError("data.train_path and data.val_path are the same frames: give the "
                          "validation set its own file, folder or split list")
    readers = {}
    for split in ("train", "val"):
        path = _existing(getattr(data, f"{split}_path"), f"{split}_path", "any")
        split_list = getattr(data, f"{split}_split")
        if split_list:
            _existing(split_list, f"{split}_split", "file")
        readers[split] = (NyuLabeled(path) if path.is_file()
                          else NyuSync(path, split_list or None))
    return readers


READERS = {"kitti_eigen": _kitti_eigen_readers, "kitti_completion": _kitti_completion_readers,
           "nyu": _nyu_readers}


def _describe(config: TrainConfig, sizes: dict[str, int]) -> str:
    data = config.data
    where = {"kitti_eigen": f"KITTI Eigen split {data.train_split} / {data.val_split}",
             "kitti_completion": f"KITTI depth completion {data.root}",
             "nyu": f"NYU Depth v2 {data.train_path} / {data.val_path}"}[data.dataset]
    return (f"{where}; train {sizes['train']} frames, val {sizes['val']} frames; "
            f"{data.crop} to {data.input_width}x{data.input_height}")


def benchmark_splits(config: TrainConfig, dist: DistContext, lidar: bool) -> DataSplits:
    """The configured benchmark's sets; a missing path or a malformed file is a ConfigError."""
    kitti = config.data.dataset.startswith("kitti")
    try:
        readers = READERS[config.data.dataset](config, lidar)
        # The focal of the first training frame at the input size is the canonical one (the
        # model's train_focal_px); reading it also proves the image tree is where it is said.
        to_input = Compose(geometry(config, kitti, train=False))
        sample = to_input(frame_to_sample(readers["train"].frame(0)))
        to_input(frame_to_sample(readers["val"].frame(0)))
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:  # KittiFormatError, NyuFormatError, a bad crop
        raise ConfigError(f"{config.data.dataset} data: {str(exc).splitlines()[0]}") from exc
    focal = float(sample["K"][0, 0])
    return DataSplits(
        DepthDataset(readers["train"], focal, build_transform(config, kitti, True), lidar,
                     TensorAugment(config.augment, photometric=False)),
        DepthDataset(readers["val"], focal, build_transform(config, kitti, False), lidar),
        focal, _describe(config, {k: len(r) for k, r in readers.items()}))

