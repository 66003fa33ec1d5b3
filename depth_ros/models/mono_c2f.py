"""Monocular models with the coarse-to-fine ASPP decoder, one per encoder family:

- ``mono_resnet_c2f``: ``ResNetEncoder`` (``small``/``resnet18``/``resnet34`` configs,
  optionally pre-activation);
- ``mono_mobilenet_c2f``: ``MobileNetEncoder`` (inverted residuals);
- ``mono_hybrid_c2f``: ``HybridEncoder`` (DepthFormer-like CNN + transformer).

All map RGB N×3×H×W in [0, 1] to N×1×H×W metric depth or relative inverse depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from depth_ros.models.decoders import CoarseToFineDecoder
from depth_ros.models.encoders import MobileNetEncoder, ResNetEncoder
from depth_ros.models.heads import DepthActivation
from depth_ros.models.hybrid import HybridEncoder
from depth_ros.models.layers import ImageNetNormalize
from depth_ros.models.registry import register_model


class MonoCoarseToFine(nn.Module):
    """Normalise, encode (any encoder with the multi-scale contract), decode coarse to fine,
    activate. H and W must be multiples of ``stride`` (32).

    Args:
        encoder: returns five feature maps at strides 2…32, finest first, and states their
            ``out_channels``.
        decoder_channels: ``CoarseToFineDecoder`` widths at strides 2…16, finest first.
        output: ``metric`` (sigmoid × max_depth_m) or ``relative`` (ReLU inverse depth).
        min_depth_m: smallest metric depth.
        max_depth_m: largest metric depth.
        aspp_rates: dilation rates of the decoder's ASPP.
    """

    kind = "mono"
    stride = 32

    def __init__(self, encoder: nn.Module, decoder_channels: Sequence[int] = (16, 32, 48, 64),
                 output: str = "metric", min_depth_m: float = 0.1, max_depth_m: float = 80.0,
                 aspp_rates: Sequence[int] = (2, 4, 6)) -> None:
        super().__init__()
        self.output = output
        self.min_depth_m = float(min_depth_m)
        self.max_depth_m = float(max_depth_m)
        self.normalize = ImageNetNormalize()
        self.encoder = encoder
        self.decoder = CoarseToFineDecoder(encoder.out_channels, tuple(decoder_channels),
                                           aspp_rates=tuple(aspp_rates))
        self.head = DepthActivation(output, min_depth_m, max_depth_m)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """N×3×H×W RGB in [0, 1] → N×1×H×W depth."""
        _, _, height, width = image.shape
        return self.head(self.decoder(self.encoder(self.normalize(image))), (height, width))


@register_model("mono_resnet_c2f")
def mono_resnet_c2f(encoder_config: str = "small", width_multiplier: float = 1.0,
                    preact: bool = True, decoder_channels: Sequence[int] = (16, 32, 48, 64),
                    output: str = "metric", min_depth_m: float = 0.1,
                    max_depth_m: float = 80.0) -> MonoCoarseToFine:
    """ResNet encoder + coarse-to-fine ASPP decoder.

    Args:
        encoder_config: ``small`` (real time on CPU), ``resnet18`` or ``resnet34`` (widths and
            depths of those networks; far over the CPU budget at KITTI size).
        width_multiplier: scales the encoder widths.
        preact: pre-activation residual blocks.
        decoder_channels: decoder widths at strides 2…16.
        output: ``metric`` or ``relative``.
        min_depth_m: smallest metric depth.
        max_depth_m: largest metric depth.
    """
    encoder = ResNetEncoder.from_config(encoder_config, preact=preact,
                                        width_multiplier=width_multiplier)
    return MonoCoarseToFine(encoder, decoder_channels, output, min_depth_m, max_depth_m)


@register_model("mono_mobilenet_c2f")
def mono_mobilenet_c2f(widths: Sequence[int] = (16, 24, 40, 80, 160),
                       depths: Sequence[int] = (2, 3, 3, 2), expansion: float = 4.0,
                       decoder_channels: Sequence[int] = (16, 24, 40, 64),
                       output: str = "metric", min_depth_m: float = 0.1,
                       max_depth_m: float = 80.0) -> MonoCoarseToFine:
    """MobileNetV2-like encoder + coarse-to-fine ASPP decoder.

    Args:
        widths: encoder widths at strides 2…32.
        depths: inverted residual blocks per stage at strides 4…32.
        expansion: inverted residual expansion ratio.
        decoder_channels: decoder widths at strides 2…16.
        output: ``metric`` or ``relative``.
        min_depth_m: smallest metric depth.
        max_depth_m: largest metric depth.
    """
    encoder = MobileNetEncoder(3, tuple(widths), tuple(depths), expansion)
    return MonoCoarseToFine(encoder, decoder_channels, output, min_depth_m, max_depth_m)


@register_model("mono_hybrid_c2f")
def mono_hybrid_c2f(widths: Sequence[int] = (24, 32, 48, 96, 144),
                    depths: Sequence[int] = (1, 1, 1, 1), dim: int = 96, num_blocks: int = 2,
                    num_heads: int = 4, fused_attn: bool = True,
                    decoder_channels: Sequence[int] = (16, 32, 48, 64),
                    output: str = "metric", min_depth_m: float = 0.1,
                    max_depth_m: float = 80.0) -> MonoCoarseToFine:
    """DepthFormer-like hybrid encoder + coarse-to-fine ASPP decoder.

    Args:
        widths: convolution-branch widths at strides 2…32.
        depths: residual blocks per convolution stage at strides 4…32.
        dim: transformer token channels (16×16 patches).
        num_blocks: transformer blocks.
        num_heads: attention heads.
        fused_attn: fused SDPA (True) or the plain matmul-softmax path (False).
        decoder_channels: decoder widths at strides 2…16.
        output: ``metric`` or ``relative``.
        min_depth_m: smallest metric depth.
        max_depth_m: largest metric depth.
    """
    encoder = HybridEncoder(3, tuple(widths), tuple(depths), dim, num_blocks, num_heads,
                            fused_attn=fused_attn)
    return MonoCoarseToFine(encoder, decoder_channels, output, min_depth_m, max_depth_m)
