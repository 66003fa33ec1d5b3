"""Depth heads: the last convolution and the output activation."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

OUTPUT_ACTIVATIONS = ("metric", "relative")


def activate_depth(logits: torch.Tensor, output: str, min_depth_m: float,
                   max_depth_m: float) -> torch.Tensor:
    """Logits → ``metric`` depth (sigmoid · max_depth_m, at least min_depth_m) or ``relative``
    inverse depth (ReLU)."""
    if output == "relative":
        return F.relu(logits)
    return (torch.sigmoid(logits) * max_depth_m).clamp(min=min_depth_m)


class DepthActivation(nn.Module):
    """Bilinear upsampling of one-channel logits to the input size, then the activation.

    For decoders that predict logits themselves (``CoarseToFineDecoder``).

    Args:
        output: ``metric`` — depth in metres, ``sigmoid · max_depth_m`` clamped to at least
            ``min_depth_m``; ``relative`` — non-negative affine-invariant inverse depth (ReLU).
        min_depth_m: smallest metric depth.
        max_depth_m: largest metric depth.
    """

    def __init__(self, output: str = "metric", min_depth_m: float = 0.1,
                 max_depth_m: float = 80.0) -> None:
        super().__init__()
        if output not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output must be one of {OUTPUT_ACTIVATIONS}, got {output!r}")
        if not 0 < min_depth_m < max_depth_m:
            raise ValueError(f"need 0 < min_depth_m < max_depth_m, got {min_depth_m}, "
                             f"{max_depth_m}")
        self.output = output
        self.min_depth_m = float(min_depth_m)
        self.max_depth_m = float(max_depth_m)

    def forward(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """N×1×h×w logits → N×1×H×W output at ``size`` (H, W)."""
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return activate_depth(logits, self.output, self.min_depth_m, self.max_depth_m)


class DepthHead(nn.Module):
    """3×3 convolution to one channel, bilinear upsampling to the input size, activation.

    The logits are upsampled (not the depth), so the activation bounds hold at every pixel.

    Args:
        in_channels: channels of the decoder's output.
        output: ``metric`` — depth in metres, ``sigmoid · max_depth_m`` clamped to at least
            ``min_depth_m``; ``relative`` — non-negative affine-invariant inverse depth (ReLU).
        min_depth_m: smallest metric depth.
        max_depth_m: largest metric depth.
    """

    def __init__(self, in_channels: int, output: str = "metric", min_depth_m: float = 0.1,
                 max_depth_m: float = 80.0) -> None:
        super().__init__()
        self.activation = DepthActivation(output, min_depth_m, max_depth_m)
        self.output = output
        self.min_depth_m = float(min_depth_m)
        self.max_depth_m = float(max_depth_m)
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Decoded features → N×1×H×W output at ``size`` (H, W)."""
        return self.activation(self.conv(x), size)
