"""Decoders: turn an encoder's multi-scale feature list into one fine feature map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

from depth_ros.models.layers import ConvBNReLU, SeparableConvBNReLU


class UpFuse(nn.Module):
    """Upsample a coarse map to its skip connection's size and fuse them (U-Net step).

    The coarse map is narrowed with a 1×1 convolution *before* upsampling, where it is cheap.

    Args:
        in_channels: channels of the coarse map.
        skip_channels: channels of the skip connection.
        out_channels: channels of the result.
        separable: fuse with a depthwise-separable convolution (for the fine, costly scales).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 separable: bool = False) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(in_channels, out_channels, kernel_size=1)
        fused = out_channels + skip_channels
        self.fuse = (SeparableConvBNReLU(fused, out_channels) if separable
                     else ConvBNReLU(fused, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Coarse x and finer skip → fused map at the skip's size."""
        # size= rather than scale_factor=: also right when H or W is not a multiple of 32.
        x = F.interpolate(self.reduce(x), size=skip.shape[-2:], mode="bilinear",
                          align_corners=False)
        return self.fuse(torch.cat([x, skip], dim=1))


class UNetDecoder(nn.Module):
    """U-Net/FPN-style decoder from the coarsest feature map up to the finest.

    Args:
        encoder_channels: channels of the encoder's feature maps, finest first.
        decoder_channels: output channels of each fusion step, finest first (one fewer than
            the encoder's maps: the coarsest map is the starting point).
        separable_levels: how many of the finest fusion steps use separable convolutions.
    """

    def __init__(self, encoder_channels: Sequence[int],
                 decoder_channels: Sequence[int] = (16, 32, 64, 96),
                 separable_levels: int = 2) -> None:
        super().__init__()
        if len(decoder_channels) != len(encoder_channels) - 1:
            raise ValueError(f"need {len(encoder_channels) - 1} decoder widths for "
                             f"{len(encoder_channels)} encoder maps, got {decoder_channels}")
        ins = [*decoder_channels[1:], encoder_channels[-1]]
        self.steps = nn.ModuleList(
            UpFuse(c_in, c_skip, c_out, separable=level < separable_levels)
            for level, (c_in, c_skip, c_out) in enumerate(zip(
                ins, encoder_channels[:-1], decoder_channels, strict=True))
        )
        self.out_channels = decoder_channels[0]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Encoder features (finest first) → decoded map at the finest feature's size."""
        x = features[-1]
        for step, skip in zip(reversed(self.steps), reversed(features[:-1]), strict=True):
            x = step(x, skip)
        return x
