"""What a run reports: ``metrics.jsonl`` (one line per validation) and TensorBoard scalars
and image panels under ``<run dir>/tensorboard``. Only rank 0 writes; on the other ranks a
``RunLog`` does nothing.

    tensorboard --logdir runs/
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_ros.viz import colorize_depth, stack_panels
from training.config import ConfigError


def require_tensorboard() -> None:
    """Fail with one line, before any training, where TensorBoard logging cannot work."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard=true needs the tensorboard package "
                          "(pip install tensorboard), or set tensorboard=false")


def depth_panel(image: torch.Tensor, pred: torch.Tensor, depth: torch.Tensor) -> np.ndarray:
    """RGB over prediction over ground truth (H×W×3 uint8), both depths coloured over the
    ground truth's range so that equal colours mean equal metres."""
    rgb = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    pred_m, gt_m = pred[0].float().numpy(), depth[0].float().numpy()
    reference = gt_m[gt_m > 0] if (gt_m > 0).any() else pred_m[pred_m > 0]
    lo, hi = (np.percentile(reference, [2.0, 98.0]) if reference.size else (1.0, 2.0))
    return stack_panels([rgb, colorize_depth(pred_m, float(lo), float(hi)),
                         colorize_depth(gt_m, float(lo), float(hi))],
                        ["RGB", "prediction", "ground truth"])


class RunLog:
    """Writes a run's metrics; a no-op unless ``enabled`` (rank 0)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def scalars(self, values: dict[str, float], step: int) -> None:
        """TensorBoard scalars, e.g. ``{"train/loss": 0.3}``."""
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def record(self, record: dict[str, Any]) -> None:
        """Append one line to ``metrics.jsonl``."""
        if self.enabled:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def panel(self, tag: str, image: torch.Tensor, pred: torch.Tensor, depth: torch.Tensor,
              step: int) -> None:
        """An RGB / prediction / ground-truth panel (3×H×W image, 1×H×W depths in metres)."""
        if self.writer is not None:
            self.writer.add_image(tag, depth_panel(image, pred, depth), step,
                                  dataformats="HWC")

    def close(self) -> None:
        """Flush and close the TensorBoard files."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
