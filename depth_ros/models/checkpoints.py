"""Reading depth_ros checkpoints (``torch.load(..., weights_only=True)``: no pickled code runs).

A checkpoint is a dict with at least ``state_dict`` (model weights) and ``metadata``
(``ModelMetadata.to_dict()``); training adds optimizer state and progress (see
``training/checkpoint.py``, which writes them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depth_ros.models.metadata import MetadataError, ModelMetadata
from depth_ros.models.registry import create_model

REQUIRED_KEYS = ("state_dict", "metadata")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or lacks what is needed."""


def load_weights_only(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load`` onto the CPU with ``weights_only=True`` (tensors and plain containers
    only: never unpickles code); a missing or unreadable file raises ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files raise many different types
        raise CheckpointError(f"cannot read {what} {path}: {exc}") from exc


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint onto the CPU and check its layout."""
    payload = load_weights_only(path)
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a depth_ros checkpoint (needs "
                              f"{', '.join(REQUIRED_KEYS)})")
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> tuple[nn.Module, ModelMetadata]:
    """Build the model a checkpoint describes, load its weights; returned in eval mode."""
    try:
        metadata = ModelMetadata.from_dict(payload["metadata"])
        model = create_model(metadata.architecture, **metadata.model_kwargs)
        model.load_state_dict(payload["state_dict"])
    except (MetadataError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint does not match its model: {exc}") from exc
    return model.eval(), metadata
