"""The training recipes in config/train: each loads and validates, and each dataset kind
trains a few steps on small fixtures (the readers' own, test_readers.py) through its recipe
with overrides for tiny sizes."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_readers import (
    write_completion_split,
    write_eigen_split,
    write_nyu_mat,
    write_nyu_sync,
)
from test_training import write_tiny_drive

from training.config import ConfigError, load_config
from training.trainer import Trainer, build_model

REPO = Path(__file__).resolve().parents[1]

RECIPES = sorted((REPO / "config" / "train").glob("*.yaml"))
TINY_MONO = ["model.kwargs.encoder_config=small", "model.kwargs.width_multiplier=0.25",
             "model.kwargs.decoder_channels=[8, 8, 8, 8]"]
TINY_FUSION = ["model.kwargs.image_widths=[8, 8, 8, 16, 16]",
               "model.kwargs.image_depths=[1, 1, 1, 1]",
               "model.kwargs.lidar_widths=[4, 4, 4, 8, 8]", "model.kwargs.nconv_channels=2",
               "model.kwargs.num_heads=1", "model.kwargs.decoder_channels=[8, 8, 8, 8]"]
TINY_RUN = ["max_steps=2", "batch_size=1", "num_threads=1", "tensorboard=false",
            "data.num_workers=0", "data.input_height=32", "data.input_width=64",
            "data.load_threads=1", "optim.warmup_steps=1"]


def test_every_recipe_is_found() -> None:
    assert {p.name for p in RECIPES} >= {"mono_synthetic.yaml", "fusion_synthetic.yaml",
                                         "kitti_eigen.yaml", "kitti_completion.yaml",
                                         "nyu.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_loads_validates_and_documents_its_commands(path: Path) -> None:
    # Adaptation recipes take the user's bag and topics on the command line (their header
    # shows how); without them the recipe is refused in one line.
    text = path.read_text()
    overrides = []
    if "data.bags=" in text:
        with pytest.raises(ConfigError, match=r"needs data\.bags"):
            load_config(path)
        overrides = ["data.bags=[my.mcap]", "data.image_topic=/camera/image_raw",
                     "data.lidar_topic=/lidar/points"]
    config = load_config(path, overrides)
    model = build_model(config)  # the model exists and the input size fits its stride
    assert config.data.input_height % model.stride == 0
    header = "".join(line for line in path.read_text().splitlines(keepends=True)
                     if line.startswith("#"))
    relative = path.relative_to(REPO)
    assert f"python training/train.py --config {relative}" in header
    assert re.search(rf"torchrun --nproc_per_node \d+ training/train.py --config {relative}",
                     header)
    if "confidence" in getattr(model, "outputs", ()):
        # Completion models (fusion_spn) complete a scan: frames without one teach them
        # nothing; they train on sparser scans and on scans with holes instead.
        assert config.augment.lidar_keep_min < 1 and config.augment.lidar_patch_prob > 0
        # Full resolution: the LiDAR is never resized (the bag dataset crops native models at
        # full resolution itself, training.data.adapt, whatever data.crop says).
        assert config.data.crop == "random" or config.data.dataset == "bag"
    elif model.kind == "fusion":
        assert config.augment.lidar_drop_prob > 0 and config.augment.lidar_keep_min < 1


# Fixtures: the readers' own, laid out as each recipe expects -------------------------------

def _drives(base: Path) -> tuple[str, list[str]]:
    for split, drive, frames in (("train", 1, 2), ("val", 1, 1)):
        write_tiny_drive(base / "data" / split, drive, frames=frames)
    return "mono_synthetic.yaml", [f"data.root={base / 'data'}", "data.synthetic=null",
                                   "data.val_synthetic=null", "model.kwargs.base_channels=8"]


def _eigen(base: Path, fusion: bool = False) -> tuple[str, list[str]]:
    split, raw, depth_root = write_eigen_split(base, unlabelled=False)
    paths = ["data.dataset=kitti_eigen", f"data.train_split={split}",
             f"data.val_split={split}", f"data.raw_root={raw}", f"data.depth_root={depth_root}",
             "data.kb_crop=false", "data.crop=resize"]
    if fusion:  # the completion recipe's model on the Eigen lists
        return "kitti_completion.yaml", [*paths, "data.root=''", *TINY_FUSION]
    return "kitti_eigen.yaml", [*paths, *TINY_MONO]


def _completion(base: Path) -> tuple[str, list[str]]:
    split, raw = write_completion_split(base)
    shutil.copytree(split, base / "val")
    return "kitti_completion.yaml", [f"data.root={base}", f"data.raw_root={raw}",
                                     "data.depth_root=''", "data.kb_crop=false",
                                     "data.crop=resize", *TINY_FUSION]


def _nyu_mat(base: Path) -> tuple[str, list[str]]:
    write_nyu_mat(base / "train.mat")
    write_nyu_mat(base / "val.mat", n=1)
    return "nyu.yaml", [f"data.train_path={base / 'train.mat'}", "data.train_split=''",
                        f"data.val_path={base / 'val.mat'}", "data.val_split=''", *TINY_MONO]


def _nyu_sync(base: Path) -> tuple[str, list[str]]:
    write_nyu_sync(base / "sync")
    write_nyu_sync(base / "test")
    return "nyu.yaml", [f"data.train_path={base / 'sync'}", "data.train_split=''",
                        f"data.val_path={base / 'test'}", "data.val_split=''",
                        "data.crop=random", *TINY_MONO]


@pytest.mark.parametrize(("make", "kind", "train_frames"), [
    (_drives, "mono", 2),
    (_eigen, "mono", 1),
    (lambda base: _eigen(base, fusion=True), "fusion", 1),
    (_completion, "fusion", 2),
    (_nyu_mat, "mono", 2),
    (_nyu_sync, "mono", 2),
], ids=["drives", "kitti_eigen", "kitti_eigen_fusion", "kitti_completion", "nyu_mat",
        "nyu_sync_random_crop"])
def test_recipe_trains_a_few_steps(tmp_path: Path, make, kind: str, train_frames: int) -> None:
    recipe, overrides = make(tmp_path)
    config = load_config(REPO / "config" / "train" / recipe,
                         [*overrides, *TINY_RUN, f"output_dir={tmp_path / 'runs'}"])
    trainer = Trainer(config, tmp_path / "runs" / config.name)
    assert len(trainer.train_set) == train_frames
    item = trainer.train_set[0]
    assert item[0].shape == (3, 32, 64) and item[1].shape == (1, 32, 64)
    assert len(item) == (3 if kind == "fusion" else 2)
    val = trainer.fit()
    assert math.isfinite(val["abs_rel"]) and math.isfinite(val["rmse"])
    run_dir = tmp_path / "runs" / config.name
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records and all(math.isfinite(r["train_loss"]) for r in records)
    payload = torch.load(run_dir / "last.pt", weights_only=True)
    assert payload["step"] == 2 and payload["metadata"]["kind"] == kind
    assert payload["config"]["data"]["dataset"] == config.data.dataset
    assert float(payload["metadata"]["train_focal_px"]) > 0


def test_kitti_benchmark_crop_then_resize_moves_the_focal(tmp_path: Path) -> None:
    """KITTI frames are KB-cropped then resized: the canonical focal is the raw fx scaled by
    input width / 1216, and the ground truth keeps its metres at that focal."""
    from training.data.benchmarks import build_transform
    from training.data.sources import DepthDataset

    config = load_config(REPO / "config" / "train" / "kitti_eigen.yaml",
                         ["data.crop=resize", "data.input_height=64", "data.input_width=224"])
    transform = build_transform(config, kitti=True, train=False)
    sample = {"rgb": torch.rand(375, 1242, 3).numpy(),
              "depth": torch.full((375, 1242), 10.0).numpy(),
              "K": [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]]}
    sample["K"] = torch.tensor(sample["K"], dtype=torch.float64).numpy()
    out = transform(sample)
    assert out["rgb"].shape == (64, 224, 3)
    assert out["K"][0, 0] == pytest.approx(721.5377 * 224 / 1216)
    assert out["K"][1, 1] == pytest.approx(721.5377 * 64 / 352)

    class OneFrame:
        def __len__(self) -> int:
            return 1

        def frame(self, index: int):
            from depth_ros.readers import DepthFrame

            return DepthFrame((sample["rgb"] * 255).astype("uint8"), sample["K"],
                              sample["depth"], None)

    focal = 721.5377 * 224 / 1216
    _, depth = DepthDataset(OneFrame(), canonical_focal_px=2 * focal, transform=transform)[0]
    assert float(depth.max()) == pytest.approx(20.0)


# Bad paths: one line, before anything trains -------------------------------------------------

@pytest.mark.parametrize(("recipe", "overrides", "message"), [
    ("kitti_eigen.yaml", ["data.raw_root=/nonexistent/raw"],
     "data.train_split: file not found: data/kitti/eigen_train_files_with_gt.txt"),
    ("kitti_eigen.yaml", ["data.train_split={split}", "data.val_split={split}",
                          "data.depth_root={base}", "data.raw_root=/nonexistent/raw"],
     "data.raw_root: directory not found: /nonexistent/raw"),
    ("kitti_completion.yaml", ["data.root={base}", "data.raw_root={base}", "data.depth_root=''"],
     "data_depth_velodyne/train"),
    ("nyu.yaml", ["data.train_path=/nonexistent/nyu.mat"], "data.train_path: path not found"),
    ("nyu.yaml", ["data.train_path={split}", "data.train_split=''", "data.val_path={split}",
                  "data.val_split=''"], "are the same frames"),
    ("nyu.yaml", ["data.zero_depth_is_far=true"], "data.zero_depth_is_far is for rendered"),
    ("kitti_eigen.yaml", ["data.val_split=''"], "data.dataset kitti_eigen needs data.val_split"),
    ("kitti_eigen.yaml", ["data.dataset=imagenet"], "data.dataset must be drives or"),
])
def test_bad_dataset_paths_are_one_config_error(tmp_path: Path, recipe: str,
                                                overrides: list[str], message: str) -> None:
    split = tmp_path / "list.txt"
    split.write_text("x\n")
    overrides = [o.format(split=split, base=tmp_path) for o in overrides]
    with pytest.raises(ConfigError) as info:
        config = load_config(REPO / "config" / "train" / recipe,
                             [*overrides, f"output_dir={tmp_path}"])
        Trainer(config, tmp_path / "run")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_fusion_on_nyu_is_refused(tmp_path: Path) -> None:
    write_nyu_mat(tmp_path / "a.mat")
    write_nyu_mat(tmp_path / "b.mat", n=1)
    config = load_config(REPO / "config" / "train" / "nyu.yaml",
                         [f"data.train_path={tmp_path / 'a.mat'}", "data.train_split=''",
                          f"data.val_path={tmp_path / 'b.mat'}", "data.val_split=''",
                          "model.name=fusion_attention", "model.kwargs={}"])
    with pytest.raises(ConfigError, match="NYU Depth v2 has no LiDAR"):
        Trainer(config, tmp_path / "run")


def test_cli_reports_a_missing_dataset_path_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "training/train.py", "--config", "config/train/kitti_eigen.yaml",
         f"data.train_split={tmp_path / 'missing.txt'}", f"output_dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"train.py: error: data.train_split: file not found: "
                      f"{tmp_path / 'missing.txt'}"], result.stderr[-2000:]
    assert not (tmp_path / "kitti_eigen_mono").exists()
