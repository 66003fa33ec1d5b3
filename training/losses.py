"""Depth losses. Every loss takes an explicit valid mask: ground truth is sparse or partial
(LiDAR, sky), and a mask is never inferred from the target's values."""

from __future__ import annotations

import torch
from torch import nn


def silog_loss(pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor,
               lambd: float = 0.85, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014, as in BTS/AdaBins/Depth-Anything-V2).

    ``sqrt(mean(d²) − λ · mean(d)²)`` with ``d = ln target − ln pred`` over the pixels where
    ``valid_mask`` is true, pooled over the batch. λ = 1 is fully scale-invariant; λ < 1 keeps
    part of the absolute scale in the loss, which a metric model needs.

    Args:
        pred: predicted depth, positive, any shape.
        target: ground-truth depth, same shape; values outside the mask are ignored.
        valid_mask: bool, same shape.
        lambd: weight of the scale-invariance term, in [0, 1].
        eps: floor under the square root, so a perfect prediction has a finite gradient.

    Returns:
        A scalar; zero (still attached to ``pred``) when no pixel is valid.
    """
    if pred.shape != target.shape or pred.shape != valid_mask.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target "
                         f"{tuple(target.shape)}, mask {tuple(valid_mask.shape)}")
    if not valid_mask.any():
        return pred.sum() * 0.0
    diff = torch.log(target[valid_mask]) - torch.log(pred[valid_mask])
    value = (diff**2).mean() - lambd * diff.mean() ** 2
    return torch.sqrt(value.clamp(min=eps))


class SiLogLoss(nn.Module):
    """Module form of ``silog_loss``: ``forward(pred, target, valid_mask)``.

    Args:
        lambd: weight of the scale-invariance term, in [0, 1].
    """

    def __init__(self, lambd: float = 0.85) -> None:
        super().__init__()
        if not 0.0 <= lambd <= 1.0:
            raise ValueError(f"lambd must be in [0, 1], got {lambd}")
        self.lambd = lambd

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                valid_mask: torch.Tensor) -> torch.Tensor:
        """The loss over the valid pixels."""
        return silog_loss(pred, target, valid_mask, self.lambd)
