"""Backends: the same depth from every backend this machine has (the bundled model and a small
fusion model), and how ``backend: auto`` chooses: its order, its log, its fallbacks.

Availability is simulated by replacing the probe functions of ``depth_ros.inference.selection``
(and, to make a backend fail at start on any machine, the module it imports); the backends
themselves are the real ones. GPU parity cases are marked ``gpu`` and skip, with the reason,
where TensorRT or CUDA is missing.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import depth_ros.inference.selection as selection
import depth_ros.inference.tensorrt as trt_module
from depth_ros.inference import (
    AUTO_ORDER,
    BACKENDS,
    BackendUnavailable,
    DepthEstimator,
    ModelLoadError,
)
from depth_ros.inference.backends import onnxruntime_providers
from depth_ros.inference.selection import parse_device, plan_auto
from depth_ros.models import ModelMetadata, create_model
from depth_ros.weights import DEFAULT_MONO_MODEL

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from training.checkpoint import save_checkpoint  # noqa: E402
from training.export import export_onnx  # noqa: E402

# --- what this machine has ---------------------------------------------------------------------


def _tensorrt_skip() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "needs the tensorrt package and a CUDA device (tensorrt is not installed)"
    if not torch.cuda.is_available():
        return "needs the tensorrt package and a CUDA device (no CUDA device)"
    return None


def _cuda_skip() -> str | None:
    return None if torch.cuda.is_available() else \
        "needs a CUDA device (torch.cuda.is_available() is False)"


def _onnxruntime_cuda_skip() -> str | None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "needs onnxruntime-gpu (CUDAExecutionProvider) and a CUDA device"
    return _cuda_skip()


def _gpu_case(name: str, reason: str | None) -> object:
    return pytest.param(name, id=name, marks=[pytest.mark.gpu,
                                              pytest.mark.skipif(reason is not None,
                                                                 reason=str(reason))])


# How each backend is asked for, and its tolerance against torch on the CPU: the largest
# |depth − reference| over the frame, relative to the largest reference depth. CUDA runs
# convolutions in TF32 by default (10-bit mantissa); FP16 engines round to 11 bits.
BACKEND_CASES = {
    "onnxruntime-cpu": ({"backend": "onnxruntime", "device": "cpu"}, 1e-4),
    "torch-cuda": ({"backend": "torch", "device": "cuda"}, 1e-2),
    "onnxruntime-cuda": ({"backend": "onnxruntime",
                          "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}, 1e-2),
    "tensorrt-fp32": ({"backend": "tensorrt", "precision": "fp32"}, 1e-3),
    "tensorrt-fp16": ({"backend": "tensorrt", "precision": "fp16"}, 3e-2),
}
PARITY_CASES = [
    pytest.param("onnxruntime-cpu", id="onnxruntime-cpu"),
    _gpu_case("torch-cuda", _cuda_skip()),
    _gpu_case("onnxruntime-cuda", _onnxruntime_cuda_skip()),
    _gpu_case("tensorrt-fp32", _tensorrt_skip()),
    _gpu_case("tensorrt-fp16", _tensorrt_skip()),
]


def assert_same_depth(got: np.ndarray, reference: np.ndarray, tolerance: float) -> None:
    """Same shape, same invalid pixels, and max |Δ| ≤ tolerance · max |reference|."""
    assert got.shape == reference.shape and got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(reference))
    finite = np.isfinite(reference)
    error = float(np.abs(got[finite] - reference[finite]).max())
    assert error <= tolerance * float(np.abs(reference[finite]).max()), error


def open_case(path: Path, case: str, tmp_path: Path) -> DepthEstimator:
    kwargs, _ = BACKEND_CASES[case]
    if kwargs["backend"] == "tensorrt":
        kwargs = {**kwargs, "engine_cache": tmp_path / "engines"}
    return DepthEstimator(path, num_threads=2, **kwargs)


# --- parity ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, LiDAR-like sparse depth) of a held-out engine frame (a seed no training uses)."""
    from depth_ros.kitti import KittiDrive
    from depth_ros.synthetic import write_synthetic_drive

    drive = KittiDrive(write_synthetic_drive(tmp_path_factory.mktemp("parity"), num_frames=1,
                                             seed=4242, progress=False, stereo=False,
                                             lidar=False))
    truth = drive.groundtruth(0)
    sparse = np.zeros_like(truth)
    sparse[150::4, ::2] = truth[150::4, ::2]  # beams: every 4th row of the lower part
    return drive.rgb(0), sparse


bundled = pytest.mark.skipif(not DEFAULT_MONO_MODEL.is_file()
                             or not DEFAULT_MONO_MODEL.with_suffix(".pt").is_file(),
                             reason="bundled model not built yet")


@bundled
@pytest.mark.parametrize("case", PARITY_CASES)
def test_bundled_model_gives_the_same_depth_on_every_backend(frame, case: str,
                                                             tmp_path: Path) -> None:
    rgb, _ = frame
    reference = DepthEstimator(DEFAULT_MONO_MODEL, backend="torch", device="cpu").predict(rgb)
    estimator = open_case(DEFAULT_MONO_MODEL, case, tmp_path)
    assert estimator.backend_family == BACKEND_CASES[case][0]["backend"]
    got = estimator.predict(rgb)
    assert_same_depth(got, reference, BACKEND_CASES[case][1])
    if case == "onnxruntime-cpu":  # pixel by pixel too
        np.testing.assert_allclose(got, reference, rtol=1e-4)


FUSION_KWARGS = {"image_widths": (8, 8, 12, 16, 24), "image_depths": (1, 1, 1, 1),
                 "lidar_widths": (4, 4, 8, 8, 16), "nconv_channels": 4, "num_heads": 2,
                 "decoder_channels": (4, 8, 8, 8)}


@pytest.fixture(scope="module")
def fusion_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fusion.onnx + fusion.pt of a tiny fusion_attention model (cross-modal attention)."""
    base = tmp_path_factory.mktemp("fusion")
    torch.manual_seed(0)
    model = create_model("fusion_attention", **FUSION_KWARGS)
    meta = ModelMetadata(architecture="fusion_attention", kind="fusion", output="metric",
                         stride=model.stride, train_input_height=128, train_input_width=384,
                         min_depth_m=0.5, max_depth_m=80.0, train_focal_px=223.0,
                         model_kwargs=FUSION_KWARGS)
    with torch.no_grad():  # move BatchNorm statistics off their defaults
        for _ in range(2):
            model.train()(torch.rand(2, 3, 128, 384), 40 * torch.rand(2, 1, 128, 384))
    model.eval()
    save_checkpoint({"state_dict": model.state_dict(), "metadata": meta.to_dict()},
                    base / "fusion.pt")
    return export_onnx(model, meta, base / "fusion.onnx", 128, 384)


@pytest.mark.slow
@pytest.mark.parametrize("case", PARITY_CASES)
def test_fusion_model_gives_the_same_depth_on_every_backend(frame, fusion_bundle: Path,
                                                            case: str, tmp_path: Path) -> None:
    rgb, sparse = frame
    reference = DepthEstimator(fusion_bundle, backend="torch", device="cpu")
    expected = reference.predict(rgb, sparse_depth=sparse)
    without_lidar = reference.predict(rgb, sparse_depth=np.zeros_like(sparse))
    assert np.abs(expected - without_lidar).max() > 1e-3  # the LiDAR input matters
    got = open_case(fusion_bundle, case, tmp_path).predict(rgb, sparse_depth=sparse)
    assert_same_depth(got, expected, BACKEND_CASES[case][1])


# --- backend: auto ----------------------------------------------------------------------------

NO = "simulated: not on this machine"
REAL_PROBE_TENSORRT = selection.probe_tensorrt
GPU_PROBES = ("probe_tensorrt", "probe_onnxruntime_gpu", "probe_torch_cuda")


def simulate(monkeypatch: pytest.MonkeyPatch, **available: bool | str | Exception) -> None:
    """Replace probes: True = available, False = unavailable (``NO``), a string = that
    reason, an exception = the probe raises it. Unnamed GPU probes: unavailable."""
    for name in GPU_PROBES:
        available.setdefault(name, False)
    for name, value in available.items():
        def probe(*args: object, value: object = value) -> str | None:
            if isinstance(value, Exception):
                raise value
            return None if value is True else (NO if value is False else str(value))

        monkeypatch.setattr(selection, name, probe)


@pytest.fixture
def bundle_files(tmp_path: Path) -> Path:
    """model.onnx + model.pt (the bundled model's bytes) in a fresh directory."""
    for suffix in (".onnx", ".pt"):
        (tmp_path / f"model{suffix}").write_bytes(DEFAULT_MONO_MODEL.with_suffix(suffix)
                                                  .read_bytes())
    return tmp_path / "model.onnx"


def test_backends_constant_names_every_backend() -> None:
    assert BACKENDS == ("auto", "tensorrt", "onnxruntime", "torch")
    assert AUTO_ORDER == ("tensorrt", "onnxruntime-gpu", "torch-cuda", "onnxruntime-cpu",
                          "torch-cpu")


def test_plan_tries_the_fastest_first(bundle_files: Path, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    simulate(monkeypatch, probe_tensorrt=True, probe_onnxruntime_gpu=True,
             probe_torch_cuda=True)
    candidates, skipped = plan_auto(bundle_files)
    assert [c.option for c in candidates] == list(AUTO_ORDER) and skipped == []
    assert [c.model_path.suffix for c in candidates] == [".onnx", ".onnx", ".pt", ".onnx",
                                                         ".pt"]
    assert [c.on_gpu for c in candidates] == [True, True, True, False, False]
    # Only TensorRT and torch on the GPU here: those two, then the CPU options.
    simulate(monkeypatch, probe_tensorrt=True, probe_torch_cuda=True)
    candidates, skipped = plan_auto(bundle_files.with_suffix(".pt"), device="cuda:1")
    assert [c.option for c in candidates] == ["tensorrt", "torch-cuda"]
    assert {c.device_index for c in candidates} == {1}
    assert skipped == [("onnxruntime-gpu", NO), ("onnxruntime-cpu", "device cuda:1 was asked "
                                                 "for"), ("torch-cpu", "device cuda:1 was "
                                                          "asked for")]


def test_plan_needs_the_model_file_of_each_backend(bundle_files: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch, probe_tensorrt=True, probe_torch_cuda=True)
    bundle_files.with_suffix(".pt").unlink()
    candidates, skipped = plan_auto(bundle_files, device="auto")
    assert [c.option for c in candidates] == ["tensorrt", "onnxruntime-cpu"]
    assert ("torch-cuda", "needs model.pt, which does not exist") in skipped
    assert ("torch-cpu", "needs model.pt, which does not exist") in skipped
    candidates, skipped = plan_auto(bundle_files, device="cpu")
    assert [c.option for c in candidates] == ["onnxruntime-cpu"]
    assert ("tensorrt", "device cpu was asked for") in skipped


def test_auto_logs_its_choice_and_why_faster_ones_were_skipped(
        bundle_files: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    simulate(monkeypatch, probe_tensorrt="no tensorrt here",
             probe_onnxruntime_gpu="no CUDA provider here", probe_torch_cuda="no GPU here")
    with caplog.at_level(logging.INFO, logger="depth_ros.inference"):
        estimator = DepthEstimator(bundle_files)
    assert estimator.backend_name == "onnxruntime[CPUExecutionProvider]"
    assert estimator.skipped_backends == [("tensorrt", "no tensorrt here"),
                                          ("onnxruntime-gpu", "no CUDA provider here"),
                                          ("torch-cuda", "no GPU here")]
    lines = [r.getMessage() for r in caplog.records if "backend auto" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("backend auto: onnxruntime[CPUExecutionProvider] for ")
    assert ("faster options skipped: tensorrt: no tensorrt here; onnxruntime-gpu: no CUDA "
            "provider here; torch-cuda: no GPU here") in lines[0]


def test_auto_falls_back_when_the_tensorrt_probe_raises(bundle_files: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    error = TypeError("pybind11::init(): factory function returned nullptr")
    simulate(monkeypatch, probe_tensorrt=error)
    with caplog.at_level(logging.INFO, logger="depth_ros.inference"):
        estimator = DepthEstimator(bundle_files)
    assert estimator.backend_name == "onnxruntime[CPUExecutionProvider]"
    reason = dict(estimator.skipped_backends)["tensorrt"]
    assert reason == "probe failed: TypeError: pybind11::init(): factory function returned " \
                     "nullptr"
    assert reason in caplog.text


def _gpu_less_tensorrt() -> types.ModuleType:
    """A tensorrt module as TensorRT 10 behaves without a usable GPU (DESIGN.md): the
    builder's factory fails with a TypeError after a CUDA initialisation error."""
    module = types.ModuleType("tensorrt")
    module.__version__ = "10.3.0"

    class ILogger:
        WARNING, ERROR = 2, 1

        def __init__(self) -> None:
            pass

    def builder(logger: object) -> object:
        raise TypeError("pybind11::init(): factory function returned nullptr")

    module.ILogger, module.Builder = ILogger, builder
    return module


def test_real_tensorrt_probe_catches_the_gpu_less_builder(bundle_files: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    simulate(monkeypatch)  # GPU options other than TensorRT: unavailable
    monkeypatch.setattr(selection, "probe_tensorrt", REAL_PROBE_TENSORRT)
    monkeypatch.setitem(sys.modules, "tensorrt", _gpu_less_tensorrt())
    monkeypatch.setattr(trt_module, "_TENSORRT", None)
    monkeypatch.setattr(trt_module, "_LOGGER", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    estimator = DepthEstimator(bundle_files)
    assert estimator.backend_name == "onnxruntime[CPUExecutionProvider]"
    assert dict(estimator.skipped_backends)["tensorrt"] == (
        "trt.Builder failed: pybind11::init(): factory function returned nullptr")


@pytest.mark.parametrize("option", ["tensorrt", "onnxruntime-gpu", "torch-cuda"])
def test_a_backend_that_does_not_start_falls_through(bundle_files: Path, option: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The probe says yes, the backend then fails to start: the next option runs."""
    probe = {"tensorrt": "probe_tensorrt", "onnxruntime-gpu": "probe_onnxruntime_gpu",
             "torch-cuda": "probe_torch_cuda"}[option]
    simulate(monkeypatch, **{probe: True})
    expected = {"tensorrt": "TensorRTUnavailable: the tensorrt Python package is not "
                            "installed",
                "onnxruntime-gpu": "BackendUnavailable: the GPU execution providers did not "
                                   "start; onnxruntime runs on CPUExecutionProvider",
                "torch-cuda": "AssertionError: Torch not compiled with CUDA enabled"}[option]
    if option == "tensorrt":  # no tensorrt module, whatever this machine has
        monkeypatch.setitem(sys.modules, "tensorrt", None)
        monkeypatch.setattr(trt_module, "_TENSORRT", None)
    elif option == "onnxruntime-gpu":  # a build that lists no GPU provider after all
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    elif torch.cuda.is_available():
        pytest.skip("a CPU-only PyTorch build is what fails to start on CUDA here")
    with caplog.at_level(logging.WARNING, logger="depth_ros.inference"):
        estimator = DepthEstimator(bundle_files)
    assert estimator.backend_name == "onnxruntime[CPUExecutionProvider]"
    reason = dict(estimator.skipped_backends)[option]
    assert reason.startswith("did not start: " + expected)
    assert f"backend auto: {option} did not start" in caplog.text


def test_a_broken_sibling_is_skipped_but_a_broken_model_is_an_error(
        bundle_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch)
    bundle_files.write_bytes(b"\x00not an onnx file")
    # model.pt asked for: the faster onnxruntime would use the broken model.onnx beside it.
    estimator = DepthEstimator(bundle_files.with_suffix(".pt"))
    assert estimator.backend_name == "torch[cpu]"
    assert "cannot load ONNX model" in dict(estimator.skipped_backends)["onnxruntime-cpu"]
    with pytest.raises(ModelLoadError, match=r"model\.onnx"):
        DepthEstimator(bundle_files)


def test_nothing_runs_on_a_device_that_is_not_there(bundle_files: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch)
    with pytest.raises(BackendUnavailable, match=f"no backend can run .* here: tensorrt: "
                                                 f"{NO}; onnxruntime-gpu: {NO}"):
        DepthEstimator(bundle_files, device="cuda")
    with pytest.raises(ModelLoadError, match="model file not found"):
        DepthEstimator(bundle_files.with_name("absent.onnx"))


def test_device_cpu_keeps_auto_on_the_cpu(bundle_files: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch, probe_tensorrt=True, probe_onnxruntime_gpu=True,
             probe_torch_cuda=True)
    estimator = DepthEstimator(bundle_files, device="cpu")
    assert estimator.backend_name == "onnxruntime[CPUExecutionProvider]"
    assert [o for o, _ in estimator.skipped_backends] == ["tensorrt", "onnxruntime-gpu",
                                                          "torch-cuda"]


# --- asking for a backend -----------------------------------------------------------------------

def test_providers_choose_onnxruntime_and_are_checked(bundle_files: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    estimator = DepthEstimator(bundle_files.with_suffix(".pt"),
                               providers=["CPUExecutionProvider"])
    assert estimator.backend_name == "onnxruntime[CPUExecutionProvider]"
    with caplog.at_level(logging.WARNING):
        estimator = DepthEstimator(bundle_files, providers=["MadeUpExecutionProvider",
                                                            "CPUExecutionProvider"])
    assert estimator.backend_name == "onnxruntime[CPUExecutionProvider]"
    assert "this build has no MadeUpExecutionProvider" in caplog.text
    with pytest.raises(ValueError, match=r"none of the execution providers "
                                         r"\['MadeUpExecutionProvider'\] is in this "
                                         r"onnxruntime build \(it has .*CPUExecutionProvider"):
        DepthEstimator(bundle_files, providers=["MadeUpExecutionProvider"])
    with pytest.raises(ValueError, match="providers are onnxruntime's"):
        DepthEstimator(bundle_files, backend="torch", providers=["CPUExecutionProvider"])


def test_onnxruntime_provider_defaults_follow_the_build(tmp_path: Path) -> None:
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = onnxruntime_providers(None, gpu_build, device_id=1, fp16=False,
                                      trt_cache_dir=tmp_path)
    assert [name for name, _ in providers] == gpu_build
    assert providers[0][1] == {"device_id": 1, "trt_fp16_enable": False,
                               "trt_engine_cache_enable": True,
                               "trt_engine_cache_path": str(tmp_path)}
    assert providers[1][1] == {"device_id": 1} and providers[2][1] == {}
    assert [n for n, _ in onnxruntime_providers(None, ["CPUExecutionProvider"])] == \
        ["CPUExecutionProvider"]
    custom = onnxruntime_providers([("CUDAExecutionProvider", {"device_id": 3})], gpu_build)
    assert custom == [("CUDAExecutionProvider", {"device_id": 3})]


@pytest.mark.parametrize(("text", "parsed"), [("auto", ("auto", 0)), ("cpu", ("cpu", 0)),
                                               ("cuda", ("cuda", 0)), ("CUDA:2", ("cuda", 2))])
def test_device_names(text: str, parsed: tuple[str, int]) -> None:
    assert parse_device(text) == parsed


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"device": "gpu"}, ValueError, "device must be auto, cpu, cuda or cuda:N"),
    ({"device": "cuda:x"}, ValueError, "device must be"),
    ({"backend": "tensorrt", "device": "cpu"}, ValueError, "CUDA devices only"),
    ({"precision": "int8"}, ValueError, "precision must be one of"),
    ({"backend": "tensorflow"}, ValueError, "backend must be one of"),
])
def test_bad_backend_arguments(bundle_files: Path, kwargs: dict, error: type,
                               message: str) -> None:
    with pytest.raises(error, match=message):
        DepthEstimator(bundle_files, **kwargs)


def test_tensorrt_asked_for_without_tensorrt_says_what_is_missing(
        bundle_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(trt_module, "_TENSORRT", None)
    with pytest.raises(trt_module.TensorRTUnavailable,
                       match="the tensorrt Python package is not installed"):
        DepthEstimator(bundle_files, backend="tensorrt")


def test_torch_device_auto_uses_the_gpu_only_where_one_works(
        bundle_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(monkeypatch)
    assert DepthEstimator(bundle_files, backend="torch").backend_name == "torch[cpu]"
    assert DepthEstimator(bundle_files, backend="onnxruntime", device="cpu").backend_name == \
        "onnxruntime[CPUExecutionProvider]"
