"""Small convolutional building blocks shared by encoders and decoders."""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetNormalize(nn.Module):
    """RGB in [0, 1] → ImageNet-normalised, inside the graph so every runtime gets it."""

    def __init__(self) -> None:
        super().__init__()
        # Buffers, not parameters: exported as constants and never trained.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """N×3×H×W in [0, 1] → normalised N×3×H×W."""
        return (image - self.mean) * self.inv_std


class ConvBNReLU(nn.Sequential):
    """k×k convolution (no bias: BatchNorm follows) + BatchNorm + ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size; padding keeps the size at stride 1.
        stride: convolution stride.
        groups: convolution groups (``in_channels`` for a depthwise convolution).
        relu: append a ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3×3 + pointwise 1×1 (MobileNet's block): ~8× fewer MACs than a full 3×3.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the depthwise convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            ConvBNReLU(in_channels, in_channels, 3, stride, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1),
        )


class BasicBlock(nn.Module):
    """ResNet's basic residual block (two 3×3 convolutions), stride 1, constant width.

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(channels, channels)
        self.conv2 = ConvBNReLU(channels, channels, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of x."""
        return self.relu(x + self.conv2(self.conv1(x)))


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016): ``x + conv(relu(bn(conv(relu(bn(x))))))``.

    The identity path carries no normalisation or activation, so the residual stream of a
    deep stack stays a plain sum; whoever reads the stream normalises it first.

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of x."""
        y = self.conv1(torch.relu(self.norm1(x)))
        return x + self.conv2(torch.relu(self.norm2(y)))


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual: 1×1 expand, depthwise 3×3, linear 1×1 projection.

    The residual connection is used when the block keeps stride and width.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the depthwise convolution (1 or 2).
        expansion: hidden width as a multiple of ``in_channels`` (1: no expansion layer).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 expansion: float = 4.0) -> None:
        super().__init__()
        hidden = max(1, round(in_channels * expansion))
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers.append(ConvBNReLU(in_channels, hidden, kernel_size=1))
        layers += [ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
                   ConvBNReLU(hidden, out_channels, kernel_size=1, relu=False)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×in×H×W → N×out×H/stride×W/stride."""
        y = self.block(x)
        return x + y if self.use_residual else y
