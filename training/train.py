"""Train a depth model (mono, or fusion with LiDAR) on engine drives, KITTI or NYU.

    python training/train.py --config config/train/mono_synthetic.yaml [key.sub=value ...]
    python training/train.py --config config/train/fusion_synthetic.yaml   # RGB + LiDAR
    python training/train.py --config config/train/kitti_eigen.yaml \
        data.raw_root=/data/kitti_raw data.depth_root=/data/data_depth_annotated
    python training/train.py --config ... --resume             # from runs/<name>/last.pt
    python training/train.py --config ... --resume path/to.pt
    python training/train.py --config ... --resume auto        # newest complete, if any
    torchrun --nproc_per_node 4 training/train.py --config ...  # one process per GPU

Writes ``<output_dir>/<name>/``: config.yaml, last.pt, best.pt, step_<step>.pt,
metrics.jsonl, tensorboard/ (rank 0 only).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from depth_ros.models.checkpoints import CheckpointError
from training.checkpoint import find_latest_checkpoint
from training.config import ConfigError, TrainConfig, load_config
from training.distributed import DistContext, init_distributed
from training.trainer import Trainer, TrainingDivergedError


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="YAML training config")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, values parsed as YAML")
    parser.add_argument("--resume", nargs="?", const="last", default=None, metavar="CHECKPOINT",
                        help="continue from a checkpoint (default: the run's last.pt; auto: "
                             "the newest complete one in the run directory, if there is one)")
    return parser


def resume_path(resume: str | None, config: TrainConfig, run_dir: Path,
                context: DistContext) -> Path | None:
    """The checkpoint to continue from, as rank 0 sees it, or None to start afresh."""
    if resume == "auto" or (resume is None and config.auto_resume):
        path = find_latest_checkpoint(run_dir) if context.is_main else None
        path = context.broadcast(path)
        if path is None:
            logging.info("no complete checkpoint in %s: starting afresh", run_dir)
        return path
    if resume is None:
        return None
    path = run_dir / "last.pt" if resume == "last" else Path(resume)
    if not path.is_file():
        raise ConfigError(f"--resume: checkpoint not found: {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    context = None
    try:
        config = load_config(args.config, args.overrides)
        context = init_distributed(config.device)
        # One process talks: the others log warnings and errors only.
        logging.basicConfig(level=logging.INFO if context.is_main else logging.WARNING,
                            format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        run_dir = Path(config.output_dir) / config.name
        resume = resume_path(args.resume, config, run_dir, context)
        trainer = Trainer(config, run_dir, context)
        if resume is not None:
            trainer.resume(resume)
        val = trainer.fit()
    except (ConfigError, CheckpointError) as exc:
        print(f"train.py: error: {_where(context)}{exc}", file=sys.stderr)
        return 2
    except TrainingDivergedError as exc:
        print(f"train.py: training diverged: {_where(context)}{exc}", file=sys.stderr)
        return 1
    finally:
        if context is not None:
            context.close()
    if not context.is_main:
        return 0
    if val:
        logging.info("done: step %d, val AbsRel %.4f, d<1.25 %.4f; checkpoints in %s",
                     trainer.step, val["abs_rel"], val["a1"], run_dir)
    return 0


def _where(context: DistContext | None) -> str:
    return f"rank {context.rank}: " if context is not None and context.is_distributed else ""


if __name__ == "__main__":
    sys.exit(main())
