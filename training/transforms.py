"""Augmentations that keep the intrinsics consistent with the pixels.

A sample is a dict of numpy arrays: ``rgb`` H×W×3 float32 in [0, 1], ``depth`` and
``sparse_depth`` H×W float32 metres (0 = no data), ``K`` 3×3 float64. Every geometric
transform moves ``K`` with the pixels, so back-projecting a pixel with the new K gives the
same 3-D point as before (mirrored by a flip). Random draws come from torch's global
generator, which the trainer seeds and checkpoints and DataLoader reseeds per worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from depth_ros.geometry import PinholeCamera

Sample = dict[str, np.ndarray]
DEPTH_KEYS = ("depth", "sparse_depth")
KB_CROP_HEIGHT = 352  # the KITTI benchmark crop (Garg/Eigen evaluation, BTS "kb_crop")
KB_CROP_WIDTH = 1216


def _size(sample: Sample) -> tuple[int, int]:
    height, width = sample["rgb"].shape[:2]
    return height, width


def crop(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """Crop every image to ``height × width`` from (top, left); the principal point shifts."""
    full_h, full_w = _size(sample)
    if top < 0 or left < 0 or top + height > full_h or left + width > full_w:
        raise ValueError(f"crop {height}x{width} at ({top}, {left}) does not fit in a "
                         f"{full_h}x{full_w} image")
    out = {key: (np.ascontiguousarray(value[top:top + height, left:left + width])
                 if key != "K" else value) for key, value in sample.items()}
    K = sample["K"].astype(np.float64)  # noqa: N806
    K[0, 2] -= left
    K[1, 2] -= top
    out["K"] = K
    return out


def hflip(sample: Sample) -> Sample:
    """Mirror left-right: the pixel u goes to W − 1 − u, so cx' = W − 1 − cx."""
    _, width = _size(sample)
    out = {key: (np.ascontiguousarray(value[:, ::-1]) if key != "K" else value)
           for key, value in sample.items()}
    K = sample["K"].astype(np.float64)  # noqa: N806
    K[0, 2] = width - 1 - K[0, 2]
    out["K"] = K
    return out


def _resize_sparse(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Move each valid pixel to the nearest target pixel centre, nearest depth winning: every
    LiDAR point survives a downscale and none is smeared over several pixels by an upscale."""
    src_h, src_w = depth.shape
    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    tu = np.clip(np.round((u + 0.5) * (width / src_w) - 0.5), 0, width - 1).astype(np.int64)
    tv = np.clip(np.round((v + 0.5) * (height / src_h) - 0.5), 0, height - 1).astype(np.int64)
    out = np.full(height * width, np.inf, dtype=np.float32)
    np.minimum.at(out, tv * width + tu, z)
    out[np.isinf(out)] = 0.0
    return out.reshape(height, width)


def resize(sample: Sample, width: int, height: int) -> Sample:
    """Resize to ``width × height``: RGB interpolated, ground truth by nearest pixel centre,
    sparse depth scattered point by point; K as ``PinholeCamera.resized`` (pixel centres)."""
    src_h, src_w = _size(sample)
    out = dict(sample)
    shrink = width < src_w and height < src_h
    out["rgb"] = cv2.resize(sample["rgb"], (width, height),
                            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if "depth" in sample:
        out["depth"] = cv2.resize(sample["depth"], (width, height),
                                  interpolation=cv2.INTER_NEAREST_EXACT)
    if "sparse_depth" in sample:
        out["sparse_depth"] = _resize_sparse(sample["sparse_depth"], width, height)
    out["K"] = PinholeCamera.from_K(sample["K"], src_w, src_h).resized(width, height).K
    return out


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample


class KBCrop:
    """The KITTI benchmark crop: the bottom 352 rows and the central 1216 columns."""

    def __init__(self, height: int = KB_CROP_HEIGHT, width: int = KB_CROP_WIDTH) -> None:
        self.height, self.width = height, width

    def __call__(self, sample: Sample) -> Sample:
        full_h, full_w = _size(sample)
        return crop(sample, full_h - self.height, (full_w - self.width) // 2, self.height,
                    self.width)


class RandomCrop:
    """A uniformly placed ``height × width`` crop."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width

    def __call__(self, sample: Sample) -> Sample:
        full_h, full_w = _size(sample)
        if self.height > full_h or self.width > full_w:
            raise ValueError(f"random crop {self.height}x{self.width} is larger than the "
                             f"{full_h}x{full_w} image")
        top = int(torch.randint(full_h - self.height + 1, ()).item())
        left = int(torch.randint(full_w - self.width + 1, ()).item())
        return crop(sample, top, left, self.height, self.width)


class RandomHorizontalFlip:
    """Mirror left-right with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, sample: Sample) -> Sample:
        return hflip(sample) if torch.rand(()).item() < self.prob else sample


class Resize:
    """Resize to a fixed ``width × height`` (e.g. the network input size), K following."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height

    def __call__(self, sample: Sample) -> Sample:
        return resize(sample, self.width, self.height)


class RandomScale:
    """Resize by a factor drawn uniformly from ``[low, high]`` (both axes alike)."""

    def __init__(self, low: float = 1.0, high: float = 1.5) -> None:
        if not 0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got {low}, {high}")
        self.low, self.high = low, high

    def __call__(self, sample: Sample) -> Sample:
        factor = _uniform(self.low, self.high)
        height, width = _size(sample)
        return resize(sample, max(1, round(width * factor)), max(1, round(height * factor)))


class ColorJitter:
    """Brightness, contrast and saturation factors drawn from [1 − x, 1 + x] (RGB only)."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2) -> None:
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, sample: Sample) -> Sample:
        rgb = sample["rgb"].astype(np.float32)
        # Rec. 601 luma, as torchvision's colour jitter uses.
        luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        rgb = rgb * _uniform(1 - self.brightness, 1 + self.brightness)
        mean = float((rgb @ luma).mean())
        rgb = (rgb - mean) * _uniform(1 - self.contrast, 1 + self.contrast) + mean
        gray = (rgb @ luma)[..., None]
        rgb = (rgb - gray) * _uniform(1 - self.saturation, 1 + self.saturation) + gray
        return {**sample, "rgb": np.clip(rgb, 0.0, 1.0)}


class GaussianBlur:
    """Blur the RGB with probability ``prob``, sigma drawn from ``[sigma_min, sigma_max]``."""

    def __init__(self, prob: float = 0.5, sigma_min: float = 0.1, sigma_max: float = 2.0
                 ) -> None:
        self.prob, self.sigma_min, self.sigma_max = prob, sigma_min, sigma_max

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand(()).item() >= self.prob:
            return sample
        sigma = _uniform(self.sigma_min, self.sigma_max)
        # Kernel out to 3 sigma: beyond that the weights are below 1 %.
        ksize = 2 * int(np.ceil(3 * sigma)) + 1
        return {**sample, "rgb": cv2.GaussianBlur(sample["rgb"], (ksize, ksize), sigma)}


def to_tensors(sample: Sample) -> dict[str, torch.Tensor]:
    """Channels-first tensors: ``image`` 3×H×W, ``depth``/``sparse_depth`` 1×H×W with
    ``depth_mask``/``sparse_mask`` (bool, where there is data) and ``K`` 3×3 float32."""
    height, width = _size(sample)
    zeros = np.zeros((height, width), np.float32)
    out = {"image": torch.from_numpy(np.ascontiguousarray(
        sample["rgb"].transpose(2, 0, 1), dtype=np.float32))}
    for key in DEPTH_KEYS:
        depth = torch.from_numpy(np.ascontiguousarray(sample.get(key, zeros),
                                                      dtype=np.float32))[None]
        out[key] = depth
        out["depth_mask" if key == "depth" else "sparse_mask"] = depth > 0
    out["K"] = torch.from_numpy(np.asarray(sample["K"], dtype=np.float32))
    return out
