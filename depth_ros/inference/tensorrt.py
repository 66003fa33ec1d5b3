"""TensorRT 10.x: engine build from the exported ONNX (FP32/FP16/INT8), the engine cache, and
``TensorRTBackend``.

Supported: TensorRT 10.x (10.3, JetPack 6's, is the oldest the operator check in ``trt_ops``
assumes). TensorRT 11 removed the weakly typed precision flags (``BuilderFlag.FP16/INT8``)
and the INT8 calibrators these builds use, and is refused with one line saying how to install
10.x. From 10.12 on, where the per-layer precision setters are deprecated, normalisation layers
are kept in FP32 through ``INormalizationLayer.compute_precision`` instead.

Only the name-based TensorRT 10 API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``); device buffers are torch CUDA tensors (``data_ptr()``), no pycuda.
``tensorrt`` and torch are imported when first needed, so this module imports anywhere;
without the package or a CUDA device the entry points raise ``TensorRTUnavailable`` with the
reason, which callers (``backend: auto``, ``export.py``) catch. Engines are built when a
backend is constructed (or by ``training/export.py``), never while frames arrive. The shape
handling, the cache and the calibration data are pure Python in ``engine_cache`` and below.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.errors import DepthRosError
from depth_ros.inference.backends import ModelLoadError
from depth_ros.inference.engine_cache import (
    PRECISIONS,
    EngineKey,
    OptimizationProfile,
    describe_profile,
    engine_cache_dir,
    engine_profile,
    load_cached_or_build,
    sha256_of_file,
    write_bytes_durably,
)

LOG = logging.getLogger(__name__)

# Builder scratch memory. An 8 GB Orin shares its memory between CPU and GPU, and the node,
# ROS and the engine itself need most of it: 512 MiB leaves room; larger GPUs may raise it
# (``--workspace-mib``) where the build log says a tactic was skipped for lack of workspace.
DEFAULT_WORKSPACE_BYTES = 512 << 20
SUPPORTED_MAJOR = 10
# From this version on ILayer.precision/set_output_type warn (deprecated: strong typing).
DEPRECATED_LAYER_PRECISION = (10, 12)
INSTALL_HINT = ("install TensorRT 10.x: pip install 'tensorrt-cu12<11' (x86_64/SBSA, from "
                "NVIDIA's index), or on Jetson JetPack 6's python3-libnvinfer (TensorRT 10.3)")
# TensorRT's ILogger severities (stable values of nvinfer1::ILogger::Severity).
SEVERITIES = {"internal_error": 0, "error": 1, "warning": 2, "info": 3, "verbose": 4}
LOG_SEVERITY_ENV = "DEPTH_ROS_TENSORRT_LOG"
DEFAULT_LOG_SEVERITY = "warning"
# TensorRT layer types whose FP16 versions lose accuracy (long reductions, exp): kept in FP32
# in FP16/INT8 builds. A LayerNorm or Softmax that the exporter decomposed into reduce/unary/
# elementwise layers is recognised by its ONNX node name.
FP32_LAYER_TYPES = frozenset(("NORMALIZATION", "SOFTMAX"))
_DECOMPOSED_TYPES = frozenset(("REDUCE", "UNARY", "ELEMENTWISE"))
_NORMALISATION_NAME = re.compile(r"layer_?norm|group_?norm|rms_?norm|instance_?norm|softmax",
                                 re.IGNORECASE)


class TensorRTUnavailable(DepthRosError, RuntimeError):  # noqa: N818 - reads as a condition, like ImportError
    """TensorRT cannot run here: no ``tensorrt`` package, no CUDA device, or no builder."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX model or build an engine; the message has its log."""


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


# --- TensorRT (GPU-only from here on) ---------------------------------------------------------

_LOGGER: Any = None
_TENSORRT: Any = None  # the module, once require_tensorrt() has succeeded
_LOG_SEVERITY: str | None = None  # set_log_severity(); None: the environment, then the default


def parse_tensorrt_version(text: str) -> tuple[int, int]:
    """``"10.3.0.30"`` → (10, 3); anything unreadable → (0, 0)."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?", str(text))
    return (int(match.group(1)), int(match.group(2) or 0)) if match else (0, 0)


def check_tensorrt_version(version: str) -> None:
    """Raise ``TensorRTUnavailable`` (one line, with the install hint) unless ``version`` is a
    TensorRT 10.x this code builds with."""
    major, _ = parse_tensorrt_version(version)
    if major < SUPPORTED_MAJOR:
        raise TensorRTUnavailable(f"TensorRT {version} is too old: depth_ros needs TensorRT "
                                  f"10.x; {INSTALL_HINT}")
    if major > SUPPORTED_MAJOR:
        raise TensorRTUnavailable(
            f"TensorRT {version} is not supported: depth_ros builds with TensorRT 10.x, and "
            f"TensorRT 11 removed the FP16/INT8 builder flags and INT8 calibrators it uses; "
            f"{INSTALL_HINT}")


def set_log_severity(name: str) -> None:
    """Forward TensorRT's messages of this severity and worse to ``logging``:
    ``internal_error``, ``error``, ``warning`` (the default), ``info`` or ``verbose``."""
    global _LOG_SEVERITY
    key = str(name).strip().lower()
    if key not in SEVERITIES:
        raise ValueError(f"TensorRT log severity must be one of {', '.join(SEVERITIES)}, got "
                         f"{name!r}")
    _LOG_SEVERITY = key
    if _LOGGER is not None:
        _LOGGER.forward_up_to = SEVERITIES[key]


def log_severity() -> str:
    """The severity set by ``set_log_severity``, else ``$DEPTH_ROS_TENSORRT_LOG`` (read now,
    not at import), else ``warning``."""
    if _LOG_SEVERITY is not None:
        return _LOG_SEVERITY
    from_env = os.environ.get(LOG_SEVERITY_ENV, "").strip().lower()
    if from_env in SEVERITIES:
        return from_env
    if from_env:
        LOG.warning("%s=%s is not one of %s; using %s", LOG_SEVERITY_ENV, from_env,
                    ", ".join(SEVERITIES), DEFAULT_LOG_SEVERITY)
    return DEFAULT_LOG_SEVERITY


class TensorRTLogSink:
    """What the ``trt.ILogger`` subclass does with a message, in plain Python.

    TensorRT calls the logger for every message, VERBOSE included (thousands per build), and
    each call takes the GIL. The severity is compared first, with plain integers, so the
    messages nobody reads return at once; the rest are kept (warnings and errors, for error
    messages) and forwarded to ``logging``.
    """

    KEEP = 50

    def __init__(self, forward_up_to: int) -> None:
        self.forward_up_to = int(forward_up_to)
        self.messages: list[str] = []
        self.forwarded = 0

    def __call__(self, severity: Any, msg: str) -> None:
        level = int(severity)
        if level > self.forward_up_to and level > SEVERITIES["warning"]:
            return
        if level <= SEVERITIES["warning"]:
            name = getattr(severity, "name", None) or str(level)
            self.messages.append(f"[{name}] {msg}")
            del self.messages[:-self.KEEP]
        if level <= self.forward_up_to:
            self.forwarded += 1
            LOG.log(logging.ERROR if level <= SEVERITIES["error"] else
                    logging.WARNING if level == SEVERITIES["warning"] else
                    logging.INFO if level == SEVERITIES["info"] else logging.DEBUG,
                    "TensorRT: %s", msg)


def _logger(trt: Any) -> Any:
    """One process-wide ``trt.ILogger`` (TensorRT wants one logger per process)."""
    global _LOGGER
    if _LOGGER is None:
        sink = TensorRTLogSink(SEVERITIES[log_severity()])

        class RecordingLogger(trt.ILogger):
            """Forwards TensorRT's log to ``logging`` (filtered by severity first)."""

            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.sink = sink

            @property
            def messages(self) -> list[str]:
                return self.sink.messages

            @property
            def forward_up_to(self) -> int:
                return self.sink.forward_up_to

            @forward_up_to.setter
            def forward_up_to(self, value: int) -> None:
                self.sink.forward_up_to = int(value)

            def log(self, severity: Any, msg: str) -> None:
                self.sink(severity, msg)

        _LOGGER = RecordingLogger()
    return _LOGGER


def _log_tail(trt: Any, lines: int = 10) -> str:
    messages = _logger(trt).messages[-lines:]
    return (" | TensorRT log: " + " / ".join(messages)) if messages else ""


def not_importable_message(exc: BaseException) -> str:
    """The one line for an interpreter that cannot import ``tensorrt``."""
    return (f"the tensorrt Python package is not installed: tensorrt not importable in this "
            f"interpreter ({sys.executable}: {exc}); on Jetson create the venv with "
            f"--system-site-packages")


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, if TensorRT 10.x can build and run engines here; otherwise
    ``TensorRTUnavailable`` with the reason (not importable, an unsupported version, no CUDA
    device, a failing ``trt.Builder``). Success is remembered; failures are checked again."""
    global _TENSORRT
    if _TENSORRT is not None:
        return _TENSORRT
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(not_importable_message(exc)) from exc
    check_tensorrt_version(str(getattr(trt, "__version__", "0")))
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
    """The cache key of an engine for this GPU and TensorRT (export and nodes alike)."""
    trt = require_tensorrt()
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return EngineKey(gpu_name=torch.cuda.get_device_name(device),
                     compute_capability=f"{major}.{minor}", tensorrt_version=trt.__version__,
                     precision=precision, profile=profile,
                     onnx_sha256=sha256_of_file(onnx_path))


def _to_device(array: np.ndarray, device: int) -> Any:
    """A CUDA copy of a host array (its ``data_ptr()`` is what TensorRT reads)."""
    import torch

    return torch.from_numpy(array).to(f"cuda:{device}")


class CalibrationFeed:
    """Hands ``CalibrationData`` batches to TensorRT's calibrator and checks it got them all.

    TensorRT's binding swallows a Python exception raised inside ``get_batch`` and reads it
    as "no more batches": calibration would silently end early. ``next`` therefore catches
    every exception, remembers it and answers None; ``check`` (after the build) raises
    ``EngineBuildError`` for it, or when fewer batches than the data holds were fed while no
    calibration cache was used.
    """

    def __init__(self, data: Any, device: int = 0) -> None:
        self.data = data
        self.expected = len(data)
        self.device = device
        self.fed = 0
        self.error: BaseException | None = None
        self.cache_used = False
        self._batches = iter(data)
        self._alive: dict[str, Any] = {}  # the device tensors TensorRT is reading

    def next(self, names: list[str]) -> list[int] | None:
        """Device addresses of the next batch's inputs, in ``names`` order; None when done."""
        if self.error is not None:
            return None
        try:
            batch = next(self._batches, None)
            if batch is None:
                return None
            alive = {n: _to_device(batch[n], self.device) for n in names}
            self._synchronize()
            self._alive = alive
            self.fed += 1
            return [int(alive[n].data_ptr()) for n in names]
        except BaseException as exc:  # the binding would swallow it: kept for check()
            self.error = exc
            return None

    def _synchronize(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize(self.device)

    def check(self) -> None:
        """Raise ``EngineBuildError`` if calibration failed or ended early."""
        if self.error is not None and not isinstance(self.error, Exception):
            raise self.error  # Ctrl-C during calibration stays a KeyboardInterrupt
        if self.error is not None:
            raise EngineBuildError(
                f"INT8 calibration failed in batch {self.fed + 1} of {self.expected}: "
                f"{type(self.error).__name__}: {self.error}") from self.error
        if not self.cache_used and self.fed < self.expected:
            raise EngineBuildError(f"INT8 calibration used {self.fed} of {self.expected} "
                                   f"batches; TensorRT stopped asking early")


def make_entropy_calibrator(data: CalibrationData, cache_path: str | os.PathLike,
                            device: int = 0) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` fed by ``data``, its result cached at ``cache_path``
    (reused on the next build instead of calibrating again); ``.feed.check()`` after the
    build says whether every batch arrived."""
    trt = require_tensorrt()
    cache_path = Path(cache_path)
    feed = CalibrationFeed(data, device)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Copies each batch to CUDA tensors and hands TensorRT their addresses."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.feed = feed

        def get_batch_size(self) -> int:
            return data.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            return feed.next(list(names))

        def read_calibration_cache(self) -> bytes | None:
            if not cache_path.is_file():
                return None
            feed.cache_used = True
            return cache_path.read_bytes()

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes_durably(cache_path, bytes(cache))

    return EntropyCalibrator()


def _pin_normalisation_to_fp32(trt: Any, network: Any, version: tuple[int, int]) -> int:
    """Keep LayerNorm/Softmax(-like) layers in FP32 under FP16/INT8; returns how many.

    Before 10.12: per-layer precision constraints (``layer.precision``, ``set_output_type``)
    on every such layer. From 10.12, where those setters are deprecated, only normalisation
    layers, through ``INormalizationLayer.compute_precision`` (current API); softmax and
    normalisations the exporter decomposed are left to TensorRT there (no current per-layer
    API in a weakly typed network).
    """
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not keep_in_fp32(layer.type.name, layer.name):
            continue
        if version >= DEPRECATED_LAYER_PRECISION:
            if layer.type.name != "NORMALIZATION":
                continue
            # get_layer returns the base class; the subclass gives its attributes.
            layer.__class__ = trt.INormalizationLayer
            layer.compute_precision = trt.float32
        else:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def _check_calibrator(calibrator: Any) -> None:
    feed = getattr(calibrator, "feed", None)
    if feed is not None:
        feed.check()


def build_engine(onnx_path: str | os.PathLike, precision: str, profile: OptimizationProfile,
                 calibrator: Any = None,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> bytes:
    """Parse the ONNX file and build a serialised engine (TensorRT 10 builder API).

    ``fp32`` (TF32 off), ``fp16``, or ``int8`` (with FP16 fallback; needs ``calibrator``);
    under FP16/INT8 normalisation layers are kept in FP32. ``profile`` must name every network
    input. Raises ``EngineBuildError`` with the parser's errors and TensorRT's log (a rejected
    profile, a failed or short INT8 calibration included), ``TensorRTUnavailable`` without a
    usable GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibrator is None:
        raise ValueError("an INT8 build needs a calibrator (calibration images)")
    trt = require_tensorrt()
    version = parse_tensorrt_version(trt.__version__)
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
    if config.add_optimization_profile(trt_profile) < 0:  # -1: TensorRT rejected it
        raise EngineBuildError(f"TensorRT rejected the optimisation profile "
                               f"({describe_profile(profile)}) for {onnx_path}: "
                               f"add_optimization_profile returned -1{_log_tail(trt)}")
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    else:
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = _pin_normalisation_to_fp32(trt, network, version)
        if pinned and version < DEPRECATED_LAYER_PRECISION:
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        LOG.debug("%d normalisation layers kept in FP32", pinned)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        if config.set_calibration_profile(trt_profile) is False:
            raise EngineBuildError(f"TensorRT rejected the calibration profile "
                                   f"({describe_profile(profile)}){_log_tail(trt)}")
    serialized = builder.build_serialized_network(network, config)
    _check_calibrator(calibrator)  # a swallowed exception or a short calibration: loudly
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build a {precision} engine from "
                               f"{onnx_path}{_log_tail(trt)}")
    return bytes(serialized)


def build_duration_hint(precision: str) -> str:
    """What to expect of a build, for the start-up log line (rough: builds time kernels)."""
    extra = ", more for INT8 calibration" if precision == "int8" else ""
    return f"expect minutes (up to ~20 on a Jetson Orin{extra})"


def get_engine(onnx_path: str | os.PathLike, precision: str, profile: OptimizationProfile,
               cache_dir: str | os.PathLike | None = None,
               calibration: CalibrationData | None = None, device: int = 0,
               workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
               ) -> tuple[Any, Any, Path, EngineKey, bool]:
    """(runtime, engine, plan path, key of the engine loaded, built): the cached engine for
    this ONNX file, GPU, TensorRT and precision whose profile covers ``profile``, or one
    built now for ``profile`` and cached (logged at INFO before the build starts)."""
    trt = require_tensorrt()
    import torch

    torch.cuda.set_device(device)
    key = engine_key(onnx_path, precision, profile, device)
    directory = engine_cache_dir(cache_dir)
    runtime = trt.Runtime(_logger(trt))

    def build() -> bytes:
        path = directory / key.filename()
        calibrator = None
        if precision == "int8":
            if calibration is None:
                raise EngineBuildError(
                    f"no cached INT8 engine of {Path(onnx_path).name} covers "
                    f"{describe_profile(profile)} on this GPU and TensorRT, and building one "
                    f"needs calibration images: training/export.py --tensorrt int8 "
                    f"--calibration-data DIR")
            opt = profile["image"].opt
            calibrator = make_entropy_calibrator(
                calibration, directory / f"{key.onnx_sha256[:16]}_{opt[2]}x{opt[3]}.calib",
                device)
        LOG.info("no cached TensorRT %s engine of %s for %s on this GPU (%s, TensorRT %s): "
                 "building one now, %s; it is cached as %s", precision, onnx_path,
                 describe_profile(profile), key.gpu_name, key.tensorrt_version,
                 build_duration_hint(precision), path)
        started = time.monotonic()
        data = build_engine(onnx_path, precision, profile, calibrator, workspace_bytes)
        LOG.info("TensorRT %s engine built in %.1f s", precision, time.monotonic() - started)
        return data

    engine, path, loaded, built = load_cached_or_build(directory, key, build,
                                                       runtime.deserialize_cuda_engine)
    return runtime, engine, path, loaded, built


class TensorRTBackend:
    """TensorRT inference of an exported model; the engine is loaded from the cache, or built
    (and cached) here, at construction: never while frames arrive.

    Args:
        model_path: the ``.onnx`` file (metadata from its ``metadata_props``).
        precision: ``fp16`` (default), ``fp32`` or ``int8`` (built with ``calibration``, or
            an INT8 engine ``training/export.py`` cached).
        input_size: the network (height, width) the engine runs at; default: the training size.
        min_size, max_size: a range of sizes, only when asked for (default: ``input_size``
            alone). A cached engine whose range covers what is asked for is used as it is.
        max_batch: the largest batch the engine accepts.
        cache_dir: engine cache (default ``$DEPTH_ROS_ENGINE_CACHE`` or
            ``~/.cache/depth_ros/engines``).
        device: CUDA device index.
        calibration: INT8 calibration batches.
        workspace_bytes: the builder's workspace limit.

    An input outside the engine's profile raises ``ValueError`` naming the shape, the profile
    and how to build an engine for it.

    Raises:
        ModelLoadError: the ONNX file is missing or has no depth_ros metadata.
        TensorRTUnavailable: no usable TensorRT 10.x or CUDA device here.
        EngineBuildError: TensorRT could not build the engine.
    """

    name = "tensorrt"

    def __init__(self, model_path: str | os.PathLike, precision: str = "fp16",
                 input_size: tuple[int, int] | None = None,
                 min_size: tuple[int, int] | None = None,
                 max_size: tuple[int, int] | None = None, max_batch: int = 1,
                 cache_dir: str | os.PathLike | None = None, device: int = 0,
                 calibration: CalibrationData | None = None,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> None:
        from depth_ros.models.metadata import MetadataError, read_onnx_metadata

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelLoadError(f"model file not found: {self.model_path}")
        try:
            self.metadata = read_onnx_metadata(self.model_path)
        except (MetadataError, ValueError, OSError) as exc:
            raise ModelLoadError(f"{self.model_path} has no valid depth_ros metadata: "
                                 f"{exc}") from exc
        trt = require_tensorrt()
        import torch

        self._torch = torch
        meta = self.metadata
        self.precision = precision
        self._device_index = int(device)
        self.device = torch.device("cuda", self._device_index)
        self.stream = torch.cuda.Stream(device=self.device)
        self.requested_profile = engine_profile(meta.stride, meta.kind,
                                                input_size or meta.train_input_size,
                                                min_size, max_size, max_batch)
        self._runtime, engine, self.engine_path, key, self.built = get_engine(
            self.model_path, precision, self.requested_profile, cache_dir, calibration,
            self._device_index, workspace_bytes)
        self.profile = key.profile  # the loaded engine's: it may cover more than was asked
        context = engine.create_execution_context()
        if context is None:
            raise EngineBuildError(f"cannot create an execution context for {self.engine_path}"
                                   f"{_log_tail(trt)}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        # The depth first; completion models add ``confidence`` (metadata ``outputs``).
        wanted = list(self.metadata.output_names)
        if sorted(outputs) != sorted(wanted):
            raise EngineBuildError(f"{self.engine_path} has outputs {outputs}, expected "
                                   f"{wanted}")
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
        self.engine, self.context = engine, context
        self.input_names, self.output_name = inputs, wanted[0]
        self.output_names = wanted
        self._dtypes = {n: dtypes[engine.get_tensor_dtype(n)] for n in names}

    @property
    def description(self) -> str:
        """``tensorrt[<device>,<precision>]``."""
        return f"tensorrt[{self.device},{self.precision}]"

    def _outside_profile(self, name: str, shape: tuple[int, ...]) -> ValueError:
        item = self.profile[name]
        size = f"{shape[2]}x{shape[3]}" if len(shape) == 4 else "?"
        return ValueError(
            f"input {name!r} shape {shape} is outside the TensorRT engine's profile "
            f"({describe_profile(self.profile)}); engines are not rebuilt while frames "
            f"arrive: set the network input size to {item.opt[2]}x{item.opt[3]}, or build "
            f"an engine for {size} first (training/export.py --tensorrt {self.precision} "
            f"--opt-size {size}, or --min-size/--max-size for a range)")

    def set_shapes(self, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
        """Check the input shapes against the profile, give them to the execution context
        and return the output's shape; ``ValueError`` outside the profile, ``RuntimeError``
        when TensorRT refuses a shape. Never builds."""
        for name, shape in shapes.items():
            if not self.profile[name].contains(shape):
                raise self._outside_profile(name, shape)
        for name, shape in shapes.items():
            if not self.context.set_input_shape(name, shape):  # False: TensorRT refused it
                raise RuntimeError(f"TensorRT refused input {name!r} shape {shape} "
                                   f"(set_input_shape returned False)"
                                   f"{_log_tail(require_tensorrt())}")
        shape = tuple(int(v) for v in self.context.get_tensor_shape(self.output_name))
        if any(v < 0 for v in shape):
            raise RuntimeError(f"TensorRT could not infer the output shape {shape} of "
                               f"{self.output_name!r} for inputs {shapes}")
        return shape

    def run(self, image: np.ndarray, sparse_depth: np.ndarray | None = None) -> np.ndarray:
        """N×3×H×W float32 image (and N×1×H×W sparse depth for fusion models) → N×1×H×W."""
        return self.run_outputs(image, sparse_depth)[0]

    def run_outputs(self, image: np.ndarray, sparse_depth: np.ndarray | None = None
                    ) -> list[np.ndarray]:
        """Every output (``metadata.output_names`` order), each N×1×H×W float32."""
        torch = self._torch
        feeds: dict[str, np.ndarray] = {"image": image}
        if "sparse_depth" in self.input_names:
            if sparse_depth is None:
                raise ValueError("this fusion model needs sparse_depth")
            feeds["sparse_depth"] = sparse_depth
        shape = self.set_shapes({n: tuple(int(v) for v in a.shape) for n, a in feeds.items()})
        with torch.cuda.stream(self.stream):
            inputs = {}  # referenced until the stream is done with them
            for name, array in feeds.items():
                tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
                inputs[name] = tensor.to(self.device).to(self._dtypes[name])
                self.context.set_tensor_address(name, inputs[name].data_ptr())
            outputs = []
            for name in self.output_names:  # every output of a completion model shares it
                outputs.append(torch.empty(shape, dtype=self._dtypes[name], device=self.device))
                self.context.set_tensor_address(name, outputs[-1].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed for input shapes "
                                   f"{[a.shape for a in feeds.values()]}")
            # Ordered after the engine on this stream.
            results = [output.float().cpu() for output in outputs]
        self.stream.synchronize()
        return [result.numpy() for result in results]

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

