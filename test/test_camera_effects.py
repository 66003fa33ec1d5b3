"""Camera effects (training.data.camera_effects): each effect does what it says, in numbers;
photometric ones leave depth alone, the rolling shutter moves it with the pixels; all off by
default (bit-identical items and draws); seeded; and a tiny training run with every one on."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from test_training import REPO, write_tiny_run

from training.config import AugmentConfig, ConfigError, load_config
from training.data import camera_effects as ce
from training.data.transforms import TensorAugment, augment_lidar, augment_pair

PROBABILITIES = ("style_prob", "rolling_shutter_prob", "motion_blur_prob", "defocus_prob",
                 "chromatic_prob", "vignette_prob", "noise_prob", "white_balance_prob",
                 "gamma_prob", "hue_prob", "grayscale_prob", "jpeg_prob")
PHOTOMETRIC = tuple(p for p in PROBABILITIES if p != "rolling_shutter_prob")


def textured(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth colourful image in (0.1, 0.9): neighbouring pixels correlate, like a photo."""
    rng = np.random.default_rng(seed)
    rgb = cv2.GaussianBlur(rng.random((height, width, 3), dtype=np.float32), (7, 7), 1.5)
    rgb = (rgb - rgb.min()) / (rgb.max() - rgb.min())
    return (0.1 + 0.8 * rgb).astype(np.float32)


def item(seed: int = 0, height: int = 48, width: int = 64) -> tuple[torch.Tensor, ...]:
    """A dataset item: image 3×H×W, dense depth and 5 % LiDAR, 1×H×W metres."""
    g = torch.Generator().manual_seed(seed)
    image = torch.from_numpy(textured(height, width, seed).transpose(2, 0, 1).copy())
    depth = 2.0 + 78.0 * torch.rand(1, height, width, generator=g)
    sparse = torch.where(torch.rand(1, height, width, generator=g) < 0.05, depth, 0.0)
    return image, depth, sparse


def only(name: str, **strengths: float) -> AugmentConfig:
    """No flip or colour jitter; only the effect ``name`` (a ``*_prob``), always applied."""
    return AugmentConfig(hflip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0,
                         **{name: 1.0}, **strengths)


def every_effect() -> AugmentConfig:
    return AugmentConfig(**dict.fromkeys(PROBABILITIES, 1.0))


# Off by default ---------------------------------------------------------------------------

def test_defaults_are_off_and_items_and_draws_are_unchanged() -> None:
    config = AugmentConfig()
    assert all(getattr(config, name) == 0.0 for name in PROBABILITIES)
    assert not ce.CameraEffects(config).active
    image, depth, sparse = item()
    torch.manual_seed(7)
    augment = TensorAugment(config, photometric=True)
    got = augment(image, depth) + augment(image, depth, sparse)
    state_after = torch.get_rng_state()
    torch.manual_seed(7)
    want = augment_pair(image, depth, config)
    *pair, lidar = augment_pair(image, depth, config, sparse)
    want += (*pair, augment_lidar(lidar, config))
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    # Not one extra random draw: every later step of a run sees the same stream.
    assert torch.equal(state_after, torch.get_rng_state())
    sample = {"rgb": textured(), "depth": depth[0].numpy()}
    assert ce.CameraEffects(config)(sample) is sample


# Each effect, in numbers --------------------------------------------------------------------

def test_white_balance_gains_are_exact() -> None:
    rgb = textured()
    out = ce.white_balance(rgb, 1.1, 0.8)
    np.testing.assert_array_equal(out[..., 0], np.clip(rgb[..., 0] * np.float32(1.1), 0, 1))
    np.testing.assert_array_equal(out[..., 1], rgb[..., 1])
    np.testing.assert_array_equal(out[..., 2], rgb[..., 2] * np.float32(0.8))


def test_gamma_is_a_power_that_keeps_black_and_white() -> None:
    rgb = np.array([[[0.0, 0.25, 1.0]]], np.float32)
    np.testing.assert_allclose(ce.apply_gamma(rgb, 2.0), [[[0.0, 0.0625, 1.0]]], rtol=1e-6)
    np.testing.assert_allclose(ce.apply_gamma(rgb, 0.5), [[[0.0, 0.5, 1.0]]], rtol=1e-6)


@pytest.mark.parametrize(("shot", "read"), [(0.0, 0.02), (0.002, 0.0), (0.002, 0.01)])
def test_noise_std_on_flat_grey_matches_the_level(shot: float, read: float) -> None:
    torch.manual_seed(0)
    grey = np.full((200, 200, 3), 0.5, np.float32)
    out = ce.sensor_noise(grey, shot, read)
    expected = math.sqrt(shot * 0.5 + read ** 2)
    assert out.std() == pytest.approx(expected, rel=0.02)
    assert out.mean() == pytest.approx(0.5, abs=0.002)


def test_shot_noise_grows_with_the_signal() -> None:
    torch.manual_seed(0)
    dark, bright = (ce.sensor_noise(np.full((200, 200, 3), v, np.float32), 0.004, 0.0) - v
                    for v in (0.1, 0.4))
    assert bright.std() / dark.std() == pytest.approx(2.0, rel=0.03)  # sqrt(0.4 / 0.1)


def test_hue_rotation_and_grayscale() -> None:
    rgb = np.array([[[1.0, 0.0, 0.0], [0.2, 0.4, 0.6]]], np.float32)
    np.testing.assert_allclose(ce.rotate_hue(rgb, 120.0)[0, 0], [0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(ce.rotate_hue(rgb, 360.0), rgb, atol=1e-6)
    luma = 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6
    np.testing.assert_allclose(ce.grayscale(rgb)[0, 1], [luma] * 3, rtol=1e-6)


def test_jpeg_quality_10_changes_pixels_and_keeps_the_mean() -> None:
    rgb = textured(96, 128)
    low, high = ce.jpeg_recompress(rgb, 10), ce.jpeg_recompress(rgb, 95)
    assert low.shape == rgb.shape and low.dtype == np.float32
    error_low, error_high = np.abs(low - rgb).mean(), np.abs(high - rgb).mean()
    assert error_low > 0.01  # blocking and lost colour detail, measurably
    assert error_high < 0.4 * error_low  # and less of it at a high quality
    assert abs(low.mean() - rgb.mean()) < 0.01


def dot(size: int = 21) -> np.ndarray:
    """A single bright pixel in the centre of a black square."""
    rgb = np.zeros((size, size, 3), np.float32)
    rgb[size // 2, size // 2] = 1.0
    return rgb


@pytest.mark.parametrize("degrees", [0.0, 90.0])
def test_motion_blur_spreads_a_dot_along_the_direction_with_its_length(degrees: float
                                                                        ) -> None:
    out = ce.blur(dot(), ce.motion_blur_kernel(7.0, np.radians(degrees)))[..., 0]
    line = out[10, 7:14] if degrees == 0 else out[7:14, 10]
    np.testing.assert_allclose(line, np.full(7, 1 / 7), rtol=1e-5)
    assert np.count_nonzero(out > 1e-6) == 7 and out.sum() == pytest.approx(1.0, rel=1e-5)


def test_motion_blur_at_45_degrees_lies_on_the_diagonal() -> None:
    out = ce.blur(dot(), ce.motion_blur_kernel(10.0, np.radians(45.0)))[..., 0]
    ys, xs = np.nonzero(out > 1e-6)
    assert np.array_equal(ys - 10, xs - 10)  # y down: +45° runs down-right
    # The streak spans 10 px: ±5 cos 45° ≈ ±3.5 px each way.
    assert xs.min() - 10 == -4 and xs.max() - 10 == 4
    assert out.sum() == pytest.approx(1.0, rel=1e-5)


def test_defocus_spreads_a_dot_into_a_disk() -> None:
    out = ce.blur(dot(), ce.disk_kernel(3.0))[..., 0]
    ys, xs = np.nonzero(out > 1e-6)
    radii = np.hypot(ys - 10, xs - 10)
    assert radii.max() <= 3.0 + 0.75  # pixels touched by the disk's edge
    assert np.count_nonzero(out > 0.5 * out.max()) == pytest.approx(math.pi * 9, rel=0.15)
    np.testing.assert_allclose(out, out.T, atol=1e-7)  # round: symmetric
    assert out.sum() == pytest.approx(1.0, rel=1e-5)


def test_chromatic_aberration_moves_red_out_and_blue_in() -> None:
    rgb = np.zeros((41, 201, 3), np.float32)
    rgb[:, 180] = 1.0  # a white line 80 px right of the centre column (100)
    out = ce.chromatic_aberration(rgb, 0.01)
    columns = np.arange(201)

    def centroid(channel: int) -> float:
        profile = out[20, :, channel]
        return float((profile * columns).sum() / profile.sum())

    assert centroid(0) == pytest.approx(180.8, abs=0.02)  # 100 + 80 × 1.01
    assert centroid(1) == pytest.approx(180.0, abs=1e-6)
    assert centroid(2) == pytest.approx(179.2, abs=0.02)


def test_vignetting_darkens_the_corners_by_the_falloff() -> None:
    out = ce.apply_vignetting(np.full((41, 61, 3), 0.8, np.float32), 0.3)
    assert out[20, 30] == pytest.approx([0.8] * 3, rel=1e-6)
    for y, x in ((0, 0), (0, 60), (40, 0), (40, 60)):
        assert out[y, x] == pytest.approx([0.8 * 0.7] * 3, rel=1e-5)
    assert out[20, 0, 0] > out[0, 0, 0]


def test_style_matches_the_other_images_lab_statistics() -> None:
    rgb, other = textured(seed=1), 0.5 * textured(seed=2)[..., ::-1] + 0.2
    mean, std = ce.lab_statistics(other)
    got_mean, got_std = ce.lab_statistics(ce.match_lab_statistics(rgb, mean, std))
    np.testing.assert_allclose(got_mean, mean, atol=0.3)
    np.testing.assert_allclose(got_std, std, rtol=0.03)
    assert ce.match_lab_statistics(rgb, mean, std, 0.0) is rgb
    half_mean, _ = ce.lab_statistics(ce.match_lab_statistics(rgb, mean, std, 0.5))
    own_mean, _ = ce.lab_statistics(rgb)
    np.testing.assert_allclose(half_mean, (own_mean + mean) / 2, atol=0.3)


def test_style_transfer_draws_its_partner_from_recent_images() -> None:
    torch.manual_seed(0)
    style = ce.StyleTransfer(prob=1.0, strength=1.0, bank=4)
    first, second = textured(seed=1), 0.5 * textured(seed=2) + 0.3
    # No image seen yet: no partner, the first passes as it came.
    np.testing.assert_array_equal(style({"rgb": first})["rgb"], first)
    assert len(style.bank) == 1
    out = style({"rgb": second})["rgb"]
    # Its statistics moved towards the first image's, by the drawn weight.
    before = np.abs(ce.lab_statistics(second)[0] - ce.lab_statistics(first)[0]).sum()
    after = np.abs(ce.lab_statistics(out)[0] - ce.lab_statistics(first)[0]).sum()
    assert after < before and len(style.bank) == 2


def test_rolling_shutter_moves_image_and_depth_identically() -> None:
    height, width = 48, 64
    columns = np.broadcast_to(np.arange(width, dtype=np.float32), (height, width))
    depth = 1.0 + columns  # depth tells the column it came from
    rgb = np.repeat((columns / width)[..., None], 3, axis=2)
    sparse = np.where(np.arange(width) % 4 == 0, depth, 0).astype(np.float32)
    K = np.diag([50.0, 50.0, 1.0])  # noqa: N806
    out = ce.rolling_shutter({"rgb": rgb, "depth": depth, "sparse_depth": sparse, "K": K},
                             6.0)
    shifts = ce.row_shifts(height, 6.0)
    assert shifts[-1] - shifts[0] == 6 and abs(shifts[height // 2]) <= 1
    assert np.all(np.diff(shifts) >= 0)
    # Image and depth still agree pixel for pixel: the same whole-pixel shift.
    np.testing.assert_array_equal(out["rgb"][..., 0] * width + 1.0, out["depth"])
    for y in (0, height - 1):
        s = shifts[y]
        np.testing.assert_array_equal(out["depth"][y, 10:50], depth[y, 10 - s:50 - s])
    # LiDAR: the returns move with the pixels; none appear where none were measured.
    moved = out["sparse_depth"]
    valid = moved > 0
    np.testing.assert_array_equal(moved[valid], out["depth"][valid])
    assert valid.sum() <= (sparse > 0).sum() and valid.sum() >= (sparse > 0).sum() - 2 * height
    assert out["K"] is K


@pytest.mark.parametrize("name", PHOTOMETRIC)
def test_photometric_effects_change_the_image_and_never_the_depth(name: str) -> None:
    torch.manual_seed(0)
    config = only(name, hue=0.2, style_strength=1.0, motion_blur_min_px=4.0,
                  defocus_radius_px=2.0, chromatic_scale=0.01, vignette=0.5,
                  white_balance=0.3, gamma=0.5, jpeg_quality_max=40)
    augment = TensorAugment(config, photometric=True)
    image, depth, sparse = item(0)
    if name == "style_prob":  # a first image fills its bank
        augment(*item(1))
    out_image, out_depth, out_sparse = augment(image, depth, sparse)
    assert torch.equal(out_depth, depth) and torch.equal(out_sparse, sparse)
    assert out_image.shape == image.shape and out_image.dtype == torch.float32
    assert (out_image - image).abs().mean() > 1e-3
    assert 0.0 <= out_image.min() and out_image.max() <= 1.0


def test_rolling_shutter_through_tensor_augment_moves_depth_and_lidar() -> None:
    torch.manual_seed(0)
    config = only("rolling_shutter_prob", rolling_shutter_px=8.0)
    image, depth, sparse = item(0)
    # photometric=False: no colour jitter, whose identity factors still round the image.
    out_image, out_depth, out_sparse = TensorAugment(config, photometric=False)(
        image, depth, sparse)
    assert not torch.equal(out_depth, depth)
    # Whole rows moved, not resampled: every row holds the same values, shifted.
    shifts = [int(np.argmin([float((out_depth[0, y, 20:40] - depth[0, y, 20 - s:40 - s])
                                   .abs().sum()) for s in range(-4, 5)])) - 4
              for y in range(depth.shape[1])]
    for y, s in enumerate(shifts):
        assert torch.equal(out_depth[0, y, 20:40], depth[0, y, 20 - s:40 - s])
        assert torch.equal(out_image[:, y, 20:40], image[:, y, 20 - s:40 - s])
        assert torch.equal(out_sparse[0, y, 20:40], sparse[0, y, 20 - s:40 - s])
    assert shifts[-1] - shifts[0] != 0


def test_every_effect_is_reproducible_by_seed() -> None:
    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        augment = TensorAugment(every_effect(), photometric=True)
        return [t for i in range(3) for t in augment(*item(i))]

    first, again, other = run(3), run(3), run(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(("override", "key"), [
    ("augment.jpeg_prob=1.5", "augment.jpeg_prob"),
    ("augment.vignette=1.0", "augment.vignette"),
    ("augment.hue=0.6", "augment.hue"),
    ("augment.jpeg_quality_min=0", "augment.jpeg_quality_min"),
    ("augment.motion_blur_max_px=1.0", "augment.motion_blur_max_px"),
    ("augment.style_bank=0", "augment.style_bank"),
])
def test_an_out_of_range_option_is_one_config_error(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key} is out of range"):
        load_config(None, [override])


def test_every_option_is_in_the_config_and_round_trips() -> None:
    config = load_config(None, [f"augment.{name}=1.0" for name in PROBABILITIES])
    assert dataclasses.asdict(config.augment) == dataclasses.asdict(every_effect())


def test_a_tiny_training_run_with_every_effect_on(tmp_path: Path) -> None:
    augment = {**dict.fromkeys(PROBABILITIES, 1.0), "rolling_shutter_px": 4.0}
    base = write_tiny_run(tmp_path, augment=augment)
    result = subprocess.run([sys.executable, "training/train.py", "--config",
                             str(base / "tiny.yaml"), "max_steps=4", "tensorboard=false"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = base / "runs" / "tiny"
    merged = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert merged["augment"]["jpeg_prob"] == 1.0 and merged["augment"]["style_prob"] == 1.0
    payload = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert payload["step"] == 4
    assert all(torch.isfinite(v).all() for v in payload["state_dict"].values()
               if v.is_floating_point())


def test_the_demo_writes_one_panel_per_effect(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert ce.main(["--demo", str(out), "--width", "96", "--height", "40"]) == 0
    grid = cv2.imread(str(out))
    rows = math.ceil(len(ce.DEMO_PANELS) / 3)
    assert grid.shape == (rows * 40, 3 * 96, 3)
    # Below its label, the first panel is the engine frame itself.
    frame = ce.engine_frame(3, 96, 40)
    expected = cv2.cvtColor(np.rint(frame * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(grid[18:40, :96], expected[18:])


def test_the_recommended_set_in_the_docs_is_a_valid_augment_block(tmp_path: Path) -> None:
    text = (REPO / "docs" / "training.md").read_text()
    section = text[text.index("A recommended set for sim-to-real"):]
    block = section[section.index("```yaml\n") + 8:section.index("\n```\n\n")]
    recipe = yaml.safe_load((REPO / "config" / "train" / "mono_synthetic.yaml").read_text())
    recipe["augment"].update(yaml.safe_load(block)["augment"])
    (tmp_path / "aug.yaml").write_text(yaml.safe_dump(recipe))
    config = load_config(tmp_path / "aug.yaml").augment
    assert config.style_prob > 0 and config.rolling_shutter_prob == 0  # KITTI: global shutter
    assert config.hflip_prob == 0.5  # the recipe's own lines stay
    torch.manual_seed(0)
    augment = TensorAugment(config, photometric=True)
    for i in range(4):
        _, depth = augment(*item(i)[:2])
        assert torch.equal(depth, item(i)[1]) or torch.equal(depth, item(i)[1].flip(-1))
