"""fusion_spn (depth completion): the in-graph pre-fill, the propagation that keeps the returns,
the model's outputs, its export with both outputs, the completion loss, the LiDAR
augmentations and the metadata it carries."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from depth_ros.models import MetadataError, ModelMetadata, create_model
from depth_ros.models.prefill import occlusion_filter, prefill_depth, prefill_inverse
from depth_ros.models.spn import (
    NUM_AFFINITIES,
    SpatialPropagation,
    _shift_kernels,
    affinity_weights,
    neighbours,
    propagate,
    propagate_split,
)
from training.data.transforms import bleed_background, drop_patches
from training.losses import completion_loss, trust_loss, weighted_depth_loss

TINY = {"widths": (4, 8, 8, 8), "dilations": (1, 2)}


def scan(height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    """A LiDAR-like scan of a smooth scene: every 4th row from row 24 down, 60 % of the
    columns, depth growing towards the top (a road) and a box at 5 m in the middle."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    depth = 2.0 + 400.0 / (rows + 4.0)
    depth = depth.clone()
    depth[30:50, 40:60] = 5.0
    keep = torch.zeros(height, width, dtype=torch.bool)
    keep[24::4] = torch.rand(len(range(24, height, 4)), width, generator=generator) < 0.6
    return (depth * keep)[None, None]


# --- pre-fill --------------------------------------------------------------------------------


def test_prefill_keeps_every_return_and_fills_every_pixel() -> None:
    sparse = scan()
    dense = prefill_depth(sparse, 0.1, 100.0)
    valid = sparse > 0
    assert torch.equal(dense[valid], sparse[valid])
    assert torch.isfinite(dense).all() and bool((dense > 0).all())


def test_prefill_nearest_return_wins_and_the_top_takes_the_farthest_below() -> None:
    sparse = torch.zeros(1, 1, 32, 32)
    sparse[0, 0, 20, 10] = 4.0  # near
    sparse[0, 0, 20, 12] = 40.0  # far, two pixels away
    sparse[0, 0, 28, 10] = 3.0
    dense = prefill_depth(sparse, 0.1, 100.0, blur_width=0)
    # Between the two returns of row 20 the near one wins (IP-Basic's inverted dilation)...
    assert float(dense[0, 0, 20, 11]) == pytest.approx(4.0)
    # ...and the row blur averages depths (not inverse depths) of the filled pixels only.
    row = torch.zeros(1, 1, 32, 32)
    row[0, 0, 5, :16] = 10.0
    row[0, 0, 5, 16:] = 30.0
    row[0, 0, 5, 15:17] = 0.0  # two empty pixels at the step
    blurred = prefill_depth(row, 0.1, 100.0, dilation=1, blur_width=3)[0, 0, 5]
    assert float(blurred[14]) == 10.0  # returns kept (1 / (1 / d) in float32)
    assert float(blurred[17]) == pytest.approx(30.0, rel=1e-6)
    # Without blur the 2×2 pyramid fills pixel 15 from its block (10 m) and 16 from its own
    # (30 m); the 1×3 box in depth gives (10 + 10 + 30) / 3 and (10 + 30 + 30) / 3 (in
    # inverse depth it would give 12.9 and 18.0).
    plain = prefill_depth(row, 0.1, 100.0, dilation=1, blur_width=0)[0, 0, 5]
    assert float(plain[15]) == pytest.approx(10.0, rel=1e-6)
    assert float(plain[16]) == pytest.approx(30.0, rel=1e-6)
    assert float(blurred[15]) == pytest.approx(50.0 / 3.0, rel=1e-5)
    assert float(blurred[16]) == pytest.approx(70.0 / 3.0, rel=1e-5)
    # Above the scan, the empty top takes the farthest of the column's coarsest (1/32) cells,
    # each holding its nearest return: the building behind, not the road in front.
    tall = torch.zeros(1, 1, 128, 32)
    tall[0, 0, 70, 5] = 40.0
    tall[0, 0, 100, 5] = 3.0
    top = 1.0 / prefill_inverse(tall)[0, 0, :40]
    assert torch.allclose(top, torch.full_like(top, 40.0))
    # Below the scan (a wide camera sees the ground nearer than the lowest beam): the
    # column's nearest cell, not its farthest; a scan reaching the bottom cell is untouched.
    deep = torch.zeros(1, 1, 160, 32)
    deep[0, 0, 40, 5] = 40.0
    deep[0, 0, 70, 5] = 6.0  # the lowest return; rows 96-159 are cells without any
    bottom = 1.0 / prefill_inverse(deep)[0, 0, 100:]
    assert torch.allclose(bottom, torch.full_like(bottom, 6.0))
    assert torch.allclose(1.0 / prefill_inverse(deep)[0, 0, :30], torch.full((30, 32), 40.0))
    deep[0, 0, 150, 5] = 3.0  # a return in the bottom cell: the empty cell above it is a gap
    assert torch.allclose(1.0 / prefill_inverse(deep)[0, 0, 100:128], torch.full((28, 32), 40.0))


def test_prefill_without_returns_is_the_far_bound() -> None:
    dense = prefill_depth(torch.zeros(1, 1, 32, 64), 0.1, 80.0)
    assert torch.all(dense == 80.0)


# --- propagation -----------------------------------------------------------------------------


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_convolution_and_slice_neighbours_agree(dilation: int) -> None:
    depth = torch.rand(2, 1, 9, 13)
    by_conv = neighbours(depth, _shift_kernels(), dilation)
    by_slices = neighbours(depth, None, dilation)
    assert by_conv.shape == (2, NUM_AFFINITIES, 9, 13)
    assert torch.equal(by_conv, by_slices)
    # Channel 0 is the centre; channel 2 is the pixel `dilation` rows above (edge replicated).
    assert torch.equal(by_conv[:, 0], depth[:, 0])
    assert torch.equal(by_conv[:, 2, dilation:], depth[:, 0, :-dilation])


@pytest.mark.parametrize("training", [False, True])
def test_full_trust_keeps_returns_and_zero_trust_overrules_them(training: bool) -> None:
    torch.manual_seed(0)
    depth = 10.0 + torch.rand(1, 1, 16, 16)
    sparse = torch.zeros_like(depth)
    sparse[0, 0, 8, 8] = 50.0  # an outlier return
    logits = torch.randn(1, NUM_AFFINITIES, 16, 16)
    spn = SpatialPropagation((1, 2, 1)).train(training)
    kept = spn(depth, logits, sparse, torch.ones_like(depth))
    assert float(kept[0, 0, 8, 8]) == 50.0
    overruled = spn(depth, logits, sparse, torch.zeros_like(depth))
    # A convex combination of its neighbours, which never saw the outlier.
    assert 10.0 <= float(overruled[0, 0, 8, 8]) <= 11.0
    # Without returns the output stays within the input's range (weights are convex).
    free = spn(depth, logits, torch.zeros_like(depth), torch.ones_like(depth))
    assert float(free.min()) >= float(depth.min()) - 1e-5
    assert float(free.max()) <= float(depth.max()) + 1e-5


@pytest.mark.parametrize("dilation", [1, 2])
def test_split_propagation_step_matches_the_convolution(dilation: int) -> None:
    torch.manual_seed(1)
    depth = 5.0 + 40.0 * torch.rand(2, 1, 20, 28)
    weights = affinity_weights(torch.randn(2, NUM_AFFINITIES, 20, 28))
    by_conv = propagate(depth, weights, _shift_kernels(), dilation)
    by_maps = propagate_split(depth, weights.split(1, dim=1), dilation)
    assert torch.allclose(by_maps, by_conv, rtol=1e-6, atol=1e-5)
    # Where all weight sits on one neighbour the step is that shift, exactly.
    right = torch.zeros_like(weights)
    right[:, 5] = 1.0  # OFFSETS[5] = (0, 1): the pixel to the right
    shifted = propagate_split(depth, right.split(1, dim=1), dilation)
    assert torch.equal(shifted[..., :-dilation], depth[..., dilation:])


def test_split_propagation_takes_logits_weights_or_weight_maps() -> None:
    torch.manual_seed(2)
    depth = 10.0 + torch.rand(1, 1, 16, 16)
    sparse = torch.zeros_like(depth)
    sparse[0, 0, 4::5, ::3] = 30.0
    trust = torch.full_like(depth, 0.9)
    logits = torch.randn(1, NUM_AFFINITIES, 16, 16)
    weights = affinity_weights(logits)
    reference = SpatialPropagation((1, 2, 1)).eval()(depth, logits, sparse, trust)
    split = SpatialPropagation((1, 2, 1), split=True).eval()
    for given in (split(depth, logits, sparse, trust),
                  split(depth, weights, sparse, trust, normalized=True),
                  split(depth, list(weights.split(1, dim=1)), sparse, trust, normalized=True)):
        assert torch.allclose(given, reference, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="9 weight maps"):
        split(depth, list(weights.split(1, dim=1))[:8], sparse, trust, normalized=True)


# --- the model -------------------------------------------------------------------------------


def test_untrained_model_keeps_its_returns_by_construction() -> None:
    """Zero-initialised heads and trust 0.99: an untrained model is the pre-fill smoothed by
    propagation, and each return moves by at most 1 % of its distance to its neighbours."""
    torch.manual_seed(0)
    model = create_model("fusion_spn", **TINY).eval()
    sparse = scan()
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        depth, confidence = model(image, sparse)
    valid = sparse > 0
    moved = (depth - sparse).abs()[valid]
    assert float(moved.median()) <= 0.03
    assert float(moved.max()) <= 0.01 * (float(sparse.max()) - float(sparse[valid].min()))
    assert torch.allclose(confidence, torch.full_like(confidence, 0.5))


def test_outputs_aux_and_feature_scales() -> None:
    torch.manual_seed(0)
    model = create_model("fusion_spn", **TINY, head_init_std=0.01).eval()
    image, sparse = torch.rand(2, 3, 64, 96), torch.cat([scan(), scan(seed=1)])
    with torch.no_grad():
        depth, confidence = model(image, sparse)
        aux = model(image, sparse, aux=True)
    assert set(aux) == {"depth", "confidence", "initial", "prefill", "trust", "trust_logit"}
    assert torch.allclose(torch.sigmoid(aux["trust_logit"]), aux["trust"])
    assert torch.equal(aux["depth"], depth) and torch.equal(aux["confidence"], confidence)
    assert all(t.shape == (2, 1, 64, 96) for t in aux.values())
    assert 0.1 <= float(depth.min()) and float(depth.max()) <= 100.0
    half = create_model("fusion_spn", **TINY, head_init_std=0.01, feature_scale=2)
    half.load_state_dict(model.state_dict())  # same weights, features from a half-size frame
    with torch.no_grad():
        depth_half, _ = half.eval()(image, sparse)
    assert depth_half.shape == depth.shape
    assert not torch.allclose(depth_half, depth)
    valid = sparse > 0
    assert float((depth_half - sparse).abs()[valid].median()) < 0.05


def test_fast_inference_options_share_the_weights_and_keep_the_returns() -> None:
    """split_propagation alone is the same function up to rounding; coarse_weights (softmax
    before upsampling) a slightly different one that still keeps the returns."""
    torch.manual_seed(0)
    model = create_model("fusion_spn", **TINY, head_init_std=0.05).eval()
    image, sparse = torch.rand(1, 3, 64, 96), scan()
    split = create_model("fusion_spn", **TINY, head_init_std=0.05, split_propagation=True)
    split.load_state_dict(model.state_dict())
    fast = create_model("fusion_spn", **TINY, head_init_std=0.05, split_propagation=True,
                        coarse_weights=True, feature_scale=2)
    fast.load_state_dict(model.state_dict())
    with torch.no_grad():
        depth, confidence = model(image, sparse)
        depth_split, confidence_split = split.eval()(image, sparse)
        depth_fast, confidence_fast = fast.eval()(image, sparse)
    assert torch.allclose(depth_split, depth, rtol=1e-5, atol=1e-4)
    assert torch.allclose(confidence_split, confidence, atol=1e-5)
    assert not torch.allclose(depth_fast, depth)
    assert depth_fast.shape == confidence_fast.shape == depth.shape
    assert 0.0 <= float(confidence_fast.min()) and float(confidence_fast.max()) <= 1.0
    valid = sparse > 0
    assert float((depth_fast - sparse).abs()[valid].median()) < 0.05
    # Within 20 % of the full model away from the returns too (same weights, same task).
    assert float(((depth_fast - depth).abs() / depth).median()) < 0.2


def test_context_attention_starts_as_the_model_without_it_and_reaches_across_the_frame() -> None:
    """The bottleneck's cross-modal attention starts as the identity (output projections at
    zero), so it is added to trained weights without changing them; trained, a pixel reads
    returns far beyond a convolution's reach; a frame without returns stays finite."""
    torch.manual_seed(0)
    height, width = 128, 512
    base = create_model("fusion_spn", **TINY, head_init_std=0.3).eval()
    model = create_model("fusion_spn", **TINY, head_init_std=0.3, context_attention=True)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("context.") for k in missing)
    model.eval()
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    keep = (rows >= 48) & (rows % 4 == 0)
    sparse = (torch.where(rows >= 0, 2.0 + 800.0 / (rows + 8.0), rows) * keep)[None, None]
    image = torch.rand(1, 3, height, width)
    far_right = sparse.clone()
    far_right[..., 448:] *= 3.0  # returns only in the right-most 64 columns change
    with torch.no_grad():
        assert torch.equal(model(image, sparse)[0], base(image, sparse)[0])
        for module in model.context.modules():  # as if trained: every weight non-zero
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                torch.nn.init.normal_(module.weight, std=0.3)
        left = (..., slice(0, 40), slice(0, 64))  # above the scan, 384+ pixels away
        assert torch.equal(base(image, sparse)[0][left], base(image, far_right)[0][left])
        reach = (model(image, sparse)[0][left] - model(image, far_right)[0][left]).abs().max()
        assert float(reach) > 1e-5  # metres; exactly 0 without the attention (above)
        depth, confidence = model(image, torch.zeros_like(sparse))
        small, _ = model(image[..., 96:, :32], sparse[..., 96:, :32])  # one stride: one cell
    assert torch.isfinite(depth).all() and torch.isfinite(confidence).all()
    assert small.shape == (1, 1, 32, 32) and torch.isfinite(small).all()
    for scale in (1, 2):  # both feature scales: context cells of 64 frame pixels
        model.feature_scale = scale
        with torch.no_grad():
            assert model(image, sparse)[0].shape == (1, 1, height, width)


MONO = {"base_channels": 8, "min_depth_m": 0.1, "max_depth_m": 80.0}


def test_mono_prior_starts_as_the_model_without_it_stays_frozen_and_is_scaled_to_the_scan(
        ) -> None:
    """The prior's input convolution starts at zero, so the prior is added to trained
    weights as the identity; the embedded mono network gets no gradient and keeps its batch
    norm statistics in training mode while the new convolution learns; the prior enters
    relative to the pre-fill after one scale a frame, fitted to the returns."""
    torch.manual_seed(0)
    base = create_model("fusion_spn", **TINY, head_init_std=0.3).eval()
    model = create_model("fusion_spn", **TINY, head_init_std=0.3, mono_prior=MONO,
                         mono_prior_size=(32, 64))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert unexpected == [] and missing
    assert all(k.startswith(("mono.", "prior_in.")) for k in missing)
    image, sparse = torch.rand(1, 3, 64, 96), scan()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(image, sparse)[0], base(image, sparse)[0])
    # Frozen: only prior_in is new and trainable; the mono net stays in eval mode.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in base.named_parameters()} | {"prior_in.weight"}
    model.train()
    assert model.training and not model.mono.training
    stats = [b.clone() for b in model.mono.buffers()]
    model(image, sparse, aux=True)["depth"].mean().backward()
    assert all(torch.equal(a, b) for a, b in zip(stats, model.mono.buffers(), strict=True))
    assert all(p.grad is None for p in model.mono.parameters())
    assert float(model.prior_in.weight.grad.abs().sum()) > 0
    # The scale fit: a scan that is the prior × 0.4 gives the same relative input as the
    # prior itself × 1 (log ratios to the pre-fill, which scales with the scan).
    model.eval()
    with torch.no_grad():
        mono = model.mono(torch.nn.functional.avg_pool2d(torch.nn.functional.interpolate(
            image, size=(96, 192), mode="bilinear", align_corners=False), 3))
        mono = torch.nn.functional.interpolate(mono, size=(64, 96), mode="bilinear",
                                               align_corners=False)
        keep = sparse > 0
        for factor in (1.0, 0.4):
            lidar = torch.where(keep, mono * factor, torch.zeros_like(mono))
            prefill = prefill_depth(lidar, 0.1, 100.0)
            prior = model._mono_prior(image, lidar, torch.log(prefill * 0.1))
            assert float(prior[keep].abs().max()) < 1e-4  # at the returns: their own value
            if factor == 1.0:
                first = prior
        assert torch.allclose(prior, first, atol=1e-4)
        # No returns: the prior's own scale, finite everywhere.
        empty = torch.zeros_like(sparse)
        prior = model._mono_prior(image, empty, torch.log(prefill_depth(empty, 0.1, 100.0) * 0.1))
    assert torch.isfinite(prior).all() and float(prior.abs().max()) <= 2.0
    # mono_prior_trainable: the prior's weights learn with the rest, its statistics stay.
    tuned = create_model("fusion_spn", **TINY, mono_prior=MONO, mono_prior_size=(32, 64),
                         mono_prior_trainable=True).train()
    stats = [b.clone() for b in tuned.mono.buffers()]
    tuned(image, sparse, aux=True)["depth"].mean().backward()
    assert all(p.requires_grad and p.grad is not None for p in tuned.mono.parameters())
    assert not tuned.mono.training
    assert all(torch.equal(a, b) for a, b in zip(stats, tuned.mono.buffers(), strict=True))
    # With the context attention too, at both feature scales (the context cells are counted
    # at the feature input's size).
    both = create_model("fusion_spn", **TINY, mono_prior=MONO, mono_prior_size=(32, 64),
                        context_attention=True).eval()
    image, sparse = torch.rand(1, 3, 128, 192), scan(128, 192)
    for scale in (1, 2):
        both.feature_scale = scale
        with torch.no_grad():
            assert torch.isfinite(both(image, sparse)[0]).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"coarse_weights": True, "guide_channels": 4}, "guide_channels=0"),
    ({"widths": (4, 8, 8)}, "4 entries"),
    ({"feature_scale": 3}, "must be 1 or 2"),
    ({"train_feature_scales": ()}, "must be 1 or 2"),
    ({"trust_init": 1.0}, "trust_init"),
    ({"dilations": (1, 0)}, "dilations"),
    ({"mono_prior": {"base_channels": 8}, "mono_prior_size": (64, 100)}, "multiples of 32"),
])
def test_bad_constructor_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("fusion_spn", **kwargs)


@pytest.mark.parametrize("options, size", [
    ({}, (64, 96)), ({"feature_scale": 2, "split_propagation": True, "coarse_weights": True},
                     (64, 96)),
    # The occlusion filter's pools pad only their own axis (onnxruntime refuses a pool
    # padded beyond its kernel, which folding one 2-D pad into the first pool made).
    ({"occlusion_radius_px": 3, "feature_scale": 2, "split_propagation": True,
      "coarse_weights": True}, (64, 96)),
    # Traced with at least 2 × 2 context cells: with one, the exporter fixes the batch at 1.
    ({"context_attention": True}, (128, 256)),
    # The mono prior: a resize to a fixed size, a per-frame scale fit.
    ({"mono_prior": {"base_channels": 8}, "mono_prior_size": (32, 64)}, (64, 96))])
def test_export_has_both_outputs_and_matches_pytorch(tmp_path, options: dict,
                                                     size: tuple[int, int]) -> None:
    from training.export import export_onnx, parity

    torch.manual_seed(0)
    model = create_model("fusion_spn", **TINY, head_init_std=0.05, **options).eval()
    meta = ModelMetadata("fusion_spn", "fusion", "metric", 32, 64, 96, 0.1, 100.0, 700.0,
                         model_kwargs={**TINY, "head_init_std": 0.05, **options},
                         resize_policy="native", outputs="depth,confidence")
    path = export_onnx(model, meta, tmp_path / "spn.onnx", *size)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["depth", "confidence"]
    props = session.get_modelmeta().custom_metadata_map
    assert props["resize_policy"] == "native" and props["outputs"] == "depth,confidence"
    max_abs, max_rel = parity(model, path, 96, 160, batch=2, metadata=meta)
    assert max_rel <= 1e-4 and max_abs <= 1e-3


# --- metadata --------------------------------------------------------------------------------


def _meta(**overrides) -> ModelMetadata:
    fields = {"architecture": "fusion_spn", "kind": "fusion", "output": "metric", "stride": 32,
              "train_input_height": 256, "train_input_width": 640, "min_depth_m": 0.1,
              "max_depth_m": 100.0, "train_focal_px": 733.45}
    return ModelMetadata(**{**fields, **overrides})


def test_metadata_outputs_and_resize_policy_round_trip() -> None:
    meta = _meta(resize_policy="native", outputs="depth,confidence")
    again = ModelMetadata.from_dict(meta.to_dict())
    assert again == meta and again.output_names == ("depth", "confidence")
    assert again.has_confidence
    old = ModelMetadata.from_dict({k: v for k, v in meta.to_dict().items()
                                   if k not in ("resize_policy", "outputs")})
    assert old.resize_policy == "fixed" and old.output_names == ("depth",)
    assert not old.has_confidence


@pytest.mark.parametrize("overrides, message", [
    ({"resize_policy": "stretch"}, "resize_policy"),
    ({"outputs": "confidence,depth"}, "outputs"),
    ({"outputs": "depth,uncertainty"}, "outputs"),
    ({"outputs": "depth,confidence,confidence"}, "outputs"),
])
def test_metadata_rejects_bad_outputs_and_policies(overrides: dict, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        _meta(**overrides)


# --- loss ------------------------------------------------------------------------------------


def test_depth_loss_terms_in_metres() -> None:
    target = torch.full((1, 1, 2, 2), 10.0)
    pred = target + torch.tensor([[[[1.0, -1.0], [0.0, 0.0]]]])
    weight = torch.ones_like(target)
    value = weighted_depth_loss(pred, target, weight, l2_weight=0.1, log_weight=10.0)
    expected = (2 * (1.0 + 0.1) + 10.0 * np.log(11 / 10) + 10.0 * abs(np.log(9 / 10))) / 4
    assert float(value) == pytest.approx(expected, rel=1e-5)
    assert float(weighted_depth_loss(pred, target, torch.zeros_like(target))) == 0.0


def test_completion_loss_is_zero_for_a_perfect_confident_answer_and_trains_confidence() -> None:
    target = 5.0 + 20.0 * torch.rand(2, 1, 8, 8)
    valid = torch.ones_like(target, dtype=torch.bool)
    perfect = {"depth": target.clone(), "initial": target.clone(),
               "confidence": torch.ones_like(target)}
    assert float(completion_loss(perfect, target, valid).total) < 1e-4
    # Far-off pixels (40 % error) should get confidence 0: confidence 1 there costs.
    wrong = {**perfect, "depth": target * 1.4}
    sure = completion_loss(wrong, target, valid).confidence
    doubtful = completion_loss({**wrong, "confidence": torch.zeros_like(target)}, target,
                               valid).confidence
    assert float(sure) > 10.0 and float(doubtful) < 1e-4


def test_trust_loss_learns_which_returns_are_wrong_even_from_a_saturated_trust() -> None:
    target = torch.full((1, 1, 4, 4), 10.0)
    valid = torch.ones_like(target, dtype=torch.bool)
    sparse = torch.zeros_like(target)
    sparse[0, 0, 0] = 10.1  # right (1 %)
    sparse[0, 0, 1, :2] = 25.0  # the background through a window: wrong
    right = torch.zeros_like(target, dtype=torch.bool)
    right[0, 0, 0] = True
    # Pixels without a return do not count, whatever their logit.
    good = torch.where(right, 30.0, -30.0)
    assert float(trust_loss(good, sparse, target, valid, 0.05)) < 1e-6
    # Trust saturated at 1 everywhere (float32 sigmoid is exactly 1): the loss still has
    # a gradient pushing the wrong returns' logits down and none for the right ones.
    logit = torch.full_like(target, 40.0, requires_grad=True)
    assert float(torch.sigmoid(logit).min()) == 1.0
    loss = trust_loss(logit, sparse, target, valid, 0.05)
    assert float(loss) == pytest.approx(40.0 * 2 / 6, rel=1e-4)
    loss.backward()
    assert torch.all(logit.grad[0, 0, 1, :2] > 0.1)
    assert float(logit.grad[0, 0, 0].abs().max()) < 1e-6
    assert float(logit.grad[0, 0, 2:].abs().max()) == 0.0
    # No return with ground truth: zero, still attached.
    none = trust_loss(logit, sparse, target, torch.zeros_like(valid), 0.05)
    assert float(none) == 0.0 and none.requires_grad


def test_far_pixels_have_no_l2_term_and_their_own_weight() -> None:
    target = torch.full((1, 1, 2, 2), 100.0)
    valid = torch.ones_like(target, dtype=torch.bool)
    far = torch.zeros_like(valid)
    far[0, 0, 0] = True  # the top row is "sky"
    pred = torch.full_like(target, 100.0)
    pred[0, 0, 0] = 50.0  # 50 m short in the sky only
    outputs = {"depth": pred, "initial": pred, "confidence": torch.ones_like(pred)}
    terms = completion_loss(outputs, target, valid, far, far_weight=0.1, initial_weight=0.0,
                            confidence_weight=0.0)
    assert float(terms.depth) == pytest.approx(0.1 * (50.0 + 10.0 * np.log(2.0)), rel=1e-5)


# --- LiDAR augmentations ---------------------------------------------------------------------


def test_bleeding_moves_near_returns_next_to_far_ones_to_the_far_depth() -> None:
    sparse = torch.zeros(1, 20, 20)
    sparse[0, 10, 5:10] = 5.0  # the edge of a near object...
    sparse[0, 10, 10:15] = 30.0  # ...and the background beside it
    torch.manual_seed(0)
    every = bleed_background(sparse, 1.0)
    # Returns within 3 px of the background take its depth; farther ones and the background
    # itself stay.
    assert torch.allclose(every[0, 10, 7:10], torch.full((3,), 30.0))
    assert torch.equal(every[0, 10, 5:7], torch.full((2,), 5.0))
    assert torch.equal(every[0, 10, 10:15], sparse[0, 10, 10:15])
    assert torch.equal(bleed_background(sparse, 0.0), sparse)


def test_patches_remove_returns_inside_rectangles_only() -> None:
    torch.manual_seed(3)
    sparse = torch.ones(1, 40, 80)
    out = drop_patches(sparse)
    removed = out == 0
    assert 0 < int(removed.sum()) <= 4 * (10 * 20)
    assert torch.equal(out[~removed], sparse[~removed])


def test_bundled_fast_model_is_the_bundled_model_with_the_fast_options() -> None:
    """fusion_spn_synthetic_fast.onnx: the bundled model's architecture with
    FAST_FUSION_OPTIONS, its weights fine-tuned at feature scale 2 (FAST_FUSION_TRAINING;
    its checkpoint beside it, which onnxruntime agrees with), the same frozen mono prior as the
    bundled model, which is the bundled mono model's weights."""
    import json
    from pathlib import Path

    from depth_ros.models.checkpoints import load_checkpoint, model_from_checkpoint
    from depth_ros.weights import (
        DEFAULT_FUSION_MODEL,
        DEFAULT_MONO_MODEL,
        FAST_FUSION_MODEL,
        FAST_FUSION_OPTIONS,
        FAST_FUSION_TRAINING,
    )
    from training.export import parity

    bundled = load_checkpoint(Path(DEFAULT_FUSION_MODEL).with_suffix(".pt"))
    kwargs = json.loads(bundled["metadata"]["model_kwargs"])
    session = ort.InferenceSession(str(FAST_FUSION_MODEL), providers=["CPUExecutionProvider"])
    fast_kwargs = json.loads(session.get_modelmeta().custom_metadata_map["model_kwargs"])
    assert fast_kwargs == {**kwargs, **FAST_FUSION_OPTIONS, **FAST_FUSION_TRAINING}
    payload = load_checkpoint(Path(FAST_FUSION_MODEL).with_suffix(".pt"))
    assert json.loads(payload["metadata"]["model_kwargs"]) == fast_kwargs
    model, meta = model_from_checkpoint(payload)
    max_abs, max_rel = parity(model, FAST_FUSION_MODEL, 128, 256, metadata=meta)
    assert max_rel <= 1e-4 and max_abs <= 1e-3
    mono = load_checkpoint(Path(DEFAULT_MONO_MODEL).with_suffix(".pt"))["state_dict"]
    for state in (bundled["state_dict"], payload["state_dict"]):
        assert all(torch.equal(state[f"mono.{name}"], value) for name, value in mono.items())


def test_occlusion_radius_drops_returns_seen_past_a_near_edge_before_anything_else() -> None:
    torch.manual_seed(0)
    sparse = scan()
    # A return of the far road seen through the 5 m box, 2 px below one of the box's returns.
    row, col = 40, 50
    sparse[0, 0, row - 2, col] = 5.0
    sparse[0, 0, row, col] = 40.0
    image = torch.rand(1, 3, 64, 96)
    keeping = create_model("fusion_spn", **TINY, head_init_std=0.01).eval()
    dropping = create_model("fusion_spn", **TINY, head_init_std=0.01,
                            occlusion_radius_px=3).eval()
    dropping.load_state_dict(keeping.state_dict())  # no new parameters
    with torch.no_grad():
        kept = keeping(image, sparse)[0]
        dropped = dropping(image, sparse)[0]
        without = keeping(image, torch.where(occlusion_filter(sparse, 3), sparse, 0.0))[0]
    assert float(kept[0, 0, row, col]) == pytest.approx(40.0, rel=0.02)  # trust ≈ 0.99
    assert float(dropped[0, 0, row, col]) < 10.0  # the box's depth around it instead
    assert torch.equal(dropped, without)  # the same as never having had the return
    with pytest.raises(ValueError, match="occlusion_radius_px"):
        create_model("fusion_spn", **TINY, occlusion_radius_px=-1)
