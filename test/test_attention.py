"""Cross-modal attention and the sparse-depth encoder: masked LiDAR tokens carry no weight (no
output change, no gradient), a query with no valid key gets zeros, both attention paths agree
and export with dynamic token counts; normalised convolutions ignore density; the fusion model
ignores what its masked LiDAR tokens hold."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch.export import Dim

from depth_ros.models import create_model
from depth_ros.models.attention import (
    CrossModalAttention,
    MultiHeadAttention,
    masked_attention,
    set_fused_attn,
)
from depth_ros.models.sparse import NormalizedConv2d, SparseDepthEncoder

PATHS = pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])


def tokens(batch: int = 2, queries: int = 7, keys: int = 11, dim: int = 16,
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query tokens, context tokens, and a key mask with valid and masked keys per item; the
    last item of a batch of three has no valid key at all."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, queries, dim, generator=generator)
    context = torch.randn(batch, keys, dim, generator=generator)
    valid = torch.rand(batch, keys, generator=generator) < 0.5
    valid[:, 0], valid[:, 1] = True, False
    if batch == 3:
        valid[2] = False
    return x, context, valid


def attention(fused: bool, dim: int = 16) -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(dim, num_heads=4, fused_attn=fused).eval()


@PATHS
def test_masked_keys_do_not_change_the_output(fused: bool) -> None:
    layer = attention(fused)
    x, context, valid = tokens()
    scrambled = torch.where(valid[..., None], context, 100.0 * torch.randn_like(context))
    with torch.no_grad():
        out, out_scrambled = layer(x, context, valid), layer(x, scrambled, valid)
        # Control: changing a *valid* key does change the output (the test can fail).
        changed = context.clone()
        changed[:, 0] += 1.0
        out_changed = layer(x, changed, valid)
    assert (out - out_scrambled).abs().max() <= 1e-6
    assert (out - out_changed).abs().max() > 1e-3


@PATHS
def test_masked_keys_get_no_gradient(fused: bool) -> None:
    layer = attention(fused)
    x, context, valid = tokens()
    context.requires_grad_(True)
    layer(x, context, valid).square().sum().backward()
    grad_norm = context.grad.abs().sum(dim=-1)
    assert torch.equal(grad_norm[~valid], torch.zeros_like(grad_norm[~valid]))
    assert (grad_norm[valid] > 0).all()


@PATHS
def test_a_query_without_valid_keys_gets_zeros_not_nan(fused: bool) -> None:
    x, context, valid = tokens(batch=3)
    q = x.view(3, 7, 4, 4).transpose(1, 2).requires_grad_(True)
    kv = context.view(3, 11, 4, 4).transpose(1, 2).requires_grad_(True)
    out = masked_attention(q, kv, kv, valid, fused=fused)
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    assert out[:2].abs().amax(dim=(1, 2, 3)).min() > 0
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(kv.grad).all()
    assert torch.equal(kv.grad[2], torch.zeros_like(kv.grad[2]))


def test_fused_and_plain_paths_agree() -> None:
    x, context, valid = tokens(batch=3)
    with torch.no_grad():
        fused = attention(True)(x, context, valid)
        plain = attention(False)(x, context, valid)
        unmasked = (attention(True)(x, context), attention(False)(x, context))
    assert (fused - plain).abs().max() <= 1e-5
    assert (unmasked[0] - unmasked[1]).abs().max() <= 1e-5


@PATHS
def test_attention_exports_with_dynamic_token_counts(fused: bool, tmp_path: Path) -> None:
    layer = attention(fused)
    x, context, valid = tokens()
    batch, queries, keys = Dim("batch", min=1, max=64), Dim("queries"), Dim("keys")
    program = torch.onnx.export(
        layer, (x, context, valid), dynamo=True, opset_version=18,
        input_names=["x", "context", "key_valid"], output_names=["out"], external_data=False,
        dynamic_shapes={"x": {0: batch, 1: queries}, "context": {0: batch, 1: keys},
                        "key_valid": {0: batch, 1: keys}}, verbose=False)
    path = tmp_path / "attention.onnx"
    program.save(os.fspath(path))
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    for queries, keys, batch in ((7, 11, 2), (23, 5, 3)):  # 3: one item with no valid key
        x, context, valid = tokens(batch, queries, keys, seed=queries)
        with torch.no_grad():
            expected = layer(x, context, valid).numpy()
        got = session.run(None, {"x": x.numpy(), "context": context.numpy(),
                                 "key_valid": valid.numpy()})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-5
        assert np.isfinite(got).all()
    assert np.abs(got[2] - expected[2]).max() <= 1e-5  # the fully masked item, bias only


@PATHS
def test_cross_modal_attention_ignores_lidar_features_of_empty_patches(fused: bool) -> None:
    torch.manual_seed(0)
    layer = CrossModalAttention(16, 8, num_heads=2, fused_attn=fused).eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 16, 4, 6, generator=generator)
    lidar = torch.randn(2, 8, 4, 6, generator=generator)
    valid = torch.zeros(2, 1, 4, 6, dtype=torch.bool)
    valid[:, :, 2:] = True  # the lower half of the frame has returns
    valid[1] = False  # the second frame has no LiDAR at all
    scrambled = torch.where(valid, lidar, 50.0 * torch.randn_like(lidar))
    with torch.no_grad():
        out, out_scrambled = layer(image, lidar, valid), layer(image, scrambled, valid)
        without_lidar = layer(image, torch.zeros_like(lidar), torch.zeros_like(valid))
    assert out.shape == image.shape
    assert (out - out_scrambled).abs().max() <= 1e-6
    # No returns: the layer must not depend on the LiDAR features at all.
    assert (out[1] - without_lidar[1]).abs().max() <= 1e-6
    assert (out[0] - without_lidar[0]).abs().max() > 1e-3


# --- the fusion model -------------------------------------------------------------------------

def tiny_fusion(fused: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("fusion_attention", image_widths=(8, 8, 12, 16, 24),
                        image_depths=(1, 1, 1, 1), lidar_widths=(4, 4, 8, 8, 16),
                        nconv_channels=4, num_heads=2, decoder_channels=(4, 8, 8, 8),
                        fused_attn=fused).eval()


def fusion_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """128×192 frames whose upper half has no LiDAR return (whole 16- and 32-pixel patches)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 128, 192, generator=generator)
    depth = 2.0 + 50.0 * torch.rand(2, 1, 128, 192, generator=generator)
    keep = torch.rand(2, 1, 128, 192, generator=generator) < 0.1
    keep[:, :, :64] = False
    return image, depth * keep


def scramble_masked_context(model: torch.nn.Module, record: list) -> list:
    """Pre-hooks on every cross-modal attention: masked context tokens → random values (as
    leaves requiring grad, kept in ``record`` with their masks)."""

    def hook(_module, args):
        x, context, key_valid = args
        noise = 10.0 * torch.randn(context.shape, generator=torch.Generator().manual_seed(7))
        context = torch.where(key_valid[..., None], context, noise).detach().requires_grad_()
        record.append((context, key_valid))
        return x, context, key_valid

    return [layer.attn.register_forward_pre_hook(hook)
            for layer in model.cross_attention.values()]


@PATHS
def test_fusion_output_ignores_masked_lidar_tokens(fused: bool) -> None:
    model = tiny_fusion(fused)
    image, sparse = fusion_inputs()
    with torch.no_grad():
        reference = model(image, sparse)
    record: list = []
    handles = scramble_masked_context(model, record)
    out = model(image, sparse)
    for handle in handles:
        handle.remove()
    assert (out - reference).abs().max() <= 1e-5 * float(reference.abs().max())
    # Both attention scales saw masked and valid tokens (the test is not vacuous) ...
    assert len(record) == 2
    assert all(valid.any() and not valid.all() for _, valid in record)
    # ... and the masked ones receive exactly zero gradient, the valid ones some.
    out.mean().backward()
    for context, valid in record:
        grad_norm = context.grad.abs().sum(dim=-1)
        assert torch.equal(grad_norm[~valid], torch.zeros_like(grad_norm[~valid]))
        assert grad_norm[valid].sum() > 0


def test_fusion_output_depends_on_lidar_and_runs_without_it() -> None:
    model = tiny_fusion()
    image, sparse = fusion_inputs()
    with torch.no_grad():
        out = model(image, sparse)
        no_lidar = model(image, torch.zeros_like(sparse))
        farther = model(image, sparse * 1.5)
    assert torch.isfinite(no_lidar).all() and float(no_lidar.min()) >= model.min_depth_m
    assert (out - farther).abs().max() > 1e-4


def test_fused_attn_switch_changes_nothing_but_the_kernel() -> None:
    model = tiny_fusion()
    image, sparse = fusion_inputs()
    with torch.no_grad():
        fused = model(image, sparse)
        plain = set_fused_attn(model, False)(image, sparse)
    assert not any(getattr(m, "fused_attn", False) for m in model.modules())
    assert (fused - plain).abs().max() <= 1e-4


# --- the sparse-depth encoder -----------------------------------------------------------------

@pytest.mark.parametrize("density", [0.05, 0.5])
def test_normalized_convolution_is_density_invariant(density: float) -> None:
    torch.manual_seed(0)
    conv = NormalizedConv2d(1, 4, kernel_size=5)
    generator = torch.Generator().manual_seed(0)
    confidence = (torch.rand(1, 1, 32, 48, generator=generator) < density).float()
    x = 7.0 * confidence  # a constant 7 m wherever something was measured
    with torch.no_grad():
        out, out_confidence = conv(x, confidence)
    seen = out_confidence > 1e-3
    assert seen.float().mean() > 0.5
    # A weighted average of sevens is seven, however few there are (a plain convolution's
    # output would scale with the density).
    assert torch.allclose(out[seen], torch.full_like(out[seen], 7.0), atol=1e-4)
    assert float(out_confidence.min()) >= 0.0 and float(out_confidence.max()) <= 1.0 + 1e-6


def test_normalized_convolution_without_measurements_is_bias_not_nan() -> None:
    conv = NormalizedConv2d(2, 3)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
        out, confidence = conv(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))
    assert torch.equal(confidence, torch.zeros_like(confidence))
    assert torch.equal(out, torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1).expand_as(out))


def test_sparse_encoder_confidence_follows_the_returns() -> None:
    torch.manual_seed(0)
    encoder = SparseDepthEncoder(widths=(4, 4, 8, 8, 16), nconv_channels=4).eval()
    _, sparse = fusion_inputs()
    with torch.no_grad():
        features, confidences = encoder.forward_with_confidence(sparse)
    assert [tuple(f.shape[2:]) for f in features] == [(128 // s, 192 // s)
                                                       for s in (2, 4, 8, 16, 32)]
    # Stride 8: rows far above the scanned lower half saw no return; rows inside it did.
    assert float(confidences[2][:, :, :6].max()) == 0.0
    assert float(confidences[2][:, :, 10:].min()) > 0.0
