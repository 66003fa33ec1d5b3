"""Model registry, building blocks, mono_cnn and ModelMetadata."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from depth_ros.models import (
    MetadataError,
    ModelMetadata,
    create_model,
    list_models,
    register_model,
)
from depth_ros.models.encoders import ResNetEncoder

TINY = {"base_channels": 8}


def conv_macs(model: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of every convolution for one image (the cost that matters)."""
    total = 0

    def hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, height, width))
    for handle in handles:
        handle.remove()
    return total


def test_registry_lists_mono_cnn() -> None:
    assert "mono_cnn" in list_models()
    assert list_models() == sorted(list_models())


def test_unknown_model_error_lists_registered_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'no_such_net'.*mono_cnn"):
        create_model("no_such_net")


def test_bad_constructor_argument_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bad arguments for model 'mono_cnn'"):
        create_model("mono_cnn", base_chanels=8)


def test_registering_a_taken_name_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        @register_model("mono_cnn")
        class Other(nn.Module):
            pass


def test_importing_inference_and_models_does_not_import_torch() -> None:
    code = ("import sys, depth_ros.inference, depth_ros.models; "
            "depth_ros.models.ModelMetadata; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_encoder_returns_five_scales_finest_first() -> None:
    encoder = ResNetEncoder(widths=(8, 12, 16, 32, 48), depths=(1, 1, 1, 1))
    features = encoder(torch.rand(2, 3, 64, 96))
    assert encoder.strides == [2, 4, 8, 16, 32]
    assert [f.shape[1] for f in features] == encoder.out_channels == [8, 12, 16, 32, 48]
    assert [tuple(f.shape[2:]) for f in features] == [(64 // s, 96 // s)
                                                       for s in encoder.strides]


@pytest.mark.parametrize(("height", "width"), [(64, 128), (96, 320)])
def test_mono_cnn_forward_shape_and_range(height: int, width: int) -> None:
    model = create_model("mono_cnn", min_depth_m=0.5, max_depth_m=50.0, **TINY).eval()
    with torch.no_grad():
        depth = model(torch.rand(2, 3, height, width))
    assert depth.shape == (2, 1, height, width)
    assert float(depth.min()) >= 0.5 and float(depth.max()) <= 50.0


def test_mono_cnn_relative_output_is_non_negative_and_unbounded() -> None:
    torch.manual_seed(0)
    model = create_model("mono_cnn", output="relative", **TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert model.output == "relative" and float(out.min()) >= 0.0


def test_mono_cnn_rejects_unknown_output() -> None:
    with pytest.raises(ValueError, match="output must be one of"):
        create_model("mono_cnn", output="disparity", **TINY)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = create_model("mono_cnn", **TINY).train()
    model(torch.rand(2, 3, 64, 96)).log().mean().backward()
    missing = [name for name, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert missing == []


def test_default_mono_cnn_fits_the_real_time_budget() -> None:
    model = create_model("mono_cnn")
    params = sum(p.numel() for p in model.parameters())
    gmacs = conv_macs(model, 352, 1216) / 1e9
    # ≤ 8 GMACs at KITTI size is the 10 frames/s budget; ≤ 2.5 M float32 parameters keeps the
    # ONNX file and the checkpoint together under 20 MB.
    assert params <= 2.5e6
    assert gmacs <= 6.0


META = ModelMetadata(architecture="mono_cnn", kind="mono", output="metric", stride=32,
                     train_input_height=128, train_input_width=416, min_depth_m=0.1,
                     max_depth_m=80.0, train_focal_px=241.6738,
                     train_data="synthetic seeds 0..3", version="3",
                     model_kwargs={"base_channels": 16, "encoder_depths": [1, 1, 1, 1]})


def test_metadata_round_trip_through_strings() -> None:
    as_strings = META.to_dict()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in as_strings.items())
    assert as_strings["stride"] == "32" and as_strings["train_focal_px"] == "241.6738"
    assert ModelMetadata.from_dict(as_strings) == META
    assert META.train_input_size == (128, 416)


def test_metadata_from_dict_ignores_foreign_keys_and_names_missing_ones() -> None:
    assert ModelMetadata.from_dict({**META.to_dict(), "producer": "x"}) == META
    partial = {k: v for k, v in META.to_dict().items() if k not in ("stride", "kind")}
    with pytest.raises(MetadataError, match="lacks kind, stride"):
        ModelMetadata.from_dict(partial)


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "stereo"}, "kind must be one of"),
    ({"output": "disparity"}, "output must be one of"),
    ({"stride": 0}, "stride must be a positive"),
    ({"train_input_width": 400}, "train_input_width must be a positive multiple"),
    ({"min_depth_m": 90.0}, "min_depth_m < max_depth_m"),
    ({"train_focal_px": 0.0}, "train_focal_px must be positive"),
    ({"architecture": ""}, "architecture"),
])
def test_metadata_validation(change: dict, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        ModelMetadata(**{**META.__dict__, **change})


@pytest.mark.parametrize(("key", "value"), [("stride", "32.5"), ("max_depth_m", "far"),
                                            ("model_kwargs", "{not json")])
def test_metadata_from_dict_rejects_malformed_values(key: str, value: str) -> None:
    with pytest.raises(MetadataError, match=key):
        ModelMetadata.from_dict({**META.to_dict(), key: value})


def test_checkpoint_with_missing_or_extra_keys_lists_them() -> None:
    from depth_ros.models.checkpoints import CheckpointError, model_from_checkpoint

    model = create_model("mono_cnn", **TINY)
    meta = ModelMetadata(architecture="mono_cnn", kind="mono", output="metric", stride=32,
                         train_input_height=64, train_input_width=128, min_depth_m=0.1,
                         max_depth_m=80.0, train_focal_px=100.0, train_data="test",
                         model_kwargs=TINY)
    state = dict(model.state_dict())
    state.pop("head.conv.bias")
    state["head.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        model_from_checkpoint({"state_dict": state, "metadata": meta.to_dict()})
    message = str(info.value)
    assert "head.conv.bias" in message and "head.extra.weight" in message
