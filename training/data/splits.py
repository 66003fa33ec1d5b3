"""The training and validation sets of a configuration (``data.dataset``).

``drives``: KITTI-layout drives under ``<root>/train`` and ``<root>/val``, held in memory
(``training.data.drives``). ``kitti_eigen``, ``kitti_completion`` and ``nyu`` are read frame
by frame through their readers (``training.data.benchmarks``). Both give ``DepthDataset``s.
``bag``: a robot's own recording, for adapting without labels (``training.data.adapt``).
"""

from __future__ import annotations

from collections.abc import Callable

from training.config import TrainConfig
from training.data.adapt import bag_splits
from training.data.benchmarks import benchmark_splits
from training.data.drives import drive_splits
from training.data.sources import DataSplits
from training.distributed import DistContext

Builder = Callable[[TrainConfig, DistContext, bool], DataSplits]
BUILDERS: dict[str, Builder] = {"drives": drive_splits, "kitti_eigen": benchmark_splits,
                                "kitti_completion": benchmark_splits, "nyu": benchmark_splits,
                                "bag": bag_splits}


def build_datasets(config: TrainConfig, dist: DistContext, lidar: bool) -> DataSplits:
    """The configured sets; ``lidar``: items carry sparse depth (for fusion models)."""
    return BUILDERS[config.data.dataset](config, dist, lidar)
