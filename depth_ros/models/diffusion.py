"""Diffusion refinement of a depth latent (the DiffusionDepth idea) and a model built on it.

A small denoiser refines a depth latent at stride 4 by deterministic DDIM steps, conditioned on
the encoder's multi-scale features; a decoder turns the refined latent into metric depth.
Training is *self-diffusion*: LiDAR ground truth is too sparse to encode a clean target latent,
so noise is added to the model's own refined latent and the denoiser learns to remove it,
while the decoded depth is supervised through the sparse validity mask (``L_pixel``) and the
latent is pulled towards the encoding of the valid ground truth (``L_latent``).

Sampling starts from ``z_T = 0`` (the prior's mean) instead of a random draw, and the number
of steps is fixed at construction: the loop unrolls into a fixed graph, so the exported model
is deterministic and every runtime gives the same depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

from depth_ros.models.encoders import ResNetEncoder
from depth_ros.models.heads import DepthHead
from depth_ros.models.layers import ImageNetNormalize
from depth_ros.models.registry import register_model

LATENT_STRIDE = 4


def linear_alpha_bars(train_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2
                      ) -> torch.Tensor:
    """ᾱ_t (cumulative products of 1 − β_t) of DDPM's linear β schedule, t = 0 … T − 1."""
    betas = torch.linspace(beta_start, beta_end, train_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0).float()


def ddim_timesteps(train_steps: int, sample_steps: int) -> list[int]:
    """Evenly spaced DDIM timesteps, last (noisiest) first: e.g. 1000, 4 → 999, 749, 499, 249."""
    if not 1 <= sample_steps <= train_steps:
        raise ValueError(f"need 1 <= sample_steps <= train_steps, got {sample_steps}, "
                         f"{train_steps}")
    stride = train_steps // sample_steps
    return [train_steps - 1 - i * stride for i in range(sample_steps)]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (N×dim) of integer timesteps ``t`` (N), as in DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32,
                                                         device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class _TimeResBlock(nn.Module):
    """GroupNorm–SiLU–conv residual block with the timestep added per channel.

    GroupNorm, not BatchNorm: batch statistics would mix samples at different noise levels.
    """

    def __init__(self, channels: int, time_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.time = nn.Linear(time_dim, channels)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time(t_emb)[:, :, None, None]
        return x + self.conv2(F.silu(self.norm2(h)))


class LatentDenoiser(nn.Module):
    """ε_θ(z_t, t, condition): predicts the noise in a latent from it and the features.

    Args:
        latent_channels: channels of the depth latent.
        cond_channels: channels of the conditioning map.
        width: hidden channels (a multiple of 8).
        blocks: residual blocks.
    """

    def __init__(self, latent_channels: int, cond_channels: int, width: int = 32,
                 blocks: int = 2) -> None:
        super().__init__()
        time_dim = width * 2
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, time_dim), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim))
        self.inp = nn.Conv2d(latent_channels + cond_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(_TimeResBlock(width, time_dim) for _ in range(blocks))
        self.out = nn.Conv2d(width, latent_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Noise estimate, shaped like ``z``; ``t`` holds one timestep per sample."""
        t_emb = self.time_mlp(timestep_embedding(t, self.width))
        h = self.inp(torch.cat([z, cond], dim=1))
        for block in self.blocks:
            h = block(h, t_emb)
        return self.out(F.silu(h))


class DiffusionRefinementHead(nn.Module):
    """Refines a depth latent by DDIM denoising conditioned on multi-scale features.

    Args:
        feature_channels: channels of the conditioning feature maps (any strides ≥ 4).
        latent_channels: channels of the depth latent (at stride 4).
        width: hidden channels of the denoiser and the conditioning projection.
        train_steps: T of the noise schedule.
        sample_steps: DDIM steps at inference (fixed: the exported graph unrolls them).
        min_depth_m: smallest depth.
        max_depth_m: largest depth (sigmoid × max_depth output).
    """

    def __init__(self, feature_channels: Sequence[int], latent_channels: int = 8,
                 width: int = 32, train_steps: int = 1000, sample_steps: int = 4,
                 min_depth_m: float = 0.1, max_depth_m: float = 80.0) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.max_depth_m = float(max_depth_m)
        self.project = nn.ModuleList(nn.Conv2d(c, width, 1) for c in feature_channels)
        self.denoiser = LatentDenoiser(latent_channels, width, width)
        self.latent_to_depth = nn.Sequential(nn.Conv2d(latent_channels, width, 3, padding=1),
                                             nn.SiLU())
        self.depth_head = DepthHead(width, "metric", min_depth_m, max_depth_m)
        # The ground-truth encoder sees masked-average-pooled depth and its coverage.
        self.gt_encoder = nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.SiLU(),
                                        nn.Conv2d(width, latent_channels, 3, padding=1))
        self.register_buffer("alpha_bars", linear_alpha_bars(train_steps), persistent=False)
        self.timesteps = ddim_timesteps(train_steps, sample_steps)

    def condition(self, features: Sequence[torch.Tensor], size: tuple[int, int]
                  ) -> torch.Tensor:
        """The feature maps projected and resized to the latent's ``size``, summed."""
        cond = None
        for proj, feature in zip(self.project, features, strict=True):
            f = F.interpolate(proj(feature), size=size, mode="bilinear", align_corners=False)
            cond = f if cond is None else cond + f
        return cond

    def sample(self, cond: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM (η = 0) from z_T = 0 over the fixed timesteps: the latent z_0."""
        n, _, h, w = cond.shape
        z = cond.new_zeros(n, self.latent_channels, h, w)
        for i, t in enumerate(self.timesteps):
            a_t = self.alpha_bars[t]
            a_next = (self.alpha_bars[self.timesteps[i + 1]] if i + 1 < len(self.timesteps)
                      else torch.ones((), device=cond.device))
            eps = self.denoiser(z, torch.full((n,), t, device=cond.device), cond)
            z0 = ((z - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)).clamp(-1.0, 1.0)
            z = torch.sqrt(a_next) * z0 + torch.sqrt(1 - a_next) * eps
        return z

    def decode(self, latent: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Depth N×1×H×W (metres) at the image ``size`` from a latent."""
        return self.depth_head(self.latent_to_depth(latent), size)

    def encode_target(self, depth: torch.Tensor, valid_mask: torch.Tensor,
                      size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent, latent validity) of sparse ground truth: masked average pooling to the
        latent grid (only valid pixels count), then a small encoder, bounded by tanh like
        the sampled latents."""
        m = valid_mask.to(depth.dtype)
        pooled_m = F.adaptive_avg_pool2d(m, size)
        pooled_d = F.adaptive_avg_pool2d(depth * m, size) / pooled_m.clamp(min=1e-6)
        x = torch.cat([pooled_d / self.max_depth_m, (pooled_m > 0).to(depth.dtype)], dim=1)
        return torch.tanh(self.gt_encoder(x)), pooled_m > 0

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Refined metric depth N×1×H×W for an image of ``size`` (H, W)."""
        latent_size = (-(-size[0] // LATENT_STRIDE), -(-size[1] // LATENT_STRIDE))
        return self.decode(self.sample(self.condition(features, latent_size)), size)

    def training_terms(self, features: Sequence[torch.Tensor], size: tuple[int, int],
                       generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Everything ``diffusion_depth_loss`` needs, from one self-diffusion step.

        The refined latent (the sample) is noised at a random timestep; the denoiser must
        predict that noise. Returns ``pred_noise``, ``noise``, ``depth`` (decoded from the
        refined latent) and ``latent`` (the refined latent itself).
        """
        latent_size = (-(-size[0] // LATENT_STRIDE), -(-size[1] // LATENT_STRIDE))
        cond = self.condition(features, latent_size)
        latent = self.sample(cond)
        n = latent.shape[0]
        t = torch.randint(0, len(self.alpha_bars), (n,), generator=generator).to(latent.device)
        noise = torch.randn(latent.shape, generator=generator).to(latent)
        a = self.alpha_bars[t].view(n, 1, 1, 1)
        # Detached: the denoising target is the current estimate, not a path for gradients.
        noisy = torch.sqrt(a) * latent.detach() + torch.sqrt(1 - a) * noise
        return {"pred_noise": self.denoiser(noisy, t, cond), "noise": noise,
                "depth": self.decode(latent, size), "latent": latent}


@register_model("mono_diffusion")
class MonoDiffusion(nn.Module):
    """Monocular metric depth with DDIM refinement: ResNet encoder → diffusion head.

    Args:
        widths: encoder channels at strides 2 … 32.
        depths: encoder residual blocks per stage.
        latent_channels: channels of the depth latent.
        width: hidden channels of the head.
        sample_steps: DDIM steps (fixed for export).
        min_depth_m: smallest depth.
        max_depth_m: largest depth.
    """

    kind = "mono"
    stride = 32
    output = "metric"

    def __init__(self, widths: Sequence[int] = (32, 48, 64, 128, 192),
                 depths: Sequence[int] = (1, 1, 2, 1), latent_channels: int = 8,
                 width: int = 32, sample_steps: int = 4, min_depth_m: float = 0.1,
                 max_depth_m: float = 80.0) -> None:
        super().__init__()
        self.min_depth_m = float(min_depth_m)
        self.max_depth_m = float(max_depth_m)
        self.normalize = ImageNetNormalize()
        self.encoder = ResNetEncoder(widths=widths, depths=depths)
        # Conditioning on the strides 4 … 32: detail and context, not the stride-2 stem.
        self.head = DiffusionRefinementHead(self.encoder.out_channels[1:], latent_channels,
                                            width, sample_steps=sample_steps,
                                            min_depth_m=min_depth_m, max_depth_m=max_depth_m)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """N×3×H×W RGB in [0, 1] → N×1×H×W depth in metres."""
        _, _, height, width = image.shape
        features = self.encoder(self.normalize(image))[1:]
        return self.head(features, (height, width))

    def training_terms(self, image: torch.Tensor, generator: torch.Generator | None = None
                       ) -> dict[str, torch.Tensor]:
        """``DiffusionRefinementHead.training_terms`` for a batch of images."""
        _, _, height, width = image.shape
        features = self.encoder(self.normalize(image))[1:]
        return self.head.training_terms(features, (height, width), generator)
