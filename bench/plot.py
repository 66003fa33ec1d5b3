"""A scatter plot drawn with OpenCV (matplotlib is not a dependency), written as PNG."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from depth_ros.fileio import write_bytes_atomic

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _nice_step(span: float, ticks: int = 6) -> float:
    """A 1, 2 or 5 × 10^k step giving about ``ticks`` ticks over span."""
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def scatter_png(path: Path, x: np.ndarray, y: np.ndarray, title: str, x_label: str,
                y_label: str, lines: list[tuple[float, float, float, str, tuple]] = (),
                size: tuple[int, int] = (1200, 560)) -> None:
    """Plot points (x, y) with horizontal segments ``(x0, x1, y, label, rgb)`` over them."""
    width, height = size
    left, right, top, bottom = 90, 30, 64, 60
    image = np.full((height, width, 3), WHITE, np.uint8)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x_max = float(max(x.max(initial=1.0), *(seg[1] for seg in lines), 1e-9))
    y_max = float(max(y.max(initial=1.0), *(seg[2] for seg in lines), 1e-9)) * 1.1

    def to_px(xv: np.ndarray | float, yv: np.ndarray | float) -> tuple:
        px = left + np.asarray(xv) / x_max * (width - left - right)
        py = height - bottom - np.asarray(yv) / y_max * (height - top - bottom)
        return np.round(px).astype(int), np.round(py).astype(int)

    for axis, limit in (("x", x_max), ("y", y_max)):
        step = _nice_step(limit)
        for value in np.arange(0.0, limit + 1e-9, step):
            px, py = to_px(value if axis == "x" else 0.0, value if axis == "y" else 0.0)
            label = f"{value:g}"
            if axis == "x":
                cv2.line(image, (int(px), top), (int(px), height - bottom), GREY, 1)
                cv2.putText(image, label, (int(px) - 10, height - bottom + 20), FONT, 0.45,
                            BLACK, 1, cv2.LINE_AA)
            else:
                cv2.line(image, (left, int(py)), (width - right, int(py)), GREY, 1)
                cv2.putText(image, label, (left - 50, int(py) + 5), FONT, 0.45, BLACK, 1,
                            cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), BLACK, 1)
    px, py = to_px(x, y)
    for u, v in zip(px, py, strict=True):
        cv2.circle(image, (int(u), int(v)), 2, (40, 90, 200), -1, cv2.LINE_AA)
    for x0, x1, value, label, colour in lines:
        (u0, u1), (v, _) = to_px(np.array([x0, x1]), np.array([value, value]))
        cv2.line(image, (int(u0), int(v)), (int(u1), int(v)), colour, 3, cv2.LINE_AA)
        (text_w, text_h), _ = cv2.getTextSize(label, FONT, 0.5, 1)
        corner = (int(u0) + 4, int(v) - 10)
        cv2.rectangle(image, (corner[0] - 2, corner[1] - text_h - 3),
                      (corner[0] + text_w + 2, corner[1] + 4), WHITE, -1)
        cv2.putText(image, label, corner, FONT, 0.5, colour, 1, cv2.LINE_AA)
    cv2.putText(image, title, (left, 26), FONT, 0.65, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, x_label, (width // 2 - 80, height - 15), FONT, 0.55, BLACK, 1,
                cv2.LINE_AA)
    cv2.putText(image, y_label, (8, top - 10), FONT, 0.55, BLACK, 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, png.tobytes(), durable=False)
