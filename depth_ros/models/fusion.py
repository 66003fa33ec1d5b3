"""``fusion_attention``: RGB + sparse LiDAR depth → dense metric depth.

The OmniDepth idea — image features attend to LiDAR features — with what it needs to be
right for a spinning LiDAR: an encoder built for sparse input (normalised convolutions, see
``sparse``), LiDAR tokens masked wherever their patch has no return (so empty sky and the
unscanned top of the frame carry no weight, and a frame with no LiDAR at all degrades to a
mono network instead of attending to noise), attention at more than one scale, and one
decoder over the fused pyramid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn

from depth_ros.models.attention import CrossModalAttention
from depth_ros.models.decoders import CoarseToFineDecoder
from depth_ros.models.encoders import ResNetEncoder
from depth_ros.models.heads import DepthActivation
from depth_ros.models.layers import ConvBNReLU, ImageNetNormalize
from depth_ros.models.registry import register_model
from depth_ros.models.sparse import SparseDepthEncoder


@register_model("fusion_attention")
class FusionAttentionNet(nn.Module):
    """Image + sparse depth → metric depth, with cross-modal attention at coarse scales.

    Per scale: at the ``attention_strides`` the image features query the LiDAR features
    (``CrossModalAttention``, tokens masked where the patch has no LiDAR return); then image
    and LiDAR features are concatenated and merged by a 1×1 convolution; the merged pyramid goes
    through the coarse-to-fine ASPP decoder and a metric head. Attention runs only where tokens
    are few (strides 16 and 32: 1672 and 418 tokens at 1216×352), local fusion everywhere.

    H and W must be multiples of ``stride`` (32).

    Args:
        image_widths: ``ResNetEncoder`` widths at strides 2…32.
        image_depths: residual blocks per image-encoder stage at strides 4…32.
        lidar_widths: ``SparseDepthEncoder`` widths at strides 2…32.
        nconv_channels: channels of the sparse encoder's normalised convolutions.
        attention_strides: scales (of 2, 4, 8, 16, 32) with cross-modal attention.
        num_heads: attention heads.
        decoder_channels: decoder widths at strides 2…16.
        min_depth_m: smallest depth.
        max_depth_m: largest depth (also the sparse encoder's depth scale).
        fused_attn: fused SDPA (True) or the plain matmul-softmax path (False).
    """

    kind = "fusion"
    stride = 32
    output = "metric"

    def __init__(self, image_widths: Sequence[int] = (24, 32, 48, 96, 128),
                 image_depths: Sequence[int] = (1, 1, 2, 1),
                 lidar_widths: Sequence[int] = (16, 16, 24, 32, 64), nconv_channels: int = 8,
                 attention_strides: Sequence[int] = (16, 32), num_heads: int = 2,
                 decoder_channels: Sequence[int] = (16, 32, 48, 64), min_depth_m: float = 0.1,
                 max_depth_m: float = 80.0, fused_attn: bool = True) -> None:
        super().__init__()
        self.min_depth_m = float(min_depth_m)
        self.max_depth_m = float(max_depth_m)
        self.normalize = ImageNetNormalize()
        self.image_encoder = ResNetEncoder(3, tuple(image_widths), tuple(image_depths))
        self.lidar_encoder = SparseDepthEncoder(tuple(lidar_widths), nconv_channels,
                                                depth_scale_m=max_depth_m)
        strides = self.image_encoder.strides
        unknown = sorted(set(attention_strides) - set(strides))
        if unknown or not attention_strides:
            raise ValueError(f"attention_strides must be a non-empty subset of {strides}, got "
                             f"{tuple(attention_strides)}")
        self.attention_strides = tuple(sorted(attention_strides))
        self.cross_attention = nn.ModuleDict({
            str(s): CrossModalAttention(image_widths[level], lidar_widths[level], num_heads,
                                        fused_attn=fused_attn)
            for level, s in enumerate(strides) if s in self.attention_strides})
        self.merge = nn.ModuleList(ConvBNReLU(c_img + c_lidar, c_img, kernel_size=1)
                                   for c_img, c_lidar in zip(image_widths, lidar_widths,
                                                             strict=True))
        self.decoder = CoarseToFineDecoder(self.image_encoder.out_channels,
                                           tuple(decoder_channels))
        self.head = DepthActivation("metric", min_depth_m, max_depth_m)

    def forward(self, image: torch.Tensor, sparse_depth: torch.Tensor) -> torch.Tensor:
        """RGB N×3×H×W in [0, 1] and sparse depth N×1×H×W (metres, 0 = no return) →
        N×1×H×W metric depth."""
        _, _, height, width = image.shape
        image_features = self.image_encoder(self.normalize(image))
        lidar_features = self.lidar_encoder(sparse_depth)
        has_return = (sparse_depth > 0).to(image.dtype)
        fused = []
        for level, stride in enumerate(self.image_encoder.strides):
            x, lidar = image_features[level], lidar_features[level]
            if stride in self.attention_strides:
                # A token is valid when its stride × stride patch holds at least one return.
                valid = F.max_pool2d(has_return, kernel_size=stride) > 0
                x = self.cross_attention[str(stride)](x, lidar, valid)
            fused.append(self.merge[level](torch.cat([x, lidar], dim=1)))
        return self.head(self.decoder(fused), (height, width))
