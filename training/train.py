"""Train a depth model (mono, or fusion with LiDAR) on engine drives, KITTI or NYU.

    python training/train.py --config config/train/mono_synthetic.yaml [key.sub=value ...]
    python training/train.py --config config/train/fusion_synthetic.yaml   # RGB + LiDAR
    python training/train.py --config config/train/kitti_eigen.yaml \
        data.raw_root=/data/kitti_raw data.depth_root=/data/data_depth_annotated
    python training/train.py --config ... --resume             # from runs/<name>/last.pt
    python training/train.py --config ... --resume path/to.pt
    python training/train.py --config ... --resume auto        # newest complete, if any
    torchrun --nproc_per_node 4 training/train.py --config ...  # one process per GPU
    python training/train.py --config config/train/adapt_bag.yaml \
        data.bags=[my.mcap] data.image_topic=/camera/image_raw data.lidar_topic=/lidar/points

Writes ``<output_dir>/<name>/``: config.yaml, last.pt, best.pt, step_<step>.pt,
metrics.jsonl, tensorboard/ (rank 0 only), locked for the run (.train.lock: a second trainer
on the same run directory refuses to start).

Ctrl-C or SIGTERM saves last.pt at the end of the current step and exits (code 130 / 143)
with one line naming the checkpoint and the command that resumes from it; a second Ctrl-C
quits at once without saving.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Only the standard library and training.stopping here: the rest (yaml, torch, the trainer)
# loads inside main() under quit_while_starting, so that Ctrl-C while they import (seconds)
# is one line.
from training.stopping import STOP_SIGNALS, Interrupted, StopSignals, exit_code, signal_name

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.distributed import DistContext
    from training.run_lock import RunLock

STOP_EXIT_CODES = {exit_code(signum) for signum in STOP_SIGNALS}


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
    from training.checkpoint import find_latest_checkpoint
    from training.config import ConfigError

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


def resume_command(args: argparse.Namespace, checkpoint: str | Path,
                   context: DistContext | None = None) -> str:
    """The command line that continues this run from ``checkpoint``: this one's config and
    overrides, under the same launcher."""
    script = sys.argv[0] or "training/train.py"
    if context is not None and context.is_distributed:
        nproc = os.environ.get("LOCAL_WORLD_SIZE", str(context.world_size))
        launcher = ["torchrun", "--nproc_per_node", nproc]
    else:
        python = shutil.which("python")
        same = python is not None and Path(python).resolve() == Path(sys.executable).resolve()
        launcher = ["python" if same else sys.executable]
    return shlex.join([*launcher, script, "--config", str(args.config), *args.overrides,
                       "--resume", str(checkpoint)])


def claim_run_dir(run_dir: Path, context: DistContext) -> RunLock | None:
    """Rank 0 creates and locks the run directory; every rank raises the same one-line
    ``RunDirError`` when that fails (before any data is read)."""
    from training.run_lock import RunDirError, RunLock

    lock, error = None, None
    if context.is_main:
        try:
            lock = RunLock(run_dir).acquire()
        except RunDirError as exc:
            error = str(exc)
    error = context.broadcast(error)
    if error is not None:
        raise RunDirError(error)
    return lock


def quit_while_starting(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM while the libraries import: one line and out at once. Nothing exists
    yet to save or clean up, and an exception raised inside an extension module's import can
    come out as an unrelated ImportError."""
    os.write(2, f"train.py: interrupted by {signal_name(signum)} while starting: nothing "
                "saved\n".encode())
    os._exit(exit_code(signum))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    previous = {signum: signal.signal(signum, quit_while_starting) for signum in STOP_SIGNALS}
    from depth_ros.models.checkpoints import CheckpointError
    from training.config import ConfigError, load_config
    from training.distributed import init_distributed
    from training.export import ExportError
    from training.trainer import Trainer, TrainingDivergedError, TrainingStopped

    context = lock = None
    # torchrun forwards the signal it gets to workers that already had it from the terminal.
    stop = StopSignals(launcher_forwards="TORCHELASTIC_RUN_ID" in os.environ).install()
    try:
        config = load_config(args.config, args.overrides)
        context = init_distributed(config.device)
        # One process talks: the others log warnings and errors only.
        logging.basicConfig(level=logging.INFO if context.is_main else logging.WARNING,
                            format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        run_dir = Path(config.output_dir) / config.name
        stop.verbose = context.is_main
        stop.quit_hint = ("resume from the newest complete checkpoint with: "
                          + resume_command(args, "auto", context))
        lock = claim_run_dir(run_dir, context)
        resume = resume_path(args.resume, config, run_dir, context)
        trainer = Trainer(config, run_dir, context, stop=stop)
        if resume is not None:
            trainer.resume(resume)
        val = trainer.fit()
        if config.data.dataset == "bag" and context.is_main:
            # Before/after scores, ONNX with the camera's intrinsics, the model card.
            from training.adapt import finish_adaptation

            finish_adaptation(trainer, export=config.data.bag_export)
    except Interrupted as exc:
        print(f"train.py: {_where(context)}interrupted by {signal_name(exc.signum)} before "
              "training started: nothing saved", file=sys.stderr)
        return exit_code(exc.signum)
    except TrainingStopped as exc:
        if context.is_main:
            print(f"train.py: {exc}; resume with: "
                  f"{resume_command(args, exc.checkpoint, context)}", file=sys.stderr)
        return exit_code(exc.signum)
    except (ConfigError, CheckpointError) as exc:
        print(f"train.py: error: {_where(context)}{exc}", file=sys.stderr)
        return 2
    except TrainingDivergedError as exc:
        print(f"train.py: training diverged: {_where(context)}{exc}", file=sys.stderr)
        return 1
    except ExportError as exc:  # after an adaptation run: its checkpoints are saved
        print(f"train.py: error: exporting the adapted model: {exc}", file=sys.stderr)
        return 1
    finally:
        if context is not None:
            context.close()
        if lock is not None:
            lock.release()
        # A stopping process keeps its handlers to the end: torchrun sends SIGTERM to the
        # ranks still running when one exits, and those are on their way out already.
        if not stop.requested:
            stop.restore()
            for signum, handler in previous.items():  # the caller's, from before main()
                signal.signal(signum, handler)
    if not context.is_main:
        return 0
    if val:
        logging.info("done: step %d, val AbsRel %.4f, d<1.25 %.4f; checkpoints in %s",
                     trainer.step, val["abs_rel"], val["a1"], run_dir)
    return 0


def _where(context: DistContext | None) -> str:
    return f"rank {context.rank}: " if context is not None and context.is_distributed else ""


if __name__ == "__main__":
    try:
        code = main()
    except KeyboardInterrupt:  # Ctrl-C before main() took SIGINT over: nothing to save
        print("train.py: interrupted by SIGINT while starting: nothing saved", file=sys.stderr)
        code = exit_code(signal.SIGINT)
    if code in STOP_EXIT_CODES:
        # Stopped: everything is saved and closed. Skip the interpreter's teardown (seconds
        # with torch loaded, and the stop handlers are gone during it): torchrun sends SIGTERM
        # to the ranks still running when one exits, which would turn 143 into a kill.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
