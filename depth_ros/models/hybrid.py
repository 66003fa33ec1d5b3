"""A hybrid CNN-transformer encoder in the spirit of DepthFormer (Li et al., 2022).

Two branches read the image: a convolution branch (``ResNetEncoder``) for local detail at
strides 2…32, and a transformer branch over 16×16 patch tokens for long-range context. They
meet in an interaction module at every scale from stride 8 on: the transformer map, resized
to the scale, is added to the convolution features through a learned per-pixel gate (a
deformable-free stand-in for DepthFormer's HAHI module), and at the coarsest scale the
convolution tokens also query the transformer tokens with cross-attention. The output keeps
the encoder contract (a list of feature maps, finest first, ``out_channels``, ``strides``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

from depth_ros.models.attention import MultiHeadAttention, TransformerBlock, to_map, to_tokens
from depth_ros.models.encoders import ResNetEncoder
from depth_ros.models.layers import ConvBNReLU


class PatchEmbed(nn.Module):
    """Non-overlapping patches → tokens, with a depthwise-convolution positional encoding.

    Args:
        in_channels: image channels.
        dim: token channels.
        patch_size: patch side (the branch's stride).
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int = 16) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        # Conditional positional encoding (Chu et al., 2021): any size, no interpolation.
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×H×W → N×dim×H/p×W/p."""
        x = self.proj(x)
        return x + self.pos(x)


class GatedFusion(nn.Module):
    """Add a transformer map to convolution features through a learned sigmoid gate.

    ``out = conv + gate · t`` with ``t`` the transformer map projected to the convolution width
    (and resized to its size) and ``gate = σ(1×1 conv([conv, t]))`` per pixel and channel.

    Args:
        conv_channels: channels of the convolution features (and the output).
        transformer_channels: channels of the transformer map.
    """

    def __init__(self, conv_channels: int, transformer_channels: int) -> None:
        super().__init__()
        self.project = ConvBNReLU(transformer_channels, conv_channels, kernel_size=1)
        self.gate = nn.Conv2d(2 * conv_channels, conv_channels, kernel_size=1)

    def forward(self, conv: torch.Tensor, transformer: torch.Tensor) -> torch.Tensor:
        """Fused map at the convolution features' size."""
        # Unconditionally (an identity at equal sizes): no shape test in the exported graph.
        t = F.interpolate(self.project(transformer), size=conv.shape[-2:], mode="bilinear",
                          align_corners=False)
        return conv + torch.sigmoid(self.gate(torch.cat([conv, t], dim=1))) * t


class HybridEncoder(nn.Module):
    """DepthFormer-like encoder: a convolution branch and a transformer branch that interact.

    H and W must be multiples of 32 (the convolution branch) and of ``patch_size``.

    Args:
        in_channels: input image channels.
        widths: convolution-branch channels of the five maps (strides 2, 4, 8, 16, 32).
        depths: residual blocks per convolution stage at strides 4…32.
        dim: transformer token channels.
        num_blocks: transformer blocks.
        num_heads: attention heads.
        patch_size: transformer patch side (its tokens' stride).
        mlp_ratio: transformer MLP width as a multiple of ``dim``.
        fusion_levels: how many of the coarsest maps get gated fusion with the transformer.
        fused_attn: fused SDPA (True) or the plain matmul-softmax path (False).
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (24, 32, 48, 96, 144),
                 depths: Sequence[int] = (1, 1, 1, 1), dim: int = 96, num_blocks: int = 2,
                 num_heads: int = 4, patch_size: int = 16, mlp_ratio: float = 2.0,
                 fusion_levels: int = 3, fused_attn: bool = True) -> None:
        super().__init__()
        if not 1 <= fusion_levels <= len(widths):
            raise ValueError(f"fusion_levels must be in 1..{len(widths)}, got {fusion_levels}")
        self.conv_branch = ResNetEncoder(in_channels, widths, depths)
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, num_heads, mlp_ratio, fused_attn)
                                      for _ in range(num_blocks)))
        self.norm = nn.LayerNorm(dim)
        self.first_fused = len(widths) - fusion_levels
        self.fusions = nn.ModuleList(GatedFusion(c, dim) for c in widths[self.first_fused:])
        # Heterogeneous interaction at the coarsest scale: convolution tokens query
        # transformer tokens (global context for the few, cheap stride-32 queries).
        self.norm_query = nn.LayerNorm(widths[-1])
        self.cross_attn = MultiHeadAttention(widths[-1], num_heads, kv_dim=dim,
                                             fused_attn=fused_attn)
        self.out_channels = list(self.conv_branch.out_channels)
        self.strides = list(self.conv_branch.strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """N×C×H×W → feature maps at strides 2, 4, 8, 16, 32 (finest first)."""
        features = self.conv_branch(x)
        t = self.patch_embed(x)
        _, _, t_height, t_width = t.shape
        tokens = self.norm(self.blocks(to_tokens(t)))
        t = to_map(tokens, t_height, t_width)
        for offset, fusion in enumerate(self.fusions):
            level = self.first_fused + offset
            features[level] = fusion(features[level], t)
        coarse = features[-1]
        _, _, height, width = coarse.shape
        queries = to_tokens(coarse)
        queries = queries + self.cross_attn(self.norm_query(queries), tokens)
        features[-1] = to_map(queries, height, width)
        return features
