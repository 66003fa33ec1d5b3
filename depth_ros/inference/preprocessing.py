"""Image and size handling shared by every backend: network input sizes, resizing in and out.

Pure numpy/OpenCV, so ``DepthEstimator``, the training data pipeline and the TensorRT
calibration data resize images the same way.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an image: area averaging when shrinking (no aliasing), bilinear otherwise.

    Training data goes through this too, so the network sees the same filtering at run time.
    """
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    shrinking = width <= rgb.shape[1] and height <= rgb.shape[0]
    return cv2.resize(rgb, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def depth_anything_v2_input_size(height: int, width: int, target: tuple[int, int] = (518, 518),
                                 multiple: int = 14) -> tuple[int, int]:
    """Network (height, width) of Depth Anything V2's ``infer_image`` for an image.

    Its ``Resize(keep_aspect_ratio=True, ensure_multiple_of=14, resize_method="lower_bound")``:
    one scale for both axes, the larger of target/size, so that both sides reach at least the
    target; each side is then rounded to the nearest multiple (half to even, as ``np.round``),
    or rounded up where rounding would fall below the target.
    """
    scale = max(target[0] / height, target[1] / width)

    def constrain(value: float, minimum: int) -> int:
        rounded = int(np.round(value / multiple) * multiple)
        return rounded if rounded >= minimum else int(np.ceil(value / multiple) * multiple)

    return constrain(scale * height, target[0]), constrain(scale * width, target[1])


def resize_bilinear_align_corners(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an H×W float array with ``align_corners=True`` (corner samples map to
    corner samples), as ``F.interpolate`` does it, in numpy (no torch at run time)."""

    def taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        step = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        src = np.arange(size_out, dtype=np.float64) * step
        low = np.minimum(np.floor(src).astype(np.intp), size_in - 1)
        high = np.minimum(low + 1, size_in - 1)
        return low, high, (src - low).astype(np.float32)

    image = np.asarray(image, dtype=np.float32)
    low, high, frac = taps(image.shape[0], height)
    rows = image[low] * (1 - frac)[:, None] + image[high] * frac[:, None]
    low, high, frac = taps(image.shape[1], width)
    return rows[:, low] * (1 - frac)[None] + rows[:, high] * frac[None]


def round_to_stride(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(height, width) rounded to the nearest multiples of ``stride`` (at least one stride)."""
    return tuple(max(stride, int(round(v / stride)) * stride) for v in size)
