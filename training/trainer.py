"""The training loop: data, model, optimiser, validation each epoch, atomic checkpoints.

Mono models are fed the image, fusion models the image and its sparse LiDAR depth
(``training.inputs``); the sets come from ``training.data.splits`` (engine drives, KITTI,
NYU).

One process, or one per device under ``torchrun`` (``training.distributed``): the model is
wrapped in ``DistributedDataParallel``, ``EpochSampler`` shards each epoch's permutation,
validation is sharded and its per-image metrics gathered, and rank 0 alone writes. Mixed
precision (CUDA), gradient accumulation and an EMA of the weights live in ``train_step``.

A stop signal (``training.stopping``) is looked at between steps, agreed by every rank, and
answered with a checkpoint and ``TrainingStopped``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from depth_ros.metrics import depth_metrics, mean_metrics
from depth_ros.models import ModelMetadata, create_model
from depth_ros.models.prefill import occlusion_filter
from training.checkpoint import (
    CheckpointError,
    link_checkpoint,
    load_checkpoint,
    prune_step_checkpoints,
    remove_temporaries,
    save_checkpoint,
    step_checkpoint_name,
)
from training.config import ConfigError, TrainConfig, save_config
from training.data.sampler import EpochSampler, seed_worker
from training.data.splits import build_datasets
from training.distributed import DistContext, resolve_device, wrap_model
from training.inputs import needs_lidar, network_inputs, split_batch
from training.losses import (
    SiLogLoss,
    completion_loss,
    confidence_target,
    trust_loss,
    weighted_depth_loss,
)
from training.optim import build_optimizer, lr_factor, set_lr
from training.pseudo.data import PseudoBatch, PseudoBatchStream, PseudoLabelFrames, mix_batches
from training.pseudo.labels import PseudoLabelError
from training.pseudo.loss import pseudo_label_loss
from training.run_log import RunLog, require_tensorboard
from training.selfsup import bag_batch_loss
from training.stopping import StopSignals, ignore_stop_signals, signal_name

LOG = logging.getLogger("depth_ros.training")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingStopped(KeyboardInterrupt):
    """A stop signal ended the run at a step boundary, after ``checkpoint`` was saved (a
    ``KeyboardInterrupt``, so that ``except Exception`` blocks on the way let it through)."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by {signal_name(signum)} at step {step}: saved {checkpoint}")
        self.signum = signum
        self.step = step
        self.checkpoint = checkpoint


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


def build_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and BatchNorm statistics (its
    first update copies them), or None when ``decay`` is 0."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _loader_seed(*keys: int) -> int:
    # Independent streams for every (seed, rank, epoch, offset): the loader's draw of the
    # worker seeds then depends on where the run is, not on what ran before.
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0])


def _seed_worker_ignoring_stop_signals(worker_id: int) -> None:
    # After the DataLoader's own handlers (SIGTERM kills a worker by default): a stop signal to
    # the process group must reach the trainer alone, which finishes the step with its workers.
    ignore_stop_signals()
    seed_worker(worker_id)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


class Trainer:
    """Trains ``config.model`` on the frames of ``config.data``; writes to ``run_dir``.

    Files in the run directory: ``config.yaml`` (merged configuration), ``last.pt`` and
    ``best.pt`` (lowest validation AbsRel), ``step_<step>.pt`` (every ``checkpoint_every``
    steps and at the end, the newest ``keep_checkpoints`` kept), ``metrics.jsonl`` (one line
    per validation), ``tensorboard/``.

    Args:
        config: the merged configuration.
        run_dir: where rank 0 writes.
        context: this process's rank and device; None: a single process on
            ``config.device``.
        stop: the stop signals to answer between steps; None: none.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path,
                 context: DistContext | None = None, stop: StopSignals | None = None) -> None:
        self.config = config
        self.stop = stop
        self.run_dir = Path(run_dir)
        self.dist = context or DistContext(device=resolve_device(config.device))
        self.device = self.dist.device
        if config.tensorboard and self.dist.is_main:
            require_tensorboard()
        torch.manual_seed(config.seed)
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.model = build_model(config).to(self.device)
        if config.init_checkpoint:
            self._load_initial_weights(config.init_checkpoint)
        for name, path in config.init_submodules.items():
            load_submodule_weights(self.model, name, path)
            LOG.info("%s: weights from %s", name, path)
        if self.dist.is_distributed:
            # The same initial weights everywhere (DDP broadcasts rank 0's anyway), then a
            # random stream of its own for each rank's augmentation.
            torch.manual_seed(config.seed + self.dist.rank)
        resize_policy = self._resize_policy()  # checked before minutes of data loading
        data = build_datasets(config, self.dist, needs_lidar(self.model))
        self.train_set, self.val_set = data.train, data.val
        self.pseudo_set = None
        if config.pseudo.active:
            try:
                self.pseudo_set = PseudoLabelFrames(config.pseudo.dirs, config.data.input_height,
                                                    config.data.input_width, config.pseudo)
            except (PseudoLabelError, FileNotFoundError) as exc:
                raise ConfigError(f"pseudo.dirs: {exc}") from exc
            LOG.info("pseudo-labelled: %d %s images, %d per labelled image in each step",
                     len(self.pseudo_set), self.pseudo_set.label_kind, config.pseudo.ratio)
        self.accumulate_steps = config.optim.accumulate_steps
        # What one rank loads per optimiser step: accumulate_steps micro-batches.
        self.step_batch = config.batch_size * self.accumulate_steps
        shard = math.ceil(len(self.train_set) / self.dist.world_size)
        self.steps_per_epoch = shard // self.step_batch
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"batch_size {config.batch_size} × optim.accumulate_steps "
                f"{self.accumulate_steps} × {self.dist.world_size} process(es) exceeds the "
                f"{len(self.train_set)} training frames")
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.net = wrap_model(self.model, self.dist, config.ddp_find_unused_parameters)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.amp = config.amp and self.device.type == "cuda"
        self.amp_dtype = getattr(torch, config.amp_dtype)
        # float16 needs loss scaling against underflowing gradients; bfloat16 does not.
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.ema = build_ema(self.model, config.optim.ema_decay)
        self.loss_fn = SiLogLoss(config.loss.silog_lambda, config.loss.silog_warmup_steps)
        self.metadata = ModelMetadata(
            architecture=config.model.name, kind=self.model.kind, output=self.model.output,
            stride=self.model.stride, train_input_height=config.data.input_height,
            train_input_width=config.data.input_width, min_depth_m=self.model.min_depth_m,
            max_depth_m=self.model.max_depth_m,
            train_focal_px=round(data.canonical_focal_px, 4),
            train_data=config.train_data or data.description, version=config.version,
            model_kwargs=json.loads(json.dumps(config.model.kwargs)),
            resize_policy=resize_policy,
            max_input_height=(int(config.data.max_input_size[0])
                              if resize_policy == "canonical" else 0),
            max_input_width=(int(config.data.max_input_size[1])
                             if resize_policy == "canonical" else 0),
            outputs=",".join(getattr(self.model, "outputs", ())))
        # Models with a confidence output train with the completion loss.
        self.completion = "confidence" in getattr(self.model, "outputs", ())
        # data.dataset: bag: items carry photometric sources (training.adapt's loss).
        self.adapting = config.data.dataset == "bag"
        if self.adapting and self.pseudo_set is not None:
            raise ConfigError("data.dataset bag does not train on pseudo-labelled images: set "
                              "pseudo.enabled: false")
        if self.completion and self.pseudo_set is not None:
            raise ConfigError(f"model {config.model.name!r} (a completion model) does not "
                              "train on pseudo-labelled images: set pseudo.enabled: false")
        self.step = 0
        self.lr = config.optim.lr  # the scheduled lr of the last step (backbone: × factor)
        self.best_abs_rel = math.inf
        self.elapsed_s = 0.0
        self.last_checkpoint: Path | None = None
        self._last_saved_step = -1  # the step of the newest last.pt
        # This epoch's loss so far (this rank's sum and step count): saved in checkpoints, so
        # that an epoch's train_loss covers the whole epoch when a run resumes inside it.
        self.epoch_loss_sum = 0.0
        self.epoch_loss_steps = 0
        self.last_val: dict[str, float] = {}
        self.log = RunLog(self.run_dir, enabled=False)
        self._panel: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._pseudo_losses: list[float] = []  # per micro-batch, unweighted

    def _resize_policy(self) -> str:
        """The metadata's resize policy: the model's own (``native`` completion models), or
        ``canonical`` when the data is (``data.resize_policy``), else ``fixed``."""
        own = getattr(self.model, "resize_policy", "fixed")
        data = self.config.data
        if data.resize_policy != "canonical":
            return own
        if own != "fixed":
            raise ConfigError(f"model {self.config.model.name!r} runs at the camera's own "
                              f"resolution ({own}): data.resize_policy must be fixed")
        stride = self.model.stride
        if data.val_pad_multiple % stride or data.input_height % stride or (
                data.input_width % stride):
            raise ConfigError(f"data.input_height, input_width and val_pad_multiple must be "
                              f"multiples of the model's stride {stride}, got "
                              f"{data.input_height}, {data.input_width}, "
                              f"{data.val_pad_multiple}")
        return "canonical"

    def _load_initial_weights(self, path: str) -> None:
        """Start from another run's weights (``init_checkpoint``)."""
        new = [*self.config.init_new_parameters,
               *(f"{name}." for name in self.config.init_submodules)]
        step, fresh = load_initial_weights(self.model, path, new)
        LOG.info("weights from %s (step %s)%s", path, step,
                 f"; {fresh} new parameters initialised" if fresh else "")

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is validated, deployed and saved as ``state_dict``: the EMA when on."""
        return self.model if self.ema is None else self.ema.module

    # Checkpoints --------------------------------------------------------------------------

    def state(self, val_metrics: dict[str, float] | None = None) -> dict[str, Any]:
        """Everything needed to resume (and to deploy) as a weights-only dict.

        A collective: every rank calls it (the random states of all ranks are gathered).
        """
        self.dist.broadcast_buffers(self.model)
        if self.ema is not None:
            self.dist.broadcast_buffers(self.ema)
        payload = {
            "state_dict": self.eval_model.state_dict(),
            "metadata": self.metadata.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "best_abs_rel": self.best_abs_rel,
            "elapsed_s": self.elapsed_s,
            "val_metrics": dict(val_metrics or {}),
            "config": self.config.to_dict(),
            "rng_states": self.dist.all_gather(_rng_state(self.device)),
            "epoch_loss": self.dist.all_gather([self.epoch_loss_sum,
                                                float(self.epoch_loss_steps)]),
        }
        if self.ema is not None:
            payload["train_state_dict"] = self.model.state_dict()
            payload["ema_updates"] = int(self.ema.n_averaged)
        if self.scaler.is_enabled():
            payload["scaler"] = self.scaler.state_dict()
        return payload

    def save(self, names: str | Sequence[str],
             val_metrics: dict[str, float] | None = None) -> Path | None:
        """Write ``<run_dir>/<name>`` for each of ``names``, atomically, on rank 0 (one write,
        then links); returns the first path (None on the other ranks). A collective."""
        names = [names] if isinstance(names, str) else list(names)
        payload = self.state(val_metrics)
        if "last.pt" in names:
            self.last_checkpoint = self.run_dir / "last.pt"
            self._last_saved_step = self.step
        if not self.dist.is_main:
            return None
        first = save_checkpoint(payload, self.run_dir / names[0])
        for name in names[1:]:
            link_checkpoint(first, self.run_dir / name)
        prune_step_checkpoints(self.run_dir, self.config.keep_checkpoints)
        return first

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by ``save`` (every rank reads it)."""
        payload = load_checkpoint(path)
        lr_scales = [group["lr_scale"] for group in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(payload.get("train_state_dict", payload["state_dict"]))
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} does not fit this configuration: "
                                  f"{str(exc).splitlines()[0]}") from exc
        # The backbone factor is the configuration's, not the checkpoint's.
        for group, scale in zip(self.optimizer.param_groups, lr_scales, strict=True):
            group["lr_scale"] = scale
        if self.ema is not None:
            has_ema = "train_state_dict" in payload
            self.ema.module.load_state_dict(payload["state_dict"])
            self.ema.n_averaged.fill_(int(payload.get("ema_updates", 0)) if has_ema else 0)
        if self.scaler.is_enabled() and "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self.best_abs_rel = float(payload.get("best_abs_rel", math.inf))
        self.elapsed_s = float(payload.get("elapsed_s", 0.0))
        self._restore_rng(payload)
        self._restore_epoch_loss(payload)
        self.last_checkpoint = Path(path)
        LOG.info("resumed from %s at step %d", path, self.step)

    def _restore_epoch_loss(self, payload: dict[str, Any]) -> None:
        sums = payload.get("epoch_loss")
        if self.step % self.steps_per_epoch == 0 or not sums:
            # At an epoch boundary, or a checkpoint from before the sums were saved.
            self.epoch_loss_sum, self.epoch_loss_steps = 0.0, 0
        elif len(sums) == self.dist.world_size:
            self.epoch_loss_sum = float(sums[self.dist.rank][0])
            self.epoch_loss_steps = round(sums[self.dist.rank][1])
        else:  # another number of processes: each continues from the mean rank
            self.epoch_loss_sum = sum(float(s) for s, _ in sums) / len(sums)
            self.epoch_loss_steps = round(sum(float(n) for _, n in sums) / len(sums))

    def _restore_rng(self, payload: dict[str, Any]) -> None:
        states = payload.get("rng_states")
        if states is None and "rng_state" in payload:  # written before rng_states existed
            states = [{"cpu": payload["rng_state"]}]
        if states is not None and len(states) == self.dist.world_size:
            state = states[self.dist.rank]
            torch.set_rng_state(state["cpu"])
            if "cuda" in state and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda"], self.device)
        else:
            LOG.warning("the checkpoint's random state is for another number of processes: "
                        "the resumed run is not a continuation of the same random stream")
            torch.manual_seed(self.config.seed + self.dist.rank + 7919 * self.step)

    # Training -----------------------------------------------------------------------------

    def _loss(self, batch: Sequence[torch.Tensor], pseudo: PseudoBatch | None = None
              ) -> torch.Tensor:
        if self.adapting:
            return bag_batch_loss(self, batch)
        inputs = network_inputs(self.model, batch, self.device)
        depth = batch[1].to(self.device, non_blocking=True)
        labelled = len(depth)
        if pseudo is not None:
            # One forward over labelled and pseudo-labelled images: under DDP two forwards
            # before one backward would need find_unused_parameters and cost a second sync.
            pseudo = pseudo.to(self.device, non_blocking=True)
            extra = [pseudo.image]
            if len(inputs) > 1:  # fusion students see no LiDAR on unlabelled images
                extra.append(torch.zeros_like(pseudo.label))
            inputs = tuple(torch.cat([a, b]) for a, b in zip(inputs, extra, strict=True))
        if self.completion:
            return self._completion_loss(inputs, depth)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            pred = self.net(*inputs)
        pred = pred.float()  # the loss takes logarithms: in float32
        pseudo_loss = None
        if pseudo is not None:
            pred, pred_pseudo = pred[:labelled], pred[labelled:]
            pseudo_loss = pseudo_label_loss(
                pred_pseudo, pseudo.label, pseudo.mask, pseudo.kind, pseudo.region,
                self.config.loss.silog_lambda, self.config.pseudo.ssi_method,
                (self.model.min_depth_m, self.model.max_depth_m))
        # Ground truth beyond the model's range becomes its bound (far buildings should read
        # "far", not be ignored); 0 is "no data" and stays out of the loss unless the data
        # says it means "far" (rendered sky), which must not come out as a near obstacle.
        # Padding (canonical crops) is negative: no ground truth, not 'far'.
        if self.config.data.zero_depth_is_far:
            depth = torch.where(depth == 0, torch.full_like(depth, self.model.max_depth_m),
                                depth)
        valid = depth > 0
        target = depth.clamp(self.model.min_depth_m, self.model.max_depth_m)
        loss = self.loss_fn(pred, target, valid)
        if pseudo_loss is not None:
            self._pseudo_losses.append(pseudo_loss.item())
            loss = loss + self.config.pseudo.loss_weight * pseudo_loss
        return loss

    def _completion_loss(self, inputs: tuple[torch.Tensor, ...], depth: torch.Tensor
                         ) -> torch.Tensor:
        """``completion_loss`` of a model with a confidence output (its ``aux`` dict), plus
        the held-out-return term when ``loss.holdout_fraction`` is on."""
        image, sparse = inputs
        held = None
        if self.config.loss.holdout_fraction > 0 and self.config.loss.holdout_weight > 0:
            draw = torch.rand(sparse.shape, device=sparse.device)
            held = (sparse > 0) & (draw < self.config.loss.holdout_fraction)
            held_depth = sparse
            sparse = torch.where(held, torch.zeros_like(sparse), sparse)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            outputs = self.net(image, sparse, aux=True)
        outputs = {k: v.float() for k, v in outputs.items()}
        far = None
        if self.config.data.zero_depth_is_far:
            far = depth == 0  # padding (negative) is no ground truth, not far
            depth = torch.where(far, torch.full_like(depth, self.model.max_depth_m), depth)
        valid = depth > 0
        target = depth.clamp(self.model.min_depth_m, self.model.max_depth_m)
        loss = self.config.loss
        terms = completion_loss(outputs, target, valid, far, loss.far_weight, loss.l2_weight,
                                loss.log_weight, loss.initial_weight, loss.confidence_weight,
                                self.model.confidence_threshold)
        total = terms.total
        if loss.trust_weight > 0:
            measured = valid if far is None else valid & ~far
            total = total + loss.trust_weight * trust_loss(
                outputs["trust_logit"], sparse, target, measured, loss.trust_threshold)
        if held is None:
            return total
        held_target = held_depth.clamp(self.model.min_depth_m, self.model.max_depth_m)
        radius = int(getattr(self.model, "occlusion_radius_px", 0))
        if loss.holdout_skip_see_through and radius > 0:
            held = held & occlusion_filter(held_depth, radius, self.model.occlusion_margin)
        if loss.holdout_max_error > 0:
            # Only the held-out returns that are right (the ground truth says so).
            held = held & (confidence_target(held_target, target, loss.holdout_max_error) > 0)
        # The scan itself at the returns the model did not get (what kitti_dev scores).
        held_loss = weighted_depth_loss(outputs["depth"], held_target,
                                        held.to(outputs["depth"].dtype), loss.l2_weight,
                                        loss.log_weight)
        return total + loss.holdout_weight * held_loss

    def train_step(self, image: torch.Tensor, depth: torch.Tensor,
                   sparse_depth: torch.Tensor | None = None, *extra: torch.Tensor,
                   pseudo: PseudoBatch | None = None) -> float:
        """One optimiser step on a batch (``sparse_depth``: the LiDAR input of fusion models;
        ``extra``: the rest of a bag item, ``training.data.adapt``; ``pseudo``:
        pseudo-labelled images trained alongside), in ``accumulate_steps``
        micro-batches; returns the mean loss. Every rank calls it (gradients are averaged over
        the ranks)."""
        self.net.train()
        self.lr = self.config.optim.lr * lr_factor(self.step, self.total_steps,
                                                   self.config.optim)
        set_lr(self.optimizer, self.lr)
        # The warm-up counts optimiser steps, so a resumed run continues it where it stopped.
        self.loss_fn.calls.fill_(self.step)
        self.loss_fn.train()
        self.optimizer.zero_grad(set_to_none=True)
        batch = (image, depth) if sparse_depth is None else (image, depth, sparse_depth, *extra)
        micro = split_batch(batch, self.accumulate_steps)
        pseudo_micro = (pseudo.split(self.accumulate_steps) if pseudo is not None
                        else [None] * len(micro))
        losses = []
        for i, (micro_batch, micro_pseudo) in enumerate(zip(micro, pseudo_micro, strict=True)):
            # Gradients are averaged over the ranks once per step, in the last backward.
            no_sync = getattr(self.net, "no_sync", None)
            sync = no_sync is None or i == len(micro) - 1
            with contextlib.nullcontext() if sync else no_sync():
                loss = self._loss(micro_batch, micro_pseudo)
                value = loss.item()
                # All ranks stop together, or the others would wait for them forever.
                if self.dist.any(not math.isfinite(value)):
                    what = (f"loss is {value}" if not math.isfinite(value)
                            else "the loss of another process is not finite")
                    raise TrainingDivergedError(
                        f"{what} at step {self.step}; last good checkpoint: "
                        f"{self.last_checkpoint or 'none'}")
                self.scaler.scale(loss / len(micro)).backward()
            losses.append(value)
        if self.config.optim.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                           self.config.optim.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return float(np.mean(losses))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean per-image metrics on the validation frames at the training resolution (each
        rank takes every world_size-th frame; every rank gets the same result)."""
        self.dist.broadcast_buffers(self.model)
        if self.ema is not None:
            self.dist.broadcast_buffers(self.ema)
        model = self.eval_model.eval()
        shard = Subset(self.val_set, range(self.dist.rank, len(self.val_set),
                                           self.dist.world_size))
        # A generator of its own: validating must not draw from the training random stream.
        loader = DataLoader(shard, batch_size=self.config.batch_size, shuffle=False,
                            generator=torch.Generator())
        per_image = []
        for batch in loader:
            image, depth = batch[0], batch[1]
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                pred = model(*network_inputs(model, batch, self.device))
            if isinstance(pred, tuple | list):  # (depth, confidence)
                pred = pred[0]
            pred = pred.float().cpu()
            if not per_image:
                self._panel = (image[0], pred[0], depth[0])
            for p, g in zip(pred[:, 0].numpy(), depth[:, 0].numpy(), strict=True):
                per_image.append(depth_metrics(p, g, mask=g > 0,
                                               max_depth=self.model.max_depth_m))
        return mean_metrics([m for rank in self.dist.all_gather(per_image) for m in rank])

    def _after_step(self, epoch_done: bool, epoch: int) -> None:
        """Validate at the end of an epoch; checkpoint at epochs' ends and every
        ``checkpoint_every`` steps."""
        names = []
        final = self.step == self.total_steps
        every = self.config.checkpoint_every
        if every and (final or self.step % every == 0):
            names.append(step_checkpoint_name(self.step))
        # Validation runs every val_every epochs (minutes on a CPU at full resolution) and
        # after the last step; every epoch's end still saves last.pt and logs the train loss.
        validate_now = final or (epoch_done and (epoch + 1) % self.config.val_every == 0)
        if not validate_now:
            if epoch_done:
                train_loss = self.dist.mean(self.epoch_loss_sum / max(self.epoch_loss_steps, 1))
                self.epoch_loss_sum, self.epoch_loss_steps = 0.0, 0
                self.log.record({"step": self.step, "epoch": epoch,
                                 "train_loss": round(train_loss, 5),
                                 "elapsed_s": round(self.elapsed_s, 1)})
            if names or epoch_done:
                self.save([*names, "last.pt"])
            return
        val = self.last_val = self.validate()
        train_loss = self.dist.mean(self.epoch_loss_sum / max(self.epoch_loss_steps, 1))
        if epoch_done:  # what the checkpoint below resumes into is a new epoch
            self.epoch_loss_sum, self.epoch_loss_steps = 0.0, 0
        self.log.record({"step": self.step, "epoch": epoch, "train_loss": round(train_loss, 5),
                         "elapsed_s": round(self.elapsed_s, 1),
                         "val": {k: round(v, 5) for k, v in val.items()}})
        self.log.scalars({f"val/{k}": v for k, v in val.items()}, self.step)
        if self._panel is not None:
            self.log.panel("val/rgb_prediction_groundtruth", *self._panel, self.step)
        improved = val["abs_rel"] < self.best_abs_rel
        if improved:
            self.best_abs_rel = val["abs_rel"]
        self.save(["last.pt", *names, *(["best.pt"] if improved else [])], val)
        if self.dist.is_main:
            tqdm.write(f"epoch {epoch} step {self.step}: train loss {train_loss:.4f}, val "
                       f"AbsRel {val['abs_rel']:.4f} RMSE {val['rmse']:.3f} m d<1.25 "
                       f"{val['a1']:.4f}" + (" (best)" if improved else ""))

    def _train_loader(self) -> tuple[DataLoader, EpochSampler]:
        sampler = EpochSampler(len(self.train_set), self.config.seed, rank=self.dist.rank,
                               num_replicas=self.dist.world_size)
        workers = self.config.data.num_workers
        init = seed_worker if self.stop is None else _seed_worker_ignoring_stop_signals
        loader = DataLoader(self.train_set, batch_size=self.step_batch, sampler=sampler,
                            drop_last=True, num_workers=workers,
                            worker_init_fn=init if workers else None,
                            generator=torch.Generator(),
                            pin_memory=self.device.type == "cuda")
        return loader, sampler

    def _stop_if_asked(self) -> None:
        """At a step boundary: when any rank got a stop signal, every rank saves ``last.pt``
        (unless this step's is already written) and raises ``TrainingStopped``. A collective:
        the ranks decide together, or one would wait for the others forever."""
        signum = int(self.dist.max(self.stop.signum if self.stop is not None else 0))
        if not signum:
            return
        if self.stop is not None:  # a signal arriving from now on repeats the request
            self.stop.signum = signum
        if self._last_saved_step != self.step:
            self.save("last.pt")
        self.dist.barrier()
        raise TrainingStopped(signum, self.step, self.run_dir / "last.pt")

    def fit(self) -> dict[str, float]:
        """Train to ``total_steps``; returns the last validation metrics. Every rank calls it."""
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / "config.yaml")
            remove_temporaries(self.run_dir)
        if self.step >= self.total_steps:
            LOG.info("nothing to do: step %d >= %d", self.step, self.total_steps)
            return {}
        loader, sampler = self._train_loader()
        pseudo_stream = None
        if self.pseudo_set is not None:
            # Batch k of the stream depends on (seed, rank, k) alone: resuming continues it.
            pseudo_stream = iter(PseudoBatchStream(
                self.pseudo_set, self.step_batch, self.config.pseudo, self.config.seed,
                self.dist.rank, self.dist.world_size, start_step=self.step,
                num_workers=self.config.data.num_workers,
                pin_memory=self.device.type == "cuda"))
        self.log = RunLog(self.run_dir, self.dist.is_main, self.config.tensorboard,
                          start_step=self.step)
        if self.stop is not None:
            self.stop.arm()
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0,
                   disable=not self.dist.is_main)
        losses: list[float] = []  # since this process started, for the progress bar
        t_start = time.monotonic() - self.elapsed_s
        try:
            while self.step < self.total_steps:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                sampler.set_epoch(epoch, start=offset * self.step_batch)
                loader.generator.manual_seed(
                    _loader_seed(self.config.seed, self.dist.rank, epoch, offset))
                bar.set_description(f"epoch {epoch}")
                for batch, pseudo in mix_batches(loader, pseudo_stream):
                    losses.append(self.train_step(*batch, pseudo=pseudo))
                    self.epoch_loss_sum += losses[-1]
                    self.epoch_loss_steps += 1
                    self.elapsed_s = time.monotonic() - t_start
                    bar.update(1)
                    if self.step % self.config.log_every == 0:
                        loss = float(np.mean(losses[-self.config.log_every:]))
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.lr:.2e}", refresh=False)
                        self.log.scalars({"train/loss": loss, "train/lr": self.lr}, self.step)
                        if self._pseudo_losses:
                            self.log.scalars({"train/pseudo_loss": float(np.mean(
                                self._pseudo_losses[-self.config.log_every:]))}, self.step)
                    self._after_step(self.step % self.steps_per_epoch == 0, epoch)
                    if self.step >= self.total_steps:
                        break
                    self._stop_if_asked()
        finally:
            bar.close()
            self.log.close()
        # Every rank returns once the final checkpoint is complete.
        self.dist.barrier()
        return self.last_val


def load_submodule_weights(model: torch.nn.Module, name: str, path: str) -> None:
    """Load a checkpoint of one submodule (``init_submodules``) into ``model.<name>``,
    strictly; a missing submodule, a missing or extra key or another shape is a
    ``ConfigError``."""
    module = getattr(model, name, None)
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"init_submodules: the model has no submodule {name!r}")
    try:
        module.load_state_dict(load_checkpoint(path)["state_dict"])
    except (CheckpointError, RuntimeError, KeyError) as exc:
        raise ConfigError(f"init_submodules.{name} {path}: {_load_error(exc)}") from exc


def _load_error(exc: BaseException) -> str:
    """A failed load in one line: torch's first line only says that loading failed; the
    next names the first tensor."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[1]}"


def load_initial_weights(model: torch.nn.Module, path: str,
                         new_parameters: Sequence[str] = ()) -> tuple[Any, int]:
    """Load ``init_checkpoint`` into ``model``; returns (its step, how many of the model's
    entries it lacked). Only names starting with one of ``new_parameters`` may be missing;
    anything else missing, an unexpected name or another shape is a one-line ``ConfigError``.
    """
    new = tuple(new_parameters)
    try:
        payload = load_checkpoint(path)
        # Names are checked here (one line naming them); shapes by torch, strict or not.
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    except (CheckpointError, RuntimeError, KeyError) as exc:
        raise ConfigError(f"init_checkpoint {path}: {_load_error(exc)}") from exc
    stray = [k for k in missing if not k.startswith(new)] + list(unexpected)
    if stray:
        raise ConfigError(f"init_checkpoint {path}: missing or unexpected beyond "
                          f"init_new_parameters {list(new)}: {', '.join(stray[:4])}"
                          f"{' …' if len(stray) > 4 else ''}")
    return payload.get("step", "?"), len(missing)
