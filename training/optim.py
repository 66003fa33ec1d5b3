"""Optimiser and learning-rate schedule (a pure function of the step, so resuming needs no
scheduler state)."""

from __future__ import annotations

import math

import torch
from torch import nn

from training.config import OptimConfig


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and normalisation parameters (the usual practice)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)


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
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
