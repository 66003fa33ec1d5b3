"""Camera effects: training-time augmentation that makes engine frames look like real cameras'.

Each effect is a plain function with explicit parameters (what the tests and the demo call),
applied with randomly drawn ones to a numpy sample (``training.data.transforms``' layout:
``rgb`` H×W×3 float32 in [0, 1], ``depth`` and ``sparse_depth`` H×W float32 metres, 0 = no
data). The photometric ones change ``rgb`` only; the one geometric one, the rolling shutter,
moves the depth and the LiDAR with the pixels, row by row, by the same whole pixels. The hue
rotation and the grayscale here are also those of the transforms' ``HueJitter`` and
``RandomGrayscale``.

``CameraEffects`` chains those the ``augment:`` config turns on, each with its own
probability, in the order a real camera applies them: the scene's colours (style), the
exposure (rolling shutter, motion blur), the lens (defocus, chromatic aberration,
vignetting), the sensor (noise), the image processor (white balance, gamma, hue,
grayscale) and last the encoder (JPEG). Every option defaults to off, and with all of them
off nothing is drawn from the random generator, so existing recipes train bit for bit as
before. Random draws come from torch's global generator, as in the rest of the transforms.

    python -m training.data.camera_effects --demo docs/images/camera_effects.png
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from depth_ros.geometry import PinholeCamera
from depth_ros.synthetic import plan_drive, render_frame
from depth_ros.synthetic.render import vignetting
from training.config import AugmentConfig

# The transforms' sample layout (training.data.transforms.Sample, which builds on this module).
Sample = dict[str, np.ndarray]
# Rec. 601 luma, as torchvision's grayscale and colour jitter use.
_LUMA_601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Lab channel std below which a channel counts as flat: its contrast is not scaled up.
_FLAT_LAB_STD = 1e-3
# The per-channel contrast change of a style transfer is kept within these factors: a
# nearly flat channel (a foggy frame's a*) is not blown up into noise.
_STYLE_RATIO_RANGE = (0.2, 5.0)
# Sub-pixel samples per pixel of a blur kernel's footprint.
_SUPERSAMPLE = 64


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()).item())


def _rgb(sample: Sample) -> np.ndarray:
    return np.ascontiguousarray(sample["rgb"], dtype=np.float32)


# --- The effects as functions ------------------------------------------------------------------


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(rgb, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2Lab)


def _channel_statistics(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = cv2.meanStdDev(np.ascontiguousarray(image))
    return mean[:, 0], std[:, 0]


def lab_statistics(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float64, 3 each) of an RGB image in CIELAB
    (OpenCV's float Lab: L in [0, 100])."""
    return _channel_statistics(_to_lab(rgb))


def match_lab_statistics(rgb: np.ndarray, mean: np.ndarray, std: np.ndarray,
                         weight: float = 1.0) -> np.ndarray:
    """Reinhard's colour transfer: shift and scale each Lab channel so its mean and std become
    ``mean``/``std`` (another image's ``lab_statistics``), blended with the input by
    ``weight`` (0: unchanged, 1: full transfer); back to RGB in [0, 1]."""
    if weight <= 0:  # exactly the input, not its Lab round trip (off by up to ~0.002)
        return rgb
    lab = _to_lab(rgb)
    own_mean, own_std = _channel_statistics(lab)
    ratio = np.where(own_std > _FLAT_LAB_STD,
                     np.clip(std / np.maximum(own_std, _FLAT_LAB_STD), *_STYLE_RATIO_RANGE), 1.0)
    # lab + weight · ((lab − own_mean) · ratio + mean − lab), as one affine map per channel.
    scale = 1.0 + weight * (ratio - 1.0)
    offset = weight * (mean - own_mean * ratio)
    lab = lab * scale.astype(np.float32) + offset.astype(np.float32)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)


def row_shifts(height: int, skew_px: float) -> np.ndarray:
    """Whole-pixel horizontal shift of each row of a rolling-shutter frame: linear in the row,
    0 at the centre row (to rounding), the bottom row ``round(skew_px)`` right of the top."""
    if height < 2:
        return np.zeros(height, np.int64)
    ramp = np.rint(skew_px * np.arange(height) / (height - 1)).astype(np.int64)
    return ramp - ramp[(height - 1) // 2]


def shift_rows(array: np.ndarray, shifts: np.ndarray, fill_edge: bool) -> np.ndarray:
    """Row ``y`` of ``array`` (H×W or H×W×C) moved right by ``shifts[y]`` whole pixels; the
    columns that come in from outside repeat the edge (``fill_edge``) or are 0 (no data)."""
    height, width = array.shape[:2]
    source = np.arange(width)[None, :] - shifts[:, None]
    inside = (source >= 0) & (source < width)
    out = array[np.arange(height)[:, None], np.clip(source, 0, width - 1)]
    if not fill_edge:
        out[~inside] = 0
    return out


def rolling_shutter(sample: Sample, skew_px: float) -> Sample:
    """A camera yawing while its rows are read out one after another: each row shifted
    sideways, linearly in the row (``row_shifts``). RGB and dense depth repeat the edge
    column, so the two stay consistent; LiDAR gets no returns where none were measured. The
    shift is in whole pixels so that image and depth move identically, and K is unchanged
    (the centre row stays in place)."""
    shifts = row_shifts(sample["rgb"].shape[0], skew_px)
    out = dict(sample)
    out["rgb"] = shift_rows(_rgb(sample), shifts, fill_edge=True)
    if "depth" in sample:
        out["depth"] = shift_rows(sample["depth"], shifts, fill_edge=True)
    if "sparse_depth" in sample:
        out["sparse_depth"] = shift_rows(sample["sparse_depth"], shifts, fill_edge=False)
    return out


def _footprint(offsets: np.ndarray, radius: int) -> np.ndarray:
    """Normalised (2r+1)² kernel from sub-pixel sample offsets (N×2, x and y, from the centre),
    each sample counted in the pixel that contains it."""
    size = 2 * radius + 1
    kernel = np.zeros((size, size), np.float64)
    cells = np.rint(offsets).astype(np.int64) + radius
    np.add.at(kernel, (cells[:, 1], cells[:, 0]), 1.0)
    return (kernel / kernel.sum()).astype(np.float32)


def motion_blur_kernel(length_px: float, angle_rad: float) -> np.ndarray:
    """A straight streak ``length_px`` long through the kernel centre at ``angle_rad`` from
    the +x axis (image x right, y down): each pixel weighted by the length of the streak
    that crosses it."""
    if length_px <= 0:
        raise ValueError(f"motion blur length must be positive, got {length_px}")
    count = max(1, int(np.ceil(length_px * _SUPERSAMPLE)))
    along = ((np.arange(count) + 0.5) / count - 0.5) * length_px
    offsets = along[:, None] * np.array([np.cos(angle_rad), np.sin(angle_rad)])
    return _footprint(offsets, int(np.ceil(length_px / 2)))


def disk_kernel(radius_px: float) -> np.ndarray:
    """A defocused lens's point spread: a uniform disk of ``radius_px``, each pixel weighted
    by the share of its area inside the disk."""
    if radius_px <= 0:
        raise ValueError(f"defocus radius must be positive, got {radius_px}")
    radius = int(np.ceil(radius_px))
    steps = 8  # 8×8 sub-pixel samples per pixel
    grid = (np.arange((2 * radius + 1) * steps) + 0.5) / steps - radius - 0.5
    x, y = np.meshgrid(grid, grid)
    inside = x ** 2 + y ** 2 <= radius_px ** 2
    return _footprint(np.stack([x[inside], y[inside]], axis=1), radius)


def blur(rgb: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter each channel with ``kernel`` (centred, point-symmetric), mirrored borders."""
    return cv2.filter2D(np.ascontiguousarray(rgb, dtype=np.float32), -1, kernel,
                        borderType=cv2.BORDER_REFLECT)


def chromatic_aberration(rgb: np.ndarray, scale: float) -> np.ndarray:
    """Lateral chromatic aberration: red magnified by 1 + ``scale`` and blue by 1 − ``scale``
    about the image centre (green, the luma channel, stays), so colour fringes grow towards
    the corners."""
    height, width = rgb.shape[:2]
    cx, cy = (width - 1) / 2, (height - 1) / 2
    out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
    for channel, factor in ((0, 1.0 + scale), (2, 1.0 - scale)):
        matrix = np.array([[factor, 0.0, cx * (1 - factor)], [0.0, factor, cy * (1 - factor)]])
        out[..., channel] = cv2.warpAffine(out[..., channel], matrix, (width, height),
                                           flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REPLICATE)
    return out


def apply_vignetting(rgb: np.ndarray, corner_falloff: float) -> np.ndarray:
    """Darken towards the corners with the engine's own lens model
    (``depth_ros.synthetic.render.vignetting``, centred): the corners lose ``corner_falloff``
    of their light."""
    height, width = rgb.shape[:2]
    camera = PinholeCamera(1.0, 1.0, (width - 1) / 2, (height - 1) / 2, width, height)
    return rgb * vignetting(camera, corner_falloff)[..., None]


def sensor_noise(rgb: np.ndarray, shot: float, read: float) -> np.ndarray:
    """Shot plus read noise: each value gets Gaussian noise of variance
    ``shot · value + read²`` (shot noise grows with the signal), then is clipped to [0, 1]."""
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    std = np.sqrt(np.float32(shot) * np.clip(rgb, 0.0, None) + np.float32(read) ** 2)
    noise = torch.randn(rgb.shape, dtype=torch.float32).numpy()
    return np.clip(rgb + std * noise, 0.0, 1.0)


def white_balance(rgb: np.ndarray, red_gain: float, blue_gain: float) -> np.ndarray:
    """Multiply red and blue by their gains (green 1), clipped to [0, 1]."""
    gains = np.array([red_gain, 1.0, blue_gain], np.float32)
    return np.clip(rgb * gains, 0.0, 1.0)


def apply_gamma(rgb: np.ndarray, gamma: float) -> np.ndarray:
    """``value ** gamma`` (> 1 darkens the mid-tones, < 1 lifts them); 0 and 1 stay."""
    return np.power(np.clip(rgb, 0.0, 1.0), np.float32(gamma))


def rotate_hue(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate every pixel's hue by ``degrees`` (HSV saturation and value stay), clipped to
    [0, 1]."""
    # OpenCV's float HSV: hue in degrees [0, 360), saturation and value in [0, 1].
    hsv = cv2.cvtColor(np.clip(rgb.astype(np.float32), 0.0, 1.0), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(degrees), 360.0)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """The Rec. 601 luma in all three channels."""
    luma = rgb.astype(np.float32) @ _LUMA_601
    return np.repeat(luma[..., None], 3, axis=2)


def jpeg_recompress(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode as 8-bit JPEG at ``quality`` (1-100) with OpenCV and decode again."""
    pixels = np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode a {rgb.shape} image")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255.0)


# --- The effects as random transforms of a sample ----------------------------------------------


class _Photometric:
    """A random photometric effect: ``draw()`` its parameters, apply ``effect`` to RGB only."""

    def __init__(self, effect: Callable[..., np.ndarray],
                 draw: Callable[[], tuple[float, ...]]) -> None:
        self.effect, self.draw = effect, draw

    def __call__(self, sample: Sample) -> Sample:
        return {**sample, "rgb": self.effect(_rgb(sample), *self.draw())}


class StyleTransfer:
    """With probability ``prob``, move the image's Lab means and stds towards those of another
    training image, by a weight drawn from [0, ``strength``].

    The other image is drawn from the last ``bank`` images this transform has seen (their
    statistics, 6 numbers each): shuffled training batches make that a random recent training
    image. Each DataLoader worker keeps its own bank, and a resumed run starts with an empty
    one (the first image then has no partner and passes unchanged).
    """

    def __init__(self, prob: float, strength: float = 1.0, bank: int = 64) -> None:
        self.prob, self.strength = prob, strength
        self.bank: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque(
            maxlen=bank)

    def __call__(self, sample: Sample) -> Sample:
        rgb = _rgb(sample)
        # Every other pixel each way: a quarter of the work; on 416×128 engine frames the
        # means move by < 0.2 Lab units and the stds by < 1 %.
        stats = lab_statistics(rgb[::2, ::2])
        out = sample
        if torch.rand(()).item() < self.prob and self.bank:
            mean, std = self.bank[int(torch.randint(len(self.bank), ()).item())]
            out = {**sample, "rgb": match_lab_statistics(rgb, mean, std,
                                                         _uniform(0.0, self.strength))}
        self.bank.append(stats)
        return out


class RollingShutter:
    """Rows shifted sideways (``rolling_shutter``), the bottom row up to ±``max_skew_px``
    from the top; depth and LiDAR move with them."""

    def __init__(self, max_skew_px: float) -> None:
        self.max_skew_px = max_skew_px

    def __call__(self, sample: Sample) -> Sample:
        return rolling_shutter(sample, _uniform(-self.max_skew_px, self.max_skew_px))


class CameraEffects:
    """The camera effects that ``config`` turns on, each applied with its own probability.

    Call it on a numpy sample, or use ``tensors`` on a dataset item's tensors. ``active`` is
    false when every probability is 0: then nothing is applied and nothing drawn.
    """

    def __init__(self, config: AugmentConfig) -> None:
        c = config
        # (probability, effect); None: the effect draws its own (style keeps a bank of every
        # image it sees, applied or not).
        steps: list[tuple[float | None, Callable[[Sample], Sample]]] = []

        def maybe(prob: float, effect: Callable[[Sample], Sample]) -> None:
            if prob > 0:
                steps.append((prob, effect))

        if c.style_prob > 0:
            steps.append((None, StyleTransfer(c.style_prob, c.style_strength, c.style_bank)))
        maybe(c.rolling_shutter_prob, RollingShutter(c.rolling_shutter_px))
        maybe(c.motion_blur_prob, _Photometric(
            lambda rgb, length, angle: blur(rgb, motion_blur_kernel(length, angle)),
            lambda: (_uniform(c.motion_blur_min_px, c.motion_blur_max_px),
                     _uniform(0.0, np.pi))))
        maybe(c.defocus_prob, _Photometric(
            lambda rgb, radius: blur(rgb, disk_kernel(radius)),
            lambda: (_uniform(0.5, c.defocus_radius_px),)))
        maybe(c.chromatic_prob, _Photometric(
            chromatic_aberration, lambda: (_uniform(-c.chromatic_scale, c.chromatic_scale),)))
        maybe(c.vignette_prob, _Photometric(apply_vignetting,
                                            lambda: (_uniform(0.0, c.vignette),)))
        maybe(c.noise_prob, _Photometric(
            sensor_noise, lambda: (_uniform(0.0, c.noise_shot), _uniform(0.0, c.noise_read))))
        maybe(c.white_balance_prob, _Photometric(
            white_balance, lambda: (_uniform(1 - c.white_balance, 1 + c.white_balance),
                                    _uniform(1 - c.white_balance, 1 + c.white_balance))))
        maybe(c.gamma_prob, _Photometric(apply_gamma,
                                         lambda: (_uniform(1 - c.gamma, 1 + c.gamma),)))
        maybe(c.hue_prob, _Photometric(rotate_hue, lambda: (_uniform(-c.hue, c.hue) * 360.0,)))
        maybe(c.grayscale_prob, _Photometric(grayscale, lambda: ()))
        maybe(c.jpeg_prob, _Photometric(
            jpeg_recompress,
            lambda: (int(torch.randint(c.jpeg_quality_min, c.jpeg_quality_max + 1, ())),)))
        self.steps = steps

    @property
    def active(self) -> bool:
        """Whether any effect is on."""
        return bool(self.steps)

    def __call__(self, sample: Sample) -> Sample:
        for prob, effect in self.steps:
            if prob is None or torch.rand(()).item() < prob:
                sample = effect(sample)
        return sample

    def tensors(self, image: torch.Tensor, depth: torch.Tensor,
                sparse: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The effects on a dataset item: ``image`` 3×H×W in [0, 1], ``depth`` (and
        ``sparse``) 1×H×W metres; returns ``(image, depth)`` or ``(image, depth, sparse)``."""
        if not self.steps:
            return (image, depth) if sparse is None else (image, depth, sparse)
        sample: Sample = {"rgb": image.permute(1, 2, 0).numpy(), "depth": depth[0].numpy()}
        if sparse is not None:
            sample["sparse_depth"] = sparse[0].numpy()
        out = self(sample)
        image = torch.from_numpy(np.ascontiguousarray(
            out["rgb"].transpose(2, 0, 1), dtype=np.float32))
        depth = torch.from_numpy(np.ascontiguousarray(out["depth"], dtype=np.float32))[None]
        if sparse is None:
            return image, depth
        sparse = torch.from_numpy(np.ascontiguousarray(out["sparse_depth"],
                                                       dtype=np.float32))[None]
        return image, depth, sparse


# --- The picture in docs/training.md -----------------------------------------------------------

# One panel per effect at a strength near the top of its recommended range.
DEMO_PANELS: tuple[tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]], ...] = (
    ("engine frame", lambda rgb, ref: rgb),
    ("style (Lab stats of another frame)", lambda rgb, ref: match_lab_statistics(
        rgb, *lab_statistics(ref))),
    ("rolling shutter 12 px", lambda rgb, ref: rolling_shutter({"rgb": rgb}, 12.0)["rgb"]),
    ("motion blur 8 px, 20 deg", lambda rgb, ref: blur(rgb, motion_blur_kernel(
        8.0, np.radians(20.0)))),
    ("defocus radius 2 px", lambda rgb, ref: blur(rgb, disk_kernel(2.0))),
    ("chromatic aberration 0.5 %", lambda rgb, ref: chromatic_aberration(rgb, 0.005)),
    ("vignetting 40 %", lambda rgb, ref: apply_vignetting(rgb, 0.4)),
    ("noise shot 0.002, read 0.01", lambda rgb, ref: sensor_noise(rgb, 0.002, 0.01)),
    ("white balance R 1.15, B 0.85", lambda rgb, ref: white_balance(rgb, 1.15, 0.85)),
    ("gamma 1.25", lambda rgb, ref: apply_gamma(rgb, 1.25)),
    ("hue +30 deg", lambda rgb, ref: rotate_hue(rgb, 30.0)),
    ("grayscale", lambda rgb, ref: grayscale(rgb)),
    ("JPEG quality 15", lambda rgb, ref: jpeg_recompress(rgb, 15)),
)


def engine_frame(seed: int, width: int, height: int) -> np.ndarray:
    """The first frame of the engine drive ``seed`` (RGB float32 in [0, 1]), rendered."""
    plan = plan_drive(1, seed=seed, width=width, height=height)
    rgb, _ = render_frame(plan.scene, plan.poses[0], plan.camera)
    return rgb.astype(np.float32) / np.float32(255.0)


def demo_grid(rgb: np.ndarray, reference: np.ndarray, columns: int = 3) -> np.ndarray:
    """Every ``DEMO_PANELS`` effect on ``rgb`` (style: towards ``reference``), labelled, as
    one uint8 RGB grid."""
    torch.manual_seed(0)
    panels = []
    for label, effect in DEMO_PANELS:
        panel = np.rint(np.clip(effect(rgb, reference), 0, 1) * 255).astype(np.uint8)
        panel = np.ascontiguousarray(panel)
        panel[:18] = 0  # a black band under the label
        cv2.putText(panel, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1,
                    cv2.LINE_AA)
        panels.append(panel)
    blank = np.full_like(panels[0], 255)
    panels += [blank] * (-len(panels) % columns)
    rows = [np.concatenate(panels[i:i + columns], axis=1)
            for i in range(0, len(panels), columns)]
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> int:
    """Command line: write the demo grid."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", required=True, type=Path, metavar="PNG",
                        help="write a grid of one engine frame under each effect here")
    parser.add_argument("--seed", type=int, default=3, help="engine drive of the frame")
    parser.add_argument("--style-seed", type=int, default=11,
                        help="engine drive whose colours the style panel takes")
    # The bundled mono model's input size: what the network sees.
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--columns", type=int, default=3)
    args = parser.parse_args(argv)
    rgb = engine_frame(args.seed, args.width, args.height)
    reference = engine_frame(args.style_seed, args.width, args.height)
    grid = demo_grid(rgb, reference, args.columns)
    args.demo.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.demo), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        print(f"error: cannot write {args.demo}", file=sys.stderr)
        return 1
    print(f"wrote {args.demo} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
