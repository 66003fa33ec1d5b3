"""Depth Anything V2: the official architecture's parameter names and shapes, exactness against
Hugging Face's port, DINOv2's position-embedding resizing, strict loading, ONNX export and the
official ``infer_image`` pre-processing in ``DepthEstimator``.

No released weights can be downloaded here, so the architecture is checked against a
hand-written list of the official parameters and the numerics against
``transformers.DepthAnythingForDepthEstimation`` (test-only dependency) with random weights.
"""

from __future__ import annotations

import math
import re
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

from depth_ros.inference import DepthEstimator
from depth_ros.inference.preprocessing import (
    depth_anything_v2_input_size,
    resize_bilinear_align_corners,
)
from depth_ros.models import ModelMetadata, create_model, list_models
from depth_ros.models import load_depth_anything_v2 as lazy_load_depth_anything_v2
from depth_ros.models.checkpoints import CheckpointError
from depth_ros.models.depth_anything_v2 import DepthAnythingV2, load_depth_anything_v2
from depth_ros.models.vit import DinoVisionTransformer

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from training.checkpoint import save_checkpoint  # noqa: E402
from training.export import export_onnx  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])

# --- The official architecture, written out from depth_anything_v2/{dpt,dinov2}.py ----------
# (width, blocks, DPT features, DPT out_channels) per encoder.
OFFICIAL_SIZES = {
    "vits": (384, 12, 64, (48, 96, 192, 384)),
    "vitb": (768, 12, 128, (96, 192, 384, 768)),
    "vitl": (1024, 24, 256, (256, 512, 1024, 1024)),
}
OFFICIAL_PARAMETER_COUNTS = {"vits": 24_785_089, "vitb": 97_470_785, "vitl": 335_315_649}


def official_shapes(encoder: str) -> dict[str, tuple[int, ...]]:
    """Every key of the released state dicts with its shape."""
    d, blocks, f, (c1, c2, c3, c4) = OFFICIAL_SIZES[encoder]
    shapes: dict[str, tuple[int, ...]] = {
        "pretrained.cls_token": (1, 1, d),
        "pretrained.pos_embed": (1, 37 * 37 + 1, d),
        "pretrained.mask_token": (1, d),
        "pretrained.patch_embed.proj.weight": (d, 3, 14, 14),
        "pretrained.patch_embed.proj.bias": (d,),
        "pretrained.norm.weight": (d,),
        "pretrained.norm.bias": (d,),
    }
    for i in range(blocks):
        p = f"pretrained.blocks.{i}."
        shapes.update({
            p + "norm1.weight": (d,), p + "norm1.bias": (d,),
            p + "attn.qkv.weight": (3 * d, d), p + "attn.qkv.bias": (3 * d,),
            p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
            p + "ls1.gamma": (d,),
            p + "norm2.weight": (d,), p + "norm2.bias": (d,),
            p + "mlp.fc1.weight": (4 * d, d), p + "mlp.fc1.bias": (4 * d,),
            p + "mlp.fc2.weight": (d, 4 * d), p + "mlp.fc2.bias": (d,),
            p + "ls2.gamma": (d,),
        })
    h = "depth_head."
    for i, c in enumerate((c1, c2, c3, c4)):
        shapes[f"{h}projects.{i}.weight"] = (c, d, 1, 1)
        shapes[f"{h}projects.{i}.bias"] = (c,)
        shapes[f"{h}scratch.layer{i + 1}_rn.weight"] = (f, c, 3, 3)
    shapes.update({
        h + "resize_layers.0.weight": (c1, c1, 4, 4), h + "resize_layers.0.bias": (c1,),
        h + "resize_layers.1.weight": (c2, c2, 2, 2), h + "resize_layers.1.bias": (c2,),
        h + "resize_layers.3.weight": (c4, c4, 3, 3), h + "resize_layers.3.bias": (c4,),
    })
    for n in range(1, 5):
        p = f"{h}scratch.refinenet{n}."
        shapes[p + "out_conv.weight"] = (f, f, 1, 1)
        shapes[p + "out_conv.bias"] = (f,)
        for unit in ("resConfUnit1", "resConfUnit2"):
            for conv in ("conv1", "conv2"):
                shapes[f"{p}{unit}.{conv}.weight"] = (f, f, 3, 3)
                shapes[f"{p}{unit}.{conv}.bias"] = (f,)
    shapes.update({
        h + "scratch.output_conv1.weight": (f // 2, f, 3, 3),
        h + "scratch.output_conv1.bias": (f // 2,),
        h + "scratch.output_conv2.0.weight": (32, f // 2, 3, 3),
        h + "scratch.output_conv2.0.bias": (32,),
        h + "scratch.output_conv2.2.weight": (1, 32, 1, 1),
        h + "scratch.output_conv2.2.bias": (1,),
    })
    return shapes


@pytest.mark.parametrize("encoder", ["vits", "vitb", "vitl"])
def test_state_dict_keys_and_shapes_are_the_official_ones(encoder: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = DepthAnythingV2(encoder)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = official_shapes(encoder)
    assert sorted(set(ours) ^ set(expected)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    assert sum(math.prod(s) for s in ours.values()) == OFFICIAL_PARAMETER_COUNTS[encoder]


def test_registry_builds_it_with_the_contract_attributes() -> None:
    assert "depth_anything_v2" in list_models()
    with torch.device("meta"):
        relative = create_model("depth_anything_v2", encoder="vits")
        metric = create_model("depth_anything_v2", encoder="vitb", max_depth=80.0)
    assert (relative.kind, relative.stride, relative.output) == ("mono", 14, "relative")
    assert (metric.output, metric.max_depth) == ("metric", 80.0)
    with pytest.raises(ValueError, match="vits, vitb, vitl"):
        create_model("depth_anything_v2", encoder="vitg")


# --- Tiny models for fast behavioural tests ---------------------------------------------------
TINY_KWARGS = {"encoder": "vits", "embed_dim": 32, "depth": 4, "num_heads": 2, "features": 16,
               "out_channels": [8, 16, 32, 32], "layer_indices": [0, 1, 2, 3]}


def tiny_model(max_depth: float | None = None, seed: int = 0) -> DepthAnythingV2:
    torch.manual_seed(seed)
    model = DepthAnythingV2(**TINY_KWARGS, max_depth=max_depth)
    randomise(model)
    return model.eval()


def randomise(model: DepthAnythingV2) -> None:
    """Move every parameter off its initial value, and lift the last bias so ReLU passes."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
        model.depth_head.scratch.output_conv2[2].bias.fill_(2.0)


@pytest.mark.parametrize("size", [(14, 14), (70, 126), (126, 70), (518, 518)])
def test_output_is_n_1_h_w_at_multiples_of_14(size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = tiny_model()(torch.rand(2, 3, *size))
    assert out.shape == (2, 1, *size)
    assert out.min() >= 0


def test_input_off_the_patch_grid_is_rejected() -> None:
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        tiny_model()(torch.rand(1, 3, 70, 71))


def test_output_activation_relu_for_relative_sigmoid_times_max_depth_for_metric() -> None:
    relative, metric = tiny_model(), tiny_model(max_depth=20.0)
    metric.load_state_dict(relative.state_dict())
    logits = {}
    for name, model in (("relative", relative), ("metric", metric)):
        model.depth_head.scratch.output_conv2[2].register_forward_hook(
            lambda _m, _i, out, name=name: logits.__setitem__(name, out))
    image = torch.rand(1, 3, 70, 98)
    with torch.no_grad():
        rel, met = relative(image), metric(image)
    torch.testing.assert_close(logits["relative"], logits["metric"])
    torch.testing.assert_close(rel, F.relu(logits["relative"]))
    torch.testing.assert_close(met, 20.0 * torch.sigmoid(logits["metric"]))
    assert 0 < met.min() and met.max() < 20


def test_get_intermediate_layers_contract() -> None:
    vit = tiny_model().pretrained
    image = torch.rand(2, 3, 42, 56)
    with torch.no_grad():
        pairs = vit.get_intermediate_layers(image, [1, 3], return_class_token=True)
        maps = vit.get_intermediate_layers(image, 2, reshape=True)
        raw = vit.get_intermediate_layers(image, [3], norm=False)
    assert [(p.shape, c.shape) for p, c in pairs] == [((2, 12, 32), (2, 32))] * 2
    assert [m.shape for m in maps] == [(2, 32, 3, 4)] * 2  # the last two blocks: 2 and 3
    torch.testing.assert_close(maps[1], pairs[1][0].transpose(1, 2).reshape(2, 32, 3, 4))
    torch.testing.assert_close(vit.norm(raw[0]), pairs[1][0])
    with pytest.raises(ValueError, match="out of range"):
        vit.get_intermediate_layers(image, [4])


# --- Position embeddings: DINOv2's formula, computed by hand ------------------------------------
def official_pos_embed_numpy(pos: np.ndarray, grid_h: int, grid_w: int) -> np.ndarray:
    """DINOv2 ``interpolate_pos_encoding`` in float64 numpy: the 37 × 37 grid unchanged for a
    37 × 37 target, else bicubic (A = −0.75, half-pixel centres, borders replicated) with scale
    factors (n + 0.1) / 37, i.e. output i samples the grid at (i + 0.5) · 37 / (n + 0.1) − 0.5."""
    g = 37
    patches = pos[0, 1:].reshape(g, g, -1).astype(np.float64)
    if (grid_h, grid_w) == (g, g):
        return np.concatenate([pos[0, :1], patches.reshape(g * g, -1)])

    def taps(n: int) -> tuple[np.ndarray, np.ndarray]:
        a = -0.75
        src = (np.arange(n) + 0.5) * g / (n + 0.1) - 0.5
        base = np.floor(src)
        t = src - base

        def near(x: np.ndarray) -> np.ndarray:
            return ((a + 2) * x - (a + 3)) * x * x + 1

        def far(x: np.ndarray) -> np.ndarray:
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

        weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
        index = np.clip(base[:, None].astype(int) + np.arange(-1, 3)[None], 0, g - 1)
        return weights, index

    wr, ir = taps(grid_h)
    wc, ic = taps(grid_w)
    out = np.einsum("ik,jl,ikjlc->ijc", wr, wc, patches[ir[:, :, None, None], ic[None, None]])
    return np.concatenate([pos[0, :1], out.reshape(grid_h * grid_w, -1)])


def official_pos_embed_torch(pos: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """The same formula as the official code spells it: ``F.interpolate`` with
    ``scale_factor`` (not ``size``)."""
    if (grid_h, grid_w) == (37, 37):
        return pos
    grid = pos[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    out = F.interpolate(grid, scale_factor=((grid_h + 0.1) / 37, (grid_w + 0.1) / 37),
                        mode="bicubic", antialias=False)
    assert out.shape[-2:] == (grid_h, grid_w)
    return torch.cat((pos[:, :1], out.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)), 1)


@pytest.mark.parametrize("grid", [(37, 37), (20, 36), (26, 46), (37, 20), (40, 40), (74, 9),
                                  (1, 1)])
def test_pos_embedding_interpolation_is_dinov2s(grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    vit = DinoVisionTransformer(embed_dim=8, depth=1, num_heads=2)
    with torch.no_grad():
        vit.pos_embed.normal_()  # unit variance: errors read as relative errors
        ours = vit.interpolate_pos_encoding(*grid)
        by_torch = official_pos_embed_torch(vit.pos_embed, *grid)
    by_hand = official_pos_embed_numpy(vit.pos_embed.detach().numpy(), *grid)
    assert ours.shape == (1, grid[0] * grid[1] + 1, 8)
    assert np.abs(ours[0].numpy() - by_hand).max() < 5e-5
    assert (ours - by_torch).abs().max() < 5e-5
    if grid == (37, 37):
        assert torch.equal(ours, vit.pos_embed)


# --- Exactness against Hugging Face's port -------------------------------------------------------
def official_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official Depth Anything V2 key names → ``DepthAnythingForDepthEstimation``'s."""
    fixed = {
        "pretrained.cls_token": "backbone.embeddings.cls_token",
        "pretrained.mask_token": "backbone.embeddings.mask_token",
        "pretrained.pos_embed": "backbone.embeddings.position_embeddings",
        "pretrained.patch_embed.proj.weight":
            "backbone.embeddings.patch_embeddings.projection.weight",
        "pretrained.patch_embed.proj.bias": "backbone.embeddings.patch_embeddings.projection.bias",
        "pretrained.norm.weight": "backbone.layernorm.weight",
        "pretrained.norm.bias": "backbone.layernorm.bias",
        "depth_head.scratch.output_conv1.weight": "head.conv1.weight",
        "depth_head.scratch.output_conv1.bias": "head.conv1.bias",
        "depth_head.scratch.output_conv2.0.weight": "head.conv2.weight",
        "depth_head.scratch.output_conv2.0.bias": "head.conv2.bias",
        "depth_head.scratch.output_conv2.2.weight": "head.conv3.weight",
        "depth_head.scratch.output_conv2.2.bias": "head.conv3.bias",
    }
    block_parts = {"attn.proj": "attention.o_proj", "ls1.gamma": "layer_scale1.lambda1",
                   "ls2.gamma": "layer_scale2.lambda1"}
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
        elif m := re.fullmatch(r"pretrained\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key):
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3), strict=True):
                out[f"backbone.encoder.layer.{m[1]}.attention.{name}.{m[2]}"] = chunk
        elif m := re.fullmatch(r"pretrained\.blocks\.(\d+)\.(.+)", key):
            rest = m[2]
            for ours, theirs in block_parts.items():
                rest = rest.replace(ours, theirs)
            out[f"backbone.encoder.layer.{m[1]}.{rest}"] = value
        elif m := re.fullmatch(r"depth_head\.projects\.(\d)\.(.+)", key):
            out[f"neck.reassemble_stage.layers.{m[1]}.projection.{m[2]}"] = value
        elif m := re.fullmatch(r"depth_head\.resize_layers\.(\d)\.(.+)", key):
            out[f"neck.reassemble_stage.layers.{m[1]}.resize.{m[2]}"] = value
        elif m := re.fullmatch(r"depth_head\.scratch\.layer(\d)_rn\.weight", key):
            out[f"neck.convs.{int(m[1]) - 1}.weight"] = value
        elif m := re.fullmatch(r"depth_head\.scratch\.refinenet(\d)\.(.+)", key):
            # HF runs the fusion stage deepest first: its layer 0 is refinenet4.
            rest = (m[2].replace("out_conv", "projection").replace("resConfUnit", "residual_layer")
                    .replace("conv1", "convolution1").replace("conv2", "convolution2"))
            out[f"neck.fusion_stage.layers.{4 - int(m[1])}.{rest}"] = value
        else:
            raise KeyError(f"no Hugging Face name for {key}")
    return out


def hf_small(state: dict[str, torch.Tensor], max_depth: float | None) -> torch.nn.Module:
    """HF's Depth Anything V2 Small port holding ``state`` (official names), loaded strictly."""
    transformers = pytest.importorskip("transformers")
    backbone = transformers.Dinov2Config(
        image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12,
        num_attention_heads=6, layerscale_value=1.0, out_indices=[3, 6, 9, 12],  # blocks 2,5,8,11
        reshape_hidden_states=False, apply_layernorm=True)
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=384, reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32,
        depth_estimation_type="relative" if max_depth is None else "metric",
        max_depth=1 if max_depth is None else int(max_depth))  # HF's config wants an int
    with torch.device("meta"):  # every tensor comes from ``state``: skip the initialisation
        model = transformers.DepthAnythingForDepthEstimation(config)
    model.load_state_dict(official_to_hf(state), strict=True, assign=True)
    return model.eval()


def use_official_pos_embedding(hf: torch.nn.Module) -> None:
    """Replace HF's size-based resizing of the position embeddings by DINOv2's formula."""
    embeddings = hf.backbone.embeddings

    def interpolate(self: torch.nn.Module, tokens: torch.Tensor, height: int, width: int
                    ) -> torch.Tensor:
        return official_pos_embed_torch(self.position_embeddings, height // 14, width // 14)

    embeddings.interpolate_pos_encoding = types.MethodType(interpolate, embeddings)


def hf_normalise(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (image - mean) / std


# The native grid and one non-square one (364 × 644's 26 × 46 grid is checked against the
# hand-computed formula above; each ViT-S pass costs seconds on two cores).
HF_SIZES = [(518, 518), (280, 504)]


@pytest.fixture(scope="module")
def hf_outputs() -> dict[str, object]:
    """ViT-S with seeded random weights, ours and HF's (converted weights, strict load), run
    at each size; HF both with the official position-embedding formula and with its own."""
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    ours = DepthAnythingV2("vits").eval()
    randomise(ours)
    hf = hf_small(ours.state_dict(), None)
    images = {size: torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2))
              for size in HF_SIZES}
    results: dict[str, object] = {}
    with torch.no_grad():
        size = (280, 504)
        results[f"hf_own{size}"] = hf(
            pixel_values=hf_normalise(images[size])).predicted_depth[:, None]
        use_official_pos_embedding(hf)
        for size, image in images.items():
            results[f"ours{size}"] = ours(image)
            results[f"hf{size}"] = hf(pixel_values=hf_normalise(image)).predicted_depth[:, None]
    return results


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| over the spread of b (the outputs sit on a large offset)."""
    return float((a - b).abs().max() / (b.max() - b.min()))


@pytest.mark.parametrize("size", HF_SIZES)
def test_matches_hugging_face_with_the_official_pos_embedding(hf_outputs: dict,
                                                              size: tuple[int, int]) -> None:
    ours, hf = hf_outputs[f"ours{size}"], hf_outputs[f"hf{size}"]
    assert ours.shape == hf.shape == (1, 1, *size)
    assert relative_error(ours, hf) < 1e-4  # measured: ~5e-6, float rounding


def test_hugging_faces_own_pos_embedding_resizing_differs_off_the_native_grid(
        hf_outputs: dict) -> None:
    # HF resizes to size=(n_h, n_w); DINOv2 uses scale_factor=(n + 0.1) / 37. Same at 37 × 37
    # (checked above), visibly different elsewhere, so the non-square checks do test it.
    size = (280, 504)
    assert relative_error(hf_outputs[f"ours{size}"], hf_outputs[f"hf_own{size}"]) > 1e-3


def test_metric_head_matches_hugging_faces_metric_head() -> None:
    pytest.importorskip("transformers")
    torch.manual_seed(3)
    ours = DepthAnythingV2("vits", max_depth=20.0).eval()
    randomise(ours)
    with torch.no_grad():
        ours.depth_head.scratch.output_conv2[2].bias.fill_(0.0)
    hf = hf_small(ours.state_dict(), 20.0)
    image = torch.rand(1, 3, 154, 154)  # the native grid is exercised above; keep this small
    use_official_pos_embedding(hf)
    with torch.no_grad():
        a, b = ours(image), hf(pixel_values=hf_normalise(image)).predicted_depth[:, None]
    assert relative_error(a, b) < 1e-4  # measured: ~2.5e-6 (4.6e-5 m of an 18 m spread)
    assert 0 < a.min() and a.max() < 20


# --- Strict loading ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vits_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(4)
    return DepthAnythingV2("vits").state_dict()


def test_loads_a_released_style_pth_strictly(vits_state: dict, tmp_path: Path) -> None:
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(vits_state, path)  # the released files are plain state dicts
    model = load_depth_anything_v2(path)
    assert (model.encoder, model.output, model.training) == ("vits", "relative", False)
    assert all(torch.equal(v, vits_state[k]) for k, v in model.state_dict().items())
    metric = lazy_load_depth_anything_v2(path, encoder="vits", max_depth=80.0)
    assert (metric.output, metric.max_depth) == ("metric", 80.0)


@pytest.mark.parametrize("change, listed", [
    (lambda s: s.pop("pretrained.blocks.3.ls1.gamma"), "missing keys (1): "
     "pretrained.blocks.3.ls1.gamma"),
    (lambda s: s.update({"depth_head.scratch.stem_transpose.weight": torch.zeros(1)}),
     "unexpected keys (1): depth_head.scratch.stem_transpose.weight"),
    (lambda s: s.update({"pretrained.norm.bias": torch.zeros(7)}),
     "shape mismatches (1): pretrained.norm.bias (7,) != (384,)"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("depth_head.scratch.refinenet1.")],
     "missing keys (10): depth_head.scratch.refinenet1.out_conv.bias"),
])
def test_mismatched_checkpoints_fail_listing_the_keys(vits_state: dict, change,
                                                      listed: str) -> None:
    state = dict(vits_state)
    change(state)
    with pytest.raises(CheckpointError, match=re.escape(listed)):
        load_depth_anything_v2(state)


def test_wrong_encoder_fails_with_shape_mismatches(vits_state: dict) -> None:
    with pytest.raises(CheckpointError, match=r"vitb: shape mismatches \(\d+\): "):
        load_depth_anything_v2(vits_state, encoder="vitb")


class _NotATensor:
    pass


@pytest.mark.parametrize("payload, message", [
    ({"pretrained.pos_embed": _NotATensor()}, "cannot read checkpoint"),  # weights_only=True
    ([torch.zeros(1)], "does not hold a state dict"),
    ({"something": torch.zeros(1)}, "cannot tell the encoder"),
])
def test_unreadable_or_foreign_files_are_checkpoint_errors(tmp_path: Path, payload,
                                                           message: str) -> None:
    path = tmp_path / "foreign.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_depth_anything_v2(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_depth_anything_v2(tmp_path / "missing.pth")


# --- ONNX ----------------------------------------------------------------------------------------
def da_metadata(output: str = "relative", model_kwargs: dict | None = None,
                size: tuple[int, int] = (518, 518)) -> ModelMetadata:
    return ModelMetadata(architecture="depth_anything_v2", kind="mono", output=output,
                         stride=14, train_input_height=size[0], train_input_width=size[1],
                         min_depth_m=0.1, max_depth_m=80.0, train_focal_px=500.0,
                         train_data="test", model_kwargs=model_kwargs or {"encoder": "vits"})


@pytest.mark.slow
def test_vits_exports_to_onnx_with_dynamic_height_and_width(tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = DepthAnythingV2("vits").eval()
    randomise(model)
    path = export_onnx(model, da_metadata(), tmp_path / "da_v2_vits.onnx", 280, 504)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["inverse_depth"]
    # The trace size, and 518 × 518 (the position embeddings' other branch) with a batch of 2.
    for size, batch in [((280, 504), 1), ((518, 518), 2)]:
        image = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(6))
        with torch.no_grad():
            expected = model(image)
        got = torch.from_numpy(session.run(None, {"image": image.numpy()})[0])
        assert got.shape == expected.shape == (batch, 1, *size)
        assert relative_error(got, expected) < 1e-4


# --- DepthEstimator: the official infer_image pre-processing -------------------------------------
@pytest.mark.parametrize("image_size, target, expected", [
    ((375, 1242), (518, 518), (518, 1722)),  # KITTI: 1242 · 518/375 = 1715.6 → 123 · 14
    ((480, 640), (518, 518), (518, 686)),  # 690.7 → 49 · 14
    ((1000, 500), (518, 518), (1036, 518)),
    ((518, 518), (518, 518), (518, 518)),
    ((100, 100), (518, 518), (518, 518)),  # upscaling
    ((300, 300), (510, 510), (518, 518)),  # 510 rounds to 504 < 510: rounded up instead
    ((350, 700), (364, 644), (364, 728)),
])
def test_depth_anything_v2_input_size(image_size, target, expected) -> None:
    assert depth_anything_v2_input_size(*image_size, target) == expected


@pytest.mark.parametrize("shape, size", [((7, 9), (30, 41)), ((40, 50), (13, 17)),
                                         ((1, 5), (4, 1)), ((6, 6), (6, 6))])
def test_bilinear_align_corners_matches_torch(shape, size) -> None:
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(image)[None, None], size, mode="bilinear",
                             align_corners=True)[0, 0].numpy()
    got = resize_bilinear_align_corners(image, *size)
    assert got.shape == size and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.fixture(scope="module")
def tiny_da_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights-only .pt bundle of a tiny randomly initialised Depth Anything V2."""
    model = tiny_model()
    meta = da_metadata(model_kwargs=TINY_KWARGS, size=(126, 126))
    return save_checkpoint({"state_dict": model.state_dict(), "metadata": meta.to_dict()},
                           tmp_path_factory.mktemp("da_bundle") / "tiny_da.pt")


def official_infer_image(model: DepthAnythingV2, rgb: np.ndarray, input_size: int
                         ) -> np.ndarray:
    """Depth Anything V2's ``infer_image`` steps, written out (RGB input: no BGR swap)."""
    height, width = rgb.shape[:2]
    scale = max(input_size / height, input_size / width)  # "lower_bound", aspect kept
    new_h, new_w = (int(np.round(scale * s / 14) * 14) for s in (height, width))
    new_h, new_w = (v if v >= input_size else int(np.ceil(scale * s / 14) * 14)
                    for v, s in ((new_h, height), (new_w, width)))
    image = cv2.resize(rgb / 255.0, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    image = ((image - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).astype(np.float32)
    with torch.no_grad():
        features = model.pretrained.get_intermediate_layers(
            torch.from_numpy(image)[None], model.layer_indices, reshape=True)
        depth = model.depth_head(features, (new_h // 14 * 14, new_w // 14 * 14))
        depth = F.interpolate(depth, (height, width), mode="bilinear", align_corners=True)
    return depth[0, 0].numpy()


@pytest.mark.parametrize("image_size", [(75, 100), (120, 90), (126, 126)])
def test_estimator_reproduces_official_infer_image(tiny_da_bundle: Path,
                                                   image_size: tuple[int, int]) -> None:
    rgb = np.random.default_rng(7).integers(0, 256, (*image_size, 3), dtype=np.uint8)
    rgb = cv2.GaussianBlur(rgb, (5, 5), 0)  # image-like: neighbouring pixels correlate
    estimator = DepthEstimator(tiny_da_bundle, backend="torch", preprocess="depth_anything_v2")
    assert estimator.input_size == (126, 126)
    got = estimator.predict_relative(rgb)
    expected = official_infer_image(tiny_model(), rgb, 126)
    assert got.shape == expected.shape == image_size
    assert np.abs(got - expected).max() < 1e-4 * (expected.max() - expected.min())


def test_estimator_default_preprocessing_is_unchanged_and_bad_names_fail(
        tiny_da_bundle: Path) -> None:
    estimator = DepthEstimator(tiny_da_bundle, backend="torch")
    assert estimator.preprocess == "default"
    assert estimator.network_size(75, 100) == (126, 126)
    official = DepthEstimator(tiny_da_bundle, backend="torch", preprocess="depth_anything_v2")
    assert official.network_size(75, 100) == (126, 168)
    with pytest.raises(ValueError, match="preprocess must be one of"):
        DepthEstimator(tiny_da_bundle, preprocess="midas")
