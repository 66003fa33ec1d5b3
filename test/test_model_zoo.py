"""Every registered model, one harness: forward at two resolutions, gradients to every trainable
parameter, ONNX export with dynamic H/W, onnxruntime equal to PyTorch. Then the building blocks
the models share (encoders, the coarse-to-fine decoder, the activation) and the CPU budget.

A model registered without an entry in ``TINY_KWARGS`` fails here: new models cannot skip it.
The harness reads the model's own ``stride`` (input sizes) and ``kind`` (``fusion`` models get
``sparse_depth`` as a second input), so it needs nothing else from a model's author.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.export import Dim
from torch.utils.flop_counter import FlopCounterMode

from depth_ros.models import create_model, list_models
from depth_ros.models.attention import set_fused_attn
from depth_ros.models.decoders import ASPP, CoarseToFineDecoder
from depth_ros.models.encoders import RESNET_CONFIGS, MobileNetEncoder, ResNetEncoder
from depth_ros.models.heads import DepthActivation
from depth_ros.models.hybrid import HybridEncoder
from depth_ros.models.sparse import SparseDepthEncoder

_TINY_ENCODER = {"widths": (8, 8, 12, 16, 24)}
_TINY_DECODER = {"decoder_channels": (4, 8, 8, 8)}

# Tiny constructor arguments for every registered model (seconds per test, tiny ONNX files).
TINY_KWARGS: dict[str, dict] = {
    "mono_cnn": {"base_channels": 8},
    "mono_resnet_c2f": {"width_multiplier": 0.25, "preact": True, **_TINY_DECODER},
    "mono_mobilenet_c2f": {**_TINY_ENCODER, "depths": (1, 2, 1, 1), "expansion": 2.0,
                           **_TINY_DECODER},
    "mono_hybrid_c2f": {**_TINY_ENCODER, "dim": 16, "num_blocks": 1, "num_heads": 2,
                        **_TINY_DECODER},
    "fusion_attention": {"image_widths": (8, 8, 12, 16, 24), "image_depths": (1, 1, 1, 1),
                         "lidar_widths": (4, 4, 8, 8, 16), "nconv_channels": 4,
                         "num_heads": 2, **_TINY_DECODER},
    "mono_diffusion": {"widths": (8, 12, 16, 24, 32), "depths": (1, 1, 1, 1),
                       "latent_channels": 4, "width": 8, "sample_steps": 2},
    "depth_anything_v2": {"encoder": "vits", "embed_dim": 32, "depth": 4, "num_heads": 2,
                          "features": 16, "out_channels": (8, 16, 16, 32),
                          "layer_indices": (0, 1, 2, 3)},
    # Random (not zero) head weights: gradients must reach the U-Net in the first step here.
    "fusion_spn": {"widths": (4, 8, 8, 8), "guide_channels": 4, "dilations": (1, 2),
                   "train_feature_scales": (1, 2), "head_init_std": 0.01},
}
# Parameters that exist only so released state dicts load, and that the forward pass never
# uses by design (prefixes): DINOv2's mask token (masked-image pretraining only) and the first
# residual unit of upstream DPT's last fusion block, which has no skip input to refine.
UNUSED_BY_DESIGN: dict[str, tuple[str, ...]] = {
    "depth_anything_v2": ("pretrained.mask_token",
                          "depth_head.scratch.refinenet4.resConfUnit1."),
    # Trained through the loss (``head.encode_target`` of the ground truth), not the forward.
    "mono_diffusion": ("head.gt_encoder.",),
}
# Input sizes in strides (H, W): two resolutions, neither square.
SIZES_IN_STRIDES = ((2, 3), (3, 4))
MODEL_NAMES = list_models()
# Models of this package whose default size must fit the CPU budget (DESIGN.md: ≲ 8 GMACs at
# 1216×352 for 10 frames/s on 2 cores); Depth Anything V2 is a large pretrained model.
REAL_TIME_MODELS = ("mono_cnn", "mono_resnet_c2f", "mono_mobilenet_c2f", "mono_hybrid_c2f",
                    "fusion_attention", "fusion_spn")


def build(name: str, **overrides) -> nn.Module:
    """The tiny version of a registered model (fails, never skips, without an entry)."""
    if name not in TINY_KWARGS:
        pytest.fail(f"registered model {name!r} has no TINY_KWARGS entry in {__file__}")
    torch.manual_seed(0)
    return create_model(name, **{**TINY_KWARGS[name], **overrides})


def input_names(model: nn.Module) -> list[str]:
    """The I/O contract's input names for the model's kind."""
    return ["image", "sparse_depth"] if model.kind == "fusion" else ["image"]


def sparse_depth_like(image: torch.Tensor, generator: torch.Generator,
                      density: float = 0.08) -> torch.Tensor:
    """LiDAR-like sparse depth: random returns in the lower 3/5 of the frame, none above."""
    n, _, height, width = image.shape
    depth = 2.0 + 58.0 * torch.rand(n, 1, height, width, generator=generator)
    keep = torch.rand(n, 1, height, width, generator=generator) < density
    keep[:, :, : (2 * height) // 5] = False
    return depth * keep


def make_inputs(model: nn.Module, height: int, width: int, batch: int = 2,
                seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the model's kind at height × width."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=generator)
    if model.kind == "fusion":
        return image, sparse_depth_like(image, generator)
    return (image,)


def sizes(model: nn.Module) -> list[tuple[int, int]]:
    """Two input sizes that are multiples of the model's stride."""
    return [(h * model.stride, w * model.stride) for h, w in SIZES_IN_STRIDES]


def output_names(model: nn.Module) -> list[str]:
    """The I/O contract's output names: the depth, then any extra outputs (confidence)."""
    return list(getattr(model, "outputs", ())) or [
        "depth" if model.output == "metric" else "inverse_depth"]


def run(model: nn.Module, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """Every output of a forward pass (models with a confidence output return a tuple)."""
    out = model(*inputs)
    return list(out) if isinstance(out, tuple | list) else [out]


def max_depth_of(model: nn.Module) -> float | None:
    """The largest metric depth a model states, if it states one."""
    for attribute in ("max_depth_m", "max_depth"):
        value = getattr(model, attribute, None)
        if value is not None:
            return float(value)
    return None


def test_every_registered_model_has_tiny_kwargs() -> None:
    missing = sorted(set(MODEL_NAMES) - set(TINY_KWARGS))
    stale = sorted(set(TINY_KWARGS) - set(MODEL_NAMES))
    assert missing == [], f"add TINY_KWARGS entries for {missing}"
    assert stale == [], f"TINY_KWARGS names models that are not registered: {stale}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_states_kind_stride_and_output(name: str) -> None:
    model = build(name)
    assert model.kind in ("mono", "fusion")
    assert isinstance(model.stride, int) and model.stride >= 1
    assert model.output in ("metric", "relative")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_at_two_resolutions(name: str) -> None:
    model = build(name).eval()
    for height, width in sizes(model):
        with torch.no_grad():
            out, *extra = run(model, *make_inputs(model, height, width))
        assert out.shape == (2, 1, height, width)
        assert torch.isfinite(out).all()
        assert float(out.min()) >= 0.0
        if model.output == "metric" and max_depth_of(model) is not None:
            assert float(out.max()) <= max_depth_of(model) + 1e-4
        assert len(extra) == len(output_names(model)) - 1
        for name, value in zip(output_names(model)[1:], extra, strict=True):
            assert name == "confidence" and value.shape == out.shape
            assert 0.0 <= float(value.min()) and float(value.max()) <= 1.0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_trainable_parameter(name: str) -> None:
    model = build(name).train()
    height, width = sizes(model)[0]
    inputs = make_inputs(model, height, width)
    generator = torch.Generator().manual_seed(1)
    loss = sum((out * torch.rand(out.shape, generator=generator)).mean()
               for out in run(model, *inputs))
    loss.backward()
    unused = UNUSED_BY_DESIGN.get(name, ())
    trainable = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad and not n.startswith(unused)]
    assert trainable
    missing = [n for n, p in trainable if p.grad is None or not p.grad.any()]
    not_finite = [n for n, p in trainable if p.grad is not None
                  and not torch.isfinite(p.grad).all()]
    assert missing == [] and not_finite == []


def export_dynamic(model: nn.Module, path: Path, height: int, width: int) -> None:
    """Dynamo export, opset 18, one self-contained file, dynamic batch and H/W (stride ×k)."""
    batch = Dim("batch", min=1, max=1024)
    dims = {0: batch,
            2: model.stride * Dim("height_in_strides", min=1, max=512),
            3: model.stride * Dim("width_in_strides", min=1, max=512)}
    names = input_names(model)
    program = torch.onnx.export(model, make_inputs(model, height, width, batch=1), dynamo=True,
                                opset_version=18, input_names=names,
                                output_names=output_names(model),
                                dynamic_shapes={n: dims for n in names}, external_data=False,
                                verbose=False)
    program.save(os.fspath(path))
    onnx.checker.check_model(os.fspath(path), full_check=True)


def max_relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest |got − expected| relative to the expected value (floored as in export.py)."""
    diff = np.abs(got.astype(np.float64) - expected)
    scale = np.maximum(np.abs(expected), 1e-3 * max(float(np.abs(expected).max()), 1e-12))
    return float((diff / scale).max())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_onnx_export_with_dynamic_size_matches_pytorch(name: str, tmp_path: Path) -> None:
    model = build(name).eval()
    path = tmp_path / f"{name}.onnx"
    first, second = sizes(model)
    export_dynamic(model, path, *first)
    graph_inputs = onnx.load(os.fspath(path)).graph.input
    assert [i.name for i in graph_inputs] == input_names(model)
    assert all(not d.HasField("dim_value") for i in graph_inputs
               for d in i.type.tensor_type.shape.dim[2:]), "H and W must stay dynamic"
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    for (height, width), batch in ((first, 1), (second, 2)):
        inputs = make_inputs(model, height, width, batch=batch, seed=3)
        with torch.no_grad():
            expected = [t.numpy() for t in run(model, *inputs)]
        outputs = session.run(None, {n: t.numpy() for n, t in zip(input_names(model), inputs,
                                                                  strict=True)})
        assert [o.name for o in session.get_outputs()] == output_names(model)
        for got, want in zip(outputs, expected, strict=True):
            assert got.shape == want.shape
            relative = max_relative_difference(got, want)
            print(f"{name} {height}x{width} batch {batch}: max |ort - torch| = "
                  f"{np.abs(got - want).max():.2e}, max relative = {relative:.2e}")
            assert relative <= 1e-4


# --- building blocks --------------------------------------------------------------------------

ENCODERS = {
    "resnet": lambda: ResNetEncoder(widths=(8, 8, 12, 16, 24), depths=(1, 1, 1, 1)),
    "resnet_preact": lambda: ResNetEncoder(widths=(8, 8, 12, 16, 24), depths=(1, 0, 2, 1),
                                           preact=True),
    "resnet18_preact": lambda: ResNetEncoder.from_config("resnet18", preact=True,
                                                         width_multiplier=0.125),
    "resnet34": lambda: ResNetEncoder.from_config("resnet34", width_multiplier=0.0625),
    "mobilenet": lambda: MobileNetEncoder(widths=(8, 8, 12, 16, 24), depths=(1, 2, 1, 1),
                                          expansion=2.0),
    "hybrid": lambda: HybridEncoder(widths=(8, 8, 12, 16, 24), dim=16, num_blocks=1,
                                    num_heads=2),
    "sparse": lambda: SparseDepthEncoder(widths=(4, 4, 8, 8, 16), nconv_channels=4),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
@pytest.mark.parametrize(("height", "width"), [(64, 96), (96, 128)])
def test_encoders_keep_the_multi_scale_contract(name: str, height: int, width: int) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[name]().eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, height, width, generator=generator)
    x = sparse_depth_like(image, generator) if name == "sparse" else image
    with torch.no_grad():
        features = encoder(x)
    assert encoder.strides == [2, 4, 8, 16, 32]
    assert [f.shape[1] for f in features] == encoder.out_channels
    assert [tuple(f.shape[2:]) for f in features] == [(height // s, width // s)
                                                       for s in encoder.strides]
    assert all(torch.isfinite(f).all() for f in features)


@pytest.mark.parametrize("name", sorted(RESNET_CONFIGS))
def test_resnet_configs_have_their_widths_and_depths(name: str) -> None:
    widths, depths = RESNET_CONFIGS[name]
    encoder = ResNetEncoder.from_config(name, preact=True)
    assert encoder.out_channels == list(widths)
    assert [len(stage) - 1 for stage in encoder.stages] == list(depths)


def test_unknown_resnet_config_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown ResNet config 'resnet50'.*resnet18"):
        ResNetEncoder.from_config("resnet50")


def test_post_activation_resnet_keeps_its_state_dict_layout() -> None:
    """The bundled mono_cnn checkpoints load only if the post-activation keys are unchanged."""
    keys = set(ResNetEncoder(widths=(8, 8, 12, 16, 24), depths=(1, 1, 1, 1)).state_dict())
    assert "stem.0.weight" in keys and "stages.0.1.conv1.0.weight" in keys
    assert not any(k.startswith("norms.") for k in keys)


def test_preact_features_are_normalised_and_activated() -> None:
    encoder = ResNetEncoder(widths=(8, 8, 12, 16, 24), depths=(1, 1, 1, 1), preact=True).train()
    with torch.no_grad():
        features = encoder(torch.rand(4, 3, 64, 96))
    # Each map leaves through BatchNorm + ReLU: non-negative, about half the units active.
    assert all(float(f.min()) >= 0.0 for f in features)
    assert all(0.2 < float((f > 0).float().mean()) < 0.8 for f in features)


def tiny_pyramid(batch: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(batch, c, 64 // s, 96 // s, generator=generator)
            for c, s in zip((8, 8, 12, 16, 24), (2, 4, 8, 16, 32), strict=True)]


def test_coarse_to_fine_decoder_predicts_residuals_on_upsampled_coarser_logits() -> None:
    torch.manual_seed(0)
    decoder = CoarseToFineDecoder((8, 8, 12, 16, 24), (4, 8, 8, 8)).eval()
    features = tiny_pyramid()
    with torch.no_grad():
        pyramid = decoder.forward_pyramid(features)
        assert [tuple(p.shape) for p in pyramid] == [(2, 1, 64 // s, 96 // s)
                                                      for s in (2, 4, 8, 16, 32)]
        assert torch.equal(decoder(features), pyramid[0])
        # With the finest residual switched off, the finest logits are the coarser ones
        # upsampled: each level only adds what the coarser one could not explain.
        decoder.residuals[0].weight.zero_()
        decoder.residuals[0].bias.zero_()
        upsampled = nn.functional.interpolate(pyramid[1], size=(32, 48), mode="bilinear",
                                              align_corners=False)
        assert torch.allclose(decoder(features), upsampled, atol=1e-6)
        assert not torch.allclose(pyramid[0], upsampled, atol=1e-3)


def test_aspp_trains_with_batch_one_and_sees_the_whole_map() -> None:
    torch.manual_seed(0)
    aspp = ASPP(16, 8, rates=(1, 2)).train()
    x = torch.rand(1, 16, 3, 5, requires_grad=True)
    aspp(x)[0, :, 0, 0].sum().backward()
    # The image-pooling branch makes one output pixel depend on every input pixel.
    assert (x.grad.abs().sum(dim=1) > 0).all()


@pytest.mark.parametrize("output", ["metric", "relative"])
def test_depth_activation(output: str) -> None:
    activation = DepthActivation(output, min_depth_m=0.5, max_depth_m=40.0)
    out = activation(torch.randn(2, 1, 4, 6) * 10, (8, 12))
    assert out.shape == (2, 1, 8, 12)
    if output == "metric":
        assert 0.5 <= float(out.min()) and float(out.max()) <= 40.0
    else:
        assert float(out.min()) == 0.0 and float(out.max()) > 1.0


def test_depth_activation_rejects_unknown_output() -> None:
    with pytest.raises(ValueError, match="output must be one of"):
        DepthActivation("disparity")


# --- budget -----------------------------------------------------------------------------------

def total_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """Multiply-accumulates of every convolution, linear layer and matmul (plain attention, so
    attention is counted too)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        set_fused_attn(model, False).eval()(*inputs)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("name", REAL_TIME_MODELS)
def test_default_model_fits_the_real_time_budget(name: str) -> None:
    model = create_model(name)
    params = sum(p.numel() for p in model.parameters())
    gmacs = total_macs(model, make_inputs(model, 352, 1216, batch=1)) / 1e9
    assert params <= 2.5e6
    assert gmacs <= 8.0
