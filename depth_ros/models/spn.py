"""Spatial propagation at full resolution that keeps (or learns to overrule) the LiDAR returns.

The CSPN / NLSPN family (Cheng et al. 2018, Park et al. 2020): each iteration replaces every
pixel's depth by a weighted average of itself and its 8 neighbours (3×3, optionally dilated),
with per-pixel weights predicted from the image, so depth flows along surfaces and stops at
edges. Here the 9 weights are a softmax of 9 logits (positive and summing to one, so the
iteration is a convex combination and cannot blow up), and after every iteration the valid
returns are put back with a learned per-pixel trust ``t``: ``d ← t·lidar + (1 − t)·d`` where
there is a return. A trust near 1 keeps a return fixed; where the image says a return is the
background seen past a near object's edge, a low trust lets the neighbours overrule it.

Neighbours are taken by padding (replicate) and one convolution with fixed one-hot kernels,
which ONNX and TensorRT run natively.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

# The 3×3 neighbourhood, centre first (its logit is channel 0 of the affinities).
OFFSETS = ((0, 0), (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
NUM_AFFINITIES = len(OFFSETS)


def _shift_kernels() -> torch.Tensor:
    kernels = torch.zeros(NUM_AFFINITIES, 1, 3, 3)
    for k, (dy, dx) in enumerate(OFFSETS):
        kernels[k, 0, 1 + dy, 1 + dx] = 1.0
    return kernels


def neighbours(depth: torch.Tensor, kernels: torch.Tensor | None, dilation: int
               ) -> torch.Tensor:
    """The 9 shifted copies (``OFFSETS`` × ``dilation``) of N×1×H×W ``depth`` as N×9×H×W,
    edges replicated. With ``kernels`` (``_shift_kernels()``): one convolution with one-hot
    kernels, a single fast operator in onnxruntime and TensorRT where 9 slices cost 9 passes
    over the frame; without: 9 slices, which PyTorch differentiates ~10× faster on a CPU than
    the convolution. Both give the same numbers."""
    padded = F.pad(depth, (dilation, dilation, dilation, dilation), mode="replicate")
    if kernels is not None:
        return F.conv2d(padded, kernels, dilation=dilation)
    height, width = depth.shape[-2:]
    return torch.cat([padded[:, :, dilation + dy * dilation:dilation + dy * dilation + height,
                             dilation + dx * dilation:dilation + dx * dilation + width]
                      for dy, dx in OFFSETS], dim=1)


def affinity_weights(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the 9 affinity channels, written out: onnxruntime's Softmax on a non-last
    axis transposes the whole tensor (measured 30× slower). The clamp stands in for the max
    subtraction (exp stays finite)."""
    weights = torch.exp(logits.clamp(-20.0, 20.0))
    return weights / weights.sum(dim=1, keepdim=True)


def propagate(depth: torch.Tensor, weights: torch.Tensor, kernels: torch.Tensor | None,
              dilation: int = 1) -> torch.Tensor:
    """One propagation step: Σ_k weights[:, k] · neighbour_k(depth) (weights N×9×H×W)."""
    return (weights * neighbours(depth, kernels, dilation)).sum(dim=1, keepdim=True)


def propagate_split(depth: torch.Tensor, weights: Sequence[torch.Tensor],
                    dilation: int = 1) -> torch.Tensor:
    """``propagate`` with the weights given as 9 N×1×H×W maps (``OFFSETS`` order): nine
    one-channel slices, products and additions. The same sum up to float rounding (a different
    summation order), and in onnxruntime on a CPU about twice as fast as the one-hot
    convolution, whose 9-channel output onnxruntime converts out of its blocked layout
    (measured at 1248×384, 2 threads)."""
    padded = F.pad(depth, (dilation, dilation, dilation, dilation), mode="replicate")
    height, width = depth.shape[-2:]
    total = None
    for weight, (dy, dx) in zip(weights, OFFSETS, strict=True):
        top, left = dilation + dy * dilation, dilation + dx * dilation
        term = weight * padded[:, :, top:top + height, left:left + width]
        total = term if total is None else total + term
    return total


class SpatialPropagation(nn.Module):
    """``iterations`` propagation steps with re-injection of the valid returns.

    Args:
        dilations: the dilation of each iteration (their number is the iteration count).
        split: at inference, run each step as ``propagate_split`` (nine one-channel maps)
            rather than the one-hot convolution: faster in onnxruntime on a CPU, equal up to
            float rounding. False keeps the bundled model's graph exactly.
    """

    def __init__(self, dilations: Sequence[int] = (1, 2, 1, 2), split: bool = False) -> None:
        super().__init__()
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"dilations must be positive integers, got {tuple(dilations)}")
        self.dilations = tuple(int(d) for d in dilations)
        self.split = bool(split)
        self.register_buffer("kernels", _shift_kernels(), persistent=False)

    def forward(self, depth: torch.Tensor,
                affinity_logits: torch.Tensor | Sequence[torch.Tensor],
                sparse_depth: torch.Tensor, trust: torch.Tensor,
                normalized: bool = False) -> torch.Tensor:
        """Refine ``depth`` (N×1×H×W metres) with ``affinity_logits`` (N×9×H×W), putting back
        ``sparse_depth`` (0 = no return) with ``trust`` (N×1×H×W in [0, 1]) after every
        iteration. ``normalized``: ``affinity_logits`` already are ``affinity_weights``
        (non-negative, summing to one over the 9 channels), as one N×9×H×W tensor or as 9
        N×1×H×W maps in ``OFFSETS`` order."""
        if not normalized:
            weights = affinity_weights(affinity_logits)
        elif isinstance(affinity_logits, torch.Tensor):
            weights = affinity_logits
        else:
            maps = list(affinity_logits)
            if len(maps) != NUM_AFFINITIES:
                raise ValueError(f"expected {NUM_AFFINITIES} weight maps, got {len(maps)}")
            weights = maps if self.split and not self.training else torch.cat(maps, dim=1)
        valid = sparse_depth > 0
        anchor = trust * sparse_depth
        keep = 1.0 - trust
        # Training (PyTorch autograd): slices; inference and export: the convolution, or the
        # split form where asked for.
        split = self.split and not self.training
        if split:
            maps = weights if isinstance(weights, list) else weights.split(1, dim=1)
        kernels = None if self.training else self.kernels.to(depth.dtype)
        for dilation in self.dilations:
            if split:
                depth = propagate_split(depth, maps, dilation)
            else:
                depth = propagate(depth, weights, kernels, dilation)
            depth = torch.where(valid, anchor + keep * depth, depth)
        return depth
