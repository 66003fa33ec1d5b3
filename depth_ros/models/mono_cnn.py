"""``mono_cnn``: a small real-time monocular metric depth network (ResNet-style encoder,
U-Net decoder with skip connections, bilinear upsampling)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from depth_ros.models.decoders import UNetDecoder
from depth_ros.models.encoders import ResNetEncoder
from depth_ros.models.heads import DepthHead
from depth_ros.models.layers import ImageNetNormalize
from depth_ros.models.registry import register_model

# Encoder widths at strides 2…32 and decoder widths at strides 2…16, per base channel.
_ENCODER_WIDTH_MULTIPLIERS = (1.0, 1.5, 2.0, 4.0, 6.0)
_DECODER_WIDTH_MULTIPLIERS = (0.5, 1.0, 2.0, 3.0)


@register_model("mono_cnn")
class MonoCNN(nn.Module):
    """Monocular depth: RGB N×3×H×W in [0, 1] → depth N×1×H×W (metres, or inverse depth).

    H and W should be multiples of ``stride`` (32).

    Args:
        base_channels: width of the first feature map; the others scale with it.
        encoder_depths: residual blocks in the encoder stages at strides 4, 8, 16, 32.
        output: ``metric`` (sigmoid × max_depth_m) or ``relative`` (ReLU inverse depth).
        min_depth_m: smallest metric depth.
        max_depth_m: largest metric depth.
        separable_levels: finest decoder steps that use depthwise-separable convolutions.
    """

    kind = "mono"
    stride = 32

    def __init__(self, base_channels: int = 32, encoder_depths: Sequence[int] = (1, 1, 2, 1),
                 output: str = "metric", min_depth_m: float = 0.1, max_depth_m: float = 80.0,
                 separable_levels: int = 2) -> None:
        super().__init__()
        if base_channels < 4:
            raise ValueError(f"base_channels must be at least 4, got {base_channels}")
        self.output = output
        self.min_depth_m = float(min_depth_m)
        self.max_depth_m = float(max_depth_m)
        self.normalize = ImageNetNormalize()
        self.encoder = ResNetEncoder(
            widths=[max(4, round(base_channels * m)) for m in _ENCODER_WIDTH_MULTIPLIERS],
            depths=tuple(encoder_depths))
        self.decoder = UNetDecoder(
            self.encoder.out_channels,
            [max(4, round(base_channels * m)) for m in _DECODER_WIDTH_MULTIPLIERS],
            separable_levels=separable_levels)
        self.head = DepthHead(self.decoder.out_channels, output, min_depth_m, max_depth_m)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """N×3×H×W RGB in [0, 1] → N×1×H×W depth."""
        _, _, height, width = image.shape
        features = self.encoder(self.normalize(image))
        return self.head(self.decoder(features), (height, width))
