"""Encoders. Contract: ``encoder(x)`` returns a list of feature maps, finest first, with
``encoder.out_channels`` and ``encoder.strides`` describing them, so decoders and fusion
blocks never depend on which backbone produced them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from depth_ros.models.layers import (
    BasicBlock,
    ConvBNReLU,
    InvertedResidual,
    PreActBasicBlock,
)

# (widths at strides 2…32, residual blocks per stage at strides 4…32). The ResNet-18/34-like
# ones keep torchvision's widths and block counts; a strided 3×3 convolution replaces the
# max-pool and the strided first block, so they are "-like", not weight-compatible.
RESNET_CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "small": ((32, 48, 64, 128, 192), (1, 1, 2, 1)),
    "resnet18": ((64, 64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet34": ((64, 64, 128, 256, 512), (3, 4, 6, 3)),
}


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class ResNetEncoder(nn.Module):
    """A small ResNet-style encoder: a stride-2 stem, then one stride-2 stage per scale.

    Each stage is a strided 3×3 convolution followed by ``depths[i]`` basic blocks. With
    ``preact=True`` the blocks are pre-activation blocks and the convolutions carry no
    normalisation of their own; each scale's residual stream then passes one BatchNorm + ReLU,
    whose output is both the returned feature map and the next stage's input (the
    pre-activation of its strided convolution).

    Args:
        in_channels: input image channels.
        widths: channels of the five feature maps (strides 2, 4, 8, 16, 32).
        depths: residual blocks per stage after the stem (four entries).
        preact: pre-activation residual blocks (He et al., "Identity mappings", 2016).
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 48, 64, 128, 192),
                 depths: Sequence[int] = (1, 1, 2, 1), preact: bool = False) -> None:
        super().__init__()
        if len(widths) != len(depths) + 1:
            raise ValueError(f"need one more width than depths, got {widths} and {depths}")
        self.preact = preact
        pairs = list(zip(widths[:-1], widths[1:], depths, strict=True))
        if preact:
            self.stem = nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False)
            self.stages = nn.ModuleList(
                nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False),
                              *(PreActBasicBlock(c_out) for _ in range(depth)))
                for c_in, c_out, depth in pairs)
            self.norms = nn.ModuleList(_bn_relu(c) for c in widths)
        else:
            # Unchanged layout (and state_dict keys) for the post-activation network.
            self.stem = ConvBNReLU(in_channels, widths[0], stride=2)
            self.stages = nn.ModuleList(
                nn.Sequential(ConvBNReLU(c_in, c_out, stride=2),
                              *(BasicBlock(c_out) for _ in range(depth)))
                for c_in, c_out, depth in pairs)
        self.out_channels = list(widths)
        self.strides = [2 ** (i + 1) for i in range(len(widths))]

    @classmethod
    def from_config(cls, name: str, in_channels: int = 3, preact: bool = False,
                    width_multiplier: float = 1.0) -> ResNetEncoder:
        """Build one of ``RESNET_CONFIGS`` (``small``, ``resnet18``, ``resnet34``).

        Args:
            name: configuration name.
            in_channels: input image channels.
            preact: pre-activation residual blocks.
            width_multiplier: scales every width (at least 4 channels).
        """
        if name not in RESNET_CONFIGS:
            raise ValueError(f"unknown ResNet config {name!r}; known: "
                             f"{', '.join(RESNET_CONFIGS)}")
        widths, depths = RESNET_CONFIGS[name]
        return cls(in_channels, [max(4, round(w * width_multiplier)) for w in widths], depths,
                   preact=preact)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """N×C×H×W → feature maps at strides 2, 4, 8, 16, 32 (finest first)."""
        if not self.preact:
            features = [self.stem(x)]
            for stage in self.stages:
                features.append(stage(features[-1]))
            return features
        features = [self.norms[0](self.stem(x))]
        for stage, norm in zip(self.stages, self.norms[1:], strict=True):
            features.append(norm(stage(features[-1])))
        return features


class MobileNetEncoder(nn.Module):
    """MobileNetV2-like encoder: inverted residuals with depthwise 3×3 convolutions.

    A stride-2 3×3 stem with one unexpanded inverted residual, then one stage per scale whose
    first block has stride 2. ReLU rather than ReLU6 (same cost, simpler for TensorRT INT8).

    Args:
        in_channels: input image channels.
        widths: channels of the five feature maps (strides 2, 4, 8, 16, 32).
        depths: inverted residual blocks per stage at strides 4…32 (four entries, each ≥ 1).
        expansion: hidden width of each block as a multiple of its input width.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 24, 40, 80, 160),
                 depths: Sequence[int] = (2, 3, 3, 2), expansion: float = 4.0) -> None:
        super().__init__()
        if len(widths) != len(depths) + 1 or min(depths) < 1:
            raise ValueError(f"need one more width than depths and depths ≥ 1, got {widths} "
                             f"and {depths}")
        self.stem = nn.Sequential(ConvBNReLU(in_channels, widths[0], stride=2),
                                  InvertedResidual(widths[0], widths[0], expansion=1.0))
        self.stages = nn.ModuleList(
            nn.Sequential(InvertedResidual(c_in, c_out, 2, expansion),
                          *(InvertedResidual(c_out, c_out, 1, expansion)
                            for _ in range(depth - 1)))
            for c_in, c_out, depth in zip(widths[:-1], widths[1:], depths, strict=True))
        self.out_channels = list(widths)
        self.strides = [2 ** (i + 1) for i in range(len(widths))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """N×C×H×W → feature maps at strides 2, 4, 8, 16, 32 (finest first)."""
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features
