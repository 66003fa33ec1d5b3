"""training/export.py: one ONNX file with named dynamic I/O and metadata, equal to PyTorch."""

from __future__ import annotations

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
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from training.checkpoint import save_checkpoint  # noqa: E402

KWARGS = {"base_channels": 8}
META = ModelMetadata(architecture="mono_cnn", kind="mono", output="metric", stride=32,
                     train_input_height=64, train_input_width=128, min_depth_m=0.1,
                     max_depth_m=80.0, train_focal_px=74.36, train_data="test", version="0",
                     model_kwargs=KWARGS)


def tiny_model() -> torch.nn.Module:
    """mono_cnn at base width 8 with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = create_model("mono_cnn", **KWARGS)
    with torch.no_grad():  # a few train-mode passes move BN statistics off their defaults
        for _ in range(3):
            model.train()(torch.rand(2, 3, 64, 128))
    return model.eval()


def run_export(*args: str) -> subprocess.CompletedProcess:
    """The documented command line, from the repository root."""
    return subprocess.run([sys.executable, "training/export.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("export")
    model = tiny_model()
    checkpoint = base / "run" / "best.pt"
    save_checkpoint({"state_dict": model.state_dict(), "metadata": META.to_dict(),
                     "optimizer": {}, "step": 3}, checkpoint)
    output = base / "bundle" / "tiny.onnx"
    result = run_export("--checkpoint", str(checkpoint), "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    return {"model": model, "onnx": output, "result": result}


def test_cli_reports_parity_at_two_sizes(exported: dict) -> None:
    lines = re.findall(r"parity (\d+)x(\d+) batch (\d): max \|onnxruntime - torch\| = (\S+), "
                       r"max relative = (\S+)", exported["result"].stdout)
    assert [(h, w, b) for h, w, b, _, _ in lines] == [("64", "128", "1"), ("352", "1216", "2")]
    assert all(float(rel) <= 1e-4 for *_, rel in lines)


def test_graph_has_named_dynamic_io(exported: dict) -> None:
    model = onnx.load(str(exported["onnx"]))
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["depth"]
    dims = [d for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1].dim_value == 3
    assert all(dims[i].dim_param for i in (0, 2, 3)), dims
    assert any(op.domain in ("", "ai.onnx") and op.version == 18 for op in model.opset_import)
    # One self-contained file: no tensor lives in external data.
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL
                   for t in model.graph.initializer)


def test_metadata_travels_in_the_onnx_file(exported: dict) -> None:
    props = {p.key: p.value for p in onnx.load(str(exported["onnx"])).metadata_props}
    assert props == META.to_dict()
    assert read_onnx_metadata(exported["onnx"]) == META


def test_read_onnx_metadata_without_the_onnx_package(exported: dict,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert read_onnx_metadata(exported["onnx"]) == META


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 64, 128), (2, 160, 480)])
def test_onnxruntime_equals_torch(exported: dict, batch: int, height: int, width: int) -> None:
    image = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = exported["model"](image).numpy()
    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy()})[0]
    assert got.shape == (batch, 1, height, width)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=0)


def test_release_checkpoint_beside_the_onnx(exported: dict) -> None:
    payload = torch.load(exported["onnx"].with_suffix(".pt"), weights_only=True)
    assert set(payload) == {"state_dict", "metadata"}
    assert payload["metadata"] == META.to_dict()


@pytest.mark.parametrize(("setup", "args", "message"), [
    ("corrupt", [], "cannot read checkpoint"),
    ("good", ["--height", "50"], "multiple of the stride 32"),
])
def test_export_failure_is_one_line(tmp_path: Path, setup: str, args: list[str],
                                    message: str) -> None:
    checkpoint = tmp_path / "model.pt"
    if setup == "corrupt":
        checkpoint.write_bytes(b"not a checkpoint")
    else:
        save_checkpoint({"state_dict": create_model("mono_cnn", **KWARGS).state_dict(),
                         "metadata": META.to_dict()}, checkpoint)
    result = run_export("--checkpoint", str(checkpoint), "--output", str(tmp_path / "m.onnx"),
                        *args)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("export.py:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "m.onnx").exists()
