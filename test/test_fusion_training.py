"""Fusion training: LiDAR resized point by point, rescaled and flipped with the ground truth,
LiDAR augmentation, and train.py end to end on drives with ``velodyne_raw``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from test_training import write_tiny_drive

from depth_ros.geometry import resize_sparse_depth
from depth_ros.inference import DepthEstimator
from depth_ros.kitti import KittiDrive, frame_name, read_depth_png, write_depth_png
from depth_ros.models import ModelMetadata, create_model
from training.checkpoint import save_checkpoint
from training.config import AugmentConfig, ConfigError, load_config
from training.data.drives import FrameArrays, load_frames
from training.data.sources import DepthDataset
from training.data.transforms import TensorAugment, augment_lidar
from training.inputs import network_inputs, split_batch
from training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

TINY_FUSION = {"image_widths": [8, 8, 8, 16, 16], "image_depths": [1, 1, 1, 1],
               "lidar_widths": [4, 4, 4, 8, 8], "nconv_channels": 2, "num_heads": 1,
               "decoder_channels": [8, 8, 8, 8]}


def add_velodyne_raw(drive_dir: Path, frames: int, width: int = 160, height: int = 48) -> None:
    """LiDAR-like ``proj_depth/velodyne_raw`` PNGs: every 3rd row of the lower two thirds,
    every 2nd column, at the ground truth's depth."""
    for i in range(frames):
        truth = read_depth_png(drive_dir / "proj_depth" / "groundtruth" / "image_02"
                               / f"{frame_name(i)}.png")
        sparse = np.zeros((height, width), np.float32)
        sparse[height // 3::3, ::2] = truth[height // 3::3, ::2]
        write_depth_png(drive_dir / "proj_depth" / "velodyne_raw" / "image_02"
                        / f"{frame_name(i)}.png", sparse)


@pytest.fixture(scope="module")
def fusion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (2 drives × 4 frames) and val/ (1 × 2) with LiDAR, and fusion.yaml."""
    base = tmp_path_factory.mktemp("fusion_run")
    for split, drive, frames, seed in (("train", 1, 4, 1), ("train", 2, 4, 2), ("val", 1, 2, 9)):
        add_velodyne_raw(write_tiny_drive(base / "data" / split, drive, frames=frames,
                                          seed=seed), frames)
    config = {
        "name": "fusion", "output_dir": str(base / "runs"), "epochs": 1, "batch_size": 2,
        "num_threads": 1, "log_every": 1, "checkpoint_every": 0, "tensorboard": False,
        "model": {"name": "fusion_attention", "kwargs": TINY_FUSION},
        "data": {"root": str(base / "data"), "input_height": 64, "input_width": 128,
                 "load_threads": 1},
        "augment": {"lidar_drop_prob": 0.25, "lidar_keep_min": 0.5, "lidar_keep_max": 1.0},
        "optim": {"warmup_steps": 2},
    }
    (base / "fusion.yaml").write_text(yaml.safe_dump(config))
    return base


# Resizing LiDAR ---------------------------------------------------------------------------

def test_sparse_downscale_keeps_every_point_and_the_nearest_wins() -> None:
    depth = np.zeros((375, 1242), np.float32)
    depth[200:375:6, ::3] = 10.0  # 30 rows × 414 columns = 12420 returns
    out = resize_sparse_depth(depth, 416, 128)
    # 414 columns land on 414 distinct target columns, 30 rows on 30 distinct rows.
    assert np.count_nonzero(out) == 12420 and set(np.unique(out)) == {0.0, 10.0}
    nearest = cv2.resize(depth, (416, 128), interpolation=cv2.INTER_NEAREST_EXACT)
    assert np.count_nonzero(nearest) < 12420 / 3  # what nearest-pixel resampling keeps
    two = np.zeros((4, 4), np.float32)
    two[0, 0], two[0, 1], two[3, 3] = 7.0, 5.0, np.nan  # one target cell; NaN is no return
    small = resize_sparse_depth(two, 2, 2)
    np.testing.assert_array_equal(small, [[5.0, 0.0], [0.0, 0.0]])


def test_load_frames_reads_lidar_at_the_input_size(fusion_run: Path) -> None:
    drive = KittiDrive(fusion_run / "data" / "train" / "2011_09_26"
                       / "2011_09_26_drive_0001_sync")
    frames = load_frames([drive], height=64, width=128, sparse=True)
    assert frames.sparse.shape == (4, 64, 128)
    # 11 rows × 80 columns written, all of them kept (no two in one target pixel).
    assert [np.count_nonzero(s) for s in frames.sparse] == [11 * 80] * 4
    valid = frames.sparse > 0
    # Each return keeps the ground truth's depth at its own (resized) pixel.
    np.testing.assert_allclose(frames.sparse[valid], frames.depth[valid], rtol=0.06)
    assert load_frames([drive], height=64, width=128).sparse is None


# Rescaling, flipping, augmentation --------------------------------------------------------

def _frames(focal: float) -> FrameArrays:
    rng = np.random.default_rng(0)
    sparse = np.zeros((1, 4, 6), np.float32)
    sparse[0, 2, 1], sparse[0, 3, 4] = 8.0, 12.0
    return FrameArrays(rgb=rng.integers(0, 256, (1, 4, 6, 3), dtype=np.uint8),
                       depth=np.arange(24, dtype=np.float32).reshape(1, 4, 6) + 1,
                       K=np.diag([focal, focal, 1.0])[None], sparse=sparse)


def test_lidar_is_rescaled_and_flipped_with_the_ground_truth() -> None:
    still = AugmentConfig(hflip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    image, depth, sparse = DepthDataset(_frames(100.0), 250.0, lidar=True,
                                        augment=TensorAugment(still, photometric=True))[0]
    assert float(sparse[0, 2, 1]) == pytest.approx(20.0) and float(sparse[0, 3, 4]) == 30.0
    assert float(depth[0, 0, 0]) == pytest.approx(2.5)
    flip = AugmentConfig(hflip_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    f_image, f_depth, f_sparse = DepthDataset(_frames(100.0), 250.0, lidar=True,
                                              augment=TensorAugment(flip, photometric=True))[0]
    assert torch.allclose(f_image, image.flip(-1), atol=1e-6)
    assert torch.equal(f_depth, depth.flip(-1)) and torch.equal(f_sparse, sparse.flip(-1))
    assert float(f_sparse[0, 2, 4]) == pytest.approx(20.0)
    # Validation: no augmentation, the same rescaling.
    _, _, val_sparse = DepthDataset(_frames(100.0), 250.0, lidar=True)[0]
    assert torch.equal(val_sparse, sparse)


def test_lidar_drop_and_keep_fraction() -> None:
    torch.manual_seed(0)
    sparse = torch.full((1, 100, 100), 5.0)
    assert not augment_lidar(sparse, AugmentConfig(lidar_drop_prob=1.0)).any()
    assert torch.equal(augment_lidar(sparse, AugmentConfig()), sparse)
    half = AugmentConfig(lidar_keep_min=0.5, lidar_keep_max=0.5)
    kept = [int(augment_lidar(sparse, half).count_nonzero()) for _ in range(5)]
    assert all(4700 < k < 5300 for k in kept)  # 10000 × 0.5 ± 6 sigma
    assert set(augment_lidar(sparse, half).unique().tolist()) == {0.0, 5.0}
    drops = sum(not augment_lidar(sparse, AugmentConfig(lidar_drop_prob=0.3)).any()
                for _ in range(400))
    assert 80 < drops < 160  # 120 expected


@pytest.mark.parametrize(("override", "message"), [
    ("augment.lidar_drop_prob=1.5", "augment.lidar_drop_prob must be in [0, 1]"),
    ("augment.lidar_keep_min=0", "lidar_keep_min/lidar_keep_max must satisfy"),
    ("augment.lidar_keep_max=0.2", "lidar_keep_min/lidar_keep_max must satisfy"),
])
def test_lidar_augmentation_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, ["augment.lidar_keep_min=0.5", override])


def test_network_inputs_and_micro_batches() -> None:
    fusion = create_model("fusion_attention", **TINY_FUSION)
    mono = create_model("mono_cnn", base_channels=8)
    batch = (torch.rand(4, 3, 32, 64), torch.rand(4, 1, 32, 64), torch.rand(4, 1, 32, 64))
    cpu = torch.device("cpu")
    assert [t.shape[1] for t in network_inputs(fusion, batch, cpu)] == [3, 1]
    assert len(network_inputs(mono, batch, cpu)) == 1
    with pytest.raises(ConfigError, match="needs sparse LiDAR depth"):
        network_inputs(fusion, batch[:2], cpu)
    parts = split_batch(batch, 2)
    assert len(parts) == 2 and all(len(p) == 3 and p[0].shape[0] == 2 for p in parts)


# End to end --------------------------------------------------------------------------------

def test_fusion_training_feeds_lidar_and_records_the_kind(fusion_run: Path,
                                                         tmp_path: Path) -> None:
    config = load_config(fusion_run / "fusion.yaml", [f"output_dir={tmp_path}"])
    trainer = Trainer(config, tmp_path / "fusion")
    assert trainer.metadata.kind == "fusion"
    seen = []
    trainer.model.register_forward_hook(lambda m, args, out: seen.append(len(args)))
    image, depth, sparse = next(iter(torch.utils.data.DataLoader(trainer.train_set,
                                                                 batch_size=2)))
    assert np.isfinite(trainer.train_step(image, depth, sparse)) and seen == [2]
    val = trainer.validate()
    assert np.isfinite(val["abs_rel"]) and seen[-1] == 2
    with pytest.raises(ConfigError, match="needs sparse LiDAR depth"):
        trainer.train_step(image, depth)


def test_fusion_cli_run_writes_a_fusion_checkpoint(fusion_run: Path) -> None:
    result = subprocess.run([sys.executable, "training/train.py", "--config",
                             str(fusion_run / "fusion.yaml"), "max_steps=3"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    payload = torch.load(fusion_run / "runs" / "fusion" / "last.pt", weights_only=True)
    assert payload["step"] == 3 and payload["metadata"]["kind"] == "fusion"
    assert payload["metadata"]["architecture"] == "fusion_attention"
    assert np.isfinite(payload["val_metrics"]["abs_rel"])
    merged = yaml.safe_load((fusion_run / "runs" / "fusion" / "config.yaml").read_text())
    assert merged["augment"]["lidar_drop_prob"] == 0.25


def test_estimator_feeds_lidar_point_by_point_at_the_training_focal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference gives the network LiDAR as training did: every return kept at the input size
    and depth expressed for the training focal length."""
    model = create_model("fusion_attention", **TINY_FUSION).eval()
    meta = ModelMetadata(architecture="fusion_attention", kind="fusion", output="metric",
                         stride=32, train_input_height=64, train_input_width=128,
                         min_depth_m=0.1, max_depth_m=80.0, train_focal_px=100.0,
                         train_data="test", model_kwargs=TINY_FUSION)
    save_checkpoint({"state_dict": model.state_dict(), "metadata": meta.to_dict()},
                    tmp_path / "fusion.pt")
    estimator = DepthEstimator(tmp_path / "fusion.pt", backend="torch", num_threads=1)
    fed = []

    def record(image: np.ndarray, sparse: np.ndarray | None) -> np.ndarray:
        fed.append(sparse)
        return np.full((1, 1, *image.shape[2:]), 10.0, np.float32)

    monkeypatch.setattr(estimator._backend, "run", record)
    sparse = np.zeros((192, 384), np.float32)
    sparse[100::6, ::3] = 20.0  # 16 rows × 128 columns
    depth = estimator.predict(np.zeros((192, 384, 3), np.uint8), sparse, fx=600.0)
    assert fed[0].shape == (1, 1, 64, 128) and np.count_nonzero(fed[0]) == 16 * 128
    # fx 600 at 384 px is 200 at the 128 px input: LiDAR depth × 100 / 200 in, and the
    # network's 10 m (at the training focal) × 200 / 100 out.
    assert set(np.unique(fed[0]).tolist()) == {0.0, 10.0}
    np.testing.assert_allclose(depth, 20.0, rtol=1e-6)


# The bundled fusion model ------------------------------------------------------------------

def test_bundled_fusion_model_follows_its_lidar() -> None:
    """depth_ros/weights/fusion_spn_synthetic.onnx: a fusion model under 10 MB whose depth at
    the LiDAR returns keeps the returns (the same image, LiDAR at 8 m or 25 m; issue 14:
    median |output − input| ≤ 0.03 m), with a confidence in [0, 1] at the camera's size."""
    from depth_ros.weights import DEFAULT_FUSION_MODEL

    assert DEFAULT_FUSION_MODEL.stat().st_size < 10e6
    estimator = DepthEstimator(DEFAULT_FUSION_MODEL, num_threads=1)
    assert estimator.metadata.kind == "fusion" and estimator.metadata.architecture == (
        "fusion_spn")
    assert estimator.resize_policy == "native" and estimator.metadata.has_confidence
    rng = np.random.default_rng(0)
    rows = np.linspace(60, 200, 375)[:, None, None]
    rgb = np.clip(rows + rng.normal(0, 20, (375, 1242, 3)), 0, 255).astype(np.uint8)
    returns = np.zeros((375, 1242), bool)
    returns[180:300:4, ::2] = True  # LiDAR-like scan lines over the lower half
    errors = {}
    for depth_m in (8.0, 25.0):
        sparse = np.where(returns, np.float32(depth_m), np.float32(0.0))
        prediction = estimator.predict_detailed(rgb, sparse, fx=721.5377)
        errors[depth_m] = float(np.median(np.abs(prediction.depth[returns] - depth_m)))
        confidence = prediction.confidence
        assert confidence.shape == (375, 1242)
        assert 0.0 <= np.nanmin(confidence) and np.nanmax(confidence) <= 1.0
    assert errors[8.0] <= 0.03 and errors[25.0] <= 0.03, errors


def test_init_checkpoint_may_lack_only_the_parameters_named_new(tmp_path: Path) -> None:
    """``init_new_parameters``: a module added to a trained model (fusion_spn's context
    attention) starts from its own initialisation, everything else from the checkpoint; any
    other missing, extra or reshaped entry is still a one-line ConfigError."""
    from training.trainer import load_initial_weights

    tiny = {"widths": (4, 8, 8, 8), "dilations": (1, 2)}
    trained = create_model("fusion_spn", **tiny, head_init_std=0.1)
    path = tmp_path / "trained.pt"
    save_checkpoint({"state_dict": trained.state_dict(), "metadata": {}, "step": 7}, path)
    grown = create_model("fusion_spn", **tiny, context_attention=True)
    step, fresh = load_initial_weights(grown, str(path), ["context."])
    assert step == 7 and fresh == sum(1 for k in grown.state_dict() if k.startswith("context."))
    assert torch.equal(grown.head.weight, trained.head.weight)
    with pytest.raises(ConfigError, match=r"init_checkpoint .*context"):
        load_initial_weights(create_model("fusion_spn", **tiny, context_attention=True),
                             str(path))  # not named new: missing is an error
    with pytest.raises(ConfigError, match=r"unexpected beyond init_new_parameters.*context"):
        grown_path = tmp_path / "grown.pt"
        save_checkpoint({"state_dict": grown.state_dict(), "metadata": {}, "step": 1},
                        grown_path)
        load_initial_weights(create_model("fusion_spn", **tiny), str(grown_path), ["head."])
    with pytest.raises(ConfigError, match="size mismatch"):
        load_initial_weights(create_model("fusion_spn", widths=(4, 8, 8, 16),
                                          dilations=(1, 2), context_attention=True),
                             str(path), ["context."])


def test_init_submodules_load_the_mono_prior_from_its_own_checkpoint(fusion_run: Path,
                                                                     tmp_path: Path) -> None:
    """``init_submodules``: fusion_spn's frozen mono prior comes from a mono checkpoint while
    the rest comes from ``init_checkpoint`` (which may lack it), strictly: a wrong module name
    or a checkpoint of another shape is a one-line ConfigError."""
    from training.trainer import load_submodule_weights

    mono_kwargs = {"base_channels": 8, "min_depth_m": 0.1, "max_depth_m": 80.0}
    mono = create_model("mono_cnn", **mono_kwargs)
    for parameter in mono.parameters():  # not the default initialisation
        torch.nn.init.normal_(parameter, std=0.1)
    mono_path = tmp_path / "mono.pt"
    save_checkpoint({"state_dict": mono.state_dict(), "metadata": {}, "step": 3}, mono_path)
    tiny = {"widths": [4, 8, 8, 8], "dilations": [1, 2], "head_init_std": 0.1}
    base = create_model("fusion_spn", **tiny)
    base_path = tmp_path / "base.pt"
    save_checkpoint({"state_dict": base.state_dict(), "metadata": {}, "step": 5}, base_path)
    overrides = [f"output_dir={tmp_path}", "model.name=fusion_spn",
                 "model.kwargs={widths: [4, 8, 8, 8], dilations: [1, 2], head_init_std: 0.1, "
                 "mono_prior: {base_channels: 8, min_depth_m: 0.1, max_depth_m: 80.0}, "
                 "mono_prior_size: [32, 64]}",
                 f"init_checkpoint={base_path}", "init_new_parameters=[prior_in.]",
                 f"init_submodules={{mono: {mono_path}}}"]
    trainer = Trainer(load_config(fusion_run / "fusion.yaml", overrides), tmp_path / "run")
    for name, value in mono.state_dict().items():
        assert torch.equal(trainer.model.mono.state_dict()[name], value), name
    assert torch.equal(trainer.model.head.weight, base.head.weight)
    assert not trainer.model.prior_in.weight.any()  # new: its own (zero) initialisation
    model = create_model("fusion_spn", **tiny, mono_prior=mono_kwargs, mono_prior_size=(32, 64))
    with pytest.raises(ConfigError, match="no submodule 'monocular'"):
        load_submodule_weights(model, "monocular", str(mono_path))
    with pytest.raises(ConfigError, match=r"init_submodules.mono .*size mismatch"):
        wider = create_model("mono_cnn", base_channels=16)
        wide_path = tmp_path / "wide.pt"
        save_checkpoint({"state_dict": wider.state_dict(), "metadata": {}}, wide_path)
        load_submodule_weights(model, "mono", str(wide_path))


def _completion_case(tmp_path: Path, model_extra: str = ""
                     ) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Overrides for a tiny ``fusion_spn`` with every input return held out, and a frame: an
    image, a flat ground truth at 10 m and a scan of it on every 4th row from row 40."""
    overrides = [f"output_dir={tmp_path}", "model.name=fusion_spn",
                 "model.kwargs={widths: [4, 8, 8, 8], dilations: [1, 2], "
                 f"head_init_std: 0.01{model_extra}}}",
                 "loss.holdout_fraction=1.0", "loss.holdout_weight=1.0"]
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 128)
    truth = torch.full((1, 1, 64, 128), 10.0)
    scan = torch.zeros_like(truth)
    scan[0, 0, 40::4, ::2] = 10.0
    return overrides, image, truth, scan


def _loss_of(trainer: Trainer, image: torch.Tensor, lidar: torch.Tensor,
             truth: torch.Tensor) -> float:
    torch.manual_seed(1)  # the same held-out draw each time
    with torch.no_grad():
        return float(trainer._completion_loss((image, lidar), truth))


def test_trust_term_and_holdout_max_error_in_the_completion_loss(fusion_run: Path,
                                                                 tmp_path: Path) -> None:
    """``loss.trust_weight`` adds the trust cross-entropy on the input returns;
    ``loss.holdout_max_error`` keeps a held-out return out of the held-out term when the
    ground truth says it is wrong (the LiDAR saw past the surface)."""
    overrides, image, truth, sparse = _completion_case(tmp_path)
    base = Trainer(load_config(fusion_run / "fusion.yaml", overrides), tmp_path / "a")
    wrong = sparse.clone()
    wrong[0, 0, 40:60:4, :40:2] = 40.0  # 100 returns through a window: 4× the truth

    def loss(trainer: Trainer, lidar: torch.Tensor) -> float:
        return _loss_of(trainer, image, lidar, truth)

    # Every return held out (the model sees no LiDAR): the wrong ones change the held-out
    # term...
    assert abs(loss(base, wrong) - loss(base, sparse)) > 1.0
    # ...unless only right held-out returns count: then the scan with wrong returns scores
    # as the scan without them.
    picky = Trainer(load_config(fusion_run / "fusion.yaml",
                                [*overrides, "loss.holdout_max_error=0.05"]), tmp_path / "b")
    picky.model.load_state_dict(base.model.state_dict())
    without = torch.where(wrong == 40.0, torch.zeros_like(wrong), wrong)
    assert loss(picky, wrong) == pytest.approx(loss(picky, without), rel=1e-6)
    assert loss(base, wrong) != pytest.approx(loss(base, without), rel=1e-4)
    # The trust term, on returns the model was given (none held out), costs more when some
    # are wrong and the model trusts them all.
    trusting = [o for o in overrides if not o.startswith("loss.holdout")]
    plain = Trainer(load_config(fusion_run / "fusion.yaml", trusting), tmp_path / "c")
    trust = Trainer(load_config(fusion_run / "fusion.yaml",
                                [*trusting, "loss.trust_weight=1.0"]), tmp_path / "d")
    for trainer in (plain, trust):
        trainer.model.load_state_dict(base.model.state_dict())
    extra_right = loss(trust, sparse) - loss(plain, sparse)
    extra_wrong = loss(trust, wrong) - loss(plain, wrong)
    # Trust ≈ 0.99 (logit 4.6) at the start: ~0.01 a right return, ~4.6 a wrong one.
    assert 0 <= extra_right < 0.05 and extra_wrong == pytest.approx(
        extra_right + 100 / 384 * 4.6, rel=0.1)


def test_holdout_skip_see_through_leaves_out_what_the_filter_would_drop(fusion_run: Path,
                                                                       tmp_path: Path) -> None:
    overrides, image, truth, scan = _completion_case(tmp_path, ", occlusion_radius_px: 3")
    seen_past = scan.clone()
    seen_past[0, 0, 42, 40:60:2] = 40.0  # 2 rows below 10 m returns: the filter drops them
    plain = Trainer(load_config(fusion_run / "fusion.yaml", overrides), tmp_path / "a")
    skip = Trainer(load_config(fusion_run / "fusion.yaml",
                               [*overrides, "loss.holdout_skip_see_through=true"]),
                   tmp_path / "b")
    skip.model.load_state_dict(plain.model.state_dict())
    assert _loss_of(skip, image, seen_past, truth) == pytest.approx(
        _loss_of(skip, image, scan, truth), rel=1e-6)
    assert _loss_of(plain, image, seen_past, truth) != pytest.approx(
        _loss_of(plain, image, scan, truth), rel=1e-4)
