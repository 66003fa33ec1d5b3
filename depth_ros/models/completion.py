"""``fusion_spn``: camera + LiDAR depth completion at the camera's full resolution.

The recipe of the depth-completion field (NLSPN, DySPN, CompletionFormer), small enough for
two CPU cores:

1. an in-graph classical pre-fill of the scan (``prefill``: IP-Basic's nearest-wins morphology
   in inverse depth), at full resolution: the LiDAR is never resampled to a coarser grid first;
2. a light U-Net over the image, the pre-fill and the return mask at reduced resolution
   (features at 1/2…1/16 of the frame, or of a half-size frame with ``feature_scale=2``)
   predicting a residual in log depth, 9 propagation affinities, the per-return trust and a
   confidence; a full-resolution image branch sharpens the affinities at edges;
3. spatial propagation (``spn``) at full resolution that puts the valid returns back after
   every iteration, weighted by the learned trust;
4. a ``confidence`` output in [0, 1]: the probability that the pixel's relative error is
   below ``confidence_threshold`` (trained as such).

The seed's idea (image features meeting LiDAR features) enters twice: the image and the
pre-filled LiDAR enter the U-Net together at every pixel, and with ``context_attention`` the
bottleneck's features (1/16) attend to the features of the frame's LiDAR-covered cells pooled
to 1/64 (``attention.CrossModalAttention``): global context, the one scale where attention is
cheap on a CPU and where a convolution cannot reach (a pixel above the scan's field of view
can read the depth of the returns anywhere in the frame).

With ``mono_prior`` a frozen monocular network (``mono_cnn``) reads the whole frame squeezed
to its own input size, its depth is scaled to the scan (one factor a frame, from the returns)
and enters the U-Net as a sixth channel, relative to the pre-fill: a small network on a crop
cannot learn as much of the scene's shape as a bigger one trained on whole frames, and above
the LiDAR's field of view that shape is all there is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

from depth_ros.models.attention import CrossModalAttention
from depth_ros.models.layers import BasicBlock, ConvBNReLU, ImageNetNormalize
from depth_ros.models.prefill import occlusion_filter, prefill_depth
from depth_ros.models.registry import create_model, register_model
from depth_ros.models.spn import NUM_AFFINITIES, SpatialPropagation, affinity_weights

# Head channels: log-depth residual, affinity logits, trust logit, confidence logit.
_RESIDUAL, _AFFINITY, _TRUST, _CONFIDENCE = 0, 1, 1 + NUM_AFFINITIES, 2 + NUM_AFFINITIES
_LOG_10 = math.log(10.0)
_HEAD_CHANNELS = 3 + NUM_AFFINITIES
# Context attention: the keys are cells of 64×64 pixels of the frame (1/64).
_CONTEXT_CELL = 64
# Mono prior: its log ratio to the pre-fill is clipped to ±this (a factor of e² either way),
# and so is each return's log ratio in the frame's scale fit.
_PRIOR_CLIP = 2.0
_SCALE_CLIP = 1.0
_PRIOR_POOL = 3


class _Up(nn.Module):
    """Upsample ×2 (bilinear), concatenate the skip, ConvBNReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x at half the skip's size → out_channels at the skip's size."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


@register_model("fusion_spn")
class FusionSPN(nn.Module):
    """Image + sparse LiDAR depth → dense depth (metres) and confidence, at full resolution.

    ``forward(image, sparse_depth)`` returns ``(depth, confidence)``, both N×1×H×W;
    ``forward(..., aux=True)`` a dict that also holds the pre-fill, the depth before
    propagation and the trust with its logit (for the training loss). H and W must be
    multiples of ``stride`` (32).

    Args:
        widths: U-Net widths at 1/2, 1/4, 1/8 and 1/16 of the feature input.
        guide_channels: channels of an optional full-resolution image branch added to the
            head's maps (0: none; it costs ~40 % more time on a CPU).
        dilations: one propagation iteration per entry, with that dilation.
        feature_scale: 1 (features from the full frame) or 2 (from a half-size frame: ~4×
            fewer MACs; the propagation stays at full resolution).
        min_depth_m: smallest depth.
        max_depth_m: largest depth (also what a pixel with nothing around it reads).
        confidence_threshold: the relative error that ``confidence`` is the probability of
            staying below.
        trust_init: initial trust of every return (the head's bias; kept ≈ 1 at the start,
            so an untrained model already keeps its measurements).
        train_feature_scales: in training mode each forward draws its feature scale from
            these (torch's global generator), so that one set of weights serves both
            ``feature_scale`` options at inference.
        head_init_std: standard deviation of the heads' initial weights; 0 (the default, as
            the bundled model was trained) starts them at zero, so an untrained model is the
            pre-fill smoothed by propagation, and gradients reach the U-Net from the second
            step on.
        prefill_dilation: the pre-fill's nearest-wins dilation (odd; ``prefill``).
        prefill_blur_width: the pre-fill's row blur width in pixels (0: none).
        split_propagation: run the propagation steps as nine one-channel products
            (``spn.propagate_split``) at inference: faster in onnxruntime on a CPU, equal up to
            float rounding; False (the bundled model) keeps its graph exactly.
        coarse_weights: turn the affinity logits into propagation weights (their softmax) at
            the head's resolution and upsample the weights, rather than upsampling the logits:
            a bilinear blend of convex weights is still convex, and the softmax then runs on
            1/16 (``feature_scale=2``: 1/64) of the pixels. An inference-time option of the
            same weights (a slightly different function); False as trained.
        context_attention: add the bottleneck's cross-modal attention (see the module
            docstring); its output projections start at zero, so it can be added to a trained
            model and fine-tuned from there.
        context_heads: its attention heads.
        occlusion_radius_px: > 0: before anything else, drop the returns that have a return
            more than ``occlusion_margin`` nearer within this many pixels above or beside them
            (``prefill.occlusion_filter``): the background the LiDAR saw past a near object's
            edge, which would otherwise be kept and spread as measurements; 0 (the stage 1-5
            models) keeps every return.
        occlusion_margin: the relative depth step that counts as seeing past an edge.
        mono_prior: keyword arguments of an embedded ``mono_cnn`` (None: no prior). It is
            frozen (no gradient, batch norm in eval mode, its weights loaded with the rest of
            the checkpoint); its depth, scaled per frame by the mean log ratio of the returns
            to it, enters the U-Net as log(prior / pre-fill).
        mono_prior_size: (height, width) the whole frame is resized to for the prior: the
            monocular model's own training input (a KITTI frame at 1248×384 is 3× it).
        mono_prior_trainable: train the prior's weights with the rest (its batch norm keeps
            its statistics either way); False: frozen.
    """

    kind = "fusion"
    output = "metric"
    stride = 32
    resize_policy = "native"
    outputs = ("depth", "confidence")

    def __init__(self, widths: Sequence[int] = (16, 32, 48, 64), guide_channels: int = 0,
                 dilations: Sequence[int] = (1, 2, 1, 2), feature_scale: int = 1,
                 min_depth_m: float = 0.1, max_depth_m: float = 100.0,
                 confidence_threshold: float = 0.05, trust_init: float = 0.99,
                 train_feature_scales: Sequence[int] = (1,), head_init_std: float = 0.0,
                 prefill_dilation: int = 3, prefill_blur_width: int = 11,
                 split_propagation: bool = False, coarse_weights: bool = False,
                 context_attention: bool = False, context_heads: int = 4,
                 occlusion_radius_px: int = 0, occlusion_margin: float = 0.1,
                 mono_prior: Mapping | None = None,
                 mono_prior_size: Sequence[int] = (128, 416),
                 mono_prior_trainable: bool = False) -> None:
        super().__init__()
        self.mono = None
        if mono_prior is not None:
            if len(mono_prior_size) != 2 or any(int(v) <= 0 or int(v) % 32 for v in
                                                 mono_prior_size):
                raise ValueError(f"mono_prior_size must be (height, width), multiples of 32, "
                                 f"got {tuple(mono_prior_size)}")
            self.mono = create_model("mono_cnn", **dict(mono_prior))
            self.mono.requires_grad_(bool(mono_prior_trainable))
            self.mono.eval()
        self.mono_prior_trainable = bool(mono_prior_trainable)
        self.mono_prior_size = tuple(int(v) for v in mono_prior_size)
        if occlusion_radius_px < 0 or occlusion_margin <= 0:
            raise ValueError(f"occlusion_radius_px must be >= 0 and occlusion_margin > 0, got "
                             f"{occlusion_radius_px} and {occlusion_margin}")
        self.occlusion_radius_px = int(occlusion_radius_px)
        self.occlusion_margin = float(occlusion_margin)
        if len(widths) != 4:
            raise ValueError(f"widths must have 4 entries (1/2 … 1/16), got {tuple(widths)}")
        if feature_scale not in (1, 2) or not train_feature_scales \
                or any(f not in (1, 2) for f in train_feature_scales):
            raise ValueError(f"feature_scale and train_feature_scales must be 1 or 2, got "
                             f"{feature_scale} and {tuple(train_feature_scales)}")
        self.train_feature_scales = tuple(int(f) for f in train_feature_scales)
        if prefill_dilation < 1 or prefill_dilation % 2 == 0 or prefill_blur_width < 0:
            raise ValueError(f"prefill_dilation must be odd and positive and "
                             f"prefill_blur_width non-negative, got {prefill_dilation} and "
                             f"{prefill_blur_width}")
        self.prefill_dilation, self.prefill_blur_width = prefill_dilation, prefill_blur_width
        if not 0.0 < trust_init < 1.0:
            raise ValueError(f"trust_init must be in (0, 1), got {trust_init}")
        self.min_depth_m, self.max_depth_m = float(min_depth_m), float(max_depth_m)
        self.feature_scale = int(feature_scale)
        self.confidence_threshold = float(confidence_threshold)
        self.normalize = ImageNetNormalize()
        c1, c2, c3, c4 = (int(w) for w in widths)
        # Inputs: image (3), log pre-fill (1), return mask (1).
        self.enc1 = ConvBNReLU(5, c1, stride=2)
        # log(mono prior / pre-fill): its own convolution, added to enc1's before its batch
        # norm (a sixth input channel, kept apart so that a model without the prior loads
        # as is); it starts at zero, so the prior is added to a trained model as the identity.
        self.prior_in = None
        if self.mono is not None:
            self.prior_in = nn.Conv2d(1, c1, 3, stride=2, padding=1, bias=False)
            nn.init.zeros_(self.prior_in.weight)
        self.enc2 = nn.Sequential(ConvBNReLU(c1, c2, stride=2), BasicBlock(c2))
        self.enc3 = nn.Sequential(ConvBNReLU(c2, c3, stride=2), BasicBlock(c3))
        self.enc4 = nn.Sequential(ConvBNReLU(c3, c4, stride=2), BasicBlock(c4), BasicBlock(c4))
        self.context = None
        if context_attention:
            self.context = CrossModalAttention(c4, c4, num_heads=context_heads, fused_attn=False)
            for layer in (self.context.image_pos, self.context.attn.proj, self.context.mlp[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.up3 = _Up(c4, c3, c3)
        self.up2 = _Up(c3, c2, c2)
        self.up1 = _Up(c2, c1, c1)
        self.head = nn.Conv2d(c1, _HEAD_CHANNELS, 3, padding=1)
        # Full resolution: edges of the image for the affinities, the residual and confidence.
        self.guide = None if guide_channels <= 0 else nn.Sequential(
            nn.Conv2d(3, guide_channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(guide_channels, _HEAD_CHANNELS, 1))
        # Confidence from the head's logit, how far propagation moved the pixel and the trust
        # of a kept return: three scalars, elementwise (a 1×1 convolution at full resolution
        # costs onnxruntime a layout reorder of the whole frame).
        self.confidence_weights = nn.Parameter(torch.zeros(3))
        self.propagation = SpatialPropagation(dilations, split=split_propagation)
        if coarse_weights and guide_channels > 0:
            raise ValueError("coarse_weights needs guide_channels=0 (the guide adds to the "
                             "full-resolution logits)")
        self.coarse_weights = bool(coarse_weights)
        self._init_heads(trust_init, head_init_std)

    def _init_heads(self, trust_init: float, std: float) -> None:
        for conv in (self.head, *([] if self.guide is None else [self.guide[-1]])):
            nn.init.normal_(conv.weight, std=std) if std > 0 else nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        trust_logit = float(torch.logit(torch.tensor(trust_init)))
        with torch.no_grad():
            self.head.bias[_TRUST] = trust_logit

    def train(self, mode: bool = True) -> FusionSPN:
        super().train(mode)
        if self.mono is not None:
            self.mono.eval()  # frozen: its batch norm keeps its statistics
        return self

    def _mono_prior(self, image: torch.Tensor, sparse_depth: torch.Tensor,
                    log_prefill: torch.Tensor) -> torch.Tensor:
        """log(scaled mono depth / pre-fill), clipped, at the frame's resolution."""
        # Area averaging, as the mono model's own training frames were made (TensorRT cannot
        # import an antialiased Resize): bilinear to 3× the prior's size (the identity for a
        # KITTI frame padded to 1248×384), then 3×3 means.
        pool = _PRIOR_POOL
        size = (self.mono_prior_size[0] * pool, self.mono_prior_size[1] * pool)
        small = F.avg_pool2d(F.interpolate(image, size=size, mode="bilinear",
                                           align_corners=False), pool)
        with torch.set_grad_enabled(self.mono_prior_trainable and torch.is_grad_enabled()):
            mono = self.mono(small)
        log_mono = torch.log(F.interpolate(mono, size=image.shape[-2:], mode="bilinear",
                                           align_corners=False).clamp(min=self.min_depth_m))
        # One scale a frame: the mean log ratio of the returns to the prior (each clipped;
        # a frame without returns keeps the prior's own scale).
        valid = (sparse_depth > 0).to(image.dtype)
        ratio = (torch.log(sparse_depth.clamp(min=self.min_depth_m)) - log_mono).clamp(
            -_SCALE_CLIP, _SCALE_CLIP)
        count = valid.sum(dim=(2, 3), keepdim=True)
        shift = (ratio * valid).sum(dim=(2, 3), keepdim=True) / count.clamp(min=1.0)
        return (log_mono + shift - log_prefill - _LOG_10).clamp(-_PRIOR_CLIP, _PRIOR_CLIP)

    def _features(self, image: torch.Tensor, log_prefill: torch.Tensor,
                  mask: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        scale = self.feature_scale
        if self.training and len(self.train_feature_scales) > 1:
            pick = int(torch.randint(len(self.train_feature_scales), ()).item())
            scale = self.train_feature_scales[pick]
        inputs = [image, log_prefill, mask] + ([] if prior is None else [prior])
        if scale == 2:
            # Pooled one input at a time, then normalised and concatenated at half size: no
            # full-resolution concatenation (the same numbers up to float rounding).
            inputs = [F.avg_pool2d(t, 2) for t in inputs]
        mask = inputs[2]  # at the feature input's size (the context cells)
        x = torch.cat([self.normalize(inputs[0]), *inputs[1:3]], dim=1)
        if prior is None:
            s1 = self.enc1(x)
        else:
            conv, norm, act = self.enc1
            s1 = act(norm(conv(x) + self.prior_in(inputs[3])))
        s2 = self.enc2(s1)
        s3 = self.enc3(s2)
        s4 = self.enc4(s3)
        if self.context is not None:
            s4 = self._attend(s4, mask, scale)
        y = self.up1(self.up2(self.up3(s4, s3), s2), s1)
        return self.head(y)

    def _attend(self, s4: torch.Tensor, mask: torch.Tensor, scale: int) -> torch.Tensor:
        """Bottleneck features (1/16 of the feature input) attend to the same features
        average-pooled into cells of _CONTEXT_CELL × _CONTEXT_CELL frame pixels, only the
        cells holding at least one return (``mask`` at the feature input's size)."""
        pool = _CONTEXT_CELL // (16 * scale)
        # ceil_mode: a partial cell at the bottom or right edge is a cell too (any frame of
        # at least one stride has one).
        context = F.avg_pool2d(s4, pool, ceil_mode=True)
        valid = F.max_pool2d(mask, _CONTEXT_CELL // scale, ceil_mode=True) > 0
        return self.context(s4, context, valid)

    def forward(self, image: torch.Tensor, sparse_depth: torch.Tensor,
                aux: bool = False) -> tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]:
        """RGB N×3×H×W in [0, 1] and sparse depth N×1×H×W (metres, 0 = no return) →
        ``(depth, confidence)`` (or the dict described in the class docstring)."""
        height, width = image.shape[-2:]
        if self.occlusion_radius_px > 0:
            keep = occlusion_filter(sparse_depth, self.occlusion_radius_px, self.occlusion_margin)
            sparse_depth = torch.where(keep, sparse_depth, torch.zeros_like(sparse_depth))
        mask = (sparse_depth > 0).to(image.dtype)
        prefill = prefill_depth(sparse_depth, self.min_depth_m, self.max_depth_m,
                                dilation=self.prefill_dilation,
                                blur_width=self.prefill_blur_width)
        # log(d / 10 m): order one for the network.
        log_prefill = torch.log(prefill * 0.1)
        prior = (None if self.mono is None
                 else self._mono_prior(image, sparse_depth, log_prefill))
        coarse = self._features(image, log_prefill, mask, prior)
        size = (height, width)
        if self.coarse_weights:
            # Softmax at the head's resolution, then each map upsampled on its own: the
            # full-resolution maps come out separate, as the split propagation takes them
            # (onnxruntime would otherwise copy a 12-channel frame apart).
            weights = affinity_weights(coarse[:, _AFFINITY:_AFFINITY + NUM_AFFINITIES])
            residual, trust_logit, confidence_logit = (
                F.interpolate(coarse[:, c:c + 1], size=size, mode="bilinear",
                              align_corners=False) for c in (_RESIDUAL, _TRUST, _CONFIDENCE))
            affinity = [F.interpolate(w, size=size, mode="bilinear", align_corners=False)
                        for w in weights.split(1, dim=1)]
        else:
            maps = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
            if self.guide is not None:
                maps = maps + self.guide(image)
            residual = maps[:, _RESIDUAL:_RESIDUAL + 1]
            affinity = maps[:, _AFFINITY:_AFFINITY + NUM_AFFINITIES]
            trust_logit = maps[:, _TRUST:_TRUST + 1]
            confidence_logit = maps[:, _CONFIDENCE:_CONFIDENCE + 1]
        # log(prefill) from log(prefill / 10 m): one full-resolution Log fewer.
        log_depth = log_prefill + _LOG_10 + residual
        initial = torch.exp(log_depth).clamp(self.min_depth_m, self.max_depth_m)
        trust = torch.sigmoid(trust_logit)
        depth = self.propagation(initial, affinity, sparse_depth, trust,
                                 normalized=self.coarse_weights)
        depth = depth.clamp(self.min_depth_m, self.max_depth_m)
        moved = (torch.log(depth) - log_depth).abs()
        w_moved, w_trust, w_bias = self.confidence_weights.unbind()
        confidence = torch.sigmoid(confidence_logit - 10.0 * moved * w_moved
                                   + w_trust * trust * mask + w_bias)
        if aux:
            return {"depth": depth, "confidence": confidence, "initial": initial,
                    "prefill": prefill, "trust": trust, "trust_logit": trust_logit}
        return depth, confidence
