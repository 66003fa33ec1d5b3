"""training/export.py on a fusion model: inputs ``image`` and ``sparse_depth`` sharing dynamic
batch/height/width, parity with onnxruntime on LiDAR-like sparse input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from depth_ros.models import ModelMetadata, create_model, read_onnx_metadata

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training.checkpoint import save_checkpoint  # noqa: E402
from training.export import lidar_like_sparse_depth  # noqa: E402

KWARGS = {"image_widths": [8, 8, 12, 16, 24], "image_depths": [1, 1, 1, 1],
          "lidar_widths": [4, 4, 8, 8, 16], "nconv_channels": 4, "num_heads": 2,
          "decoder_channels": [4, 8, 8, 8]}
META = ModelMetadata(architecture="fusion_attention", kind="fusion", output="metric",
                     stride=32, train_input_height=64, train_input_width=128, min_depth_m=0.1,
                     max_depth_m=80.0, train_focal_px=74.36, train_data="test",
                     model_kwargs=KWARGS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("fusion_export")
    torch.manual_seed(0)
    model = create_model("fusion_attention", **KWARGS).eval()
    checkpoint = base / "fusion.pt"
    save_checkpoint({"state_dict": model.state_dict(), "metadata": META.to_dict()}, checkpoint)
    output = base / "bundle" / "fusion.onnx"
    result = subprocess.run([sys.executable, "training/export.py", "--checkpoint",
                             str(checkpoint), "--output", str(output), "--check-size", "64x128",
                             "--check-size", "96x160"], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"model": model, "onnx": output, "result": result}


def test_fusion_graph_has_two_inputs_sharing_dynamic_dims(exported: dict) -> None:
    model = onnx.load(os.fspath(exported["onnx"]))
    assert [i.name for i in model.graph.input] == ["image", "sparse_depth"]
    assert [o.name for o in model.graph.output] == ["depth"]
    image, sparse = ([d for d in i.type.tensor_type.shape.dim] for i in model.graph.input)
    assert image[1].dim_value == 3 and sparse[1].dim_value == 1
    for axis in (0, 2, 3):
        assert image[axis].dim_param and image[axis].dim_param == sparse[axis].dim_param
    assert read_onnx_metadata(exported["onnx"]) == META


def test_fusion_cli_reports_parity(exported: dict) -> None:
    lines = re.findall(r"parity (\d+)x(\d+) batch (\d): .* max relative = (\S+)",
                       exported["result"].stdout)
    assert [(h, w, b) for h, w, b, _ in lines] == [("64", "128", "1"), ("96", "160", "2")]
    assert all(float(rel) <= 1e-4 for *_, rel in lines)
    assert "inputs image N×3×H×W and sparse_depth N×1×H×W" in exported["result"].stdout
    assert "every operator of the graph is supported" in exported["result"].stdout


def test_lidar_like_sparse_depth_is_sparse_and_below_the_horizon() -> None:
    depth = lidar_like_sparse_depth(2, 96, 160, torch.Generator().manual_seed(0))
    assert depth.shape == (2, 1, 96, 160)
    assert 0.03 < float((depth > 0).float().mean()) < 0.07  # ~5 % of the pixels
    assert not depth[:, :, : (2 * 96) // 5].any()
    valid = depth[depth > 0]
    assert 2.0 <= float(valid.min()) and float(valid.max()) <= 60.0


@pytest.mark.parametrize(("batch", "height", "width", "empty"), [
    (1, 64, 128, False), (2, 160, 224, False), (1, 96, 128, True)])
def test_fusion_onnxruntime_equals_torch(exported: dict, batch: int, height: int, width: int,
                                         empty: bool) -> None:
    generator = torch.Generator().manual_seed(7)
    image = torch.rand(batch, 3, height, width, generator=generator)
    sparse = lidar_like_sparse_depth(batch, height, width, generator)
    if empty:  # a frame with no LiDAR at all
        sparse = torch.zeros_like(sparse)
    with torch.no_grad():
        expected = exported["model"](image, sparse).numpy()
    session = ort.InferenceSession(os.fspath(exported["onnx"]),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy(), "sparse_depth": sparse.numpy()})[0]
    assert got.shape == (batch, 1, height, width)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
