"""The training transforms: every augmentation of a sample, in one place.

Numpy samples first: a sample is a dict of numpy arrays, ``rgb`` H×W×3 float32 in [0, 1],
``depth`` and ``sparse_depth`` H×W float32 metres (0 = no data), ``K`` 3×3 float64. Every
geometric transform moves ``K`` with the pixels, so back-projecting a pixel with the new K gives
the same 3-D point as before (mirrored by a flip). Then ``to_tensors``; then the tensor-level
augmentation of a dataset item (``TensorAugment``: the engine drives' flip and colour jitter,
LiDAR dropout and thinning for fusion models); last, the strong perturbations of
pseudo-labelled samples and CutMix. Random draws come from torch's global generator, which the
trainer seeds and checkpoints and DataLoader reseeds per worker (CutMix: an explicit one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from depth_ros.geometry import PinholeCamera, resize_sparse_depth
from training.config import AugmentConfig

Sample = dict[str, np.ndarray]
DEPTH_KEYS = ("depth", "sparse_depth")
KB_CROP_HEIGHT = 352  # the KITTI benchmark crop (Garg/Eigen evaluation, BTS "kb_crop")
KB_CROP_WIDTH = 1216
# Ground truth of padding (canonical-camera samples smaller than the crop): outside the
# frame, so never scored or trained on, not even as 'far' where 0 means far (rendered sky).
PAD_DEPTH = -1.0


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


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize sparse or dense ground truth by nearest pixel centre: never blends a depth
    with a neighbour's or with 'no data'."""
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def resize(sample: Sample, width: int, height: int) -> Sample:
    """Resize to ``width × height``: RGB interpolated, ground truth by nearest pixel centre,
    sparse depth scattered point by point; K as ``PinholeCamera.resized`` (pixel centres)."""
    src_h, src_w = _size(sample)
    out = dict(sample)
    shrink = width < src_w and height < src_h
    out["rgb"] = cv2.resize(sample["rgb"], (width, height),
                            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if "depth" in sample:
        out["depth"] = resize_depth(sample["depth"], width, height)
    if "sparse_depth" in sample:
        out["sparse_depth"] = resize_sparse_depth(sample["sparse_depth"], width, height)
    out["K"] = PinholeCamera.from_K(sample["K"], src_w, src_h).resized(width, height).K
    return out


def pad(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """Place the sample at (top, left) in a ``height × width`` frame: RGB edge-replicated
    (as the runtime pads), ground truth ``PAD_DEPTH``, sparse depth 0 ('no return'); the
    principal point shifts."""
    full_h, full_w = _size(sample)
    if top < 0 or left < 0 or top + full_h > height or left + full_w > width:
        raise ValueError(f"a {full_h}x{full_w} image does not fit in {height}x{width} at "
                         f"({top}, {left})")
    spans = ((top, height - top - full_h), (left, width - left - full_w))
    out = dict(sample)
    out["rgb"] = np.pad(sample["rgb"], (*spans, (0, 0)), mode="edge")
    if "depth" in sample:
        out["depth"] = np.pad(sample["depth"], spans, constant_values=PAD_DEPTH)
    if "sparse_depth" in sample:
        out["sparse_depth"] = np.pad(sample["sparse_depth"], spans)
    K = sample["K"].astype(np.float64)  # noqa: N806
    K[0, 2] += left
    K[1, 2] += top
    out["K"] = K
    return out


def resize_to_focal(sample: Sample, focal_px: float) -> Sample:
    """Resize so that fx becomes ``focal_px`` (to the nearest whole image size, so fx comes
    within half a pixel of the width's share of it; ``K`` says exactly)."""
    height, width = _size(sample)
    new_h, new_w = canonical_size(height, width, float(sample["K"][0, 0]), focal_px)
    return sample if (new_w, new_h) == (width, height) else resize(sample, new_w, new_h)


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


class CenterCrop:
    """The central ``height × width`` crop (the deterministic twin of ``RandomCrop``)."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width

    def __call__(self, sample: Sample) -> Sample:
        full_h, full_w = _size(sample)
        return crop(sample, (full_h - self.height) // 2, (full_w - self.width) // 2,
                    self.height, self.width)


class CanonicalResizeCrop:
    """Canonical-camera training: resize by s = canonical_focal_px / fx · u, u log-uniform in
    ``scale_jitter``, then take a uniformly placed ``height × width`` window: a crop where the
    resized frame is larger, padding (``pad``) where it is smaller.

    ``K`` follows, so ``DepthDataset`` expresses the depth at the canonical focal length
    (depth · canonical / fx of the resized frame). Draws u, then the row and the column
    offsets from torch's global generator.
    """

    def __init__(self, canonical_focal_px: float, scale_jitter: Sequence[float], height: int,
                 width: int) -> None:
        low, high = (float(v) for v in scale_jitter)
        if not canonical_focal_px > 0 or not 0 < low <= high:
            raise ValueError(f"need canonical_focal_px > 0 and 0 < lo <= hi, got "
                             f"{canonical_focal_px}, {list(scale_jitter)}")
        self.canonical_focal_px = float(canonical_focal_px)
        self.log_range = (float(np.log(low)), float(np.log(high)))
        self.height, self.width = height, width

    def __call__(self, sample: Sample) -> Sample:
        jitter = float(np.exp(_uniform(*self.log_range)))
        sample = resize_to_focal(sample, self.canonical_focal_px * jitter)
        full_h, full_w = _size(sample)
        # Per axis: the window's start inside the frame (crop) or the frame's inside it (pad).
        row = int(torch.randint(abs(full_h - self.height) + 1, ()).item())
        col = int(torch.randint(abs(full_w - self.width) + 1, ()).item())
        top, pad_top = (row, 0) if full_h >= self.height else (0, row)
        left, pad_left = (col, 0) if full_w >= self.width else (0, col)
        sample = crop(sample, top, left, min(full_h, self.height), min(full_w, self.width))
        if full_h >= self.height and full_w >= self.width:
            return sample
        return pad(sample, pad_top, pad_left, self.height, self.width)


class CanonicalResizePad:
    """Canonical-camera validation: resize so fx is ``canonical_focal_px``, then pad bottom
    and right to ``height × width`` (the whole frame is scored; the padding is not)."""

    def __init__(self, canonical_focal_px: float, height: int, width: int) -> None:
        self.canonical_focal_px = float(canonical_focal_px)
        self.height, self.width = height, width

    def __call__(self, sample: Sample) -> Sample:
        return pad(resize_to_focal(sample, self.canonical_focal_px), 0, 0, self.height,
                   self.width)


def canonical_size(height: int, width: int, fx: float, canonical_focal_px: float
                   ) -> tuple[int, int]:
    """(height, width) of a ``height × width`` frame of focal ``fx`` resized so its focal
    length becomes ``canonical_focal_px`` (``resize_to_focal``)."""
    scale = canonical_focal_px / fx
    return max(1, round(height * scale)), max(1, round(width * scale))


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


# --- Tensor-level augmentation of dataset items -----------------------------------------------
# Engine drives are held in memory at the input size, so their flip and colour jitter act on the
# item's tensors (``augment_pair``); benchmark frames flip and jitter as numpy samples inside
# their geometry stack (``RandomHorizontalFlip``, ``ColorJitter``). Each keeps the stream of
# draws, and so the results, of the runs and models trained with it.


def _factor(spread: float) -> float:
    return 1.0 + spread * (2.0 * torch.rand(()).item() - 1.0)


def augment_pair(image: torch.Tensor, depth: torch.Tensor, config: AugmentConfig,
                 sparse: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Random horizontal flip (image, depth and ``sparse`` if given) and
    brightness/contrast/saturation jitter (image only); returns ``(image, depth)``, or
    ``(image, depth, sparse)`` when ``sparse`` is given.

    Draws from torch's global generator, which the trainer seeds and checkpoints.
    """
    if torch.rand(()).item() < config.hflip_prob:
        image, depth = image.flip(-1), depth.flip(-1)
        sparse = None if sparse is None else sparse.flip(-1)
    # Rec. 601 luma, as torchvision's colour jitter uses.
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    image = image * _factor(config.brightness)
    image = (image - gray.mean()) * _factor(config.contrast) + gray.mean()
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    image = (image - gray) * _factor(config.saturation) + gray
    if sparse is None:
        return image.clamp(0.0, 1.0), depth
    return image.clamp(0.0, 1.0), depth, sparse


def augment_lidar(sparse: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """With probability ``lidar_drop_prob`` no LiDAR at all (all zeros); else, in this order,
    background bleeding (``lidar_bleed_fraction``, see ``bleed_background``), patches without
    returns (``lidar_patch_prob``, ``drop_patches``), and each return kept with probability
    f, f drawn from [``lidar_keep_min``, ``lidar_keep_max``] (a sparser sensor). Draws from
    torch's global generator (only for the options that are on)."""
    if config.lidar_drop_prob > 0 and torch.rand(()).item() < config.lidar_drop_prob:
        return torch.zeros_like(sparse)
    if config.lidar_bleed_fraction > 0:
        sparse = bleed_background(sparse, config.lidar_bleed_fraction)
    if config.lidar_patch_prob > 0 and torch.rand(()).item() < config.lidar_patch_prob:
        sparse = drop_patches(sparse)
    if config.lidar_keep_min >= 1.0:
        return sparse
    keep = config.lidar_keep_min + (config.lidar_keep_max - config.lidar_keep_min) * float(
        torch.rand(()).item())
    return torch.where(torch.rand(sparse.shape) < keep, sparse, torch.zeros_like(sparse))


def bleed_background(sparse: torch.Tensor, fraction: float, radius: int = 3,
                     margin: float = 0.1) -> torch.Tensor:
    """Real KITTI's background-through-foreground returns, added to a cleaner scan: of the
    returns with a return more than ``margin`` farther within ``radius`` pixels (the near side
    of a depth edge), ``fraction`` take the farthest such depth (1×H×W or N×1×H×W metres).
    The LiDAR sits above and behind the camera, so it sees past near objects' edges."""
    valid = sparse > 0
    inverse = torch.where(valid, 1.0 / sparse.clamp(min=1e-3), torch.full_like(sparse, 1e6))
    # Min-pool of the inverse depth: the farthest return in the window.
    size = 2 * radius + 1
    farthest = -torch.nn.functional.max_pool2d(-inverse[None] if sparse.dim() == 3
                                               else -inverse, size, 1, radius)
    farthest = farthest[0] if sparse.dim() == 3 else farthest
    far_depth = 1.0 / farthest
    candidate = valid & (farthest < 1e5) & (far_depth > (1.0 + margin) * sparse)
    chosen = candidate & (torch.rand(sparse.shape) < fraction)
    return torch.where(chosen, far_depth, sparse)


def drop_patches(sparse: torch.Tensor, max_patches: int = 4, max_size: float = 0.25
                 ) -> torch.Tensor:
    """Remove the returns inside 1..``max_patches`` random rectangles, each side up to
    ``max_size`` of the image's (objects that return nothing: glass, black paint)."""
    height, width = sparse.shape[-2:]
    out = sparse.clone()
    count = int(torch.randint(1, max_patches + 1, ()).item())
    for _ in range(count):
        h = max(1, int(height * max_size * torch.rand(()).item()))
        w = max(1, int(width * max_size * torch.rand(()).item()))
        top = int(torch.randint(height - h + 1, ()).item())
        left = int(torch.randint(width - w + 1, ()).item())
        out[..., top:top + h, left:left + w] = 0.0
    return out


class TensorAugment:
    """Training-time augmentation of an item ``(image, depth[, sparse_depth])``.

    Args:
        config: the ``augment:`` settings.
        photometric: flip and colour-jitter the tensors (``augment_pair``); false where the
            numpy stack already did (benchmark frames).
    """

    def __init__(self, config: AugmentConfig, photometric: bool) -> None:
        self.config, self.photometric = config, photometric

    def __call__(self, *item: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image, depth, *rest = item
        sparse = rest[0] if rest else None
        if self.photometric:
            image, depth, *rest = augment_pair(image, depth, self.config, sparse)
            sparse = rest[0] if rest else None
        if sparse is None:
            return image, depth
        return image, depth, augment_lidar(sparse, self.config)


# --- Strong perturbations for pseudo-labelled samples (Depth Anything's data engine) ----------
# Photometric ones take the same numpy samples as above and touch ``rgb`` only; CutMix works on
# collated N×C×H×W tensors and draws from an explicit ``torch.Generator``, so a training step
# can redraw exactly the same boxes when it is resumed.


class RandomApply:
    """Apply ``transforms`` in order with probability ``prob``, else none of them."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]], prob: float) -> None:
        self.transform = Compose(transforms)
        self.prob = prob

    def __call__(self, sample: Sample) -> Sample:
        return self.transform(sample) if torch.rand(()).item() < self.prob else sample


class RandomGrayscale:
    """Replace the RGB by its Rec. 601 luma in all three channels with probability ``prob``."""

    def __init__(self, prob: float = 0.2) -> None:
        self.prob = prob

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand(()).item() >= self.prob:
            return sample
        rgb = sample["rgb"].astype(np.float32)
        luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return {**sample, "rgb": np.repeat(luma[..., None], 3, axis=2)}


class HueJitter:
    """Rotate the hue by a fraction of the colour circle drawn from [−hue, hue] (hue ≤ 0.5)."""

    def __init__(self, hue: float = 0.1) -> None:
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        self.hue = hue

    def __call__(self, sample: Sample) -> Sample:
        shift = _uniform(-self.hue, self.hue) * 360.0
        if self.hue == 0.0:
            return sample
        # OpenCV's float HSV: hue in degrees [0, 360), saturation and value in [0, 1].
        hsv = cv2.cvtColor(np.clip(sample["rgb"].astype(np.float32), 0.0, 1.0),
                           cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(shift), 360.0)
        return {**sample, "rgb": np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)}


def cutmix_partners(count: int, generator: torch.Generator) -> torch.Tensor:
    """For each of ``count`` samples the index of another one (a random cycle through the batch,
    so no sample is its own partner when ``count`` ≥ 2)."""
    order = torch.randperm(count, generator=generator)
    partners = torch.empty(count, dtype=torch.long)
    partners[order] = order.roll(-1)
    return partners


def cutmix_boxes(count: int, height: int, width: int, generator: torch.Generator,
                 prob: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                 aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """One rectangle per sample as a count×1×H×W bool mask (all false for samples it skips).

    With probability ``prob`` a sample gets a box whose area is a fraction drawn uniformly from
    ``area`` of the image and whose height/width ratio is log-uniform in ``aspect``, placed
    uniformly where it fits (UniMatch's CutMix box, which Depth Anything uses). Five numbers
    are drawn per sample whatever happens, so the stream of draws depends on ``count`` only.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    if not 0.0 < area[0] <= area[1] <= 1.0 or not 0.0 < aspect[0] <= aspect[1]:
        raise ValueError(f"need 0 < area low <= high <= 1 and 0 < aspect low <= high, got "
                         f"{area}, {aspect}")
    draws = torch.rand(count, 5, generator=generator, dtype=torch.float64)
    boxes = torch.zeros(count, 1, height, width, dtype=torch.bool)
    log_low, log_high = np.log(aspect[0]), np.log(aspect[1])
    for i, (apply, a, r, y, x) in enumerate(draws.tolist()):
        if apply >= prob:
            continue
        size = (area[0] + (area[1] - area[0]) * a) * height * width
        ratio = float(np.exp(log_low + (log_high - log_low) * r))
        box_h = int(min(max(round(np.sqrt(size * ratio)), 1), height))
        box_w = int(min(max(round(np.sqrt(size / ratio)), 1), width))
        top = min(int(y * (height - box_h + 1)), height - box_h)
        left = min(int(x * (width - box_w + 1)), width - box_w)
        boxes[i, :, top:top + box_h, left:left + box_w] = True
    return boxes


def cutmix(tensors: Sequence[torch.Tensor], generator: torch.Generator, prob: float = 0.5,
           area: tuple[float, float] = (0.02, 0.4), aspect: tuple[float, float] = (0.3, 1 / 0.3)
           ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """CutMix within a batch: inside each sample's box every tensor (image, label, mask...)
    takes its partner's pixels, outside it keeps its own.

    Args:
        tensors: N×C×H×W tensors of one batch (any C, any dtype, same N, H and W).
        generator: the source of every random draw (partners first, then boxes).
        prob: probability that a sample gets a box.
        area: box area as a fraction of the image, drawn uniformly from this range.
        aspect: box height/width ratio, log-uniform in this range.

    Returns:
        The mixed tensors (new tensors; the inputs are not changed), the N×1×H×W bool box
        masks (the pixels that came from the partner) and the N partner indices.
    """
    first = tensors[0]
    count, height, width = first.shape[0], first.shape[-2], first.shape[-1]
    for t in tensors:
        if t.dim() != 4 or t.shape[0] != count or t.shape[-2:] != first.shape[-2:]:
            raise ValueError(f"cutmix needs N×C×H×W tensors of one batch, got "
                             f"{[tuple(x.shape) for x in tensors]}")
    partners = cutmix_partners(count, generator)
    boxes = cutmix_boxes(count, height, width, generator, prob, area, aspect)
    if count < 2:
        boxes.zero_()
    boxes = boxes.to(first.device)
    mixed = [torch.where(boxes, t[partners.to(t.device)], t) for t in tensors]
    return mixed, boxes, partners
