"""Image and size handling shared by every backend: network input sizes, resizing in and out.

Pure numpy/OpenCV, so ``DepthEstimator``, the training data pipeline and the TensorRT
calibration data resize images the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# Largest side of a frame resized to the canonical focal: beyond it fx is wrong (a focal a
# tenth of the training one asks for 10× the pixels), and resizing would exhaust memory.
MAX_CANONICAL_SIDE = 8192


def round_down_to_stride(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(height, width) rounded down to multiples of ``stride`` (at least one stride)."""
    return tuple(max(stride, int(v) // stride * stride) for v in size)


@dataclass(frozen=True)
class CanonicalPlan:
    """How one frame reaches a ``canonical`` model and comes back.

    The frame is resized by ``scale`` so that its focal length becomes the model's training
    focal length (aspect ratio kept), padded on the bottom and right to the stride (edges
    replicated), and run whole or, beyond the maximum network size, in overlapping tiles.

    Attributes:
        scale: the horizontal scale actually used (``resized`` width / frame width); depth
            comes out at focal ``fx · scale``, which rounding leaves a hair off the
            canonical focal.
        resized: (height, width) of the resized frame.
        padded: (height, width) after padding to the stride.
        tile: (height, width) of one network input (``padded`` when there is one tile).
        rows: top edges of the tiles in the padded frame.
        cols: left edges of the tiles in the padded frame.
    """

    scale: float
    resized: tuple[int, int]
    padded: tuple[int, int]
    tile: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def num_tiles(self) -> int:
        """How many network runs a frame takes."""
        return len(self.rows) * len(self.cols)


def tile_starts(length: int, tile: int, stride: int) -> tuple[int, ...]:
    """Start offsets of the fewest ``tile``-long windows, on the stride grid, that cover
    ``length`` (multiples of ``stride``, ``tile`` two strides at least) with neighbours
    overlapping by at least a quarter tile (at least one stride), so each blended pixel has
    context on both sides."""
    if length <= tile:
        return (0,)
    overlap = max(stride, tile // 4 // stride * stride)
    # The stride grid moves each start by up to half a stride: keep that out of the overlap.
    step = max(stride, tile - overlap - stride)
    count = -(-(length - tile) // step) + 1
    span = length - tile
    starts = [int(round(i * span / (count - 1) / stride)) * stride for i in range(count)]
    return tuple(starts)


def tile_weights(starts: tuple[int, ...], tile: int) -> list[np.ndarray]:
    """Blending weights along one axis, one ``tile``-long vector per start: 1 inside, a
    linear ramp towards an edge that another tile overlaps (never 0), so overlapping outputs
    fade into each other instead of meeting at a seam."""
    weights = []
    for index, start in enumerate(starts):
        w = np.ones(tile, dtype=np.float32)
        if index > 0:  # the previous tile covers [start, its end): ramp up across that
            ramp = starts[index - 1] + tile - start
            w[:ramp] = np.minimum(w[:ramp], (np.arange(ramp, dtype=np.float32) + 1) / (ramp + 1))
        if index < len(starts) - 1:
            ramp = start + tile - starts[index + 1]
            w[tile - ramp:] = np.minimum(
                w[tile - ramp:], (np.arange(ramp, 0, -1, dtype=np.float32)) / (ramp + 1))
        weights.append(w)
    return weights


def canonical_plan(height: int, width: int, fx: float, train_focal_px: float, stride: int,
                   max_size: tuple[int, int] | None = None) -> CanonicalPlan:
    """The ``CanonicalPlan`` of a ``height`` × ``width`` frame with focal ``fx`` (pixels at
    that size) for a model trained at ``train_focal_px`` with this ``stride``; ``max_size``
    (height, width, multiples of the stride) bounds the network input: larger frames are
    tiled, never shrunk (shrinking would change the focal and so the metric scale)."""
    if not (fx > 0 and train_focal_px > 0):
        raise ValueError(f"focal lengths must be positive, got fx {fx}, "
                         f"train_focal_px {train_focal_px}")
    s = train_focal_px / fx
    resized = (max(1, int(round(height * s))), max(1, int(round(width * s))))
    if max(resized) > MAX_CANONICAL_SIDE:
        raise ValueError(f"fx {fx:g} px resizes the {width}x{height} frame to "
                         f"{resized[1]}x{resized[0]} for the canonical focal "
                         f"{train_focal_px:g} px, beyond {MAX_CANONICAL_SIDE} px a side: is fx "
                         "the focal length in pixels at this resolution?")
    padded = tuple(-(-v // stride) * stride for v in resized)
    if max_size is None:
        tile = padded
    else:
        tile = tuple(min(p, m) for p, m in zip(padded, max_size, strict=True))
    return CanonicalPlan(scale=resized[1] / width, resized=resized, padded=padded,
                         tile=tile, rows=tile_starts(padded[0], tile[0], stride),
                         cols=tile_starts(padded[1], tile[1], stride))
