"""``depth_anything_v2``: Depth Anything V2 (Yang et al., 2024), a DINOv2 ViT with a DPT head,
loadable from the officially released weights.

Released checkpoints (plain state dicts, ``.pth``) are on Hugging Face: relative depth in
``depth-anything/Depth-Anything-V2-{Small,Base,Large}`` (``depth_anything_v2_vit{s,b,l}.pth``)
and metric depth in ``depth-anything/Depth-Anything-V2-Metric-{Hypersim,VKITTI}-{Small,Base,
Large}`` (``depth_anything_v2_metric_{hypersim,vkitti}_vit{s,b,l}.pth``; load them with
``max_depth=20`` for Hypersim, indoor, and ``max_depth=80`` for Virtual KITTI, outdoor).

Our module keeps the upstream parameter names (``pretrained.*`` for the ViT, ``depth_head.*``)
and computes what the official ``DepthAnythingV2.forward`` computes, with two contract
changes: the input is RGB in [0, 1] (ImageNet normalisation happens inside) and the output
keeps its channel axis (N×1×H×W).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depth_ros.models.checkpoints import CheckpointError, load_weights_only
from depth_ros.models.dpt import DPTHead, ScaledSigmoid
from depth_ros.models.layers import ImageNetNormalize
from depth_ros.models.registry import register_model
from depth_ros.models.vit import VIT_SIZES, DinoVisionTransformer

PATCH_SIZE = 14
# Square input size of the released models (37 × 37 patches; the position-embedding grid).
BASE_INPUT_SIZE = 518


@dataclass(frozen=True)
class HeadConfig:
    """DPT head widths and the ViT blocks it reads for one encoder size."""

    features: int
    out_channels: tuple[int, int, int, int]
    layer_indices: tuple[int, int, int, int]


HEAD_CONFIGS = {
    "vits": HeadConfig(64, (48, 96, 192, 384), (2, 5, 8, 11)),
    "vitb": HeadConfig(128, (96, 192, 384, 768), (2, 5, 8, 11)),
    "vitl": HeadConfig(256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
}
ENCODERS = tuple(HEAD_CONFIGS)


@register_model("depth_anything_v2")
class DepthAnythingV2(nn.Module):
    """Depth Anything V2: RGB N×3×H×W in [0, 1] → N×1×H×W (relative inverse depth, or metres).

    H and W must be multiples of 14; the released models were trained at 518 × 518.

    Args:
        encoder: ``vits``, ``vitb`` or ``vitl`` (ViT-S/B/L); sets every size below.
        max_depth: None for the relative model (ReLU, affine-invariant inverse depth); the
            metric model's largest depth in metres (sigmoid × max_depth).
        fused_attn: fused scaled-dot-product attention (see ``vit.Attention``).
        embed_dim: override the ViT width (small test models).
        depth: override the number of ViT blocks.
        num_heads: override the attention heads.
        features: override the DPT fusion width.
        out_channels: override the four DPT reassemble widths.
        layer_indices: override the four ViT blocks the head reads.
    """

    kind = "mono"
    stride = PATCH_SIZE

    def __init__(self, encoder: str = "vitl", max_depth: float | None = None,
                 fused_attn: bool = True, embed_dim: int | None = None,
                 depth: int | None = None, num_heads: int | None = None,
                 features: int | None = None, out_channels: Sequence[int] | None = None,
                 layer_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        if encoder not in HEAD_CONFIGS:
            raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
        vit, head = VIT_SIZES[encoder], HEAD_CONFIGS[encoder]
        self.encoder = encoder
        self.max_depth = None if max_depth is None else float(max_depth)
        self.output = "relative" if max_depth is None else "metric"
        self.layer_indices = tuple(int(i) for i in (layer_indices or head.layer_indices))
        self.normalize = ImageNetNormalize()
        self.pretrained = DinoVisionTransformer(
            embed_dim or vit.embed_dim, depth or vit.depth, num_heads or vit.num_heads,
            patch_size=PATCH_SIZE, img_size=BASE_INPUT_SIZE, fused_attn=fused_attn)
        if len(self.layer_indices) != 4 or max(self.layer_indices) >= len(self.pretrained.blocks):
            raise ValueError(f"layer_indices must be four block indices below "
                             f"{len(self.pretrained.blocks)}, got {list(self.layer_indices)}")
        activation = nn.ReLU() if max_depth is None else ScaledSigmoid(max_depth)
        self.depth_head = DPTHead(self.pretrained.embed_dim, features or head.features,
                                  tuple(out_channels or head.out_channels),
                                  output_activation=activation)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """N×3×H×W RGB in [0, 1] (H, W multiples of 14) → N×1×H×W depth."""
        height, width = image.shape[-2:]
        features = self.pretrained.get_intermediate_layers(self.normalize(image),
                                                           self.layer_indices, reshape=True)
        size = ((height // PATCH_SIZE) * PATCH_SIZE, (width // PATCH_SIZE) * PATCH_SIZE)
        return self.depth_head(features, size)


def _read_state_dict(checkpoint: str | os.PathLike | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    path = Path(checkpoint)
    state = load_weights_only(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def _encoder_of(state: Mapping[str, Any]) -> str:
    """The encoder size whose ViT width matches the checkpoint's position embeddings."""
    pos = state.get("pretrained.pos_embed")
    widths = {VIT_SIZES[name].embed_dim: name for name in ENCODERS}
    if not isinstance(pos, torch.Tensor) or pos.ndim != 3 or pos.shape[-1] not in widths:
        raise CheckpointError("cannot tell the encoder from the checkpoint (no "
                              "pretrained.pos_embed of width "
                              f"{', '.join(map(str, widths))}); pass encoder=")
    return widths[pos.shape[-1]]


def _listed(keys: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state: Mapping[str, Any]) -> None:
    """Raise ``CheckpointError`` listing every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k])}"
        f" != {tuple(v.shape)}" for k, v in expected.items()
        if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape))
    problems = [f"{label} ({len(keys)}): {_listed(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("shape mismatches", misshaped)) if keys]
    if problems:
        raise CheckpointError("checkpoint does not match Depth Anything V2 "
                              f"{getattr(model, 'encoder', '')}: " + "; ".join(problems))


def load_depth_anything_v2(checkpoint: str | os.PathLike | Mapping[str, Any],
                           encoder: str | None = None,
                           max_depth: float | None = None) -> DepthAnythingV2:
    """Build Depth Anything V2 from an officially released ``.pth`` (or its state dict).

    Loading is strict: a checkpoint with missing, extra or mis-shaped keys raises with the
    list of them. Files are read with ``torch.load(weights_only=True)``.

    Args:
        checkpoint: path to the ``.pth`` file, or the state dict itself.
        encoder: ``vits``, ``vitb`` or ``vitl``; default: read from the checkpoint.
        max_depth: None for the relative models; 20 for the Hypersim metric models, 80 for
            the Virtual KITTI ones (the weights do not say which).

    Returns:
        The model in eval mode.

    Raises:
        CheckpointError: unreadable file, or weights that do not fit the architecture.
        ValueError: unknown ``encoder`` or a non-positive ``max_depth``.
    """
    state = _read_state_dict(checkpoint)
    if encoder is None:
        encoder = _encoder_of(state)
    model = DepthAnythingV2(encoder, max_depth=max_depth)
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True)
    return model.eval()
