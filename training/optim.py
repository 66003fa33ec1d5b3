"""Optimiser and learning-rate schedule (a pure function of the step, so resuming needs no
scheduler state)."""

from __future__ import annotations

import math

import torch
from torch import nn

from training.config import ConfigError, OptimConfig

# Parameter-name prefixes of the pretrained backbone: depth_ros encoders and DPT models.
BACKBONE_PREFIXES = ("encoder.", "pretrained.")


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and normalisation parameters (the usual practice);
    the backbone (``BACKBONE_PREFIXES``) at ``backbone_lr_factor`` × the lr when that is not 1.

    Each group carries ``lr_scale``, its lr as a fraction of the scheduled one (``set_lr``).
    """
    split = config.backbone_lr_factor != 1.0
    # (backbone, no weight decay) -> parameters; the backbone groups exist only when split,
    # so the optimiser state of runs without a backbone factor keeps its two groups.
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {
        key: [] for key in [(False, False), (False, True)]
        + ([(True, False), (True, True)] if split else [])}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[(split and name.startswith(BACKBONE_PREFIXES), param.ndim <= 1)].append(param)
    if split and not groups[(True, False)] + groups[(True, True)]:
        raise ConfigError(f"optim.backbone_lr_factor={config.backbone_lr_factor} but the model "
                          f"has no parameters under {' or '.join(BACKBONE_PREFIXES)}")
    return torch.optim.AdamW(
        [{"params": params, "weight_decay": 0.0 if no_decay else config.weight_decay,
          "lr_scale": config.backbone_lr_factor if backbone else 1.0}
         for (backbone, no_decay), params in groups.items()], lr=config.lr)


def lr_factor(step: int, total_steps: int, config: OptimConfig) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up, then cosine or poly decay to
    ``min_lr_ratio``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(total_steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    if config.schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = (1.0 - progress) ** config.poly_power
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * shape


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group (times its ``lr_scale``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
