"""TensorRT: engine-cache keys and files, profiles, calibration data, the ONNX operator check on
every registered model, export.py without TensorRT; real engines only where a GPU is.

The GPU-only calls (``trt.Builder``, deserialisation) are replaced by test doubles where the
logic around them is what is tested; the ``gpu`` tests build and run real engines and are
skipped, with the reason, unless ``tensorrt`` imports and CUDA is available.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from test_model_zoo import MODEL_NAMES, build, export_dynamic, make_inputs, sizes

import depth_ros.inference.engine_cache as engine_cache
import depth_ros.inference.tensorrt as trt_module
from depth_ros.geometry import resize_sparse_depth
from depth_ros.inference.engine_cache import (
    EngineCacheError,
    EngineKey,
    OptimizationProfile,
    engine_cache_dir,
    load_or_build,
    profile_for_sizes,
    sha256_of_file,
    write_bytes_durably,
)
from depth_ros.inference.tensorrt import (
    CalibrationData,
    TensorRTUnavailable,
    keep_in_fp32,
    make_entropy_calibrator,
    require_tensorrt,
)
from depth_ros.inference.trt_ops import TENSORRT_ONNX_OPS, unsupported_onnx_ops
from depth_ros.kitti import read_depth_png
from depth_ros.models import ModelMetadata, create_model
from depth_ros.synthetic import write_synthetic_drive

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training.checkpoint import save_checkpoint  # noqa: E402


def _gpu_skip_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "needs the tensorrt package (not installed here)"
    if not torch.cuda.is_available():
        return "needs a CUDA device (torch.cuda.is_available() is False)"
    return None


GPU_SKIP = _gpu_skip_reason()
needs_gpu = pytest.mark.skipif(GPU_SKIP is not None, reason=str(GPU_SKIP))

PROFILE = profile_for_sizes(32, (352, 1216), (192, 640), (384, 1280),
                            {"image": 3, "sparse_depth": 1})
KEY = EngineKey(gpu_name="Orin (nvgpu)", compute_capability="8.7", tensorrt_version="10.3.0",
                precision="fp16", profile=PROFILE, onnx_sha256="ab" * 32)


# --- cache key and file name ------------------------------------------------------------------

def test_engine_key_filename_is_stable_and_readable() -> None:
    again = EngineKey(**{f.name: getattr(KEY, f.name) for f in dataclasses.fields(KEY)})
    assert again.filename() == KEY.filename()
    name = KEY.filename()
    assert name.startswith("abababababab_fp16_orin-nvgpu_sm87_trt10-3-0_")
    assert name.endswith(".plan")
    assert len(name.split("_")[-1]) == len("0123456789abcdef.plan")
    assert all(c.isalnum() or c in "-_." for c in name)


@pytest.mark.parametrize(("field", "value"), [
    ("gpu_name", "NVIDIA GeForce RTX 4090"),
    ("compute_capability", "8.9"),
    ("tensorrt_version", "10.3.1"),
    ("precision", "int8"),
    ("profile", profile_for_sizes(32, (352, 1216), (192, 640), (352, 1280),
                                  {"image": 3, "sparse_depth": 1})),
    ("profile", profile_for_sizes(32, (352, 1216), (192, 640), (384, 1280),
                                  {"image": 3, "sparse_depth": 1}, batch=(1, 1, 2))),
    ("onnx_sha256", "ab" * 31 + "ac"),
])
def test_engine_key_changes_with_every_field(field: str, value: object) -> None:
    changed = dataclasses.replace(KEY, **{field: value})
    assert changed.filename() != KEY.filename()
    assert changed.digest() != KEY.digest()


@pytest.mark.parametrize(("field", "value"), [("precision", "bf16"), ("onnx_sha256", "xyz")])
def test_engine_key_rejects_bad_fields(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(KEY, **{field: value})


def test_sha256_of_file_is_that_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"onnx bytes" * 300_000)  # more than one read block
    assert sha256_of_file(path) == hashlib.sha256(b"onnx bytes" * 300_000).hexdigest()


# --- cache directory --------------------------------------------------------------------------

def test_cache_dir_default_env_and_argument(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(engine_cache.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert engine_cache_dir() == tmp_path / "home" / ".cache" / "depth_ros" / "engines"
    # The variable is read at call time: set after the module was imported, it applies.
    monkeypatch.setenv(engine_cache.CACHE_DIR_ENV, str(tmp_path / "from_env"))
    assert engine_cache_dir() == tmp_path / "from_env"
    assert engine_cache_dir(tmp_path / "argument") == tmp_path / "argument"


# --- atomic writes and load-or-build ----------------------------------------------------------

@pytest.mark.parametrize("fail_in", ["fsync", "replace"])
def test_interrupted_write_leaves_no_partial_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  fail_in: str) -> None:
    path = tmp_path / "engines" / "model.plan"
    write_bytes_durably(path, b"old engine")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_cache.os, fail_in, interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bytes_durably(path, b"new engine, never complete")
    monkeypatch.undo()
    assert path.read_bytes() == b"old engine"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.plan"]


class FakeTensorRT:
    """Test double for the GPU-only calls: a builder that counts builds and a deserialiser
    that accepts only plans it built (as TensorRT rejects foreign or truncated plans)."""

    def __init__(self, fail_with: str = "none") -> None:
        self.builds = 0
        self.fail_with = fail_with

    def build(self) -> bytes:
        self.builds += 1
        return b"PLAN:" + bytes([self.builds])

    def deserialize(self, data: bytes) -> dict | None:
        if not data.startswith(b"PLAN:"):
            if self.fail_with == "raise":
                raise RuntimeError("Serialization assertion magicTagRead failed")
            return None
        return {"engine": data}


def test_missing_engine_is_built_then_reused(tmp_path: Path) -> None:
    fake = FakeTensorRT()
    path = tmp_path / KEY.filename()
    engine, built = load_or_build(path, fake.build, fake.deserialize)
    assert built and engine == {"engine": b"PLAN:\x01"} and path.read_bytes() == b"PLAN:\x01"
    engine, built = load_or_build(path, fake.build, fake.deserialize)
    assert not built and fake.builds == 1 and engine == {"engine": b"PLAN:\x01"}


@pytest.mark.parametrize("fail_with", ["none", "raise"])
def test_corrupt_cached_engine_is_rebuilt(tmp_path: Path, fail_with: str) -> None:
    fake = FakeTensorRT(fail_with)
    path = tmp_path / KEY.filename()
    path.write_bytes(b"\x00truncated plan from another TensorRT")
    engine, built = load_or_build(path, fake.build, fake.deserialize)
    assert built and fake.builds == 1
    assert engine == {"engine": b"PLAN:\x01"} and path.read_bytes() == b"PLAN:\x01"


def test_engine_that_does_not_deserialise_after_build_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / KEY.filename()
    with pytest.raises(EngineCacheError, match="does not deserialise"):
        load_or_build(path, lambda: b"garbage", lambda data: None)
    assert not path.exists()


# --- optimisation profiles --------------------------------------------------------------------

def test_profile_from_explicit_sizes() -> None:
    item = PROFILE["sparse_depth"]
    assert (item.min, item.opt, item.max) == ((1, 1, 192, 640), (1, 1, 352, 1216),
                                              (1, 1, 384, 1280))
    assert PROFILE["image"].opt == (1, 3, 352, 1216)
    assert PROFILE.input_names == ["image", "sparse_depth"]


def test_profile_defaults_to_the_optimal_size_alone() -> None:
    profile = profile_for_sizes(32, (352, 1216))
    assert profile.input_names == ["image"]
    item = profile["image"]
    assert item.min == item.opt == item.max == (1, 3, 352, 1216)
    tiny = profile_for_sizes(14, (28, 42), max_size=(56, 84))["image"]
    assert tiny.min == (1, 3, 28, 42) and tiny.max == (1, 3, 56, 84)


@pytest.mark.parametrize(("opt", "low", "high", "message"), [
    ((350, 1216), None, None, "multiples of the model's stride 32"),
    ((352, 1216), (384, 640), None, "min <= opt <= max"),
    ((352, 1216), None, (320, 1280), "min <= opt <= max"),
    ((352, 1216), (0, 640), None, "multiples"),
])
def test_profile_rejects_bad_sizes(opt: tuple, low: tuple | None, high: tuple | None,
                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        profile_for_sizes(32, opt, low, high)


def test_profile_check_names_the_shape_outside_it() -> None:
    PROFILE.check({"image": (1, 3, 352, 1216), "sparse_depth": (1, 1, 192, 1280)})
    with pytest.raises(ValueError, match=r"'image' shape \(1, 3, 416, 1216\) is outside"):
        PROFILE.check({"image": (1, 3, 416, 1216)})
    with pytest.raises(ValueError, match="outside"):
        PROFILE.check({"image": (2, 3, 352, 1216)})
    assert isinstance(PROFILE, OptimizationProfile)


@pytest.mark.parametrize(("layer_type", "name", "fp32"), [
    ("NORMALIZATION", "node_layer_norm_3", True),
    ("SOFTMAX", "node_softmax", True),
    ("REDUCE", "/blocks.0/norm1/LayerNorm_ReduceMean", True),
    ("UNARY", "node_Sqrt_layer_norm", True),
    ("REDUCE", "node_mean_pool", False),
    ("CONVOLUTION", "node_conv2d_layer_norm", False),
    ("ELEMENTWISE", "node_add_12", False),
])
def test_normalisation_layers_stay_fp32(layer_type: str, name: str, fp32: bool) -> None:
    assert keep_in_fp32(layer_type, name) is fp32


# --- calibration data -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def drives_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calibration")
    write_synthetic_drive(root, num_frames=2, seed=4242, progress=False, stereo=False,
                          lidar=False, width=414, height=125)
    return root


@pytest.mark.parametrize(("kind", "batch_size"), [("mono", 1), ("mono", 2), ("fusion", 1)])
def test_calibration_batches_have_the_profile_shape(drives_root: Path, kind: str,
                                                    batch_size: int) -> None:
    data = CalibrationData(drives_root, num_frames=8, height=64, width=128,
                           batch_size=batch_size, kind=kind)
    assert len(data.frames) == 2 and len(data) == 2 // batch_size
    batches = list(data)
    assert len(batches) == len(data)
    for batch in batches:
        assert set(batch) == ({"image", "sparse_depth"} if kind == "fusion" else {"image"})
        image = batch["image"]
        assert image.shape == (batch_size, 3, 64, 128) and image.dtype == np.float32
        assert image.flags["C_CONTIGUOUS"]
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.01
        if kind == "fusion":  # a drive without LiDAR: no returns
            assert batch["sparse_depth"].shape == (batch_size, 1, 64, 128)
            assert batch["sparse_depth"].dtype == np.float32
            assert not batch["sparse_depth"].any()
    assert not np.array_equal(batches[0]["image"], batches[-1]["image"]) or batch_size == 2


def test_calibration_lidar_is_resized_point_by_point(tmp_path: Path) -> None:
    """Fusion calibration batches carry the LiDAR as DepthEstimator feeds it: every return
    that lands in the smaller image is kept, the nearest winning a shared pixel."""
    write_synthetic_drive(tmp_path, num_frames=1, seed=4243, progress=False, stereo=False,
                          width=414, height=125)
    data = CalibrationData(tmp_path, num_frames=1, height=64, width=128, kind="fusion")
    (drive, index), = data.frames
    full = read_depth_png(drive.path / "proj_depth" / "velodyne_raw" / "image_02"
                          / f"{drive.frames[index]}.png")
    sparse = data.batch(0)["sparse_depth"][0, 0]
    np.testing.assert_array_equal(sparse, resize_sparse_depth(full, 128, 64))
    nearest = cv2.resize(full, (128, 64), interpolation=cv2.INTER_NEAREST_EXACT)
    assert (sparse > 0).sum() > 1.5 * (nearest > 0).sum() > 0  # 4308 against 2455 here


def test_calibration_needs_drives(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no KITTI drives"):
        CalibrationData(tmp_path, num_frames=4, height=64, width=128)


def test_calibrator_without_tensorrt_says_so(drives_root: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    monkeypatch.setattr(trt_module, "_TENSORRT", None)
    data = CalibrationData(drives_root, num_frames=2, height=64, width=128)
    with pytest.raises(TensorRTUnavailable, match="tensorrt Python package is not installed"):
        make_entropy_calibrator(data, drives_root / "calib.cache")


# --- what is missing, in one sentence ----------------------------------------------------------

def _fake_tensorrt(version: str = "10.3.0", builder_error: bool = True) -> types.ModuleType:
    module = types.ModuleType("tensorrt")
    module.__version__ = version

    class ILogger:
        WARNING, ERROR = 2, 1

        def __init__(self) -> None:
            pass

    def builder(logger: object) -> object:
        if builder_error:  # what TensorRT does without a GPU (DESIGN.md platform notes)
            raise TypeError("pybind11::init(): factory function returned nullptr")
        return object()

    module.ILogger = ILogger
    module.Builder = builder
    return module


@pytest.mark.parametrize(("setup", "message"), [
    ("no_package", "the tensorrt Python package is not installed"),
    ("old_version", "TensorRT 8.6.1 is too old: depth_ros needs TensorRT 10.x"),
    ("no_cuda", "no CUDA device: torch.cuda.is_available() is False"),
    ("builder_fails", "trt.Builder failed: pybind11::init(): factory function returned"),
])
def test_require_tensorrt_names_what_is_missing(monkeypatch: pytest.MonkeyPatch, setup: str,
                                                message: str) -> None:
    monkeypatch.setattr(trt_module, "_TENSORRT", None)
    monkeypatch.setattr(trt_module, "_LOGGER", None)
    if setup == "no_package":
        monkeypatch.setitem(sys.modules, "tensorrt", None)
    else:
        monkeypatch.setitem(sys.modules, "tensorrt",
                            _fake_tensorrt("8.6.1" if setup == "old_version" else "10.3.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: setup != "no_cuda")
    with pytest.raises(TensorRTUnavailable) as info:
        require_tensorrt()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- TensorRT 10 operator support -------------------------------------------------------------

@pytest.fixture(scope="module")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every registered model, tiny, exported once (dynamic batch/H/W, opset 18)."""
    base = tmp_path_factory.mktemp("trt_ops")
    paths = {}
    for name in MODEL_NAMES:
        model = build(name).eval()
        paths[name] = base / f"{name}.onnx"
        export_dynamic(model, paths[name], *sizes(model)[0])
    return paths


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_exported_graph_uses_only_tensorrt_10_operators(exported_models: dict[str, Path],
                                                        name: str) -> None:
    model = onnx.load(os.fspath(exported_models[name]))
    used = sorted({n.op_type for n in model.graph.node})
    print(f"{name}: {' '.join(used)}")
    assert used, "the graph has no nodes"
    assert unsupported_onnx_ops(model) == []
    assert unsupported_onnx_ops(exported_models[name]) == []


def _graph(nodes: list, opset: int = 18, domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y])
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=imports)


def test_supported_graph_is_clean() -> None:
    model = _graph([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("Resize", ["r", "", "s"], ["y"], mode="linear")])
    assert unsupported_onnx_ops(model) == []


@pytest.mark.parametrize(("nodes", "opset", "domains", "expected"), [
    ([helper.make_node("FancyDepthOp", ["x"], ["y"])], 18, (), ["FancyDepthOp"]),
    ([helper.make_node("Relu", ["x"], ["r"]),
      helper.make_node("Unique", ["r"], ["y"])], 18, (), ["Unique"]),
    ([helper.make_node("MyPlugin", ["x"], ["y"], domain="com.example")], 18, ("com.example",),
     ["com.example::MyPlugin"]),
    ([helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic")], 18, (),
     ["Resize (mode cubic)"]),
    ([helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear", antialias=1)], 18, (),
     ["Resize (antialias)"]),
    ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])], 18,
     (), ["MaxPool (dilations other than 1)"]),
    ([helper.make_node("Relu", ["x"], ["y"])], 23, (), ["opset 23 (TensorRT 10 imports "
                                                         "opsets 9 to 20)"]),
])
def test_unsupported_operators_are_reported(nodes: list, opset: int, domains: tuple,
                                            expected: list[str]) -> None:
    assert unsupported_onnx_ops(_graph(nodes, opset, domains)) == expected


def test_made_up_op_inside_a_subgraph_is_reported(tmp_path: Path) -> None:
    out = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    branch = helper.make_graph([helper.make_node("MadeUpOp", ["x"], ["z"])], "b", [], [out])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "o", [], [out])
    cond = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)
    model = _graph([cond])
    path = tmp_path / "if.onnx"
    onnx.save(model, os.fspath(path))
    assert unsupported_onnx_ops(path) == ["MadeUpOp"]


def test_operator_list_excludes_what_tensorrt_10_3_lacks() -> None:
    assert {"Conv", "Resize", "LayerNormalization", "Softmax", "MatMul"} <= TENSORRT_ONNX_OPS
    later = {"Attention", "RMSNormalization", "RotaryEmbedding", "STFT", "HannWindow"}
    assert not later & TENSORRT_ONNX_OPS
    assert not {"Unique", "ConvInteger", "StringNormalizer"} & TENSORRT_ONNX_OPS


# --- export.py without TensorRT ---------------------------------------------------------------

META = ModelMetadata(architecture="mono_cnn", kind="mono", output="metric", stride=32,
                     train_input_height=64, train_input_width=128, min_depth_m=0.1,
                     max_depth_m=80.0, train_focal_px=74.36, model_kwargs={"base_channels": 8})


def run_export(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "training/export.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("trt_export") / "tiny.pt"
    save_checkpoint({"state_dict": create_model("mono_cnn", base_channels=8).state_dict(),
                     "metadata": META.to_dict()}, path)
    return path


@pytest.mark.skipif(GPU_SKIP is None, reason="TensorRT and CUDA are here: export.py builds")
def test_export_without_tensorrt_fails_in_one_line_after_writing_the_onnx(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "tiny.onnx"
    result = run_export("--checkpoint", str(tiny_checkpoint), "--output", str(output),
                        "--check-size", "64x128", "--tensorrt", "fp16",
                        "--engine-cache", str(tmp_path / "engines"))
    assert result.returncode == 3, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("export.py:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("export.py: error: cannot build a TensorRT engine here: the "
                                "tensorrt Python package is not installed: tensorrt not "
                                "importable in this interpreter (")
    assert "--system-site-packages" in errors[0]
    assert output.is_file() and onnx.load(os.fspath(output)).graph.input[0].name == "image"
    assert "every operator of the graph is supported" in result.stdout
    assert not (tmp_path / "engines").exists()


def test_int8_export_needs_calibration_data(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = run_export("--checkpoint", str(tiny_checkpoint), "--output",
                        str(tmp_path / "t.onnx"), "--tensorrt", "int8")
    assert result.returncode == 2
    assert "--calibration-data" in result.stderr
    assert not (tmp_path / "t.onnx").exists()


# --- real engines (GPU) -----------------------------------------------------------------------

@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize(("name", "precision", "tolerance"), [
    ("mono_cnn", "fp32", 1e-3), ("mono_cnn", "fp16", 3e-2),
    ("mono_hybrid_c2f", "fp16", 3e-2), ("fusion_attention", "fp32", 1e-3),
])
def test_engine_matches_onnxruntime(exported_models: dict[str, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, name: str,
                                    precision: str, tolerance: float) -> None:
    import onnxruntime as ort

    from depth_ros.inference.tensorrt import TensorRTBackend

    source = exported_models[name]
    model = build(name).eval()
    meta = ModelMetadata(architecture=name, kind=model.kind, output=model.output,
                         stride=model.stride, train_input_height=sizes(model)[0][0],
                         train_input_width=sizes(model)[0][1], min_depth_m=0.1,
                         max_depth_m=80.0, train_focal_px=100.0)
    proto = onnx.load(os.fspath(source))
    helper.set_model_props(proto, meta.to_dict())
    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, os.fspath(path))
    low, high = sizes(model)  # a range, asked for: the opt size and a larger one within it
    backend = TensorRTBackend(path, precision, cache_dir=tmp_path / "engines",
                              min_size=low, max_size=high)
    assert backend.built
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    for height, width in (low, high):
        inputs = [t.numpy() for t in make_inputs(model, height, width, batch=1, seed=9)]
        names = ["image", "sparse_depth"][:len(inputs)]
        expected = session.run(None, dict(zip(names, inputs, strict=True)))[0]
        got = backend.run(*inputs)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()
    again = TensorRTBackend(path, precision, cache_dir=tmp_path / "engines",
                            input_size=high)  # one size inside the cached range
    assert not again.built and again.engine_path == backend.engine_path


@pytest.mark.gpu
@needs_gpu
def test_int8_engine_calibrates_from_a_drive(exported_models: dict[str, Path],
                                             drives_root: Path, tmp_path: Path) -> None:
    from depth_ros.inference.tensorrt import TensorRTBackend

    model = build("mono_cnn").eval()
    height, width = sizes(model)[0]
    meta = dataclasses.replace(META, model_kwargs={}, train_input_height=height,
                               train_input_width=width)
    proto = onnx.load(os.fspath(exported_models["mono_cnn"]))
    helper.set_model_props(proto, meta.to_dict())
    path = tmp_path / "int8.onnx"
    onnx.save(proto, os.fspath(path))
    data = CalibrationData(drives_root, 2, height, width)
    backend = TensorRTBackend(path, "int8", cache_dir=tmp_path / "engines", calibration=data)
    out = backend.run(next(iter(data))["image"])
    assert out.shape == (1, 1, height, width) and np.isfinite(out).all()
    assert list((tmp_path / "engines").glob("*.calib"))


# --- TensorRT behind DepthEstimator (GPU) -----------------------------------------------------

@pytest.mark.gpu
@needs_gpu
def test_estimator_builds_the_engine_on_first_use_and_then_reuses_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from depth_ros.inference import DepthEstimator
    from depth_ros.weights import DEFAULT_MONO_MODEL

    cache = tmp_path / "engines"
    with caplog.at_level(logging.INFO, logger="depth_ros.inference"):
        estimator = DepthEstimator(DEFAULT_MONO_MODEL, backend="tensorrt", engine_cache=cache)
    assert estimator.backend_name == "tensorrt[cuda:0,fp16]"
    assert "no cached TensorRT fp16 engine of" in caplog.text
    assert "building one now, expect minutes" in caplog.text
    assert re.search(r"TensorRT fp16 engine built in \d+\.\d s", caplog.text)
    assert len(list(cache.glob("*.plan"))) == 1
    rgb = np.random.default_rng(0).integers(0, 256, (375, 1242, 3), dtype=np.uint8)
    reference = DepthEstimator(DEFAULT_MONO_MODEL, backend="onnxruntime",
                               device="cpu").predict(rgb)
    depth = estimator.predict(rgb)
    assert np.abs(depth - reference).max() <= 3e-2 * reference.max()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="depth_ros.inference"):
        auto = DepthEstimator(DEFAULT_MONO_MODEL, engine_cache=cache)  # auto: TensorRT first
    assert auto.backend_family == "tensorrt" and auto.skipped_backends == []
    assert "building" not in caplog.text and "engine cache hit" in caplog.text
    assert "backend auto: tensorrt[cuda:0,fp16]" in caplog.text


@pytest.mark.gpu
@needs_gpu
def test_input_size_outside_the_profile_is_refused_without_a_rebuild(
        tmp_path: Path) -> None:
    import onnxruntime as ort

    from depth_ros.inference import DepthEstimator
    from depth_ros.inference.tensorrt import TensorRTBackend
    from depth_ros.weights import DEFAULT_MONO_MODEL

    cache = tmp_path / "engines"
    backend = TensorRTBackend(DEFAULT_MONO_MODEL, "fp32", input_size=(128, 416),
                              cache_dir=cache)
    first = backend.engine_path
    assert backend.profile["image"].min == backend.profile["image"].max == (1, 3, 128, 416)
    image = np.random.default_rng(1).random((1, 3, 352, 1216), dtype=np.float32)
    with pytest.raises(ValueError, match="outside the TensorRT engine's profile"):
        backend.run(image)  # 352x1216: not the engine's size, and nothing is rebuilt
    assert backend.engine_path == first and len(list(cache.glob("*.plan"))) == 1
    # A range, asked for, takes both sizes; the estimator at 128x416 then loads it.
    wide = TensorRTBackend(DEFAULT_MONO_MODEL, "fp32", input_size=(352, 1216),
                           min_size=(128, 416), max_size=(352, 1216), cache_dir=cache)
    session = ort.InferenceSession(os.fspath(DEFAULT_MONO_MODEL),
                                   providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": image})[0]
    out = wide.run(image)
    assert out.shape == expected.shape == (1, 1, 352, 1216)
    assert np.abs(out - expected).max() <= 1e-3 * np.abs(expected).max()
    first.unlink()  # only the range engine is left: it covers 128x416
    estimator = DepthEstimator(DEFAULT_MONO_MODEL, backend="tensorrt", precision="fp32",
                               input_size=(128, 416), engine_cache=cache)
    assert estimator._backend.engine_path == wide.engine_path
    assert not estimator._backend.built
