"""Scoring a completion model's ``confidence`` output, and where the LiDAR does not reach.

``ConfidenceStats`` pools every scored pixel of an evaluation: the AbsRel of the pixels the
model is confident about (confidence ≥ 0.5) against the rest, and a calibration table (per
confidence bin: the mean confidence and the observed share of pixels whose relative error is
below the model's threshold). ``calibration_png`` draws that table. ``above_scan_mask`` (from
``depth_ros.metrics``) marks the band above the LiDAR's field of view, where a completion model
is on its own.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from depth_ros.fileio import write_bytes_atomic

# above_scan_mask lives in the core (the demo scores its bands too); kept importable here.
from depth_ros.metrics import above_scan_mask  # noqa: F401


class ConfidenceStats:
    """Pools (confidence, relative error) over the pixels of many images.

    Args:
        threshold: the relative error the confidence is the probability of staying below.
        bins: calibration bins over [0, 1].
    """

    def __init__(self, threshold: float, bins: int = 10) -> None:
        self.threshold = float(threshold)
        self.edges = np.linspace(0.0, 1.0, bins + 1)
        self.count = np.zeros(bins, np.int64)
        self.confidence_sum = np.zeros(bins)
        self.hits = np.zeros(bins, np.int64)
        self.abs_rel_sum = np.zeros(bins)

    def add(self, confidence: np.ndarray, pred: np.ndarray, gt: np.ndarray,
            mask: np.ndarray) -> None:
        """Add one image's pixels where ``mask`` (ground truth) and both maps are finite."""
        use = mask & np.isfinite(confidence) & np.isfinite(pred) & (gt > 0)
        conf = confidence[use].astype(np.float64)
        rel = np.abs(pred[use].astype(np.float64) - gt[use]) / gt[use]
        index = np.clip(np.searchsorted(self.edges, conf, side="right") - 1, 0,
                        len(self.count) - 1)
        self.count += np.bincount(index, minlength=len(self.count))
        self.confidence_sum += np.bincount(index, conf, minlength=len(self.count))
        self.hits += np.bincount(index, rel < self.threshold, minlength=len(self.count)
                                 ).astype(np.int64)
        self.abs_rel_sum += np.bincount(index, rel, minlength=len(self.count))

    def summary(self) -> dict[str, float | list]:
        """AbsRel at confidence ≥ 0.5 and below, their ratio, the confident share of the
        pixels, the expected calibration error and the per-bin table."""
        high = self.edges[:-1] >= 0.5

        def abs_rel(select: np.ndarray) -> float:
            n = self.count[select].sum()
            return float(self.abs_rel_sum[select].sum() / n) if n else float("nan")
        total = max(int(self.count.sum()), 1)
        nonempty = self.count > 0
        mean_conf = np.where(nonempty, self.confidence_sum / np.maximum(self.count, 1), np.nan)
        accuracy = np.where(nonempty, self.hits / np.maximum(self.count, 1), np.nan)
        ece = float(np.nansum(np.abs(mean_conf - accuracy) * self.count) / total)
        high_rel, low_rel = abs_rel(high), abs_rel(~high)
        return {"threshold": self.threshold, "abs_rel_confident": high_rel,
                "abs_rel_rest": low_rel, "ratio": high_rel / low_rel if low_rel else float("nan"),
                "confident_share": float(self.count[high].sum() / total),
                "ece": ece,
                "bins": [{"low": float(lo), "high": float(hi), "pixels": int(n),
                          "mean_confidence": float(c), "accuracy": float(a)}
                         for lo, hi, n, c, a in zip(self.edges[:-1], self.edges[1:], self.count,
                                                    mean_conf, accuracy, strict=True)]}


def calibration_png(path: str | Path, summary: dict, title: str,
                    size: tuple[int, int] = (640, 560)) -> None:
    """Reliability diagram of ``ConfidenceStats.summary()``: observed share of pixels within
    the threshold against the mean confidence per bin (the diagonal is perfect calibration),
    with each bin's share of the pixels as grey bars. Drawn with OpenCV, written as PNG."""
    width, height = size
    left, right, top, bottom = 70, 24, 84, 60
    image = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX

    def px(x: float, y: float) -> tuple[int, int]:
        return (int(round(left + x * (width - left - right))),
                int(round(height - bottom - y * (height - top - bottom))))

    bins = summary["bins"]
    total = max(sum(b["pixels"] for b in bins), 1)
    for b in bins:  # pixel share, scaled so the largest bin reaches half the height
        share = b["pixels"] / total
        peak = max(bi["pixels"] for bi in bins) / total or 1.0
        cv2.rectangle(image, px(b["low"] + 0.01, 0), px(b["high"] - 0.01, 0.5 * share / peak),
                      (225, 225, 225), -1)
    for tick in np.linspace(0, 1, 6):
        cv2.line(image, px(tick, 0), px(tick, 1), (235, 235, 235), 1)
        cv2.line(image, px(0, tick), px(1, tick), (235, 235, 235), 1)
        cv2.putText(image, f"{tick:.1f}", (px(tick, 0)[0] - 12, height - bottom + 20), font,
                    0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, f"{tick:.1f}", (left - 40, px(0, tick)[1] + 5), font, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(image, px(0, 1), px(1, 0), (0, 0, 0), 1)
    cv2.line(image, px(0, 0), px(1, 1), (150, 150, 150), 1, cv2.LINE_AA)
    points = [px(b["mean_confidence"], b["accuracy"]) for b in bins if b["pixels"]]
    for a, b in pairwise(points):
        cv2.line(image, a, b, (200, 60, 40), 2, cv2.LINE_AA)
    for p in points:
        cv2.circle(image, p, 4, (200, 60, 40), -1, cv2.LINE_AA)
    cv2.putText(image, title, (left, 24), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"ECE {summary['ece']:.3f}; AbsRel conf>=0.5 "
                f"{summary['abs_rel_confident']:.4f} vs rest {summary['abs_rel_rest']:.4f}",
                (left, 46), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "mean confidence (bars: share of pixels)", (left + 120, height - 18),
                font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"share |err|/gt < {summary['threshold']:g}", (4, top - 8), font, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"could not encode {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, png.tobytes(), durable=False)
