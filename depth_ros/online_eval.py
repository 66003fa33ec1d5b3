"""Scoring a live depth stream against a ground-truth stream, paired by stamp (ROS-free).

``OnlineDepthEvaluator`` takes predictions and ground truth as they arrive, in any order,
pairs them by stamp (exactly, or nearest within a slop), scores each pair with the metrics
``training/evaluate.py`` reports (``depth_ros.metrics.evaluation_metrics``: Eigen's and the
KITTI devkit's, per image, then averaged over images) and counts what never found a partner:
ground truth without a prediction is usually a frame the depth node dropped.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from depth_ros import fileio
from depth_ros.metrics import (
    DEVKIT_METRIC_NAMES,
    METRIC_NAMES,
    evaluation_metrics,
    mean_metrics,
)
from depth_ros.viz import colorize_depth, stack_panels

CROPS = ("", "garg", "eigen")


@dataclass(frozen=True)
class EvalProtocol:
    """Which pixels count (as ``training/evaluate.py``'s protocols): ground truth inside
    (``min_depth_m``, ``max_depth_m``) and inside the named ``crop`` ("" = whole image)."""

    crop: str = ""
    min_depth_m: float = 1e-3
    max_depth_m: float = 80.0

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if not 0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m}, "
                             f"{self.max_depth_m}")

    def score(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """One pair's metrics (NaN where no pixel counts)."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction is {pred.shape[1]}×{pred.shape[0]}, ground truth "
                             f"{gt.shape[1]}×{gt.shape[0]}")
        return evaluation_metrics(pred, gt, self.crop or None, self.min_depth_m,
                                  self.max_depth_m)


class _Pending:
    """Items of one stream waiting for a partner, oldest first, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self.items: OrderedDict[int, np.ndarray] = OrderedDict()
        self.limit = limit
        self.evicted = 0

    def take_nearest(self, stamp_ns: int, slop_ns: int) -> tuple[int, np.ndarray] | None:
        if stamp_ns in self.items:
            return stamp_ns, self.items.pop(stamp_ns)
        if slop_ns <= 0 or not self.items:
            return None
        nearest = min(self.items, key=lambda s: abs(s - stamp_ns))
        if abs(nearest - stamp_ns) > slop_ns:
            return None
        return nearest, self.items.pop(nearest)

    def add(self, stamp_ns: int, depth: np.ndarray) -> None:
        self.items[stamp_ns] = depth
        while len(self.items) > self.limit:
            self.items.popitem(last=False)
            self.evicted += 1


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


class OnlineDepthEvaluator:
    """Pairs predictions with ground truth by stamp and accumulates per-image metrics.

    Args:
        protocol: which pixels count.
        slop_ns: largest stamp difference of a pair (0: stamps must be equal).
        max_pending: unpaired items kept per stream; older ones are dropped and counted.
    """

    def __init__(self, protocol: EvalProtocol | None = None, slop_ns: int = 0,
                 max_pending: int = 100) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.protocol = protocol or EvalProtocol()
        self.slop_ns = int(slop_ns)
        self._predictions = _Pending(max_pending)
        self._groundtruth = _Pending(max_pending)
        self.per_image: list[tuple[int, dict[str, float]]] = []
        self.last_pair: tuple[np.ndarray, np.ndarray] | None = None

    def add_prediction(self, stamp_ns: int, depth_m: np.ndarray) -> dict[str, float] | None:
        """A predicted depth (metres, NaN or ≤ 0 = no estimate); its metrics when it paired."""
        return self._add(stamp_ns, depth_m, self._groundtruth, self._predictions, True)

    def add_groundtruth(self, stamp_ns: int, depth_m: np.ndarray) -> dict[str, float] | None:
        """A ground-truth depth (metres, NaN or 0 = no data); the pair's metrics when it
        paired."""
        return self._add(stamp_ns, depth_m, self._predictions, self._groundtruth, False)

    def _add(self, stamp_ns: int, depth: np.ndarray, partners: _Pending, own: _Pending,
             is_prediction: bool) -> dict[str, float] | None:
        depth = np.asarray(depth, dtype=np.float32)
        if depth.ndim != 2:
            raise ValueError(f"depth must be H×W, got shape {depth.shape}")
        match = partners.take_nearest(int(stamp_ns), self.slop_ns)
        if match is None:
            own.add(int(stamp_ns), depth)
            return None
        partner_stamp, partner = match
        pred, gt = (depth, partner) if is_prediction else (partner, depth)
        metrics = self.protocol.score(pred, gt)
        self.per_image.append((int(stamp_ns) if not is_prediction else partner_stamp, metrics))
        if np.isfinite(metrics["abs_rel"]):
            self.last_pair = (pred, gt)  # the picture shows the last pair with a score
        return metrics

    @property
    def frames(self) -> int:
        """Pairs scored so far."""
        return len(self.per_image)

    def summary(self) -> dict[str, object]:
        """Mean metrics, counts, the protocol and every pair's metrics (JSON-ready)."""
        return _json_safe({
            "frames": self.frames,
            "metrics": mean_metrics([m for _, m in self.per_image]),
            "unmatched": {
                "predictions": self._predictions.evicted + len(self._predictions.items),
                "groundtruth": self._groundtruth.evicted + len(self._groundtruth.items),
            },
            "protocol": {**asdict(self.protocol), "slop_s": self.slop_ns / 1e9},
            "per_image": [{"stamp_ns": stamp, **metrics}
                          for stamp, metrics in sorted(self.per_image)],
        })

    def table(self) -> list[str]:
        """The mean metrics as text lines (Eigen's, then the devkit's), as evaluate.py prints."""
        means = mean_metrics([m for _, m in self.per_image]) if self.per_image else {}
        lines = [f"{self.frames} frames"]
        devkit = tuple(f"devkit_{k}" for k in DEVKIT_METRIC_NAMES[:7])
        for keys, title in ((METRIC_NAMES, "Eigen"), (devkit, "KITTI devkit")):
            lines.append(f"{title:<14}" + "".join(f"{k.removeprefix('devkit_'):>14}"
                                                   for k in keys))
            lines.append(f"{'depth':<14}" + "".join(f"{means.get(k, float('nan')):>14.4f}"
                                                   for k in keys))
        return lines

    def write_report(self, path: str | os.PathLike, png_path: str | os.PathLike | None = None
                     ) -> None:
        """Write ``summary()`` as JSON (atomically) and, with ``png_path``, a picture of the
        last scored pair: prediction, ground truth and |error| / ground truth."""
        text = json.dumps(self.summary(), indent=2) + "\n"
        fileio.write_bytes_atomic(path, text.encode(), durable=False)
        if png_path is not None and self.last_pair is not None:
            fileio.write_bytes_atomic(png_path, _pair_png(*self.last_pair), durable=False)


def _pair_png(pred: np.ndarray, gt: np.ndarray) -> bytes:
    valid = np.isfinite(gt) & (gt > 0)
    lo, hi = (np.percentile(gt[valid], [2.0, 98.0]) if valid.any() else (1.0, 80.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(valid & np.isfinite(pred), np.abs(pred - gt) / gt, np.nan)
    # Relative error as a colour: 0 blue ... >= 0.25 red, black where nothing was scored.
    scored = np.isfinite(rel)
    levels = np.round(255 * np.clip(np.nan_to_num(rel) / 0.25, 0, 1)).astype(np.uint8)
    error = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    error[~scored] = 0
    panel = stack_panels([colorize_depth(pred, float(lo), float(hi)),
                          colorize_depth(gt, float(lo), float(hi)), error],
                         ["prediction", "ground truth", "|error| / gt (0 - 25 %)"])
    ok, buf = cv2.imencode(".png", cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("could not encode the evaluation picture")
    return buf.tobytes()
