"""DPT head (Ranftl et al., "Vision Transformers for Dense Prediction"): reassemble ViT
feature maps at four scales, fuse them coarse to fine, predict one channel.

Parameter names follow Depth Anything V2's ``DPTHead`` (``projects``, ``resize_layers``,
``scratch.layerN_rn``, ``scratch.refinenetN``, ``scratch.output_conv1/2``) so its released
weights load unchanged. The output activation is an argument (ReLU for relative inverse
depth, ``ScaledSigmoid(max_depth)`` for metric depth) instead of a second copy of the head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn


class ScaledSigmoid(nn.Module):
    """sigmoid(x) · max_depth: metric depth in (0, max_depth).

    Args:
        max_depth: the largest depth, metres.
    """

    def __init__(self, max_depth: float) -> None:
        super().__init__()
        if not max_depth > 0:
            raise ValueError(f"max_depth must be positive, got {max_depth}")
        self.max_depth = float(max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits → depth."""
        return torch.sigmoid(x) * self.max_depth


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: x + conv2(relu(conv1(relu(x)))).

    Args:
        features: channels.
        use_bn: BatchNorm after each convolution (Depth Anything V2: off).
    """

    def __init__(self, features: int, use_bn: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(features) if use_bn else nn.Identity()
        self.bn2 = nn.BatchNorm2d(features) if use_bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×H×W → N×C×H×W."""
        out = self.bn1(self.conv1(F.relu(x)))
        return x + self.bn2(self.conv2(F.relu(out)))


class FeatureFusionBlock(nn.Module):
    """RefineNet-style fusion: add a refined skip, refine, upsample, 1×1 convolution.

    Args:
        features: channels of the path and of the skip.
        use_bn: BatchNorm in the residual units.
    """

    def __init__(self, features: int, use_bn: bool = False) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        # The upstream names, so that released weights load.
        self.resConfUnit1 = ResidualConvUnit(features, use_bn)
        self.resConfUnit2 = ResidualConvUnit(features, use_bn)

    def forward(self, path: torch.Tensor, skip: torch.Tensor | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
        """Fuse ``skip`` (same size as ``path``) into ``path``; upsample to ``size`` (H, W),
        or by 2 when it is None (bilinear, align_corners=True)."""
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        if size is None:
            path = F.interpolate(path, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            path = F.interpolate(path, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(path)


class DPTHead(nn.Module):
    """Four same-size ViT feature maps → one-channel map at ``output_size``.

    Reassemble: a 1×1 projection per map, then ×4 and ×2 transposed convolutions, identity,
    and a stride-2 convolution give strides p/4, p/2, p and 2p for patch size p. Each is
    mapped to ``features`` channels, fused coarse to fine (``FeatureFusionBlock``), halved
    in width, resized to ``output_size`` and passed through two convolutions and the output
    activation.

    Args:
        in_channels: channels of the encoder's feature maps (the ViT width).
        features: width of the fusion path.
        out_channels: widths of the four reassembled maps, finest first.
        use_bn: BatchNorm in the fusion blocks.
        output_activation: the last layer (default ``nn.ReLU()``: relative inverse depth;
            ``ScaledSigmoid(max_depth)`` for metric depth).
        head_features: width of the last hidden convolution.
    """

    def __init__(self, in_channels: int, features: int = 256,
                 out_channels: Sequence[int] = (256, 512, 1024, 1024), use_bn: bool = False,
                 output_activation: nn.Module | None = None, head_features: int = 32) -> None:
        super().__init__()
        if len(out_channels) != 4:
            raise ValueError(f"out_channels needs four widths, got {list(out_channels)}")
        c1, c2, c3, c4 = (int(c) for c in out_channels)
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, kernel_size=1)
                                      for c in (c1, c2, c3, c4))
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c1, c1, kernel_size=4, stride=4),
            nn.ConvTranspose2d(c2, c2, kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(c4, c4, kernel_size=3, stride=2, padding=1),
        ])
        # "scratch" is the upstream container name (DPT's), kept for the parameter names.
        self.scratch = nn.Module()
        for level, channels in enumerate((c1, c2, c3, c4), start=1):
            setattr(self.scratch, f"layer{level}_rn",
                    nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False))
        for level in range(1, 5):
            setattr(self.scratch, f"refinenet{level}", FeatureFusionBlock(features, use_bn))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3,
                                              padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, head_features, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(head_features, 1, kernel_size=1),
            output_activation if output_activation is not None else nn.ReLU(),
        )

    def forward(self, features: Sequence[torch.Tensor], output_size: Sequence[int]
                ) -> torch.Tensor:
        """Four N×C×h×w maps (block outputs, shallow first) → N×1×H×W at ``output_size``."""
        if len(features) != 4:
            raise ValueError(f"DPTHead needs four feature maps, got {len(features)}")
        s = self.scratch
        layers = [resize(project(x)) for x, project, resize
                  in zip(features, self.projects, self.resize_layers, strict=True)]
        l1, l2, l3, l4 = (conv(x) for conv, x in zip(
            (s.layer1_rn, s.layer2_rn, s.layer3_rn, s.layer4_rn), layers, strict=True))
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        out = F.interpolate(s.output_conv1(path), size=tuple(output_size), mode="bilinear",
                            align_corners=True)
        return s.output_conv2(out)
