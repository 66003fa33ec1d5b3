"""The one training dataset: any frame reader through one transform stack.

A reader is anything with ``len()`` and ``frame(index) -> DepthFrame``: every reader of
``depth_ros.readers`` (KITTI Eigen, KITTI depth completion, NYU) and the engine drives held in
memory (``training.data.drives.FrameArrays``). ``DepthDataset`` turns its frames into training
tuples: numpy transforms (crop, resize, flip, colour jitter), tensors, depth and LiDAR expressed
for one canonical focal length, then the tensor-level augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from depth_ros.readers import DepthFrame
from training.data.transforms import Sample, to_tensors


class FrameReader(Protocol):
    """What ``DepthDataset`` needs of a reader (every class in ``depth_ros.readers`` has it)."""

    def __len__(self) -> int: ...

    def frame(self, index: int) -> DepthFrame: ...


def frame_to_sample(frame: DepthFrame) -> Sample:
    """A reader's frame as a transform sample: RGB in [0, 1], zeros for missing depth."""
    zeros = np.zeros(frame.rgb.shape[:2], np.float32)
    return {"rgb": frame.rgb.astype(np.float32) / np.float32(255.0),
            "depth": zeros if frame.depth is None else frame.depth,
            "sparse_depth": zeros if frame.sparse_depth is None else frame.sparse_depth,
            "K": np.asarray(frame.K, dtype=np.float64)}


class DepthDataset(Dataset):
    """A reader's frames as ``(image 3×H×W float32 in [0, 1], depth 1×H×W float32 metres)``
    pairs, or ``(image, depth, sparse_depth 1×H×W)`` triples with ``lidar``.

    Depth and LiDAR are rescaled to ``canonical_focal_px`` (``depth · canonical / fx`` of the
    transformed frame: what a camera with that focal length would need for the same picture);
    0 stays 'no data'.

    Args:
        reader: the frames.
        canonical_focal_px: the focal length the model learns depth for.
        transform: numpy steps (see ``training.data.transforms``); None: frames as read.
        lidar: return the sparse depth too (fusion models).
        augment: tensor-level training augmentation (``TensorAugment``); None for validation.
    """

    def __init__(self, reader: FrameReader, canonical_focal_px: float,
                 transform: Callable[[Sample], Sample] | None = None, lidar: bool = False,
                 augment: Callable[..., tuple[torch.Tensor, ...]] | None = None) -> None:
        self.reader, self.transform = reader, transform
        self.canonical_focal_px = float(canonical_focal_px)
        self.lidar, self.augment = lidar, augment

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        sample = frame_to_sample(self.reader.frame(index))
        if self.transform is not None:
            sample = self.transform(sample)
        scale = self.canonical_focal_px / float(sample["K"][0, 0])
        tensors = to_tensors(sample)
        item = (tensors["image"], tensors["depth"] * scale)
        if self.lidar:
            item += (tensors["sparse_depth"] * scale,)
        return item if self.augment is None else self.augment(*item)


@dataclass
class DataSplits:
    """A configuration's training and validation sets, the focal length their depth is
    expressed for (the model's ``train_focal_px``) and a line describing them."""

    train: Dataset
    val: Dataset
    canonical_focal_px: float
    description: str
