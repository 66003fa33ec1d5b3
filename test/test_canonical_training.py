"""Canonical-camera training (``data.resize_policy: canonical``): every sample resized for the
canonical focal length and cropped or padded, depth expressed at that focal length, mixed
cameras in one run, and the policy in the checkpoint's and the ONNX model's metadata."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from depth_ros.geometry import PinholeCamera
from depth_ros.kitti import (
    DEPTH_PNG_SCALE,
    cam_to_cam_calibration,
    frame_name,
    write_calib_file,
    write_depth_png,
    write_rgb_png,
    write_timestamps,
)
from training.config import ConfigError, load_config
from training.data.drives import FrameList
from training.data.sources import DepthDataset, frame_to_sample
from training.data.transforms import (
    PAD_DEPTH,
    CanonicalResizeCrop,
    CanonicalResizePad,
    canonical_size,
)

REPO = Path(__file__).resolve().parents[1]
SOURCE = PinholeCamera(721.5, 721.5, 150.3, 44.7, 300, 90)


def _depth(height: int, width: int, sky_rows: int = 0) -> np.ndarray:
    """A different depth at every pixel, in the PNGs' 1/256 m steps (exact through uint16)."""
    rows, cols = np.mgrid[0:height, 0:width]
    depth = ((5 * 256 + cols + 300 * rows) / DEPTH_PNG_SCALE).astype(np.float32)
    depth[:sky_rows] = 0.0
    return depth


def _frames(camera: PinholeCamera, count: int = 1, sky_rows: int = 0) -> FrameList:
    rng = np.random.default_rng(0)
    depth = _depth(camera.height, camera.width, sky_rows)
    return FrameList(
        [rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
         for _ in range(count)],
        [np.rint(depth * DEPTH_PNG_SCALE).astype(np.uint16) for _ in range(count)],
        [camera.K for _ in range(count)])


def _source_pixels(K_out: np.ndarray, source: PinholeCamera, height: int, width: int  # noqa: N803
                   ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Nearest source rows and columns on the ray of every output pixel, each as (ties to
    the higher pixel, ties to the lower): a ray exactly half-way between two pixel centres is
    as near to both."""
    v, u = np.mgrid[0:height, 0:width]
    x = source.fx * (u - K_out[0, 2]) / K_out[0, 0] + source.cx
    y = source.fy * (v - K_out[1, 2]) / K_out[1, 1] + source.cy
    return tuple((np.floor(c + 0.5 + 1e-9).astype(int), np.ceil(c - 0.5 - 1e-9).astype(int))
                 for c in (y, x))


@pytest.mark.parametrize("seed", range(6))
def test_a_crops_depth_at_the_canonical_focal_is_the_source_depth_on_the_same_ray(seed):
    canonical, crop_h, crop_w = 240.0, 16, 48
    transform = CanonicalResizeCrop(canonical, [0.8, 1.25], crop_h, crop_w)
    frames = _frames(SOURCE, sky_rows=10)
    torch.manual_seed(seed)
    sample = transform(frame_to_sample(frames.frame(0)))
    torch.manual_seed(seed)
    _, item = DepthDataset(frames, canonical, transform)[0]
    fx_resized = sample["K"][0, 0]
    # u in [0.8, 1.25]: the frame's focal length at the network around the canonical one.
    assert 0.8 * canonical - 2 <= fx_resized <= 1.25 * canonical + 2
    assert sample["depth"].shape == (crop_h, crop_w) and tuple(item.shape) == (1, crop_h, crop_w)
    # The dataset's depth is the crop's, expressed at the canonical focal length ...
    np.testing.assert_allclose(item[0].numpy(), sample["depth"] * canonical / fx_resized,
                               rtol=1e-6)
    # ... and back at the resized frame's focal length it is the source's depth on that ray.
    # (Rays exactly half-way between two source pixels may take either: both are nearest.)
    source = frames.frame(0).depth
    back = item[0].numpy() * fx_resized / canonical
    rows, cols = _source_pixels(sample["K"], SOURCE, crop_h, crop_w)
    assert min(rows[1].min(), cols[1].min()) >= 0  # a crop: every pixel is the frame's
    matches = [np.isclose(back, source[r, c], rtol=1e-6, atol=0) for r in rows for c in cols]
    assert np.all(np.any(matches, axis=0))
    assert matches[0].mean() > 0.8  # ties are the exception


def test_the_scale_jitter_is_log_uniform_between_its_bounds():
    transform = CanonicalResizeCrop(240.0, [0.5, 2.0], 8, 8)
    sample = frame_to_sample(_frames(SOURCE).frame(0))
    torch.manual_seed(0)
    ratios = np.array([transform(sample)["K"][0, 0] / 240.0 for _ in range(200)])
    assert 0.49 < ratios.min() < 0.6 and 1.7 < ratios.max() < 2.01
    # Log-uniform: as many draws below 1 as above.
    assert 0.4 < np.mean(ratios < 1.0) < 0.6


def test_a_frame_smaller_than_the_crop_is_padded_without_ground_truth():
    camera = PinholeCamera(100.0, 100.0, 29.5, 9.5, 60, 20)
    frames = _frames(camera)
    transform = CanonicalResizeCrop(100.0, [1.0, 1.0], 32, 128)  # s = 1: no resampling
    torch.manual_seed(1)
    sample = transform(frame_to_sample(frames.frame(0)))
    torch.manual_seed(1)
    image, depth = DepthDataset(frames, 100.0, transform)[0]
    assert tuple(image.shape) == (3, 32, 128) and tuple(depth.shape) == (1, 32, 128)
    top, left = int(round(sample["K"][1, 2] - 9.5)), int(round(sample["K"][0, 2] - 29.5))
    inside = np.zeros((32, 128), bool)
    inside[top:top + 20, left:left + 60] = True
    np.testing.assert_array_equal(sample["depth"][inside].reshape(20, 60),
                                  frames.frame(0).depth)
    assert np.all(sample["depth"][~inside] == PAD_DEPTH)
    assert not (depth[0].numpy()[~inside] > 0).any()  # never in the loss or the metrics
    # The image is edge-replicated around the frame, as the runtime pads it.
    rgb = frames.rgb[0].astype(np.float32) / 255
    np.testing.assert_allclose(sample["rgb"][top, :left], np.repeat(rgb[:1, :1], left, 1)[0])
    np.testing.assert_allclose(sample["rgb"][top + 20:, left + 5], np.repeat(
        rgb[-1:, 5], 32 - top - 20, 0))


def test_a_frame_wider_but_lower_than_the_crop_is_cropped_across_and_padded_down():
    camera = PinholeCamera(100.0, 100.0, 99.5, 9.5, 200, 20)
    transform = CanonicalResizeCrop(100.0, [1.0, 1.0], 32, 64)
    torch.manual_seed(2)
    sample = transform(frame_to_sample(_frames(camera).frame(0)))
    assert sample["depth"].shape == (32, 64)
    pad_rows = np.all(sample["depth"] == PAD_DEPTH, axis=1)
    assert pad_rows.sum() == 12 and not np.any(sample["depth"][~pad_rows] == PAD_DEPTH)


def test_a_crop_smaller_than_the_frame_has_no_padding():
    transform = CanonicalResizeCrop(600.0, [0.9, 1.1], 16, 32)
    torch.manual_seed(3)
    for _ in range(10):
        sample = transform(frame_to_sample(_frames(SOURCE).frame(0)))
        assert sample["depth"].shape == (16, 32) and sample["depth"].min() > 0


def test_validation_frames_are_resized_to_the_canonical_focal_and_padded():
    frames = _frames(SOURCE)
    height, width = canonical_size(90, 300, SOURCE.fx, 240.0)
    assert (height, width) == (30, 100)
    sample = CanonicalResizePad(240.0, 32, 128)(frame_to_sample(frames.frame(0)))
    assert sample["depth"].shape == (32, 128)
    # A whole number of pixels: fx within half a source pixel's share of the canonical one.
    assert abs(sample["K"][0, 0] - 240.0) <= SOURCE.fx * 0.5 / SOURCE.width
    assert np.all(sample["depth"][30:] == PAD_DEPTH) and np.all(sample["depth"][:, 100:] ==
                                                                PAD_DEPTH)
    assert sample["depth"][:30, :100].min() > 0


@pytest.mark.parametrize("override, message", [
    (["data.resize_policy=canonical"], "needs data.canonical_focal_px > 0"),
    (["data.resize_policy=canonical", "data.canonical_focal_px=480",
      "data.scale_jitter=[1.2, 0.8]"], "scale_jitter must be"),
    (["data.resize_policy=canonical", "data.canonical_focal_px=480",
      "data.scale_jitter=[1.0]"], "scale_jitter must be"),
    (["data.resize_policy=stretch"], "resize_policy must be fixed or canonical"),
    (["data.resize_policy=canonical", "data.canonical_focal_px=480",
      "data.max_input_size=[352, 0]"], "max_input_size must be"),
    (["data.val_synthetic={drives: 6, seed: 1000}",
      "data.extra_train=[{root: x, synthetic: {drives: 10, seed: 1004}}]"],
     "overlap training seeds"),
    (["data.extra_train=[{synthetic: {drives: 1}}]"], "needs a root"),
    (["data.extra_train=[{root: x, synthetic: {camera_profile: wide}}]"],
     r"data\.extra_train\[0\]\.synthetic\.camera_profile"),
])
def test_bad_canonical_settings_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=override)


def _write_drive(root: Path, drive: int, camera: PinholeCamera, frames: int, seed: int) -> None:
    date = "2011_09_26"
    drive_dir = root / date / f"{date}_drive_{drive:04d}_sync"
    write_calib_file(drive_dir / "calib_cam_to_cam.txt", cam_to_cam_calibration(camera))
    rng = np.random.default_rng(seed)
    depth = _depth(camera.height, camera.width, sky_rows=camera.height // 4) / 8
    for i in range(frames):
        write_rgb_png(drive_dir / "image_02" / "data" / f"{frame_name(i)}.png",
                      rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8))
        write_depth_png(drive_dir / "proj_depth" / "groundtruth" / "image_02"
                        / f"{frame_name(i)}.png", depth)
    write_timestamps(drive_dir / "image_02" / "timestamps.txt", np.arange(frames) * 0.1)


def test_a_canonical_run_mixes_cameras_and_says_so_in_its_checkpoint_and_onnx(tmp_path):
    # Training drives of two cameras under two roots (KITTI-wide and a 4:3 wide lens),
    # validation through a third; 2 steps, then export.
    wide = PinholeCamera(180.0, 180.0, 155.0, 46.0, 310, 94)
    vga = PinholeCamera(70.0, 70.0, 79.5, 59.5, 160, 120)
    _write_drive(tmp_path / "data" / "train", 1, wide, 4, 1)
    _write_drive(tmp_path / "extra", 1, vga, 4, 2)
    _write_drive(tmp_path / "data" / "val", 1, PinholeCamera(150.0, 150.0, 120.0, 40.0, 240, 80),
                 2, 3)
    config = {
        "name": "canonical", "output_dir": str(tmp_path / "runs"), "max_steps": 2,
        "batch_size": 2, "num_threads": 1, "log_every": 1, "checkpoint_every": 0,
        "tensorboard": False,
        "model": {"name": "mono_cnn", "kwargs": {"base_channels": 8}},
        "data": {"root": str(tmp_path / "data"), "input_height": 64, "input_width": 96,
                 "load_threads": 1, "zero_depth_is_far": True, "resize_policy": "canonical",
                 "canonical_focal_px": 100.0, "scale_jitter": [0.8, 1.25],
                 "max_input_size": [128, 192],
                 "extra_train": [{"root": str(tmp_path / "extra")}]},
        "optim": {"warmup_steps": 1},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run([sys.executable, "training/train.py", "--config",
                          str(tmp_path / "c.yaml")], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train: 8 frames from 2 drives (160x120, 310x94)" in run.stderr
    assert "validation at 160x64" in run.stderr  # 240x80 at fx 100: 160x53, padded to 32
    last = tmp_path / "runs" / "canonical" / "last.pt"
    payload = torch.load(last, map_location="cpu", weights_only=True)
    meta = payload["metadata"]
    assert meta["resize_policy"] == "canonical"
    assert float(meta["train_focal_px"]) == 100.0
    assert (meta["train_input_height"], meta["train_input_width"]) == ("64", "96")
    # The runtime's largest network input (beyond it: tiles), from data.max_input_size.
    assert (int(meta["max_input_height"]), int(meta["max_input_width"])) == (128, 192)
    assert "canonical camera fx 100 px" in meta["train_data"]
    assert np.isfinite(payload["val_metrics"]["abs_rel"])
    onnx_path = tmp_path / "canonical.onnx"
    export = subprocess.run([sys.executable, "training/export.py", "--checkpoint",
                             str(tmp_path / "runs" / "canonical" / "last.pt"), "--output",
                             str(onnx_path), "--check-size", "64x96",
                             "--no-release-checkpoint"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert export.returncode == 0, export.stderr[-3000:]
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert props["resize_policy"] == "canonical" and float(props["train_focal_px"]) == 100.0
    assert (int(props["max_input_height"]), int(props["max_input_width"])) == (128, 192)
