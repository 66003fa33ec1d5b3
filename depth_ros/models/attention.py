"""Attention layers: masked multi-head attention, a transformer block, and cross-modal
attention in which image tokens query LiDAR tokens.

Every layer has a ``fused_attn`` switch (as timm's ``Attention``): ``True`` uses
``torch.nn.functional.scaled_dot_product_attention``; ``False`` the plain matmul-softmax path.
Both export through the dynamo ONNX exporter with dynamic token counts; ``set_fused_attn``
flips a whole model.

Masking: ``key_valid`` (True = the key carries information) never lets a masked key carry
weight. Masked scores get a large negative *finite* bias (finite in float16 too, so a
TensorRT FP16 engine cannot turn a fully masked row into NaN), and a query whose keys are all
masked gets exactly zero output instead of an average of masked values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

# Finite in float16 (max 65504); exp(-1e4 + s) underflows to exactly 0 for any sane score s.
MASK_BIAS = -1.0e4


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     key_valid: torch.Tensor | None = None, fused: bool = True) -> torch.Tensor:
    """Scaled dot-product attention over heads with an optional key-padding mask.

    Args:
        q: queries, N×heads×Nq×D.
        k: keys, N×heads×Nk×D.
        v: values, N×heads×Nk×Dv.
        key_valid: N×Nk booleans, True where a key may be attended to; None: all keys.
        fused: use ``F.scaled_dot_product_attention``; False: plain matmul-softmax.

    Returns:
        N×heads×Nq×Dv; rows whose keys are all masked are zero.
    """
    scale = q.shape[-1] ** -0.5
    if key_valid is None:
        if fused:
            return F.scaled_dot_product_attention(q, k, v)
        return ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    valid = key_valid[:, None, None, :]  # N×1×1×Nk, broadcast over heads and queries
    bias = torch.zeros_like(valid, dtype=q.dtype).masked_fill(~valid, MASK_BIAS)
    if fused:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        # A fully masked row attended uniformly to masked keys: zero it (and its gradient).
        return out * valid.any(dim=-1, keepdim=True).to(out.dtype)
    weights = ((q * scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1)
    # Exact zeros at masked keys: their values, whatever they are, add nothing.
    return (weights * valid.to(weights.dtype)) @ v


class MultiHeadAttention(nn.Module):
    """Multi-head attention, self- or cross-, with a key-padding mask.

    Args:
        dim: query (and output) channels; a multiple of ``num_heads``.
        num_heads: attention heads.
        kv_dim: channels of the key/value tokens (default ``dim``: self-attention).
        qkv_bias: biases in the query, key and value projections.
        fused_attn: fused SDPA (True) or the plain matmul-softmax path (False).
    """

    def __init__(self, dim: int, num_heads: int = 4, kv_dim: int | None = None,
                 qkv_bias: bool = True, fused_attn: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.fused_attn = fused_attn
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Queries x (N×Nq×C) attend to ``context`` (N×Nk×Ckv; default x) → N×Nq×C.

        Args:
            x: query tokens.
            context: key/value tokens; None for self-attention.
            key_valid: N×Nk booleans, True where a context token may be attended to.
        """
        B, Nq, C = x.shape  # noqa: N806 - shapes by name, as dinov2/timm
        context = x if context is None else context
        Nk = context.shape[1]  # noqa: N806
        q = self.q(x).reshape(B, Nq, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).reshape(B, Nk, 2, self.num_heads, self.head_dim).permute(
            2, 0, 3, 1, 4).unbind(0)
        out = masked_attention(q, k, v, key_valid, fused=self.fused_attn)
        return self.proj(out.transpose(1, 2).reshape(B, Nq, C))


class Mlp(nn.Sequential):
    """Transformer feed-forward: Linear, GELU, Linear.

    Args:
        dim: input and output channels.
        hidden_dim: hidden channels.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``.

    Args:
        dim: token channels.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        fused_attn: fused SDPA (True) or the plain matmul-softmax path (False).
    """

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 2.0,
                 fused_attn: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, fused_attn=fused_attn)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, round(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×N_tokens×C → N×N_tokens×C."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """N×C×h×w map → N×(h·w)×C tokens (row-major)."""
    return x.flatten(2).transpose(1, 2)


def to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """N×(h·w)×C tokens → N×C×h×w map (inverse of ``to_tokens``), contiguous NCHW."""
    B, _, C = tokens.shape  # noqa: N806
    # Without the copy the map is a channels-last view, and the exporter specialises the
    # batch size of the convolutions that read it (their backend depends on the layout).
    return tokens.transpose(1, 2).reshape(B, C, height, width).contiguous()


class CrossModalAttention(nn.Module):
    """Image tokens query LiDAR tokens at one scale (a pre-norm transformer decoder layer).

    Both maps get a conditional positional encoding (a depthwise 3×3 convolution, which works
    at any size and exports as a plain convolution), so attention can prefer nearby LiDAR.
    LiDAR features at masked positions are zeroed before that convolution and masked out of
    the attention, so an empty patch influences nothing; a query with no valid LiDAR token
    gets zero attention output, i.e. the layer reduces to its MLP (a mono network).

    Args:
        dim: image feature channels.
        lidar_dim: LiDAR feature channels.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        fused_attn: fused SDPA (True) or the plain matmul-softmax path (False).
    """

    def __init__(self, dim: int, lidar_dim: int, num_heads: int = 4, mlp_ratio: float = 2.0,
                 fused_attn: bool = True) -> None:
        super().__init__()
        self.image_pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.lidar_pos = nn.Conv2d(lidar_dim, lidar_dim, 3, padding=1, groups=lidar_dim)
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(lidar_dim)
        self.attn = MultiHeadAttention(dim, num_heads, kv_dim=lidar_dim, fused_attn=fused_attn)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, round(dim * mlp_ratio))

    def forward(self, image: torch.Tensor, lidar: torch.Tensor,
                lidar_valid: torch.Tensor) -> torch.Tensor:
        """Image features N×C×h×w attend to LiDAR features N×Cl×h'×w' → N×C×h×w.

        Args:
            image: image feature map (queries).
            lidar: LiDAR feature map (keys and values).
            lidar_valid: N×1×h'×w' booleans, True where the LiDAR patch has returns.
        """
        _, _, height, width = image.shape
        lidar = lidar * lidar_valid.to(lidar.dtype)
        x = to_tokens(image + self.image_pos(image))
        context = to_tokens(lidar + self.lidar_pos(lidar))
        x = x + self.attn(self.norm_query(x), self.norm_context(context),
                          lidar_valid.flatten(1))
        x = x + self.mlp(self.norm_mlp(x))
        return to_map(x, height, width)


def set_fused_attn(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch every attention layer in ``model`` to fused SDPA or the plain path; returns it."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = enabled
    return model
