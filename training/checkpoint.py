"""Writing checkpoints atomically; reading is ``depth_ros.models.checkpoints``.

Training checkpoints hold ``state_dict``, ``metadata`` (``ModelMetadata.to_dict()``),
``optimizer``, ``step``, ``epoch``, ``config``, ``rng_state`` and validation results — all
tensors and primitives, so ``torch.load(..., weights_only=True)`` reads them. A release
checkpoint keeps only ``state_dict`` and ``metadata``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from depth_ros.models.checkpoints import (
    REQUIRED_KEYS,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
)

__all__ = ["CheckpointError", "load_checkpoint", "model_from_checkpoint", "release_payload",
           "save_checkpoint"]


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` so that ``path`` holds either the old file or the complete new one.

    The data goes to a temporary file in the same directory, is flushed and fsynced, then
    renamed over ``path`` (atomic on POSIX); a failure part-way removes the temporary file and
    leaves the previous checkpoint untouched.
    """
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint payload lacks {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def release_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Only what inference needs: the weights and the metadata (no optimizer state)."""
    return {"state_dict": payload["state_dict"], "metadata": dict(payload["metadata"])}
