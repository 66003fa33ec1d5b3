"""Reading depth_ros checkpoints (``torch.load(..., weights_only=True)``: no pickled code runs).

A checkpoint is a dict with at least ``state_dict`` (model weights) and ``metadata``
(``ModelMetadata.to_dict()``); training adds optimizer state and progress (see
``training/checkpoint.py``, which writes them).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depth_ros.errors import DepthRosError, one_line
from depth_ros.models.metadata import MetadataError, ModelMetadata
from depth_ros.models.registry import create_model

REQUIRED_KEYS = ("state_dict", "metadata")


class CheckpointError(DepthRosError, RuntimeError):
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
        raise CheckpointError(f"cannot read {what} {path}: {_load_problem(path, exc)}") from exc


def _load_problem(path: Path, exc: BaseException) -> str:
    """Why ``torch.load`` refused a file, in one line. Its own messages are bare numbers for a
    text file (the pickle opcode: ``101``) and pages for the ``weights_only`` checks."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):
        with path.open("rb") as file:
            head = file.read(2)
        if head == b"PK":
            return f"a damaged or truncated torch.save archive ({size} bytes)"
        if head[:1] != b"\x80":  # every pickle torch.save writes starts with PROTO
            return (f"not a PyTorch checkpoint (not a torch.save archive: {size} bytes "
                    f"starting {head!r})")
    return f"{type(exc).__name__}: {one_line(exc, 200)}"


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
