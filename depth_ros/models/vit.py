"""DINOv2-style Vision Transformer (ViT-S/B/L, patch 14) with ``get_intermediate_layers``.

Parameter names follow facebookresearch/dinov2 (``patch_embed.proj``, ``blocks.N.attn.qkv``,
``blocks.N.ls1.gamma``, ``norm``, ...), so the released DINOv2 and Depth Anything V2 weights
load without renaming. The position embeddings are resized with DINOv2's exact formula (see
``interpolate_pos_encoding``), written with tensor operations so that an exported graph keeps
it for every input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

# Bicubic convolution constant of torch's (and OpenCV's) bicubic interpolation.
_CUBIC_A = -0.75


@dataclass(frozen=True)
class ViTSize:
    """Width, depth and heads of one ViT variant."""

    embed_dim: int
    depth: int
    num_heads: int


VIT_SIZES = {
    "vits": ViTSize(embed_dim=384, depth=12, num_heads=6),
    "vitb": ViTSize(embed_dim=768, depth=12, num_heads=12),
    "vitl": ViTSize(embed_dim=1024, depth=24, num_heads=16),
}


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size × patch_size patches → tokens (N × patches × dim).

    Args:
        patch_size: patch height and width, pixels.
        in_channels: image channels.
        embed_dim: token width.
    """

    def __init__(self, patch_size: int = 14, in_channels: int = 3, embed_dim: int = 384) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """N×C×H×W (H, W multiples of the patch size) → N×(H/p·W/p)×dim, row-major."""
        _, _, height, width = image.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"input {height}x{width} is not a multiple of the patch size "
                             f"{self.patch_size}")
        return self.proj(image).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection.

    Args:
        dim: token width.
        num_heads: attention heads (``dim`` must divide by it).
        fused_attn: use ``F.scaled_dot_product_attention`` (faster); False spells out
            softmax(q kᵀ / √d) v, which equals it to float rounding.
    """

    def __init__(self, dim: int, num_heads: int = 8, fused_attn: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×T×dim → N×T×dim."""
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads,
                                      dim // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Two-layer GELU feed-forward network.

    Args:
        dim: token width.
        hidden_dim: hidden width (DINOv2: 4 × dim).
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×T×dim → N×T×dim."""
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (CaiT's LayerScale).

    Args:
        dim: channels.
        init_value: initial scale.
    """

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x · gamma (broadcast over the last axis)."""
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))).

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP over ``dim``.
        fused_attn: see ``Attention``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 fused_attn: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, fused_attn=fused_attn)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×T×dim → N×T×dim."""
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def _cubic_weights(t: torch.Tensor) -> list[torch.Tensor]:
    """Weights of the taps at offsets -1, 0, 1, 2 for fractional positions t ∈ [0, 1)."""
    a = _CUBIC_A

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| ≤ 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def bicubic_matrix(out_size: int, in_size: int, inv_scale: torch.Tensor) -> torch.Tensor:
    """out_size × in_size matrix of 1-D bicubic resampling (``F.interpolate`` with
    ``mode="bicubic"``, ``align_corners=False``, border pixels replicated).

    Output sample i reads the input at (i + 0.5) · inv_scale − 0.5. ``inv_scale`` is a 0-d
    tensor, so exported graphs compute it from the input size instead of baking it in.
    """
    dst = torch.arange(out_size, dtype=torch.float32, device=inv_scale.device)
    src = (dst + 0.5) * inv_scale - 0.5
    base = torch.floor(src)
    columns = torch.arange(in_size, device=inv_scale.device)
    matrix = torch.zeros((), dtype=torch.float32, device=inv_scale.device)
    for offset, weight in zip((-1, 0, 1, 2), _cubic_weights(src - base), strict=True):
        tap = (base.long() + offset).clamp(0, in_size - 1)
        matrix = matrix + weight[:, None] * (tap[:, None] == columns[None, :])
    return matrix


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT: patch embedding, class token, learned position embeddings, blocks, norm.

    Input height and width must be multiples of ``patch_size``; the position embeddings,
    learned on an ``img_size`` square, are resized to other grids on the fly.

    Args:
        embed_dim: token width.
        depth: number of blocks.
        num_heads: attention heads per block.
        patch_size: patch size, pixels.
        img_size: side of the square the position embeddings were learned at (518 = 37²
            patches of 14 for DINOv2 and Depth Anything V2).
        mlp_ratio: MLP hidden width over ``embed_dim``.
        interpolate_offset: added to the target grid size when computing the resize scale
            of the position embeddings (DINOv2: 0.1; see ``interpolate_pos_encoding``).
        fused_attn: see ``Attention``.
    """

    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 patch_size: int = 14, img_size: int = 518, mlp_ratio: float = 4.0,
                 interpolate_offset: float = 0.1, fused_attn: bool = True) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.grid_size = img_size // patch_size
        self.interpolate_offset = float(interpolate_offset)
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size ** 2 + 1, embed_dim))
        # Used by DINOv2's masked-image pre-training only; kept so its checkpoints load.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, fused_attn)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolate_pos_encoding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings (1 × (1 + grid_h·grid_w) × dim) for a grid_h × grid_w patch grid.

        DINOv2's formula, quirks included: the learned G × G grid is returned unchanged when
        the target is G × G; otherwise it is resized bicubically (align_corners=False, no
        antialiasing) with scale factors (grid + offset) / G rather than grid / G, i.e. the
        output sample i reads the learned grid at (i + 0.5) · G / (grid + offset) − 0.5.
        (Hugging Face's ``Dinov2Embeddings`` resizes to the target size instead, which
        samples at (i + 0.5) · G / grid − 0.5: the same only at G × G.)
        """
        grid = self.grid_size
        pos = self.pos_embed.float()
        device = pos.device
        rows = torch.full((), grid_h, dtype=torch.float32, device=device)
        cols = torch.full((), grid_w, dtype=torch.float32, device=device)
        # A tensor condition rather than an ``if``: an exported graph must keep both cases.
        native = (rows == grid) & (cols == grid)
        one = torch.ones((), device=device)
        inv_scale_h = torch.where(native, one, grid / (rows + self.interpolate_offset))
        inv_scale_w = torch.where(native, one, grid / (cols + self.interpolate_offset))
        patch_pos = pos[0, 1:].reshape(grid, grid, -1).permute(2, 0, 1)  # dim × G × G
        resized = (bicubic_matrix(grid_h, grid, inv_scale_h) @ patch_pos
                   @ bicubic_matrix(grid_w, grid, inv_scale_w).T)  # dim × grid_h × grid_w
        patch_pos = resized.flatten(1).T[None]
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """N×3×H×W → N×(1 + patches)×dim: class token + patch tokens + position embeddings."""
        _, _, height, width = image.shape
        x = self.patch_embed(image)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return x + self.interpolate_pos_encoding(height // self.patch_size,
                                                 width // self.patch_size)

    def get_intermediate_layers(
        self, image: torch.Tensor, n: int | Sequence[int] = 1, reshape: bool = False,
        return_class_token: bool = False, norm: bool = True,
    ) -> tuple[torch.Tensor, ...] | tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Outputs of chosen blocks, DINOv2's contract.

        Args:
            image: N×3×H×W, normalised, H and W multiples of the patch size.
            n: the last ``n`` blocks, or the indices of the blocks to return.
            reshape: patch tokens as N×dim×(H/p)×(W/p) maps instead of N×patches×dim.
            return_class_token: pair each output with its N×dim class token.
            norm: apply the final LayerNorm to each output.

        Returns:
            One entry per chosen block, in block order: patch tokens, or
            (patch tokens, class token) pairs.
        """
        wanted = range(len(self.blocks) - n, len(self.blocks)) if isinstance(n, int) else n
        wanted = sorted(set(wanted))
        if not wanted or wanted[0] < 0 or wanted[-1] >= len(self.blocks):
            raise ValueError(f"block indices {list(wanted)} out of range for "
                             f"{len(self.blocks)} blocks")
        x = self.prepare_tokens(image)
        outputs = []
        for index, block in enumerate(self.blocks[:wanted[-1] + 1]):
            x = block(x)
            if index in wanted:
                outputs.append(self.norm(x) if norm else x)
        class_tokens = [out[:, 0] for out in outputs]
        patches = [out[:, 1:] for out in outputs]
        if reshape:
            _, _, height, width = image.shape
            grid = (height // self.patch_size, width // self.patch_size)
            # unflatten is a view whatever the batch size; reshape of the sliced tokens would
            # make an exported graph specialise the batch to the example's.
            patches = [out.unflatten(1, grid).permute(0, 3, 1, 2).contiguous()
                       for out in patches]
        if return_class_token:
            return tuple(zip(patches, class_tokens, strict=True))
        return tuple(patches)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """N×3×H×W → the normalised class token of the last block, N×dim."""
        x = self.prepare_tokens(image)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def dinov2_vit(size: str = "vits", fused_attn: bool = True) -> DinoVisionTransformer:
    """The DINOv2 ViT that Depth Anything V2 uses: ``vits``, ``vitb`` or ``vitl``, patch 14,
    518-pixel position grid."""
    try:
        config = VIT_SIZES[size]
    except KeyError:
        raise ValueError(f"unknown ViT size {size!r}; choose one of "
                         f"{', '.join(VIT_SIZES)}") from None
    return DinoVisionTransformer(config.embed_dim, config.depth, config.num_heads,
                                 fused_attn=fused_attn)

