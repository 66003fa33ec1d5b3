"""Train a depth model.

    python training/train.py --config config/train/mono_synthetic.yaml [key.sub=value ...]
    python training/train.py --config ... --resume             # from runs/<name>/last.pt
    python training/train.py --config ... --resume path/to.pt

Writes ``<output_dir>/<name>/``: config.yaml, last.pt, best.pt, metrics.jsonl.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Run as a script from the repository root: import `training` as a package from there, and
# keep training/ itself off sys.path so its module names cannot shadow installed packages.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from depth_ros.models.checkpoints import CheckpointError  # noqa: E402
from training.config import ConfigError, load_config  # noqa: E402
from training.trainer import Trainer, TrainingDivergedError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="YAML training config")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, values parsed as YAML")
    parser.add_argument("--resume", nargs="?", const="last", default=None, metavar="CHECKPOINT",
                        help="continue from a checkpoint (default: the run's last.pt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        config = load_config(args.config, args.overrides)
        run_dir = Path(config.output_dir) / config.name
        resume = None
        if args.resume is not None:
            resume = run_dir / "last.pt" if args.resume == "last" else Path(args.resume)
            if not resume.is_file():
                raise ConfigError(f"--resume: checkpoint not found: {resume}")
        trainer = Trainer(config, run_dir)
        if resume is not None:
            trainer.resume(resume)
        val = trainer.fit()
    except (ConfigError, CheckpointError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDivergedError as exc:
        print(f"train.py: training diverged: {exc}", file=sys.stderr)
        return 1
    if val:
        logging.info("done: step %d, val AbsRel %.4f, d<1.25 %.4f; checkpoints in %s",
                     trainer.step, val["abs_rel"], val["a1"], run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
