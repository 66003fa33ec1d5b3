"""TensorRT 10: engine build from the exported ONNX (FP32/FP16/INT8), the engine cache, and
``TensorRTBackend``.

Only the name-based TensorRT 10 API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``); device buffers are torch CUDA tensors (``data_ptr()``), no pycuda.
``tensorrt`` and torch are imported when first needed, so this module imports anywhere;
without the package or a CUDA device the entry points raise ``TensorRTUnavailable`` with the
reason, which callers (``backend: auto``, ``export.py``) catch. The shape handling, the cache
and the calibration data are pure Python in ``engine_cache`` and below.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.inference.backends import ModelLoadError
from depth_ros.inference.engine_cache import (
    PRECISIONS,
    EngineKey,
    OptimizationProfile,
    engine_cache_dir,
    load_or_build,
    profile_for_sizes,
    sha256_of_file,
    write_bytes_durably,
)

LOG = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 1 << 30
# TensorRT layer types whose FP16 versions lose accuracy (long reductions, exp): kept in FP32
# in FP16/INT8 builds. A LayerNorm or Softmax that the exporter decomposed into reduce/unary/
# elementwise layers is recognised by its ONNX node name.
FP32_LAYER_TYPES = frozenset(("NORMALIZATION", "SOFTMAX"))
_DECOMPOSED_TYPES = frozenset(("REDUCE", "UNARY", "ELEMENTWISE"))
_NORMALISATION_NAME = re.compile(r"layer_?norm|group_?norm|rms_?norm|instance_?norm|softmax",
                                 re.IGNORECASE)


class TensorRTUnavailable(RuntimeError):  # noqa: N818 - reads as a condition, like ImportError
    """TensorRT cannot run here: no ``tensorrt`` package, no CUDA device, or no builder."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX model or build an engine; the message has its log."""


def input_channels(kind: str) -> dict[str, int]:
    """Network input names and channel counts for a model kind (the I/O contract)."""
    return {"image": 3, "sparse_depth": 1} if kind == "fusion" else {"image": 3}


def keep_in_fp32(layer_type: str, layer_name: str) -> bool:
    """Whether a TensorRT layer (type name, e.g. ``SOFTMAX``) stays FP32 under FP16/INT8."""
    return layer_type in FP32_LAYER_TYPES or (
        layer_type in _DECOMPOSED_TYPES and bool(_NORMALISATION_NAME.search(layer_name)))


# --- calibration data (pure Python) -----------------------------------------------------------

class CalibrationData:
    """INT8 calibration batches from KITTI-layout drives under ``root``.

    ``num_frames`` frames spread evenly over all drives (``find_drives``), each resized as
    ``DepthEstimator`` does to (height, width) — the profile's optimal size — as float32 RGB
    in [0, 1], N×3×H×W. Fusion models also get ``sparse_depth`` (N×1×H×W metres) from
    ``proj_depth/velodyne_raw``, zeros for frames without it.
    """

    def __init__(self, root: str | os.PathLike, num_frames: int, height: int, width: int,
                 batch_size: int = 1, kind: str = "mono", camera: int = 2) -> None:
        from depth_ros.kitti import find_drives

        if num_frames < 1 or batch_size < 1:
            raise ValueError(f"need num_frames >= 1 and batch_size >= 1, got {num_frames} and "
                             f"{batch_size}")
        frames = [(drive, index) for drive in find_drives(root, camera)
                  for index in range(len(drive))]
        picks = np.unique(np.linspace(0, len(frames) - 1, min(num_frames, len(frames)))
                          .round().astype(int))
        self.frames = [frames[i] for i in picks]
        if len(self.frames) < batch_size:
            raise ValueError(f"{root} has {len(self.frames)} frames, fewer than one batch of "
                             f"{batch_size}")
        self.height, self.width = int(height), int(width)
        self.batch_size = int(batch_size)
        self.kind = kind
        self.camera = camera

    def __len__(self) -> int:
        return len(self.frames) // self.batch_size

    def _sparse(self, drive: Any, index: int) -> np.ndarray:
        from depth_ros.geometry import resize_sparse_depth
        from depth_ros.kitti import read_depth_png

        path = (drive.path / "proj_depth" / "velodyne_raw" / f"image_{self.camera:02d}"
                / f"{drive.frames[index]}.png")
        if not path.is_file():
            return np.zeros((self.height, self.width), np.float32)
        # Point by point, as DepthEstimator feeds the engine: calibrating on the sparser
        # nearest-pixel resampling would tune INT8 ranges to inputs the engine never sees.
        return resize_sparse_depth(read_depth_png(path), self.width, self.height)

    def batch(self, number: int) -> dict[str, np.ndarray]:
        """The number-th batch as {input name: contiguous float32 array}."""
        from depth_ros.inference.preprocessing import resize_rgb

        if not 0 <= number < len(self):
            raise IndexError(f"batch {number} of {len(self)}")
        chosen = self.frames[number * self.batch_size:(number + 1) * self.batch_size]
        images = [resize_rgb(drive.rgb(i), self.width, self.height).astype(np.float32) / 255.0
                  for drive, i in chosen]
        out = {"image": np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2),
                                             dtype=np.float32)}
        if self.kind == "fusion":
            out["sparse_depth"] = np.ascontiguousarray(
                np.stack([self._sparse(drive, i) for drive, i in chosen])[:, None],
                dtype=np.float32)
        return out

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self.batch(i) for i in range(len(self)))


def profile_covering(profile: OptimizationProfile, shapes: dict[str, Sequence[int]],
                     stride: int) -> OptimizationProfile | None:
    """None if ``profile`` covers these input shapes; otherwise the profile for them: the
    image's height and width as the optimum, half to twice that as the range, batch up to
    the larger of the shape's and the old profile's (an engine per size range, not one
    stretched over every size: a wide range costs speed at the sizes actually used)."""
    if all(profile[name].contains(shape) for name, shape in shapes.items()):
        return None
    image = tuple(int(v) for v in shapes["image"])
    channels = {item.name: item.min[1] for item in profile.inputs}
    max_batch = max(image[0], profile["image"].max[0])
    return profile_for_sizes(stride, image[2:], input_channels=channels,
                             batch=(1, min(image[0], max_batch), max_batch))


# --- TensorRT (GPU-only from here on) ---------------------------------------------------------

_LOGGER: Any = None
_TENSORRT: Any = None  # the module, once require_tensorrt() has succeeded


def _logger(trt: Any) -> Any:
    """One process-wide ``trt.ILogger`` that keeps warnings and errors for error messages."""
    global _LOGGER
    if _LOGGER is None:
        class RecordingLogger(trt.ILogger):
            """Forwards TensorRT's log to ``logging`` and keeps its warnings and errors."""

            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.messages: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                level = int(severity)
                if level <= int(trt.ILogger.WARNING):
                    self.messages.append(f"[{severity.name}] {msg}")
                    del self.messages[:-50]
                LOG.log(logging.ERROR if level <= int(trt.ILogger.ERROR) else
                        logging.WARNING if level == int(trt.ILogger.WARNING) else
                        logging.DEBUG, "TensorRT: %s", msg)

        _LOGGER = RecordingLogger()
    return _LOGGER


def _log_tail(trt: Any, lines: int = 10) -> str:
    messages = _logger(trt).messages[-lines:]
    return (" | TensorRT log: " + " / ".join(messages)) if messages else ""


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, if TensorRT 10 can build and run engines here; otherwise
    ``TensorRTUnavailable`` with the reason (no package, an older TensorRT, no CUDA device,
    a failing ``trt.Builder``). Success is remembered; failures are checked again."""
    global _TENSORRT
    if _TENSORRT is not None:
        return _TENSORRT
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(f"the tensorrt Python package is not installed ({exc})") \
            from exc
    version = str(getattr(trt, "__version__", "0"))
    if int(version.split(".")[0] or 0) < 10:
        raise TensorRTUnavailable(f"TensorRT 10 is needed, found {version}")
    try:
        import torch
    except ImportError as exc:
        raise TensorRTUnavailable(f"PyTorch (CUDA device buffers) is not installed ({exc})") \
            from exc
    if not torch.cuda.is_available():
        build = " (this PyTorch is a CPU-only build)" if torch.version.cuda is None else ""
        raise TensorRTUnavailable(f"no CUDA device: torch.cuda.is_available() is False{build}")
    try:
        builder = trt.Builder(_logger(trt))
    except Exception as exc:  # no usable GPU: CUDA init error, then TypeError from the factory
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise TensorRTUnavailable(f"trt.Builder failed: {first}") from exc
    if builder is None:
        raise TensorRTUnavailable("trt.Builder returned no builder")
    _TENSORRT = trt
    return trt


def engine_key(onnx_path: str | os.PathLike, precision: str, profile: OptimizationProfile,
               device: int = 0) -> EngineKey:
    """The cache key of an engine for this GPU and TensorRT."""
    trt = require_tensorrt()
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return EngineKey(gpu_name=torch.cuda.get_device_name(device),
                     compute_capability=f"{major}.{minor}", tensorrt_version=trt.__version__,
                     precision=precision, profile=profile,
                     onnx_sha256=sha256_of_file(onnx_path))


def make_entropy_calibrator(data: CalibrationData, cache_path: str | os.PathLike,
                            device: int = 0) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` fed by ``data``, its result cached at ``cache_path``
    (reused on the next build instead of calibrating again)."""
    trt = require_tensorrt()
    import torch

    cache_path = Path(cache_path)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Copies each batch to CUDA tensors and hands TensorRT their addresses."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(data)
            self._alive: dict[str, Any] = {}  # the device tensors TensorRT is reading

        def get_batch_size(self) -> int:
            return data.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._batches)
            except StopIteration:
                return None
            self._alive = {n: torch.from_numpy(batch[n]).to(f"cuda:{device}") for n in names}
            torch.cuda.synchronize(device)
            return [int(self._alive[n].data_ptr()) for n in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes_durably(cache_path, bytes(cache))

    return EntropyCalibrator()


def _pin_normalisation_to_fp32(trt: Any, network: Any) -> int:
    """Mark LayerNorm/Softmax(-like) layers FP32; returns how many."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if keep_in_fp32(layer.type.name, layer.name):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(onnx_path: str | os.PathLike, precision: str, profile: OptimizationProfile,
                 calibrator: Any = None,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> bytes:
    """Parse the ONNX file and build a serialised engine (TensorRT 10 builder API).

    ``fp32`` (TF32 off), ``fp16``, or ``int8`` (with FP16 fallback; needs ``calibrator``);
    under FP16/INT8 normalisation and softmax layers are kept in FP32. ``profile`` must name
    every network input. Raises ``EngineBuildError`` with the parser's errors and TensorRT's
    log, ``TensorRTUnavailable`` without a usable GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibrator is None:
        raise ValueError("an INT8 build needs a calibrator (calibration images)")
    trt = require_tensorrt()
    logger = _logger(trt)
    logger.messages.clear()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network has an explicit batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}: "
                               f"{'; '.join(errors) or 'no error given'}{_log_tail(trt)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    trt_profile = builder.create_optimization_profile()
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(names) != sorted(profile.input_names):
        raise EngineBuildError(f"the network's inputs {names} do not match the profile's "
                               f"{profile.input_names}")
    for name in names:
        item = profile[name]
        trt_profile.set_shape(name, item.min, item.opt, item.max)
    config.add_optimization_profile(trt_profile)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    else:
        config.set_flag(trt.BuilderFlag.FP16)
        if _pin_normalisation_to_fp32(trt, network):
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(trt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build a {precision} engine from "
                               f"{onnx_path}{_log_tail(trt)}")
    return bytes(serialized)


def get_engine(onnx_path: str | os.PathLike, precision: str, profile: OptimizationProfile,
               cache_dir: str | os.PathLike | None = None,
               calibration: CalibrationData | None = None, device: int = 0,
               workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> tuple[Any, Any, Path, bool]:
    """(runtime, engine, plan path, built): the cached engine for this ONNX file, GPU,
    TensorRT, precision and profile, built and cached first if it is missing or unusable."""
    trt = require_tensorrt()
    import torch

    torch.cuda.set_device(device)
    key = engine_key(onnx_path, precision, profile, device)
    directory = engine_cache_dir(cache_dir)
    path = directory / key.filename()
    runtime = trt.Runtime(_logger(trt))

    def build() -> bytes:
        calibrator = None
        if precision == "int8":
            if calibration is None:
                raise ValueError("an INT8 engine needs calibration data")
            opt = profile["image"].opt
            calibrator = make_entropy_calibrator(
                calibration, directory / f"{key.onnx_sha256[:16]}_{opt[2]}x{opt[3]}.calib",
                device)
        image = profile["image"]
        LOG.info("building a TensorRT %s engine from %s for inputs %dx%d to %dx%d (opt %dx%d); "
                 "this takes minutes on a Jetson, once: it is cached as %s", precision,
                 onnx_path, *image.min[2:], *image.max[2:], *image.opt[2:], path)
        started = time.monotonic()
        data = build_engine(onnx_path, precision, profile, calibrator, workspace_bytes)
        LOG.info("TensorRT %s engine built in %.1f s", precision, time.monotonic() - started)
        return data

    engine, built = load_or_build(path, build, runtime.deserialize_cuda_engine)
    return runtime, engine, path, built


class TensorRTBackend:
    """TensorRT inference of an exported model; the engine is built on first use and cached.

    Args:
        model_path: the ``.onnx`` file (metadata from its ``metadata_props``).
        precision: ``fp16`` (default), ``fp32`` or ``int8`` (needs ``calibration``).
        input_size: the profile's optimal (height, width); default: the training size.
        min_size, max_size: the profile's range; default: half and twice ``input_size``.
        max_batch: the largest batch the engine accepts.
        cache_dir: engine cache (default ``$DEPTH_ROS_ENGINE_CACHE`` or
            ``~/.cache/depth_ros/engines``).
        device: CUDA device index.
        calibration: INT8 calibration batches.
        rebuild_outside_profile: an input outside the profile switches to an engine whose
            profile centres on it (``profile_covering``; built once, then cached); False (and
            INT8 engines, calibrated at one size) raise ``ValueError`` instead.

    Raises:
        ModelLoadError: the ONNX file is missing or has no depth_ros metadata.
        TensorRTUnavailable: no ``tensorrt`` package or CUDA device here.
        EngineBuildError: TensorRT could not build the engine.
    """

    name = "tensorrt"

    def __init__(self, model_path: str | os.PathLike, precision: str = "fp16",
                 input_size: tuple[int, int] | None = None,
                 min_size: tuple[int, int] | None = None,
                 max_size: tuple[int, int] | None = None, max_batch: int = 1,
                 cache_dir: str | os.PathLike | None = None, device: int = 0,
                 calibration: CalibrationData | None = None,
                 rebuild_outside_profile: bool = True) -> None:
        from depth_ros.models.metadata import MetadataError, read_onnx_metadata

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelLoadError(f"model file not found: {self.model_path}")
        try:
            self.metadata = read_onnx_metadata(self.model_path)
        except (MetadataError, ValueError, OSError) as exc:
            raise ModelLoadError(f"{self.model_path} has no valid depth_ros metadata: "
                                 f"{exc}") from exc
        require_tensorrt()
        import torch

        self._torch = torch
        meta = self.metadata
        self.precision = precision
        self.rebuild_outside_profile = rebuild_outside_profile
        self._cache_dir = cache_dir
        self._calibration = calibration
        self._device_index = int(device)
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(device=self.device)
        self._open(profile_for_sizes(meta.stride, input_size or meta.train_input_size,
                                     min_size, max_size, input_channels(meta.kind),
                                     batch=(1, 1, max(int(max_batch), 1))))

    def _open(self, profile: OptimizationProfile) -> None:
        """Load (or build) the engine for ``profile`` and make it the one that runs."""
        trt = require_tensorrt()
        torch = self._torch
        self._runtime, engine, self.engine_path, self.built = get_engine(
            self.model_path, self.precision, profile, self._cache_dir, self._calibration,
            self._device_index)
        context = engine.create_execution_context()
        if context is None:
            raise EngineBuildError(f"cannot create an execution context for {self.engine_path}"
                                   f"{_log_tail(trt)}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(outputs) != 1:
            raise EngineBuildError(f"{self.engine_path} has outputs {outputs}, expected one")
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
        self.engine, self.context, self.profile = engine, context, profile
        self.input_names, self.output_name = inputs, outputs[0]
        self._dtypes = {n: dtypes[engine.get_tensor_dtype(n)] for n in names}

    @property
    def description(self) -> str:
        """``tensorrt[<device>,<precision>]``."""
        return f"tensorrt[{self.device},{self.precision}]"

    def run(self, image: np.ndarray, sparse_depth: np.ndarray | None = None) -> np.ndarray:
        """N×3×H×W float32 image (and N×1×H×W sparse depth for fusion models) → N×1×H×W."""
        torch = self._torch
        feeds: dict[str, np.ndarray] = {"image": image}
        if "sparse_depth" in self.input_names:
            if sparse_depth is None:
                raise ValueError("this fusion model needs sparse_depth")
            feeds["sparse_depth"] = sparse_depth
        shapes = {n: a.shape for n, a in feeds.items()}
        wider = profile_covering(self.profile, shapes, self.metadata.stride)
        if wider is not None:
            # INT8: the calibration batches have the old profile's size; no silent rebuild.
            if not self.rebuild_outside_profile or self.precision == "int8":
                self.profile.check(shapes)  # raises, naming the shape and the range
            LOG.warning("input %s is outside the TensorRT engine's profile (%s to %s); "
                        "switching to an engine for it (built once, then cached)",
                        tuple(image.shape), self.profile["image"].min,
                        self.profile["image"].max)
            self._open(wider)
        with torch.cuda.stream(self.stream):
            inputs = {}  # referenced until the stream is done with them
            for name, array in feeds.items():
                tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
                inputs[name] = tensor.to(self.device).to(self._dtypes[name])
                self.context.set_input_shape(name, tuple(inputs[name].shape))
                self.context.set_tensor_address(name, inputs[name].data_ptr())
            shape = tuple(self.context.get_tensor_shape(self.output_name))
            output = torch.empty(shape, dtype=self._dtypes[self.output_name],
                                 device=self.device)
            self.context.set_tensor_address(self.output_name, output.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed for input shapes "
                                   f"{[a.shape for a in feeds.values()]}")
            result = output.float().cpu()  # ordered after the engine on this stream
        self.stream.synchronize()
        return result.numpy()


def tensorrt_parity(backend: TensorRTBackend, onnx_path: str | os.PathLike,
                    feeds: dict[str, np.ndarray]) -> tuple[float, float]:
    """(max |TensorRT − onnxruntime|, that over max |onnxruntime|) on the same inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)[0].astype(np.float64)
    got = backend.run(feeds["image"], feeds.get("sparse_depth")).astype(np.float64)
    if got.shape != expected.shape:
        raise EngineBuildError(f"TensorRT output shape {got.shape} != onnxruntime "
                               f"{expected.shape}")
    diff = float(np.abs(got - expected).max())
    return diff, diff / max(float(np.abs(expected).max()), 1e-12)

