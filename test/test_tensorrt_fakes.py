"""The TensorRT path against stand-ins for the real bindings of TensorRT 10.3, 10.13 and 11.0
(``fake_tensorrt``): the version gate, one engine-cache key for export.py and the node, no
build in the frame path, INT8 calibration that fails loudly, checked results of
``add_optimization_profile``/``set_input_shape``, the logger's severity filter, and no
deprecated precision setter on 10.12+. The CUDA calls are replaced by a fake device; the real
engines are built by the ``gpu`` tests in ``test_tensorrt.py``.
"""

from __future__ import annotations

import logging
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_tensorrt import Behaviour, Severity, make_tensorrt

import depth_ros.inference.selection as selection
import depth_ros.inference.tensorrt as trt_module
from depth_ros.inference import DepthEstimator
from depth_ros.inference.engine_cache import (
    EngineKey,
    covering_engines,
    engine_profile,
    manifest_path,
    profile_covers,
)
from depth_ros.inference.tensorrt import (
    CalibrationFeed,
    EngineBuildError,
    TensorRTBackend,
    TensorRTUnavailable,
    build_engine,
    make_entropy_calibrator,
    require_tensorrt,
)
from depth_ros.models.metadata import read_onnx_metadata
from depth_ros.weights import DEFAULT_MONO_MODEL

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training import export  # noqa: E402

META = read_onnx_metadata(DEFAULT_MONO_MODEL)  # mono_cnn, stride 32, trained at 128x416
TRAIN = (META.train_input_height, META.train_input_width)


class FakeStream:
    """``torch.cuda.Stream`` without a GPU."""

    def __init__(self, device: object = None) -> None:
        self.cuda_stream = 0

    def synchronize(self) -> None:
        pass


def install(monkeypatch: pytest.MonkeyPatch, version: str = "10.3.0",
            behaviour: Behaviour | None = None) -> object:
    """Put a fake ``tensorrt`` of this release and a fake CUDA device (Orin) in place."""
    trt = make_tensorrt(version, behaviour)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_module, "_TENSORRT", None)
    monkeypatch.setattr(trt_module, "_LOGGER", None)
    monkeypatch.setattr(trt_module, "_LOG_SEVERITY", None)
    monkeypatch.delenv(trt_module.LOG_SEVERITY_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=0: "Orin (nvgpu)")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=0: (8, 7))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    # Calibration batches stay on the host: data_ptr() is still a real address.
    monkeypatch.setattr(trt_module, "_to_device", lambda array, device: torch.from_numpy(array))
    return trt


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """The bundled model's ONNX file, copied (its sha256 is part of the key)."""
    path = tmp_path / "model.onnx"
    shutil.copyfile(DEFAULT_MONO_MODEL, path)
    return path


def plans(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.plan"))


# --- version gate ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["10.3.0", "10.13.0.35"])
def test_tensorrt_10_is_accepted(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    trt = install(monkeypatch, version)
    assert require_tensorrt() is trt


@pytest.mark.parametrize(("version", "message"), [
    ("11.0.0", "TensorRT 11.0.0 is not supported: depth_ros builds with TensorRT 10.x, and "
               "TensorRT 11 removed the FP16/INT8 builder flags and INT8 calibrators it uses; "
               "install TensorRT 10.x: pip install 'tensorrt-cu12<11'"),
    ("8.6.1", "TensorRT 8.6.1 is too old: depth_ros needs TensorRT 10.x; install TensorRT "
              "10.x"),
])
def test_other_majors_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, version: str,
                                              message: str) -> None:
    install(monkeypatch, version)
    with pytest.raises(TensorRTUnavailable) as info:
        require_tensorrt()
    text = str(info.value)
    assert text.startswith(message)
    assert "python3-libnvinfer" in text and "\n" not in text


def test_tensorrt_11_lacks_what_a_10_build_uses() -> None:
    """The fakes carry the difference the version gate protects against."""
    old, new = make_tensorrt("10.3.0"), make_tensorrt("11.0.0")
    for name in ("FP16", "INT8", "PREFER_PRECISION_CONSTRAINTS"):
        assert hasattr(old.BuilderFlag, name) and not hasattr(new.BuilderFlag, name)
    assert hasattr(old, "IInt8EntropyCalibrator2") and not hasattr(new, "IInt8EntropyCalibrator2")
    assert hasattr(new.BuilderFlag, "TF32") and hasattr(new.NetworkDefinitionCreationFlag,
                                                        "STRONGLY_TYPED")


def test_export_with_tensorrt_11_ends_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path, model: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """`pip install tensorrt` brings 11.x: the build step says so, not an AttributeError."""
    install(monkeypatch, "11.0.0")
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: shutil.copyfile(
        model, tmp_path / "out.onnx"))
    monkeypatch.setattr(export, "parity", lambda *a, **k: (0.0, 0.0))
    monkeypatch.setattr(export, "load_checkpoint", lambda path: {})
    monkeypatch.setattr(export, "model_from_checkpoint", lambda payload: (None, META))
    code = export.main(["--checkpoint", str(tmp_path / "x.pt"), "--output",
                        str(tmp_path / "out.onnx"), "--no-release-checkpoint",
                        "--tensorrt", "fp16", "--engine-cache", str(tmp_path / "engines")])
    err = capsys.readouterr().err
    assert code == export.EXIT_NO_TENSORRT
    lines = [line for line in err.splitlines() if line.startswith("export.py:")]
    assert lines == [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "TensorRT 11.0.0 is not supported" in lines[0]
    assert "Traceback" not in err and not (tmp_path / "engines").exists()


# --- one key recipe for export.py and the node ------------------------------------------------

def export_args(model: Path, *extra: str) -> object:
    return export.build_parser().parse_args(
        ["--checkpoint", "unused.pt", "--output", str(model), "--tensorrt", "fp16", *extra])


def test_the_engine_export_builds_is_the_one_the_node_loads(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    trt = install(monkeypatch)
    cache = tmp_path / "engines"
    monkeypatch.setenv("DEPTH_ROS_ENGINE_CACHE", str(cache))  # the node sets no cache dir
    with caplog.at_level(logging.INFO, logger="depth_ros.inference"):
        exported = export.open_tensorrt_engine(export_args(model), META)
    assert exported.built and trt.behaviour.builds == 1
    assert "building one now, expect minutes" in caplog.text
    assert exported.profile["image"].min == exported.profile["image"].max == (1, 3, *TRAIN)
    assert manifest_path(exported.engine_path).is_file()
    caplog.clear()
    # The node: DepthEstimator(model, backend=..., input_size=...) as DepthNodeBase builds it.
    with caplog.at_level(logging.INFO, logger="depth_ros.inference"):
        node = DepthEstimator(model, backend="tensorrt", input_size=TRAIN)
    backend = node._backend
    assert not backend.built and trt.behaviour.builds == 1
    assert backend.engine_path == exported.engine_path
    assert "engine cache hit" in caplog.text and "building" not in caplog.text
    assert plans(cache) == [exported.engine_path.name]


def test_an_exported_range_covers_the_node_size(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, model: Path) -> None:
    trt = install(monkeypatch)
    cache = tmp_path / "engines"
    wide = export.open_tensorrt_engine(export_args(
        model, "--opt-size", "352x1216", "--min-size", "128x416", "--max-size", "384x1280",
        "--engine-cache", str(cache)), META)
    assert wide.built and wide.profile["image"].max == (1, 3, 384, 1280)
    node = DepthEstimator(model, backend="tensorrt", input_size=(256, 832), engine_cache=cache)
    assert not node._backend.built and trt.behaviour.builds == 1
    assert node._backend.engine_path == wide.engine_path
    assert node._backend.profile == wide.profile  # inputs are checked against what was loaded
    # A size outside every cached range is built, once, at construction.
    other = DepthEstimator(model, backend="tensorrt", input_size=(448, 1280),
                           engine_cache=cache)
    assert other._backend.built and trt.behaviour.builds == 2
    assert len(plans(cache)) == 2


@pytest.mark.parametrize(("field", "value"), [
    ("precision", "fp32"), ("tensorrt_version", "10.3.1"), ("gpu_name", "RTX 4090"),
    ("onnx_sha256", "cd" * 32)])
def test_a_covering_engine_must_match_everything_but_the_profile(tmp_path: Path, field: str,
                                                                 value: str) -> None:
    wide = engine_profile(32, "mono", (352, 1216), (128, 416), (384, 1280))
    narrow = engine_profile(32, "mono", (256, 832))
    fields = dict(gpu_name="Orin (nvgpu)", compute_capability="8.7",
                  tensorrt_version="10.3.0", precision="fp16", onnx_sha256="ab" * 32)
    cached = EngineKey(profile=wide, **fields)
    (tmp_path / cached.filename()).write_bytes(b"plan")
    from depth_ros.inference.engine_cache import write_manifest

    write_manifest(tmp_path / cached.filename(), cached)
    assert profile_covers(wide, narrow) and not profile_covers(narrow, wide)
    wanted = EngineKey(profile=narrow, **fields)
    assert [k for _, k in covering_engines(tmp_path, wanted)] == [cached]
    assert covering_engines(tmp_path, EngineKey(profile=narrow, **{**fields, field: value})) \
        == []
    batch = engine_profile(32, "mono", (256, 832), max_batch=2)
    assert covering_engines(tmp_path, EngineKey(profile=batch, **fields)) == []


def test_a_covering_plan_that_does_not_load_is_removed_and_one_is_built(
        tmp_path: Path) -> None:
    from depth_ros.inference.engine_cache import load_cached_or_build, write_manifest

    fields = dict(gpu_name="Orin (nvgpu)", compute_capability="8.7",
                  tensorrt_version="10.3.0", precision="fp16", onnx_sha256="ab" * 32)
    wide = EngineKey(profile=engine_profile(32, "mono", (352, 1216), (128, 416), (384, 1280)),
                     **fields)
    stale = tmp_path / wide.filename()
    stale.write_bytes(b"truncated")
    write_manifest(stale, wide)
    wanted = EngineKey(profile=engine_profile(32, "mono", (256, 832)), **fields)
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b"PLAN"

    engine, path, key, built = load_cached_or_build(  # engine: the bytes built
        tmp_path, wanted, build, lambda data: data if data == b"PLAN" else None)
    assert built and builds == [1] and key == wanted and path.name == wanted.filename()
    assert engine == b"PLAN"
    assert not stale.exists() and not manifest_path(stale).exists()
    assert manifest_path(path).is_file()
    again = load_cached_or_build(tmp_path, wanted, build, lambda data: data)
    assert again[3] is False and builds == [1]


def test_default_profile_is_the_running_size_only() -> None:
    profile = engine_profile(32, "fusion", (352, 1216))
    for item in profile.inputs:
        assert item.min == item.opt == item.max
    assert profile["sparse_depth"].opt == (1, 1, 352, 1216)
    assert trt_module.DEFAULT_WORKSPACE_BYTES == 512 << 20


# --- never a build in the frame path ----------------------------------------------------------

def test_an_input_outside_the_profile_raises_and_builds_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: Path) -> None:
    trt = install(monkeypatch)
    backend = TensorRTBackend(model, cache_dir=tmp_path)
    first = backend.engine_path
    assert backend.set_shapes({"image": (1, 3, *TRAIN)}) == (1, 1, *TRAIN)
    image = np.zeros((1, 3, 352, 1216), np.float32)
    with pytest.raises(ValueError) as info:
        backend.run(image)
    text = str(info.value)
    assert "(1, 3, 352, 1216) is outside the TensorRT engine's profile (image 1x3x128x416)" \
        in text
    assert "--opt-size 352x1216" in text and "\n" not in text
    assert trt.behaviour.builds == 1 and backend.engine_path == first
    assert plans(tmp_path) == [first.name]


def test_refused_input_shape_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         model: Path) -> None:
    trt = install(monkeypatch)
    backend = TensorRTBackend(model, cache_dir=tmp_path)
    trt.behaviour.refuse_shapes = True
    with pytest.raises(RuntimeError, match=r"TensorRT refused input 'image' shape "
                                           r"\(1, 3, 128, 416\) \(set_input_shape returned "
                                           r"False\)"):
        backend.run(np.zeros((1, 3, *TRAIN), np.float32))


def test_rejected_profile_is_an_error_and_caches_nothing(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path, model: Path) -> None:
    install(monkeypatch, behaviour=Behaviour(reject_profile=True))
    with pytest.raises(EngineBuildError, match="TensorRT rejected the optimisation profile "
                                               r"\(image 1x3x128x416\).*returned -1"):
        TensorRTBackend(model, cache_dir=tmp_path / "engines")
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())


# --- precision flags per release ---------------------------------------------------------------

@pytest.mark.parametrize("version", ["10.3.0", "10.13.0"])
def test_fp16_keeps_normalisation_fp32_without_deprecated_setters(
        monkeypatch: pytest.MonkeyPatch, model: Path, version: str) -> None:
    trt = install(monkeypatch, version)
    networks = []
    real = trt.Builder.create_network

    def keep(self: object, flags: int = 0) -> object:
        networks.append(real(self, flags))
        return networks[-1]

    monkeypatch.setattr(trt.Builder, "create_network", keep)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # 10.13: a deprecated setter fails
        if version == "10.3.0":
            warnings.simplefilter("ignore", DeprecationWarning)
        plan = build_engine(model, "fp16", engine_profile(32, "mono", TRAIN))
    assert plan.startswith(b"FAKEPLAN")
    layers = {layer.name: layer for layer in networks[-1].layers}
    flags = trt.behaviour.flags_set
    assert "FP16" in flags
    if version == "10.3.0":
        assert "PREFER_PRECISION_CONSTRAINTS" in flags
        assert layers["node_layer_norm"].precision_set and layers["node_softmax"].precision_set
        assert layers["node_layer_norm"].output_types == {0: trt.float32}
    else:
        assert "PREFER_PRECISION_CONSTRAINTS" not in flags
        assert not any(layer.precision_set or layer.output_types for layer in layers.values())
        assert isinstance(layers["node_layer_norm"], trt.INormalizationLayer)
        assert layers["node_layer_norm"].compute_precision == trt.float32
    assert not layers["node_conv2d"].precision_set


# --- INT8 calibration fails loudly ------------------------------------------------------------

class Batches:
    """Calibration data: ``count`` batches, the ``fail_at``-th raising (a broken image)."""

    batch_size = 1

    def __init__(self, count: int = 3, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for i in range(self.count):
            if i == self.fail_at:
                raise OSError(f"cannot read frame {i}: truncated PNG")
            yield {"image": np.full((1, 3, *TRAIN), i / 10, np.float32)}


def int8_build(model: Path, data: Batches, cache: Path) -> bytes:
    calibrator = make_entropy_calibrator(data, cache)
    return build_engine(model, "int8", engine_profile(32, "mono", TRAIN), calibrator)


def test_int8_calibration_feeds_every_batch_then_uses_its_cache(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: Path) -> None:
    trt = install(monkeypatch)
    assert int8_build(model, Batches(3), tmp_path / "c.calib").startswith(b"FAKEPLAN")
    assert trt.behaviour.calibration_batches == 3 and "INT8" in trt.behaviour.flags_set
    assert (tmp_path / "c.calib").read_bytes() == b"calibration table"
    # Next build: TensorRT reads the cache and asks for no batch; that is not "short".
    assert int8_build(model, Batches(3), tmp_path / "c.calib").startswith(b"FAKEPLAN")
    assert trt.behaviour.calibration_batches == 3


def test_exception_in_get_batch_fails_the_build(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, model: Path) -> None:
    trt = install(monkeypatch)
    with pytest.raises(EngineBuildError, match=r"INT8 calibration failed in batch 2 of 3: "
                                               r"OSError: cannot read frame 1: truncated PNG"):
        int8_build(model, Batches(3, fail_at=1), tmp_path / "c.calib")
    assert trt.behaviour.calibration_batches == 1  # what the binding saw: one batch, then "end"


def test_short_calibration_fails_the_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           model: Path) -> None:
    install(monkeypatch, behaviour=Behaviour(stop_calibration_after=2))
    with pytest.raises(EngineBuildError, match="INT8 calibration used 2 of 3 batches"):
        int8_build(model, Batches(3), tmp_path / "c.calib")


def test_int8_without_a_cached_engine_or_calibration_says_how(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: Path) -> None:
    trt = install(monkeypatch)
    with pytest.raises(EngineBuildError, match=r"needs calibration images: training/export.py "
                                               r"--tensorrt int8 --calibration-data DIR"):
        TensorRTBackend(model, "int8", cache_dir=tmp_path)
    assert trt.behaviour.builds == 0


def test_calibration_feed_keeps_a_keyboard_interrupt() -> None:
    class Interrupted(Batches):
        def __iter__(self):
            raise KeyboardInterrupt
            yield  # pragma: no cover

    feed = CalibrationFeed(Interrupted(2))
    assert feed.next(["image"]) is None
    with pytest.raises(KeyboardInterrupt):
        feed.check()


# --- the logger -------------------------------------------------------------------------------

def test_logger_drops_verbose_before_logging_and_keeps_warnings(
        monkeypatch: pytest.MonkeyPatch, model: Path, caplog: pytest.LogCaptureFixture) -> None:
    trt = install(monkeypatch)
    with caplog.at_level(logging.DEBUG, logger="depth_ros.inference"):
        build_engine(model, "fp32", engine_profile(32, "mono", TRAIN))
        logger = trt_module._logger(trt)
        logger.log(Severity.WARNING, "weights are subnormal")
        logger.log(Severity.INFO, "engine size 8 MiB")
    assert "tactic" not in caplog.text and "engine size" not in caplog.text
    assert "TensorRT: weights are subnormal" in caplog.text
    assert logger.sink.forwarded == 1 and logger.messages == ["[WARNING] weights are subnormal"]
    trt_module.set_log_severity("verbose")
    with caplog.at_level(logging.DEBUG, logger="depth_ros.inference"):
        logger.log(Severity.VERBOSE, "tactic 7 timed")
    assert "TensorRT: tactic 7 timed" in caplog.text
    with pytest.raises(ValueError, match="must be one of internal_error, error, warning"):
        trt_module.set_log_severity("loud")


def test_log_severity_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    trt = install(monkeypatch)
    monkeypatch.setenv(trt_module.LOG_SEVERITY_ENV, "info")
    logger = trt_module._logger(trt)
    with caplog.at_level(logging.DEBUG, logger="depth_ros.inference"):
        logger.log(Severity.INFO, "engine size 8 MiB")
        logger.log(Severity.VERBOSE, "tactic 1")
    assert "engine size" in caplog.text and "tactic" not in caplog.text


# --- not importable ---------------------------------------------------------------------------

def test_auto_says_once_that_tensorrt_is_not_importable(
        monkeypatch: pytest.MonkeyPatch, model: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    monkeypatch.setattr(trt_module, "_TENSORRT", None)
    monkeypatch.setattr(selection, "_SAID_NOT_IMPORTABLE", False)
    with caplog.at_level(logging.INFO, logger="depth_ros.inference"):
        DepthEstimator(model, device="cpu")  # cpu: no GPU option is probed
        assert "not importable" not in caplog.text
        first = DepthEstimator(model)
        DepthEstimator(model)
    line = (f"tensorrt not importable in this interpreter ({sys.executable}); on Jetson create "
            f"the venv with --system-site-packages")
    assert caplog.text.count(line) == 1
    reason = dict(first.skipped_backends)["tensorrt"]
    assert "not importable in this interpreter" in reason and "--system-site-packages" in reason
