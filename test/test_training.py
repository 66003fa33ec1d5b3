"""Training pieces (config, loss, schedule, data, checkpoints) and train.py end to end."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from depth_ros.geometry import PinholeCamera
from depth_ros.kitti import (
    KittiDrive,
    cam_to_cam_calibration,
    frame_name,
    write_calib_file,
    write_depth_png,
    write_rgb_png,
    write_timestamps,
)
from depth_ros.models import create_model
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import (
    AugmentConfig,
    ConfigError,
    OptimConfig,
    load_config,
    save_config,
)
from training.data.drives import FrameArrays, load_frames
from training.data.sampler import EpochSampler
from training.data.sources import DepthDataset
from training.data.transforms import augment_pair
from training.losses import SiLogLoss, silog_loss
from training.optim import build_optimizer, lr_factor, set_lr
from training.trainer import Trainer, TrainingDivergedError

REPO = Path(__file__).resolve().parents[1]

KITTI = PinholeCamera(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
LN2 = math.log(2.0)


def write_tiny_drive(root: Path, drive: int, frames: int = 4, width: int = 160,
                     height: int = 48, seed: int = 0) -> Path:
    """A small KITTI-layout drive: noise images over a ground-plane-like depth, sky = 0."""
    date = "2011_09_26"
    drive_dir = root / date / f"{date}_drive_{drive:04d}_sync"
    write_calib_file(drive_dir / "calib_cam_to_cam.txt",
                     cam_to_cam_calibration(KITTI.resized(width, height)))
    rng = np.random.default_rng(seed)
    rows = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None]
    for i in range(frames):
        depth = np.broadcast_to(4.0 + 60.0 * rows ** 2, (height, width)).copy()
        depth[: height // 4] = 0.0  # sky: no ground truth
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        write_rgb_png(drive_dir / "image_02" / "data" / f"{frame_name(i)}.png", rgb)
        write_depth_png(drive_dir / "proj_depth" / "groundtruth" / "image_02"
                        / f"{frame_name(i)}.png", depth)
    write_timestamps(drive_dir / "image_02" / "timestamps.txt", np.arange(frames) * 0.1)
    return drive_dir


def write_tiny_run(base: Path, **overrides: object) -> Path:
    """train/ (2 drives × 4 frames: 4 steps per epoch at batch 2), val/ (1 × 2) and
    tiny.yaml under ``base``; ``overrides`` replace top-level config keys."""
    for drive in (1, 2):
        write_tiny_drive(base / "data" / "train", drive, seed=drive)
    write_tiny_drive(base / "data" / "val", 1, frames=2, seed=99)
    config = {
        "name": "tiny", "output_dir": str(base / "runs"), "epochs": 1, "batch_size": 2,
        "num_threads": 1, "log_every": 1, "checkpoint_every": 2,
        "model": {"name": "mono_cnn", "kwargs": {"base_channels": 8}},
        "data": {"root": str(base / "data"), "input_height": 64, "input_width": 128,
                 "load_threads": 1},
        "optim": {"warmup_steps": 2},
        **overrides,
    }
    (base / "tiny.yaml").write_text(yaml.safe_dump(config))
    return base


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with train/ (2 drives × 4 frames), val/ (1 × 2) and tiny.yaml."""
    return write_tiny_run(tmp_path_factory.mktemp("tiny_run"))


def run_train(*args: str) -> subprocess.CompletedProcess:
    """The documented command line, from the repository root."""
    return subprocess.run([sys.executable, "training/train.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


# Loss -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lambd", "expected"), [
    # d = ln(target) − ln(pred) = (ln 2, 0) on the two valid pixels:
    # mean d² = ln²2 / 2, (mean d)² = ln²2 / 4.
    (0.85, math.sqrt(LN2**2 / 2 - 0.85 * LN2**2 / 4)),  # 0.37166
    (1.0, LN2 / 2),  # 0.34657
    (0.0, LN2 / math.sqrt(2)),  # 0.49013
])
def test_silog_by_hand_with_mask(lambd: float, expected: float) -> None:
    pred = torch.tensor([1.0, 2.0, 4.0])
    target = torch.tensor([2.0, 2.0, 0.0])  # third pixel: no data, masked
    mask = torch.tensor([True, True, False])
    assert float(silog_loss(pred, target, mask, lambd)) == pytest.approx(expected, rel=1e-6)
    # What lies outside the mask does not matter.
    pred_other = torch.tensor([1.0, 2.0, 1000.0])
    assert float(SiLogLoss(lambd)(pred_other, target, mask)) == pytest.approx(expected, rel=1e-6)


def test_silog_empty_mask_is_zero_with_a_gradient() -> None:
    pred = torch.full((1, 1, 2, 2), 3.0, requires_grad=True)
    loss = silog_loss(pred, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_silog_perfect_prediction_has_finite_gradient() -> None:
    pred = torch.full((4,), 5.0, requires_grad=True)
    silog_loss(pred, torch.full((4,), 5.0), torch.ones(4, dtype=torch.bool)).backward()
    assert torch.isfinite(pred.grad).all()


def test_silog_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        silog_loss(torch.ones(3), torch.ones(3), torch.ones(2, dtype=torch.bool))


# Config -----------------------------------------------------------------------------------

def test_overrides_are_yaml_typed_and_merged() -> None:
    config = load_config(None, ["optim.lr=3e-4", "epochs=3", "data.synthetic.drives=2",
                                "model.kwargs.base_channels=16", "optim.weight_decay=0"])
    assert config.optim.lr == 3e-4 and config.epochs == 3
    assert config.data.synthetic.drives == 2 and config.data.synthetic.frames == 20
    assert config.model.kwargs == {"base_channels": 16}
    assert config.optim.weight_decay == 0.0 and isinstance(config.optim.weight_decay, float)


def test_config_file_round_trip(tmp_path: Path) -> None:
    config = load_config(REPO / "config" / "train" / "mono_synthetic.yaml", ["seed=7"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lrr=1", "unknown config key optim.lrr"),
    ("epochs=1.5", "epochs must be int, got float"),
    ("optim.lr=fast", "optim.lr must be float, got str"),
    ("batch_size=true", "batch_size must be int, got bool"),
    ("optim.schedule=step", "optim.schedule must be cosine or poly"),
    ("device=tpu", "device must be auto or cuda or cpu"),
    ("amp=3", "amp must be bool, got int"),
    ("optim.accumulate_steps=0", "optim.accumulate_steps must be at least 1"),
    ("optim.ema_decay=1.0", r"optim.ema_decay must be in \[0, 1\)"),
    ("data.synthetic=5", "data.synthetic must be a mapping"),
    ("epochs", "is not key=value"),
])
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_overlapping_train_and_val_seeds_are_refused() -> None:
    with pytest.raises(ConfigError, match="overlap training seeds"):
        load_config(None, ["data.synthetic={drives: 10, frames: 2, seed: 0}",
                           "data.val_synthetic={drives: 2, frames: 2, seed: 9}"])


# Schedule, sampler, augmentation, data ---------------------------------------------------

@pytest.mark.parametrize(("schedule", "step", "expected"), [
    ("cosine", 0, 0.1), ("cosine", 9, 1.0), ("cosine", 10, 1.0),
    ("cosine", 55, 0.01 + 0.99 * 0.5), ("cosine", 100, 0.01), ("cosine", 500, 0.01),
    ("poly", 55, 0.01 + 0.99 * 0.5), ("poly", 100, 0.01),
])
def test_lr_schedule(schedule: str, step: int, expected: float) -> None:
    config = OptimConfig(warmup_steps=10, schedule=schedule, poly_power=1.0, min_lr_ratio=0.01)
    assert lr_factor(step, 100, config) == pytest.approx(expected)


def test_backbone_learning_rate_factor() -> None:
    model = create_model("mono_cnn", base_channels=8)
    optimizer = build_optimizer(model, OptimConfig(backbone_lr_factor=0.1))
    set_lr(optimizer, 2e-3)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    names = [name for name, _ in model.named_parameters()]
    assert any(n.startswith("encoder.") for n in names)
    assert not all(n.startswith("encoder.") for n in names)
    for name, param in model.named_parameters():
        assert lr_of[id(param)] == pytest.approx(2e-4 if name.startswith("encoder.") else 2e-3)
    # Without a factor: the two groups (decay, no decay) checkpoints have always had.
    assert len(build_optimizer(model, OptimConfig()).param_groups) == 2


def test_epoch_sampler_resumes_part_way() -> None:
    full = list(EpochSampler(10, seed=3, epoch=1))
    assert sorted(full) == list(range(10))
    assert full != list(EpochSampler(10, seed=3, epoch=2))
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(1, start=4)
    assert list(sampler) == full[4:] and len(sampler) == 6


def test_flip_moves_image_and_depth_together() -> None:
    image = torch.rand(3, 4, 6)
    depth = torch.arange(24.0).view(1, 4, 6)
    still = AugmentConfig(hflip_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    out_image, out_depth = augment_pair(image, depth, still)
    assert torch.allclose(out_image, image.flip(-1), atol=1e-6)
    assert torch.equal(out_depth, depth.flip(-1))


def test_depth_is_rescaled_to_the_canonical_focal() -> None:
    frames = FrameArrays(rgb=np.zeros((2, 2, 2, 3), np.uint8),
                         depth=np.full((2, 2, 2), 10.0, np.float32),
                         K=np.stack([np.diag([f, f, 1.0]) for f in (100.0, 200.0)]))
    dataset = DepthDataset(frames, canonical_focal_px=200.0)
    assert float(dataset[0][1].max()) == pytest.approx(20.0)
    assert float(dataset[1][1].max()) == pytest.approx(10.0)


def test_load_frames_resizes_and_reports_focal(tiny_run: Path) -> None:
    drive = KittiDrive(tiny_run / "data" / "train" / "2011_09_26" / "2011_09_26_drive_0001_sync")
    frames = load_frames([drive], height=64, width=128)
    assert frames.rgb.shape == (4, 64, 128, 3) and frames.depth.shape == (4, 64, 128)
    assert frames.focal_px == pytest.approx([721.5377 * 160 / 1242 * 128 / 160] * 4)
    assert (frames.depth[:, :16] == 0).all() and (frames.depth[:, 16:] > 0).all()


# Checkpoints ------------------------------------------------------------------------------

def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    first = {"state_dict": {"w": torch.ones(3)}, "metadata": {"a": "1"}, "step": 10}
    save_checkpoint(first, path)

    def failing_save(obj, f) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({**first, "step": 20}, path)
    assert load_checkpoint(path)["step"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# End to end -------------------------------------------------------------------------------

def test_train_then_resume(tiny_run: Path) -> None:
    config = str(tiny_run / "tiny.yaml")
    first = run_train("--config", config, "max_steps=4")
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tiny_run / "runs" / "tiny"
    merged = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert merged["max_steps"] == 4 and merged["model"]["kwargs"] == {"base_channels": 8}
    payload = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert payload["step"] == 4 and set(payload["optimizer"]) == {"state", "param_groups"}
    assert payload["metadata"]["train_input_width"] == "128"
    assert float(payload["metadata"]["train_focal_px"]) == pytest.approx(
        721.5377 * 128 / 1242, rel=1e-4)
    assert (run_dir / "best.pt").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1

    second = run_train("--config", config, "max_steps=6", "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "at step 4" in second.stderr
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == 6


@pytest.mark.parametrize(("args", "message"), [
    (["optim.lrr=1"], "unknown config key optim.lrr"),
    (["data.root=/nonexistent/depth_ros"], "train data: no KITTI drives"),
    (["--resume", "/nonexistent/last.pt"], "checkpoint not found"),
    pytest.param(["device=cuda"], "device=cuda but torch sees no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")),
])
def test_train_fails_with_one_line(tiny_run: Path, args: list[str], message: str) -> None:
    result = run_train("--config", str(tiny_run / "tiny.yaml"), *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]


def test_nan_loss_stops_with_step_and_last_checkpoint(tiny_run: Path, tmp_path: Path) -> None:
    config = load_config(tiny_run / "tiny.yaml", [f"output_dir={tmp_path}"])
    trainer = Trainer(config, tmp_path / "tiny")
    image, depth = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=2)))
    trainer.train_step(image, depth)
    good = trainer.save("last.pt")
    with torch.no_grad():
        trainer.model.head.conv.bias.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match=rf"at step 1; last good checkpoint: {good}"):
        trainer.train_step(image, depth)
