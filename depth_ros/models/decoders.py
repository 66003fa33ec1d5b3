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


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3) for the deepest, coarsest feature map.

    Parallel branches see the map at several receptive fields: a 1×1 convolution, one
    depthwise-separable 3×3 convolution per dilation rate, and the global average (image
    pooling, broadcast back); a 1×1 convolution merges them. The pooling branch has no
    BatchNorm, so training works with batch 1.

    Args:
        in_channels: channels of the input map.
        out_channels: channels of every branch and of the result.
        rates: dilation rates of the 3×3 branches (at stride 32 a KITTI frame is 11×38).
    """

    def __init__(self, in_channels: int, out_channels: int,
                 rates: Sequence[int] = (2, 4, 6)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, out_channels, kernel_size=1)])
        for rate in rates:
            self.branches.append(nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, padding=rate, dilation=rate,
                          groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                ConvBNReLU(in_channels, out_channels, kernel_size=1)))
        self.pool = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))
        self.project = ConvBNReLU(out_channels * (len(rates) + 2), out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×C_in×h×w → N×C_out×h×w."""
        outs = [branch(x) for branch in self.branches]
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True))
        outs.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, dim=1))


class CoarseToFineDecoder(nn.Module):
    """Coarse-to-fine depth decoder: ASPP on the deepest map, then difference features and a
    residual prediction at every finer level.

    How "difference features" is read here (both senses, as in Laplacian-pyramid networks):

    - *residual predictions*: the coarsest level predicts a depth logit map; each finer level
      upsamples the coarser logits and adds a residual it predicts, so it only has to explain
      what the coarser scale could not (edges, thin structures);
    - *difference features*: each level also sees ``skip − up``, its own (projected) encoder
      features minus the upsampled coarser decoder features — the band-pass detail that the
      coarser level lacks — beside ``skip``, ``up`` and the upsampled logits.

    The decoder returns logits; the output activation (ReLU for relative, sigmoid ×
    ``max_depth_m`` for metric) is the head's, an argument of the model (``DepthActivation``).

    Args:
        encoder_channels: channels of the encoder's feature maps, finest first.
        decoder_channels: widths of the finer levels, finest first (one fewer than the
            encoder's maps: the coarsest is handled by the ASPP).
        aspp_channels: width of the ASPP output (default ``decoder_channels[-1]``).
        aspp_rates: dilation rates of the ASPP.
        separable_levels: how many of the finest levels fuse with separable convolutions.
    """

    def __init__(self, encoder_channels: Sequence[int],
                 decoder_channels: Sequence[int] = (16, 32, 48, 64),
                 aspp_channels: int | None = None, aspp_rates: Sequence[int] = (2, 4, 6),
                 separable_levels: int = 2) -> None:
        super().__init__()
        if len(decoder_channels) != len(encoder_channels) - 1:
            raise ValueError(f"need {len(encoder_channels) - 1} decoder widths for "
                             f"{len(encoder_channels)} encoder maps, got {decoder_channels}")
        aspp_channels = aspp_channels or decoder_channels[-1]
        self.aspp = ASPP(encoder_channels[-1], aspp_channels, aspp_rates)
        self.coarse_logits = nn.Conv2d(aspp_channels, 1, 3, padding=1)
        coarser = [*decoder_channels[1:], aspp_channels]
        self.skips = nn.ModuleList(ConvBNReLU(c_enc, c, kernel_size=1)
                                   for c_enc, c in zip(encoder_channels[:-1], decoder_channels,
                                                       strict=True))
        self.ups = nn.ModuleList(ConvBNReLU(c_in, c, kernel_size=1)
                                 for c_in, c in zip(coarser, decoder_channels, strict=True))
        self.fuses = nn.ModuleList(
            SeparableConvBNReLU(3 * c + 1, c) if level < separable_levels
            else ConvBNReLU(3 * c + 1, c)
            for level, c in enumerate(decoder_channels))
        self.residuals = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in decoder_channels)
        self.out_channels = 1

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Encoder features (finest first) → N×1 logits at the finest feature's size."""
        return self.forward_pyramid(features)[0]

    def forward_pyramid(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits at every level, finest first (for deep supervision)."""
        x = self.aspp(features[-1])
        logits = self.coarse_logits(x)
        pyramid = [logits]
        for level in reversed(range(len(self.skips))):
            skip = self.skips[level](features[level])
            size = skip.shape[-2:]
            # Narrow before upsampling, where it is cheap; size= also fits odd sizes.
            up = F.interpolate(self.ups[level](x), size=size, mode="bilinear",
                               align_corners=False)
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            x = self.fuses[level](torch.cat([up, skip, skip - up, logits], dim=1))
            logits = logits + self.residuals[level](x)
            pyramid.append(logits)
        return pyramid[::-1]
