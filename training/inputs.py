"""What the network is fed: the image alone (mono models) or the image and its sparse LiDAR
depth (fusion models).

A batch is ``(image, depth)`` for mono models and ``(image, depth, sparse_depth)`` for
fusion models (``training.data.sources``); these helpers keep that difference out of the loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.config import ConfigError

Batch = Sequence[torch.Tensor]


def needs_lidar(model: torch.nn.Module) -> bool:
    """Whether ``model`` takes sparse LiDAR depth as its second input (``kind == "fusion"``)."""
    return getattr(model, "kind", "mono") == "fusion"


def network_inputs(model: torch.nn.Module, batch: Batch,
                   device: torch.device) -> tuple[torch.Tensor, ...]:
    """The arguments of ``model(...)`` for a batch, on ``device``: ``(image,)`` or
    ``(image, sparse_depth)``."""
    image = batch[0].to(device, non_blocking=True)
    if not needs_lidar(model):
        return (image,)
    if len(batch) < 3:
        raise ConfigError("a fusion model needs sparse LiDAR depth, and the batch has none")
    return image, batch[2].to(device, non_blocking=True)


def split_batch(batch: Batch, parts: int) -> list[tuple[torch.Tensor, ...]]:
    """``parts`` micro-batches of a batch, each a tuple like ``batch`` (for accumulation)."""
    return list(zip(*(tensor.tensor_split(parts) for tensor in batch), strict=True))
