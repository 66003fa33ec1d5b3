"""What a run reports: ``metrics.jsonl`` (one line per validation) and TensorBoard scalars
and image panels under ``<run dir>/tensorboard``. Only rank 0 writes; on the other ranks a
``RunLog`` does nothing.

A run that resumes from the checkpoint of step S continues both from S: lines and events a
killed run wrote after its last checkpoint are dropped (``metrics.jsonl`` rewritten
atomically) or hidden (TensorBoard's ``purge_step``), so every step appears once.

    tensorboard --logdir runs/
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_ros.fileio import write_bytes_atomic
from depth_ros.viz import colorize_depth, stack_panels
from training.config import ConfigError

LOG = logging.getLogger("depth_ros.training")
METRICS_NAME = "metrics.jsonl"


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


def _record_step(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:  # a line cut short by a kill
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None


def drop_records_after(path: str | Path, step: int) -> int:
    """Keep the lines of a ``metrics.jsonl`` up to ``step`` (and drop unreadable ones);
    rewrite the file atomically when something goes. Returns how many lines went."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line in lines if (s := _record_step(line)) is not None and s <= step]
    if len(kept) < len(lines):
        write_bytes_atomic(path, "".join(line + "\n" for line in kept).encode())
    return len(lines) - len(kept)


class RunLog:
    """Writes a run's metrics; a no-op unless ``enabled`` (rank 0).

    Args:
        run_dir: the run directory.
        enabled: whether this process writes (rank 0).
        tensorboard: also write TensorBoard events.
        start_step: the step the run starts (or resumes) from; what an earlier run logged
            after it is dropped.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True,
                 tensorboard: bool = True, start_step: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        dropped = drop_records_after(self.run_dir / METRICS_NAME, start_step)
        if dropped:
            LOG.info("%s: dropped %d line(s) written after step %d, the step this run "
                     "continues from", METRICS_NAME, dropped, start_step)
        if tensorboard:
            require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            # Events of an earlier run from step start_step + 1 on are hidden.
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"),
                                        purge_step=start_step + 1)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """TensorBoard scalars, e.g. ``{"train/loss": 0.3}``."""
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def record(self, record: dict[str, Any]) -> None:
        """Append one line to ``metrics.jsonl``."""
        if self.enabled:
            with open(self.run_dir / METRICS_NAME, "a") as f:
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
