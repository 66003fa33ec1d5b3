"""Writing checkpoints atomically, finding the newest complete one; reading is
``depth_ros.models.checkpoints``.

Training checkpoints hold ``state_dict`` (the weights to validate and deploy: the EMA ones when
``optim.ema_decay`` > 0, with the raw ones in ``train_state_dict``), ``metadata``
(``ModelMetadata.to_dict()``), ``optimizer``, ``step``, ``epoch``, ``config``,
``rng_states`` (one per rank) and validation results — all tensors and primitives, so
``torch.load(..., weights_only=True)`` reads them. A release checkpoint keeps only
``state_dict`` and ``metadata``.

A run directory holds ``last.pt``, ``best.pt`` and the newest ``step_<step>.pt`` (7 digits);
a write that was interrupted leaves at most a hidden ``.<name>.<pid>.tmp`` beside them.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from depth_ros.fileio import fsync_directory, temporary_path, write_atomic
from depth_ros.models.checkpoints import (
    REQUIRED_KEYS,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
)

__all__ = ["CheckpointError", "checkpoint_step", "find_latest_checkpoint", "link_checkpoint",
           "load_checkpoint", "model_from_checkpoint", "prune_step_checkpoints",
           "release_payload", "remove_temporaries", "save_checkpoint", "step_checkpoint_name"]

LOG = logging.getLogger("depth_ros.training")


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` so that ``path`` holds either the old file or the complete new one.

    The data goes to a temporary file in the same directory, is flushed and fsynced, then
    renamed over ``path`` (atomic on POSIX); a failure part-way removes the temporary file and
    leaves the previous checkpoint untouched.
    """
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint payload lacks {', '.join(missing)}")
    return write_atomic(path, lambda f: torch.save(payload, f))


def link_checkpoint(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Make ``path`` the complete file ``source`` (a hard link, or a copy where links are not
    supported), replacing what was there atomically as ``save_checkpoint`` does."""
    source, path = Path(source), Path(path)
    tmp = temporary_path(path)
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def step_checkpoint_name(step: int) -> str:
    """``step_0001500.pt``: names that sort by step."""
    return f"step_{step:07d}.pt"


def prune_step_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints (``keep`` 0: delete none)."""
    if keep > 0:
        for path in sorted(Path(run_dir).glob("step_*.pt"))[:-keep]:
            path.unlink(missing_ok=True)


def remove_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete what interrupted checkpoint writes left behind (call before writing anew)."""
    for path in Path(run_dir).glob(".*.tmp"):
        LOG.info("removing %s, left by an interrupted checkpoint write", path.name)
        path.unlink(missing_ok=True)


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The ``step`` of the complete training checkpoint at ``path``; None when the file is
    missing, truncated or not a training checkpoint. Memory-maps: reads little of the file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not all(k in payload for k in REQUIRED_KEYS):
            return None
        return int(payload["step"])
    except Exception:  # unreadable files raise many different types
        return None


def find_latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The readable checkpoint with the highest step among ``last.pt`` and ``step_*.pt`` in
    ``run_dir`` (``last.pt`` on a tie), or None. Temporary files are never candidates."""
    run_dir = Path(run_dir)
    best, best_step = None, -1
    for path in [run_dir / "last.pt", *sorted(run_dir.glob("step_*.pt"), reverse=True)]:
        step = checkpoint_step(path) if path.is_file() else None
        if step is None:
            if path.is_file():
                LOG.warning("ignoring unreadable checkpoint %s", path)
            continue
        if step > best_step:
            best, best_step = path, step
    return best


def release_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Only what inference needs: the weights and the metadata (no optimizer state)."""
    return {"state_dict": payload["state_dict"], "metadata": dict(payload["metadata"])}
