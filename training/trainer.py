"""The training loop: data, model, optimiser, validation each epoch, atomic checkpoints.

Single-process for now. Multi-GPU (DDP) slots in by wrapping ``self.model``, swapping
``EpochSampler`` for ``DistributedSampler`` (same ``set_epoch``) and saving only on rank 0
through ``save()``; mixed precision belongs inside ``train_step``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from depth_ros.kitti import KittiFormatError, find_drives
from depth_ros.metrics import depth_metrics, mean_metrics
from depth_ros.models import ModelMetadata, create_model
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import ConfigError, TrainConfig, save_config
from training.datasets import DepthFrames, EpochSampler, ensure_synthetic_drives, load_frames
from training.losses import SiLogLoss
from training.optim import build_optimizer, lr_factor, set_lr

LOG = logging.getLogger("depth_ros.training")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The configured model, checked against what this trainer supports."""
    try:
        model = create_model(config.model.name, **config.model.kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if getattr(model, "output", "metric") != "metric":
        raise ConfigError(f"model {config.model.name!r} has output {model.output!r}: this "
                          "trainer's SILog loss trains metric models only")
    stride = model.stride
    if config.data.input_height % stride or config.data.input_width % stride:
        raise ConfigError(f"data.input_height/input_width ({config.data.input_height}x"
                          f"{config.data.input_width}) must be multiples of the stride {stride}")
    return model


class Trainer:
    """Trains ``config.model`` on the drives of ``config.data``; writes to ``run_dir``.

    Files in the run directory: ``config.yaml`` (merged configuration), ``last.pt`` and
    ``best.pt`` (lowest validation AbsRel), ``metrics.jsonl`` (one line per validation).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        torch.manual_seed(config.seed)
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.model = build_model(config)
        self.train_set, self.val_set = self._datasets()
        self.steps_per_epoch = len(self.train_set) // config.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(f"batch_size {config.batch_size} exceeds the "
                              f"{len(self.train_set)} training frames")
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(self.model, config.optim)
        self.loss_fn = SiLogLoss(config.loss.silog_lambda, config.loss.silog_warmup_steps)
        self.metadata = ModelMetadata(
            architecture=config.model.name, kind=self.model.kind, output=self.model.output,
            stride=self.model.stride, train_input_height=config.data.input_height,
            train_input_width=config.data.input_width, min_depth_m=self.model.min_depth_m,
            max_depth_m=self.model.max_depth_m,
            train_focal_px=round(self.train_set.canonical_focal_px, 4),
            train_data=config.train_data or self._describe_data(), version=config.version,
            model_kwargs=json.loads(json.dumps(config.model.kwargs)))
        self.step = 0
        self.best_abs_rel = math.inf
        self.elapsed_s = 0.0
        self.last_checkpoint: Path | None = None
        self.last_val: dict[str, float] = {}

    # Data ---------------------------------------------------------------------------------

    def _split_root(self, split: str) -> Path:
        return Path(self.config.data.root) / split

    def _datasets(self) -> tuple[DepthFrames, DepthFrames]:
        data = self.config.data
        frames = {}
        for split, synthetic in (("train", data.synthetic), ("val", data.val_synthetic)):
            root = self._split_root(split)
            if synthetic is not None:
                LOG.info("%s drives: %d synthetic (seeds %d..%d, %d frames) under %s", split,
                         synthetic.drives, synthetic.seed, synthetic.seed + synthetic.drives - 1,
                         synthetic.frames, root)
                ensure_synthetic_drives(root, synthetic, data.image_width, data.image_height,
                                        data.render_workers)
            try:
                drives = find_drives(root)
            except KittiFormatError as exc:
                raise ConfigError(f"{split} data: {exc}") from exc
            t0 = time.monotonic()
            frames[split] = load_frames(drives, data.input_height, data.input_width,
                                        data.load_threads)
            LOG.info("%s: %d frames from %d drives loaded in %.1f s", split,
                     len(frames[split]), len(drives), time.monotonic() - t0)
        # One canonical focal for both splits: the one the model learns and reports.
        focal = float(np.median(frames["train"].focal_px))
        return (DepthFrames(frames["train"], focal, self.config.augment),
                DepthFrames(frames["val"], focal, None))

    def _describe_data(self) -> str:
        data = self.config.data
        parts = []
        for split, synthetic in (("train", data.synthetic), ("val", data.val_synthetic)):
            if synthetic is None:
                parts.append(f"{split}: drives under {self._split_root(split)}")
            else:
                parts.append(f"{split}: {synthetic.drives} drives x {synthetic.frames} frames, "
                             f"seeds {synthetic.seed}..{synthetic.seed + synthetic.drives - 1}")
        source = "depth_ros synthetic engine" if data.synthetic else "KITTI-format drives"
        return f"{source} ({data.image_width}x{data.image_height}); " + "; ".join(parts)

    # Checkpoints --------------------------------------------------------------------------

    def state(self, val_metrics: dict[str, float] | None = None) -> dict[str, Any]:
        """Everything needed to resume (and to deploy) as a weights-only dict."""
        return {
            "state_dict": self.model.state_dict(),
            "metadata": self.metadata.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "best_abs_rel": self.best_abs_rel,
            "elapsed_s": self.elapsed_s,
            "val_metrics": dict(val_metrics or {}),
            "config": self.config.to_dict(),
            "rng_state": torch.get_rng_state(),
        }

    def save(self, name: str, val_metrics: dict[str, float] | None = None) -> Path:
        """Write ``<run_dir>/<name>`` atomically."""
        path = save_checkpoint(self.state(val_metrics), self.run_dir / name)
        if name == "last.pt":
            self.last_checkpoint = path
        return path

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by ``save``."""
        payload = load_checkpoint(path)
        self.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step = int(payload["step"])
        self.best_abs_rel = float(payload.get("best_abs_rel", math.inf))
        self.elapsed_s = float(payload.get("elapsed_s", 0.0))
        if "rng_state" in payload:
            torch.set_rng_state(payload["rng_state"])
        self.last_checkpoint = Path(path)
        LOG.info("resumed from %s at step %d", path, self.step)

    # Training -----------------------------------------------------------------------------

    def train_step(self, image: torch.Tensor, depth: torch.Tensor) -> float:
        """One optimiser step; returns the loss."""
        self.model.train()
        set_lr(self.optimizer, self.config.optim.lr * lr_factor(self.step, self.total_steps,
                                                                self.config.optim))
        pred = self.model(image)
        # Ground truth beyond the model's range becomes its bound (far buildings should read
        # "far", not be ignored); 0 is "no data" and stays out of the loss unless the data
        # says it means "far" (rendered sky), which must not come out as a near obstacle.
        if self.config.data.zero_depth_is_far:
            depth = torch.where(depth > 0, depth, torch.full_like(depth, self.model.max_depth_m))
        valid = depth > 0
        target = depth.clamp(self.model.min_depth_m, self.model.max_depth_m)
        # The warm-up counts optimiser steps, so a resumed run continues it where it stopped.
        self.loss_fn.calls.fill_(self.step)
        self.loss_fn.train()
        loss = self.loss_fn(pred, target, valid)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"loss is {loss.item()} at step {self.step}; last good checkpoint: "
                f"{self.last_checkpoint or 'none'}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.optim.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                           self.config.optim.grad_clip_norm)
        self.optimizer.step()
        self.step += 1
        return loss.item()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean per-image metrics on the validation frames at the training resolution."""
        self.model.eval()
        loader = DataLoader(self.val_set, batch_size=self.config.batch_size, shuffle=False)
        per_image = []
        for image, depth in loader:
            pred = self.model(image)
            for p, g in zip(pred[:, 0].numpy(), depth[:, 0].numpy(), strict=True):
                per_image.append(depth_metrics(p, g, mask=g > 0,
                                               max_depth=self.model.max_depth_m))
        return mean_metrics(per_image)

    def _end_of_epoch(self, epoch: int, train_loss: float) -> None:
        val = self.last_val = self.validate()
        record = {"step": self.step, "epoch": epoch, "train_loss": round(train_loss, 5),
                  "elapsed_s": round(self.elapsed_s, 1),
                  "val": {k: round(v, 5) for k, v in val.items()}}
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        improved = val["abs_rel"] < self.best_abs_rel
        if improved:
            self.best_abs_rel = val["abs_rel"]
        self.save("last.pt", val)
        if improved:
            self.save("best.pt", val)
        tqdm.write(f"epoch {epoch} step {self.step}: train loss {train_loss:.4f}, val AbsRel "
                   f"{val['abs_rel']:.4f} RMSE {val['rmse']:.3f} m d<1.25 {val['a1']:.4f}"
                   + (" (best)" if improved else ""))

    def fit(self) -> dict[str, float]:
        """Train to ``total_steps``; returns the last validation metrics."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.run_dir / "config.yaml")
        if self.step >= self.total_steps:
            LOG.info("nothing to do: step %d >= %d", self.step, self.total_steps)
            return {}
        batch = self.config.batch_size
        sampler = EpochSampler(len(self.train_set), self.config.seed)
        loader = DataLoader(self.train_set, batch_size=batch, sampler=sampler, drop_last=True)
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        losses: list[float] = []
        t_start = time.monotonic() - self.elapsed_s
        while self.step < self.total_steps:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            sampler.set_epoch(epoch, start=offset * batch)
            bar.set_description(f"epoch {epoch}")
            for image, depth in loader:
                losses.append(self.train_step(image, depth))
                self.elapsed_s = time.monotonic() - t_start
                bar.update(1)
                if self.step % self.config.log_every == 0:
                    lr = self.optimizer.param_groups[0]["lr"]
                    bar.set_postfix(loss=f"{np.mean(losses[-self.config.log_every:]):.4f}",
                                    lr=f"{lr:.2e}", refresh=False)
                epoch_done = self.step % self.steps_per_epoch == 0
                if epoch_done or self.step == self.total_steps:
                    self._end_of_epoch(epoch, float(np.mean(losses[-self.steps_per_epoch:])))
                elif self.config.checkpoint_every and \
                        self.step % self.config.checkpoint_every == 0:
                    self.save("last.pt")
                if self.step >= self.total_steps:
                    break
        bar.close()
        return self.last_val
