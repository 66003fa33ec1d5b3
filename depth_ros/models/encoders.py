"""Encoders. Contract: ``encoder(x)`` returns a list of feature maps, finest first, with
``encoder.out_channels`` and ``encoder.strides`` describing them, so decoders and fusion
blocks never depend on which backbone produced them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from depth_ros.models.layers import BasicBlock, ConvBNReLU


class ResNetEncoder(nn.Module):
    """A small ResNet-style encoder: a stride-2 stem, then one stride-2 stage per scale.

    Each stage is a strided 3×3 convolution followed by ``depths[i]`` basic blocks.

    Args:
        in_channels: input image channels.
        widths: channels of the five feature maps (strides 2, 4, 8, 16, 32).
        depths: residual blocks per stage after the stem (four entries).
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 48, 64, 128, 192),
                 depths: Sequence[int] = (1, 1, 2, 1)) -> None:
        super().__init__()
        if len(widths) != len(depths) + 1:
            raise ValueError(f"need one more width than depths, got {widths} and {depths}")
        self.stem = ConvBNReLU(in_channels, widths[0], stride=2)
        self.stages = nn.ModuleList(
            nn.Sequential(ConvBNReLU(c_in, c_out, stride=2), *(BasicBlock(c_out)
                                                               for _ in range(depth)))
            for c_in, c_out, depth in zip(widths[:-1], widths[1:], depths, strict=True)
        )
        self.out_channels = list(widths)
        self.strides = [2 ** (i + 1) for i in range(len(widths))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """N×C×H×W → feature maps at strides 2, 4, 8, 16, 32 (finest first)."""
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features
