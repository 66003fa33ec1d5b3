"""Adapting a model to a recording (``data.dataset: bag``): frame selection, poses, items,
the engine mix, and an engine drive from another domain (darker, with a blue cast) made into
a bag, on which the bundled mono model adapts and then beats itself on held-out frames; the
same command under torchrun with two processes, ending in an ONNX with the bag camera's
intrinsics and a filled-in model card."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from depth_ros.bags import topics
from depth_ros.bags.kitti_to_bag import ConversionOptions, convert_drive
from depth_ros.geometry import PinholeCamera
from depth_ros.inference.preprocessing import resize_rgb
from depth_ros.kitti import read_depth_png, read_rgb_png, write_rgb_png
from depth_ros.metrics import depth_metrics
from depth_ros.models.checkpoints import model_from_checkpoint
from depth_ros.synthetic import write_synthetic_drive
from training.checkpoint import load_checkpoint
from training.config import ConfigError, load_config
from training.data.adapt import (
    BagFrameDataset,
    EngineItems,
    MixedDataset,
    pair_poses,
    parse_frame_spec,
    select_frames,
)
from training.data.transforms import resize_depth

REPO = Path(__file__).resolve().parents[1]
FRAMES, WIDTH, HEIGHT = 12, 416, 128
STEPS = 16
TRAIN, VAL = "0-8", "9-11"
NAMES = topics.BagTopics()
IMAGE, LIDAR = NAMES.image(2), NAMES.pointcloud
BUNDLED = REPO / "depth_ros/weights/mono_cnn_synthetic.pt"


def _shift_domain(rgb: np.ndarray) -> np.ndarray:
    """Another camera: underexposed (gamma 2.2, half the exposure) with a blue cast. The
    bundled model's AbsRel against the engine's depth goes from ~0.07 to ~0.25 with it."""
    shifted = ((rgb.astype(np.float32) / 255.0) ** 2.2 * 0.5
               * np.array([0.85, 0.95, 1.1], np.float32))
    return np.clip(shifted * 255.0 + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    """A tiny engine drive whose images are shifted to another domain before the bag is
    written (the camera-effects options of the engine are not used: a colour/gamma shift of
    the written PNGs is the domain change)."""
    root = tmp_path_factory.mktemp("engine")
    path = write_synthetic_drive(root, num_frames=FRAMES, seed=77, width=WIDTH, height=HEIGHT,
                                 progress=False, azimuth_decimation=4, stereo=False)
    for png in sorted((path / "image_02/data").glob("*.png")):
        write_rgb_png(png, _shift_domain(read_rgb_png(png)))
    return path


@pytest.fixture(scope="module")
def bag(drive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bag") / "robot_bag"
    convert_drive(drive, out, ConversionOptions(progress=False))
    return out


def _overrides(bag: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.bags=[{bag}]", f"data.image_topic={IMAGE}", f"data.lidar_topic={LIDAR}",
            f"data.bag_frames={TRAIN}", f"data.bag_val_frames={VAL}", "data.bag_cache_dir=''",
            "data.mix_engine_root=''", "data.synthetic=null", f"output_dir={out}",
            "tensorboard=false", "checkpoint_every=0", "device=cpu", "num_threads=2", *extra]


@dataclass
class _Frames:
    """A BagFrames stand-in for the unit tests."""

    rgb: np.ndarray
    K: np.ndarray
    sparse: np.ndarray
    poses: np.ndarray | None
    segments: np.ndarray
    names: list[str]
    source: str = "test"

    def __len__(self) -> int:
        return len(self.rgb)


def _frames(count: int = 6, height: int = 40, width: int = 96, poses: bool = True
            ) -> _Frames:
    rng = np.random.default_rng(0)
    K = np.tile(np.array([[60.0, 0, 47.5], [0, 60.0, 19.5], [0, 0, 1]]), (count, 1, 1))  # noqa: N806
    sparse = np.where(rng.random((count, height, width)) < 0.1, 10.0, 0.0).astype(np.float32)
    world = np.tile(np.eye(4), (count, 1, 1))
    world[:, 2, 3] = np.arange(count) * 0.5  # driving forward 0.5 m a frame
    return _Frames(rng.integers(0, 255, (count, height, width, 3), dtype=np.uint8), K, sparse,
                   world if poses else None, np.array([0, 0, 0, 1, 1, 1]),
                   [f"f{i}" for i in range(count)])


def test_frame_specs_and_selection() -> None:
    assert parse_frame_spec("0-2, 5,7-8", 10) == [0, 1, 2, 5, 7, 8]
    assert parse_frame_spec("", 10) == []
    with pytest.raises(ConfigError, match="beyond the bag's 10 frames"):
        parse_frame_spec("8-12", 10)
    with pytest.raises(ConfigError, match="not an index"):
        parse_frame_spec("a-b", 10)
    config = load_config(REPO / "config/train/adapt_bag.yaml", [
        "data.bags=[x.mcap]", "data.image_topic=/i", "data.lidar_topic=/l",
        "data.bag_frames=0-4", "data.bag_val_frames=5-6", "data.bag_exclude_photometric=2"])
    assert config.data.bags == ["x.mcap"]
    chosen = select_frames(config, 7)
    assert chosen.train == [0, 1, 2, 3, 4] and chosen.val == [5, 6]
    assert chosen.sources == {0, 1, 3, 4}  # never the scored frames nor the excluded one
    config.data.bag_frames = "4-5"
    with pytest.raises(ConfigError, match="share frames"):
        select_frames(config, 7)
    with pytest.raises(ConfigError, match=r"data\.dataset bag needs data\.bags"):
        load_config(REPO / "config/train/adapt_bag.yaml")


def test_pairs_stay_in_segments_and_poses_come_from_the_bag() -> None:
    frames = _frames()
    poses = pair_poses(frames, sources={0, 1, 3, 4, 5}, progress=False)
    # 2 is not a source; 2-3 crosses a segment boundary.
    assert set(poses) == {(0, 1), (1, 0), (2, 1), (3, 4), (4, 3), (4, 5), (5, 4)}
    # The next frame's camera is 0.5 m ahead: a target point is 0.5 m nearer to it.
    assert np.allclose(poses[(0, 1)][:3, 3], [0, 0, -0.5])
    frames.poses[4] = np.nan  # no pose for frame 4: its pairs fall back to LiDAR ICP
    frames.sparse[:] = 0.0
    frames.sparse[:, 5:35:3, 5:90:2] = 10.0  # a wall of returns: enough for ICP to run on
    assert (3, 4) in pair_poses(frames, {3, 4, 5}, progress=False)


@pytest.mark.parametrize("native", [False, True])
def test_items_cut_the_sources_like_the_target(native: bool) -> None:
    frames = _frames()
    poses = pair_poses(frames, set(range(6)), progress=False)
    dataset = BagFrameDataset(frames, [1, 3], poses, 32, 64, native=native,
                              train_focal_px=120.0)
    torch.manual_seed(0)
    image, depth, sparse, sources, K, pose, ok, scale, is_bag = dataset[0]  # noqa: N806
    assert image.shape == (3, 32, 64) and sources.shape == (2, 3, 32, 64)
    assert ok.tolist() == [True, True] and bool(is_bag)
    assert np.allclose(pose[0].numpy(), poses[(1, 0)]) and np.allclose(pose[1], poses[(1, 2)])
    assert torch.equal(depth, sparse)
    if native:  # a crop at full resolution: the principal point moves, depth in metres
        assert float(scale) == 1.0 and float(K[0, 0]) == 60.0
        top, left = 47.5 - float(K[0, 2]), 19.5 - float(K[1, 2])
        assert top == int(top) and left == int(left)
        assert float(depth.max()) == 10.0
        # Source 0 (frame 0) cut from the same window as the target.
        window = frames.rgb[0, int(left):int(left) + 32, int(top):int(top) + 64]
        assert np.allclose(sources[0].permute(1, 2, 0).numpy(), window / 255.0)
    else:  # resized: K follows the resize, depth expressed at the model's focal length
        camera = PinholeCamera.from_K(frames.K[1], 96, 40).resized(64, 32)
        assert np.allclose(K.numpy(), camera.K, atol=1e-4)
        assert float(scale) == pytest.approx(120.0 / camera.fx)
        assert float(depth.max()) == pytest.approx(10.0 * 120.0 / camera.fx, rel=1e-5)
    first = BagFrameDataset(frames, [3], poses, 32, 64, native, 120.0)[0]
    assert first[6].tolist() == [False, True]  # frame 2 is in another segment


def test_engine_items_are_mixed_in_at_the_configured_ratio() -> None:
    frames = _frames()
    bag = BagFrameDataset(frames, [0, 1, 2, 3], {}, 32, 64, False, 60.0)

    class Engine(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int):
            return torch.zeros(3, 32, 64), torch.full((1, 32, 64), float(index + 1))

    mixed = MixedDataset(bag, EngineItems(Engine()), 0.5)
    assert len(mixed) == 8
    item = mixed[6]
    assert not bool(item[-1]) and item[3].shape == (2, 3, 32, 64)
    assert not item[6].any() and float(item[1].max()) in (1.0, 2.0, 3.0)
    assert len(MixedDataset(bag, None, 0.5)) == 4


def _abs_rel_vs_engine(model: torch.nn.Module, drive: Path, indices: list[int],
                       focal: float) -> float:
    """Mean AbsRel of a mono model on drive frames against the engine's exact depth, at the
    input size, in metres."""
    from depth_ros.kitti import KittiDrive

    camera = KittiDrive(drive).camera_model().resized(WIDTH, HEIGHT)
    values = []
    for i in indices:
        rgb = resize_rgb(read_rgb_png(sorted((drive / "image_02/data").glob("*.png"))[i]),
                         WIDTH, HEIGHT)
        gt = resize_depth(read_depth_png(
            sorted((drive / "proj_depth/groundtruth/image_02").glob("*.png"))[i]), WIDTH,
            HEIGHT)
        with torch.no_grad():
            pred = model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0)
        metres = pred[0, 0].numpy() * camera.fx / focal
        values.append(depth_metrics(metres, gt, mask=gt > 0)["abs_rel"])
    return float(np.mean(values))


def test_the_bundled_model_adapts_to_a_darker_bluer_camera(bag, drive, tmp_path) -> None:
    from training.adapt import finish_adaptation
    from training.trainer import Trainer

    config = load_config(REPO / "config/train/adapt_bag.yaml", _overrides(
        bag, tmp_path, f"max_steps={STEPS}", "batch_size=2", "optim.lr=3e-4",
        "optim.warmup_steps=2", "val_every=100"))
    trainer = Trainer(config, tmp_path / "run")
    losses = []
    step = trainer.train_step

    def recorded(*args, **kwargs):
        losses.append(step(*args, **kwargs))
        return losses[-1]

    trainer.train_step = recorded
    trainer.fit()
    assert len(losses) == STEPS
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses
    report = finish_adaptation(trainer, export=False)
    assert report["train_frames"] == list(range(9)) and report["scored_frames"] == [9, 10, 11]
    # Against the bag's own LiDAR on the held-out frames (what the trainer reports) ...
    assert report["after"]["abs_rel"] < report["before"]["abs_rel"]
    # ... and against the engine's exact depth, which the adaptation never saw.
    focal = trainer.metadata.train_focal_px
    before_model, _ = model_from_checkpoint(load_checkpoint(BUNDLED))
    before = _abs_rel_vs_engine(before_model, drive, [9, 10, 11], focal)
    after = _abs_rel_vs_engine(trainer.eval_model.eval(), drive, [9, 10, 11], focal)
    print(f"held-out AbsRel vs engine depth: before {before:.4f}, after {after:.4f}; "
          f"vs LiDAR {report['before']['abs_rel']:.4f} -> {report['after']['abs_rel']:.4f}")
    assert after < 0.9 * before
    card = (tmp_path / "run/MODEL_CARD.md").read_text()
    assert "| AbsRel |" in card and "robot_bag" in card and "0-8" in card


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_runs_under_torchrun_and_exports_with_the_camera(bag, tmp_path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         "training/train.py", "--config", "config/train/adapt_bag.yaml",
         *_overrides(bag, tmp_path, "max_steps=2", "batch_size=2", "num_threads=1")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = tmp_path / "mono_cnn_adapted"
    assert load_checkpoint(run / "last.pt")["step"] == 2
    report = json.loads((run / "adapt_report.json").read_text())
    assert report["steps"] == 2 and np.isfinite(report["after"]["abs_rel"])
    props = {p.key: p.value for p in onnx.load(run / "adapted.onnx").metadata_props}
    K = np.array(json.loads(props["camera_K"])).reshape(3, 3)  # noqa: N806
    assert props["camera_width"] == str(WIDTH) and props["camera_height"] == str(HEIGHT)
    assert K[0, 0] > 100 and K[2, 2] == 1.0
    assert props["architecture"] == "mono_cnn" and props["adapted_from"].endswith(".pt")
    assert "adapted.onnx" in (run / "MODEL_CARD.md").read_text()


def test_the_fusion_model_adapts_with_native_crops_and_held_out_returns(bag, tmp_path) -> None:
    from training.adapt import finish_adaptation
    from training.trainer import Trainer

    config = load_config(REPO / "config/train/adapt_bag_fusion.yaml", _overrides(
        bag, tmp_path, "max_steps=3", "batch_size=2", "data.input_height=96",
        "data.input_width=192", "val_every=100"))
    trainer = Trainer(config, tmp_path / "run")
    image, depth, sparse, sources, K, *_ = trainer.train_set[0]  # noqa: N806
    assert image.shape == (3, 96, 192) and sources.shape == (2, 3, 96, 192)
    # Native: the LiDAR in metres, not resampled (every return of the window kept).
    assert torch.equal(depth, sparse) and 0 < float(sparse.max()) < 200
    assert float(K[0, 0]) == pytest.approx(float(trainer.val_set.frames.K[0, 0, 0]))
    # Validation: the bottom-centre crop; 20 % of its returns withheld from the input.
    _, reference, given = trainer.val_set[0]
    held, kept = int((reference > 0).sum()), int((given > 0).sum())
    assert held > 0 and 0.15 < held / (held + kept) < 0.25
    assert not ((reference > 0) & (given > 0)).any()
    trainer.fit()
    report = finish_adaptation(trainer, export=False)
    assert report["kind"] == "fusion" and report["after"]["reference_returns"] > 0
    for key in ("rmse", "mae"):
        assert np.isfinite(report["before"][key]) and np.isfinite(report["after"][key])
    assert np.isfinite(report["ip_basic"]["rmse"])
    card = (tmp_path / "run/MODEL_CARD.md").read_text()
    assert "withheld" in card and "IP-Basic" in card


def test_engine_drives_are_mixed_into_the_steps(bag, drive, tmp_path) -> None:
    from training.trainer import Trainer

    (tmp_path / "mix").mkdir()
    (tmp_path / "mix/train").symlink_to(drive.parent.parent, target_is_directory=True)
    config = load_config(REPO / "config/train/adapt_bag.yaml", [*_overrides(
        bag, tmp_path, "max_steps=2", "batch_size=4", "val_every=100"),
        f"data.mix_engine_root={tmp_path / 'mix'}", "data.mix_engine_ratio=0.25"])
    trainer = Trainer(config, tmp_path / "run")
    assert len(trainer.train_set) == 9 + 3  # a quarter of the items are engine frames
    item = trainer.train_set[10]
    assert not bool(item[-1]) and item[0].shape == (3, HEIGHT, WIDTH)
    assert float((item[1] > 0).float().mean()) > 0.5  # the engine's dense depth
    assert trainer.fit()["abs_rel"] > 0


def test_existing_engine_drives_are_never_re_rendered(bag, drive, tmp_path) -> None:
    """The recipe's mix root is the mono training set's: drives rendered there with other
    parameters than data.synthetic's are mixed in as they are, not replaced."""
    from training.trainer import Trainer

    mix_drive = tmp_path / "mix/train" / drive.parent.name / drive.name
    shutil.copytree(drive, mix_drive)  # a copy: find_drives does not follow symlinks
    params = (mix_drive / "depth_ros_synthetic.json").read_text()
    config = load_config(REPO / "config/train/adapt_bag.yaml", [*_overrides(
        bag, tmp_path, "max_steps=1", "batch_size=2", "val_every=100"),
        f"data.mix_engine_root={tmp_path / 'mix'}", "data.mix_engine_ratio=0.25",
        "data.synthetic={drives: 2, frames: 2, seed: 0, stereo: false}"])
    trainer = Trainer(config, tmp_path / "run")
    assert (mix_drive / "depth_ros_synthetic.json").read_text() == params  # seed 77, 12 frames
    assert sorted(p.name for p in mix_drive.parent.iterdir()) == [drive.name]
    assert len(trainer.train_set) == 9 + 3


def test_extra_export_metadata_cannot_overwrite_the_models(tmp_path) -> None:
    from training.export import ExportError, export_onnx

    model, metadata = model_from_checkpoint(load_checkpoint(BUNDLED))
    with pytest.raises(ExportError, match="overwrite the model's kind"):
        export_onnx(model, metadata, tmp_path / "m.onnx", 128, 416, {"kind": "fusion"})
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("recipe, bundled", [
    ("adapt_bag.yaml", "mono_cnn_synthetic.pt"),
    ("adapt_bag_fusion.yaml", "fusion_spn_synthetic.pt")])
def test_adaptation_recipes_build_the_bundled_models_they_start_from(recipe: str, bundled: str,
                                                                    tmp_path) -> None:
    """The recipe's model must be the one its init_checkpoint holds, options included (a
    graph option missing from the recipe, e.g. the fusion model's see-through filter,
    would load the weights without it and silently adapt a different model)."""
    import json

    from depth_ros.models.checkpoints import load_checkpoint

    config = load_config(REPO / "config/train" / recipe,
                         _overrides(Path("unused.mcap"), tmp_path))
    assert Path(config.init_checkpoint).name == bundled
    metadata = load_checkpoint(REPO / "depth_ros/weights" / bundled)["metadata"]
    assert config.model.name == metadata["architecture"]
    expected = json.loads(metadata["model_kwargs"])
    assert {k: config.model.kwargs[k] for k in expected if k in config.model.kwargs} == {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in expected.items()
        if k in config.model.kwargs}
    missing = {k: v for k, v in expected.items() if k not in config.model.kwargs}
    defaults = {k: v for k, v in missing.items() if k in ("head_init_std",)}
    assert missing == defaults, f"{recipe} lacks {sorted(set(missing) - set(defaults))}"
