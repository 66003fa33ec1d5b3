"""kitti_dev's held-out-returns protocol (its README): the returns withheld from a fusion
model's input and scored, shared by ``training.evaluate`` and the bag validation frames."""

from __future__ import annotations

import numpy as np

HOLDOUT_FRACTION = 0.2  # of the pixels with a return, per image (kitti_dev's README)


def holdout_mask(frame_index: int, camera: int, has_return: np.ndarray) -> np.ndarray:
    """kitti_dev's held-out pixels of one scan: ``default_rng(frame_index * 10 + camera)``,
    ``rng.random(shape) < 0.2``, among the pixels with a return."""
    rng = np.random.default_rng(frame_index * 10 + camera)
    return (rng.random(has_return.shape) < HOLDOUT_FRACTION) & has_return
