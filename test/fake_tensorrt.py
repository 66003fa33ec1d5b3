"""A stand-in ``tensorrt`` module shaped like the real Python bindings of one release.

Each release has the names it really has and lacks the ones it lacks, read from NVIDIA's
bindings and migration guides:

- 10.3 (JetPack 6): weakly typed builds (``BuilderFlag.FP16/INT8``,
  ``PREFER_PRECISION_CONSTRAINTS``), ``IInt8EntropyCalibrator2``, ``config.int8_calibrator``,
  ``set_calibration_profile``, per-layer ``precision``/``set_output_type``,
  ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, ``INormalizationLayer.compute_precision``.
- 10.13: the same names, but the per-layer precision setters issue a ``DeprecationWarning``
  (deprecated in 10.12, "superseded by strong typing").
- 11.0: the precision builder flags, the INT8 calibrators, ``int8_calibrator`` and the
  calibration profile are gone.

Signatures and return values follow the bindings: ``add_optimization_profile`` returns the
profile's index or -1, ``set_input_shape`` returns a bool, ``build_serialized_network``
returns None on failure, ``deserialize_cuda_engine`` returns None for a foreign plan, and an
exception raised in a calibrator's ``get_batch`` is swallowed and read as "no more batches".
The builder logs through the ``ILogger`` it was given, VERBOSE messages included.
"""

from __future__ import annotations

import enum
import json
import types
import warnings
from dataclasses import dataclass, field

import onnx

PLAN_MAGIC = b"FAKEPLAN"


@dataclass
class Behaviour:
    """What the fake does besides the normal path; counters of what it was asked."""

    reject_profile: bool = False  # add_optimization_profile returns -1
    refuse_shapes: bool = False  # set_input_shape returns False
    stop_calibration_after: int | None = None  # TensorRT stops asking for batches early
    verbose_messages: int = 200  # VERBOSE log lines per build
    builds: int = 0
    flags_set: list[str] = field(default_factory=list)
    calibration_batches: int = 0


class Severity(enum.IntEnum):
    """``trt.ILogger.Severity``."""

    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


def make_tensorrt(version: str = "10.3.0", behaviour: Behaviour | None = None
                  ) -> types.ModuleType:
    """A ``tensorrt`` module of this release (``10.3.0``, ``10.13.0`` or ``11.0.0``)."""
    major, minor = (int(v) for v in version.split(".")[:2])
    deprecated_layer_precision = (major, minor) >= (10, 12)
    weakly_typed = major < 11
    state = behaviour or Behaviour()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.behaviour = state

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1

    trt.DataType = DataType
    trt.float32, trt.float16 = DataType.FLOAT, DataType.HALF

    class ILogger:
        """The abstract logger: Python subclasses override ``log``."""

        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = tuple(Severity)

        def __init__(self) -> None:
            pass

        def log(self, severity: Severity, msg: str) -> None:
            raise NotImplementedError

    ILogger.Severity = Severity
    trt.ILogger = ILogger

    flags = ["TF32", "SPARSE_WEIGHTS", "GPU_FALLBACK", "REFIT", "DEBUG"]
    if weakly_typed:
        flags += ["FP16", "BF16", "INT8", "FP8", "OBEY_PRECISION_CONSTRAINTS",
                  "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"]
    trt.BuilderFlag = enum.Enum("BuilderFlag", flags)
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    trt.NetworkDefinitionCreationFlag = enum.Enum("NetworkDefinitionCreationFlag",
                                                  ["EXPLICIT_BATCH", "STRONGLY_TYPED"])
    trt.TensorIOMode = enum.Enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    trt.LayerType = enum.Enum("LayerType", ["CONVOLUTION", "NORMALIZATION", "SOFTMAX",
                                            "ELEMENTWISE", "REDUCE"])

    def deprecated(what: str) -> None:
        if deprecated_layer_precision:
            warnings.warn(f"{what}: Deprecated in TensorRT 10.12. Superseded by strong typing.",
                          DeprecationWarning, stacklevel=3)

    class ILayer:
        def __init__(self, name: str, layer_type: str) -> None:
            self.name = name
            self.type = trt.LayerType[layer_type]
            self.num_outputs = 1
            self._precision = trt.float32
            self.precision_set = False
            self.output_types: dict[int, DataType] = {}

        @property
        def precision(self) -> DataType:
            return self._precision

        @precision.setter
        def precision(self, value: DataType) -> None:
            deprecated("ILayer.precision")
            self._precision, self.precision_set = value, True

        def set_output_type(self, index: int, dtype: DataType) -> None:
            deprecated("ILayer.set_output_type")
            self.output_types[index] = dtype

    class INormalizationLayer(ILayer):
        compute_precision = trt.float32  # class default; set per layer

    trt.ILayer, trt.INormalizationLayer = ILayer, INormalizationLayer

    class ITensor:
        def __init__(self, name: str) -> None:
            self.name = name

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[ITensor] = []
            # What the ONNX parser makes of a small ViT-ish graph.
            self.layers = [ILayer("node_conv2d", "CONVOLUTION"),
                           ILayer("node_layer_norm", "NORMALIZATION"),
                           ILayer("node_softmax", "SOFTMAX"),
                           ILayer("node_add", "ELEMENTWISE")]

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> ITensor:
            return self.inputs[index]

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, index: int) -> ILayer:
            return self.layers[index]

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            model = onnx.load(path, load_external_data=False)
            self.network.inputs = [ITensor(i.name) for i in model.graph.input]
            self.network.output = model.graph.output[0].name
            return True

        def get_error(self, index: int) -> str:
            raise IndexError(index)

    trt.OnnxParser = OnnxParser

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

        def __bool__(self) -> bool:
            return all(all(a <= b <= c for a, b, c in zip(*s, strict=True))
                       for s in self.shapes.values())

    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags: set = set()
            self.profiles: list[IOptimizationProfile] = []
            self.pool_limits: dict = {}
            if weakly_typed:
                self.int8_calibrator = None

        def set_memory_pool_limit(self, pool: object, size: int) -> None:
            self.pool_limits[pool] = size

        def set_flag(self, flag: object) -> None:
            self.flags.add(flag)
            state.flags_set.append(flag.name)

        def clear_flag(self, flag: object) -> None:
            self.flags.discard(flag)

        def get_flag(self, flag: object) -> bool:
            return flag in self.flags

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            if state.reject_profile or not profile:
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

    if weakly_typed:
        def set_calibration_profile(self: IBuilderConfig, profile: object) -> bool:
            self.calibration_profile = profile
            return True

        IBuilderConfig.set_calibration_profile = set_calibration_profile

        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def _calibrate(self, network: INetworkDefinition, calibrator: object) -> None:
            if calibrator.read_calibration_cache():
                return
            names = [t.name for t in network.inputs]
            while state.stop_calibration_after is None or \
                    state.calibration_batches < state.stop_calibration_after:
                try:
                    pointers = calibrator.get_batch(names)
                except Exception:  # what the binding does: read as the end of the data
                    pointers = None
                if pointers is None:
                    break
                state.calibration_batches += 1
            calibrator.write_calibration_cache(b"calibration table")

        def build_serialized_network(self, network: INetworkDefinition,
                                     config: IBuilderConfig) -> bytes | None:
            state.builds += 1
            for i in range(state.verbose_messages):
                self.logger.log(Severity.VERBOSE, f"tactic {i} timed")
            if not config.profiles:
                self.logger.log(Severity.ERROR, "Network has dynamic inputs but no profile")
                return None
            if weakly_typed and trt.BuilderFlag.INT8 in config.flags:
                self._calibrate(network, config.int8_calibrator)
            shapes = config.profiles[0].shapes
            return PLAN_MAGIC + json.dumps({"shapes": shapes, "output": network.output,
                                            "build": state.builds}).encode()

    trt.Builder = Builder

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.input_shapes: dict[str, tuple] = {}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            low, _, high = self.engine.shapes[name]
            ok = not state.refuse_shapes and len(shape) == len(low) and all(
                a <= b <= c for a, b, c in zip(low, shape, high, strict=True))
            if ok:
                self.input_shapes[name] = tuple(shape)
            return ok

        def get_tensor_shape(self, name: str) -> tuple:
            if name != self.engine.output or set(self.input_shapes) != set(self.engine.shapes):
                return (-1, 1, -1, -1)
            n, _, h, w = self.input_shapes["image"]
            return (n, 1, h, w)

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

    class ICudaEngine:
        def __init__(self, plan: dict) -> None:
            self.shapes = {k: tuple(tuple(s) for s in v) for k, v in plan["shapes"].items()}
            self.output = plan["output"]
            self.names = [*self.shapes, self.output]

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self, name: str) -> object:
            return trt.TensorIOMode.OUTPUT if name == self.output else trt.TensorIOMode.INPUT

        def get_tensor_dtype(self, name: str) -> DataType:
            return trt.float32

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
            if not bytes(data).startswith(PLAN_MAGIC):
                self.logger.log(Severity.ERROR, "Serialization assertion failed")
                return None
            return ICudaEngine(json.loads(bytes(data)[len(PLAN_MAGIC):]))

    trt.Runtime = Runtime
    return trt
