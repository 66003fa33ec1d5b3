"""An encoder built for sparse LiDAR depth: normalised convolutions with confidence.

A plain convolution over a sparse depth map mixes measured depths with the zeros that mean
"no return", so its output depends on the LiDAR density. A normalised convolution
(Knutsson & Westin, 1993; Eldesokey et al., "Confidence propagation through CNNs", 2019)
averages only what was measured — ``conv(x·c, w) / conv(c, w)`` with non-negative ``w`` — and
propagates a confidence ``conv(c, w) / Σw`` that says how much measurement stood behind each
output. The densified depths and their confidences feed an ordinary convolutional pyramid.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

from depth_ros.models.layers import ConvBNReLU


class NormalizedConv2d(nn.Module):
    """Normalised convolution: ``(conv(x·c, w) / conv(c, w) + b, conv(c, w) / Σw)``.

    The weights are kept non-negative with a softplus, so the output is a confidence-weighted
    average and the propagated confidence stays in [0, 1]. The denominator is clamped at
    ``eps`` (1e-4, a normal float16 number): where nothing was measured the output is the
    bias and the confidence 0, never NaN.

    Args:
        in_channels: input channels (each with its own confidence channel).
        out_channels: output channels.
        kernel_size: odd kernel size; padding keeps the size at stride 1.
        stride: convolution stride.
        eps: smallest denominator.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, eps: float = 1e-4) -> None:
        super().__init__()
        self.stride = stride
        self.padding = kernel_size // 2
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # softplus(raw) around 0.3…1.3: a smooth, roughly uniform average to start from.
        nn.init.uniform_(self.weight, -1.0, 1.0)

    def forward(self, x: torch.Tensor,
                confidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x and its confidence (both N×C_in×H×W) → (output, confidence), N×C_out×H'×W'."""
        weight = F.softplus(self.weight)
        numerator = F.conv2d(x * confidence, weight, None, self.stride, self.padding)
        denominator = F.conv2d(confidence, weight, None, self.stride, self.padding)
        out = numerator / denominator.clamp(min=self.eps) + self.bias[None, :, None, None]
        out_confidence = denominator / weight.sum(dim=(1, 2, 3))[None, :, None, None]
        return out, out_confidence


class SparseDepthEncoder(nn.Module):
    """Sparse depth N×1×H×W (metres, 0 = no return) → feature maps at strides 2…32.

    A 5×5 stride-2 normalised convolution densifies the scan into ``nconv_channels``
    interpolations (nothing runs at full resolution: a KITTI scan covers ~5 % of the pixels);
    stride-2 normalised convolutions carry them and their confidences down the pyramid. At each
    scale the features are ``ConvBNReLU([strided(previous features), depths, confidences])``,
    an ordinary CNN that sees what was measured and how sure it is.

    Args:
        widths: channels of the five feature maps (strides 2, 4, 8, 16, 32).
        nconv_channels: channels of the normalised-convolution pyramid.
        depth_scale_m: depths are divided by this (features of order 1).
    """

    def __init__(self, widths: Sequence[int] = (16, 16, 24, 32, 48), nconv_channels: int = 8,
                 depth_scale_m: float = 80.0) -> None:
        super().__init__()
        if depth_scale_m <= 0:
            raise ValueError(f"depth_scale_m must be positive, got {depth_scale_m}")
        self.depth_scale_m = float(depth_scale_m)
        k = nconv_channels
        self.densify = NormalizedConv2d(1, k, kernel_size=5, stride=2)
        self.downsample = nn.ModuleList(NormalizedConv2d(k, k, 3, stride=2)
                                        for _ in widths[1:])
        self.strided = nn.ModuleList(ConvBNReLU(c_in, c_out, stride=2)
                                     for c_in, c_out in pairwise(widths))
        self.fuse = nn.ModuleList(
            ConvBNReLU(2 * k + (0 if level == 0 else c), c, kernel_size=1 if level else 3)
            for level, c in enumerate(widths))
        self.out_channels = list(widths)
        self.strides = [2 ** (i + 1) for i in range(len(widths))]

    def forward(self, sparse_depth: torch.Tensor) -> list[torch.Tensor]:
        """N×1×H×W metres (0 = no return) → feature maps at strides 2…32 (finest first)."""
        features, _ = self.forward_with_confidence(sparse_depth)
        return features

    def forward_with_confidence(
            self, sparse_depth: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Feature maps and the mean propagated confidence (N×1×h×w) at each scale."""
        confidence = (sparse_depth > 0).to(sparse_depth.dtype)
        x, confidence = self.densify(sparse_depth / self.depth_scale_m, confidence)
        features: list[torch.Tensor] = []
        confidences: list[torch.Tensor] = []
        for level, fuse in enumerate(self.fuse):
            if level:
                x, confidence = self.downsample[level - 1](x, confidence)
                inputs = [x, confidence, self.strided[level - 1](features[-1])]
            else:
                inputs = [x, confidence]
            features.append(fuse(torch.cat(inputs, dim=1)))
            confidences.append(confidence.mean(dim=1, keepdim=True))
        return features, confidences
