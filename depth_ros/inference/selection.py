"""Which backend runs a model: the ``backend: auto`` order, the probes that say what this
machine can run, and opening a backend (past those that cannot start here).

``auto`` tries, fastest first (``AUTO_ORDER``), each option whose probe passes and whose model
file exists (``.onnx`` for TensorRT and onnxruntime, ``.pt`` for torch: the file given or its
sibling with the same stem):

1. ``tensorrt``: the ``tensorrt`` package is TensorRT 10.x and ``trt.Builder`` works on a
   CUDA device; the engine comes from the engine cache, or is built while the backend opens
   (logged at INFO first). Where ``tensorrt`` does not import, this is said once at INFO with
   the interpreter's path: on a Jetson the usual cause is a venv without
   ``--system-site-packages`` (JetPack's TensorRT is a system package).
2. ``onnxruntime-gpu``: this onnxruntime build has the TensorRT or CUDA execution provider,
   and the session really runs on it (onnxruntime silently falls back to the CPU).
3. ``torch-cuda``: torch sees a CUDA device and can compute on it.
4. ``onnxruntime-cpu``.
5. ``torch-cpu``.

A probe or a backend that fails (``ImportError``, CUDA initialisation errors, TensorRT's
``TypeError`` without a GPU, an engine that does not build) moves on to the next option; the
choice and why each faster option was skipped are logged. A broken model file is not a reason
to move on: ``ModelLoadError`` for the file that was asked for propagates.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depth_ros.errors import DepthRosError, one_line
from depth_ros.inference.backends import (
    CPU_PROVIDER,
    GPU_PROVIDERS,
    ModelLoadError,
    OnnxRuntimeBackend,
    ProviderSpec,
    TorchBackend,
)

LOG = logging.getLogger(__name__)

AUTO_ORDER = ("tensorrt", "onnxruntime-gpu", "torch-cuda", "onnxruntime-cpu", "torch-cpu")
_FAMILY = {"tensorrt": "tensorrt", "onnxruntime-gpu": "onnxruntime", "torch-cuda": "torch",
           "onnxruntime-cpu": "onnxruntime", "torch-cpu": "torch"}
_ON_GPU = {"tensorrt", "onnxruntime-gpu", "torch-cuda"}
MODEL_SUFFIX = {"tensorrt": ".onnx", "onnxruntime": ".onnx", "torch": ".pt"}


class BackendUnavailable(DepthRosError, RuntimeError):  # noqa: N818 - reads as a condition, like ImportError
    """No backend can run the model as asked here; the message says why for each option."""


def parse_device(device: str) -> tuple[str, int]:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` → (``auto`` | ``cpu`` | ``cuda``, index)."""
    text = str(device).strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return text, 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# --- probes: None when the option can run here, else the reason ------------------------------

_SAID_NOT_IMPORTABLE = False
_NOT_IMPORTABLE: BaseException | None = None  # the last probe's ImportError, if any


def _say_not_importable_once() -> None:
    """One INFO line per process, once a backend runs without TensorRT because ``tensorrt``
    does not import here: the interpreter's path and the Jetson hint."""
    global _SAID_NOT_IMPORTABLE
    if _SAID_NOT_IMPORTABLE or _NOT_IMPORTABLE is None:
        return
    _SAID_NOT_IMPORTABLE = True
    LOG.info("tensorrt not importable in this interpreter (%s); on Jetson create the venv "
             "with --system-site-packages (%s)", sys.executable, _first_line(_NOT_IMPORTABLE))


def probe_tensorrt(device_index: int = 0) -> str | None:
    """Whether TensorRT 10.x can build and run engines on this CUDA device."""
    from depth_ros.inference.tensorrt import TensorRTUnavailable, require_tensorrt

    global _NOT_IMPORTABLE
    _NOT_IMPORTABLE = None
    try:
        require_tensorrt()
    except TensorRTUnavailable as exc:
        if isinstance(exc.__cause__, ImportError):
            _NOT_IMPORTABLE = exc.__cause__
        return str(exc)
    import torch

    if device_index >= torch.cuda.device_count():
        return f"no CUDA device {device_index} (there are {torch.cuda.device_count()})"
    return None


def probe_onnxruntime_gpu() -> str | None:
    """Whether this onnxruntime build has a GPU execution provider (TensorRT or CUDA)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    available = ort.get_available_providers()
    if not any(p in available for p in GPU_PROVIDERS):
        return (f"this onnxruntime build has no CUDA or TensorRT execution provider (it has "
                f"{', '.join(available)})")
    return None


def probe_torch_cuda(device_index: int = 0) -> str | None:
    """Whether torch can compute on this CUDA device."""
    try:
        import torch
    except ImportError as exc:
        return f"PyTorch is not installed ({exc})"
    if not torch.cuda.is_available():
        build = " (this PyTorch is a CPU-only build)" if torch.version.cuda is None else ""
        return f"no CUDA device: torch.cuda.is_available() is False{build}"
    if device_index >= torch.cuda.device_count():
        return f"no CUDA device {device_index} (there are {torch.cuda.device_count()})"
    torch.ones(1, device=f"cuda:{device_index}").add_(1).cpu()  # a broken driver raises here
    return None


def probe_onnxruntime() -> str | None:
    """Whether onnxruntime imports."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    return None


def probe_torch() -> str | None:
    """Whether torch imports."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        return f"PyTorch is not installed ({exc})"
    return None


def _probe(option: str, device_index: int) -> str | None:
    # Looked up at call time, so tests can replace a probe on this module.
    probes = {"tensorrt": lambda: probe_tensorrt(device_index),
              "onnxruntime-gpu": probe_onnxruntime_gpu,
              "torch-cuda": lambda: probe_torch_cuda(device_index),
              "onnxruntime-cpu": probe_onnxruntime, "torch-cpu": probe_torch}
    try:
        return probes[option]()
    except Exception as exc:  # a probe must never take the node down: any failure is a "no"
        return f"probe failed: {_first_line(exc)}"


# --- the plan ---------------------------------------------------------------------------------

def model_file(family: str, model_path: str | os.PathLike) -> Path | None:
    """The file a backend family runs for ``model_path``: the file itself if it has the
    family's suffix, else its sibling with that suffix if it exists; None otherwise."""
    path = Path(model_path)
    suffix = MODEL_SUFFIX[family]
    if path.suffix == suffix:
        return path if path.is_file() else None
    sibling = path.with_suffix(suffix)
    return sibling if sibling.is_file() else None


@dataclass(frozen=True)
class Candidate:
    """One option of the plan: what runs, on which file and device."""

    option: str
    model_path: Path
    device_index: int = 0

    @property
    def family(self) -> str:
        """``tensorrt``, ``onnxruntime`` or ``torch``."""
        return _FAMILY[self.option]

    @property
    def on_gpu(self) -> bool:
        """Whether the option runs on a CUDA device."""
        return self.option in _ON_GPU


def plan_auto(model_path: str | os.PathLike, device: str = "auto"
              ) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """The options ``auto`` will try for this model, fastest first, and (option, reason) for
    each it will not. ``device`` ``cpu`` keeps only CPU options, ``cuda[:N]`` only GPU ones."""
    kind, index = parse_device(device)
    candidates: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for option in AUTO_ORDER:
        on_gpu = option in _ON_GPU
        if kind == "cpu" and on_gpu:
            skipped.append((option, "device cpu was asked for"))
            continue
        if kind == "cuda" and not on_gpu:
            skipped.append((option, f"device {device} was asked for"))
            continue
        path = model_file(_FAMILY[option], model_path)
        if path is None:
            wanted = Path(model_path).with_suffix(MODEL_SUFFIX[_FAMILY[option]])
            skipped.append((option, f"needs {wanted.name}, which does not exist"))
            continue
        reason = _probe(option, index)
        if reason is not None:
            skipped.append((option, reason))
            continue
        candidates.append(Candidate(option, path, index))
    return candidates, skipped


# --- opening ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackendOptions:
    """What the backends need besides the model file.

    Args:
        num_threads: CPU inference threads; 0 = the runtime's default.
        providers: onnxruntime execution providers (names or ``(name, options)``); None =
            chosen from the build (GPU ones only where a GPU is wanted).
        precision: TensorRT precision, ``fp16`` or ``fp32`` (also the onnxruntime TensorRT
            execution provider's).
        engine_cache: TensorRT engine cache directory (None: the default).
        input_size: the network (height, width) the TensorRT engine is built for (None: the
            model's training size); rounded to the model's stride.
        tensorrt_min_size, tensorrt_max_size: a range of network sizes for the TensorRT
            engine, only on request (None: ``input_size`` alone, what fits an 8 GB Jetson).
            A cached engine whose range covers the size is used either way.
    """

    num_threads: int = 0
    providers: tuple[ProviderSpec, ...] | None = None
    precision: str = "fp16"
    engine_cache: str | os.PathLike | None = None
    input_size: tuple[int, int] | None = None
    tensorrt_min_size: tuple[int, int] | None = None
    tensorrt_max_size: tuple[int, int] | None = None


def _open_tensorrt(path: Path, index: int, options: BackendOptions) -> Any:
    from depth_ros.inference.preprocessing import round_to_stride
    from depth_ros.inference.tensorrt import TensorRTBackend
    from depth_ros.models.metadata import MetadataError, read_onnx_metadata

    try:
        meta = read_onnx_metadata(path)
    except (MetadataError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{path} has no valid depth_ros metadata: {one_line(exc)}") from exc
    except Exception as exc:  # protobuf's DecodeError: the bytes are not an ONNX model at all
        raise ModelLoadError(f"{path} is not an ONNX model: it does not parse as one "
                             f"({type(exc).__name__}: {one_line(exc)})") from exc
    size = round_to_stride(options.input_size or meta.train_input_size, meta.stride)
    min_size, max_size = options.tensorrt_min_size, options.tensorrt_max_size
    if (meta.resize_policy == "canonical" and meta.max_input_size is not None
            and min_size is None and max_size is None):
        # A canonical model meets each camera at its own size, never above the maximum
        # (larger frames are tiled): one engine for every size up to it.
        max_size = meta.max_input_size
        min_size = (meta.stride, meta.stride)
        size = tuple(min(v, m) for v, m in zip(size, max_size, strict=True))
    return TensorRTBackend(path, options.precision, input_size=size, min_size=min_size,
                           max_size=max_size, cache_dir=options.engine_cache, device=index)


def _onnxruntime(path: Path, index: int, options: BackendOptions,
                 providers: list[ProviderSpec] | None) -> OnnxRuntimeBackend:
    from depth_ros.inference.engine_cache import engine_cache_dir

    missing = probe_onnxruntime()  # named explicitly: one line, not an ImportError traceback
    if missing is not None:
        raise BackendUnavailable(missing)
    return OnnxRuntimeBackend(path, options.num_threads, providers, device_id=index,
                              fp16=options.precision == "fp16",
                              trt_cache_dir=engine_cache_dir(options.engine_cache)
                              / "onnxruntime")


def open_candidate(candidate: Candidate, options: BackendOptions) -> Any:
    """Open one option; raises if it cannot start (an onnxruntime GPU session that fell back
    to the CPU counts as not started: ``BackendUnavailable``)."""
    path, index = candidate.model_path, candidate.device_index
    if candidate.option == "tensorrt":
        return _open_tensorrt(path, index, options)
    if candidate.option == "onnxruntime-gpu":
        import onnxruntime as ort

        default = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()]
        backend = _onnxruntime(path, index, options, [*default, CPU_PROVIDER])
        if not backend.on_gpu:
            raise BackendUnavailable(f"the GPU execution providers did not start; onnxruntime "
                                     f"runs on {', '.join(backend.providers)}")
        return backend
    if candidate.option == "onnxruntime-cpu":
        return _onnxruntime(path, index, options, [CPU_PROVIDER])
    device = f"cuda:{index}" if candidate.on_gpu else "cpu"
    return TorchBackend(path, options.num_threads, device=device)


def open_auto(model_path: str | os.PathLike, device: str = "auto",
              options: BackendOptions | None = None) -> tuple[Any, list[tuple[str, str]]]:
    """The fastest backend that starts here, and (option, reason) for each faster one that
    was skipped. Logs the choice with those reasons.

    Raises:
        ModelLoadError: the model file asked for is missing or broken.
        BackendUnavailable: nothing can run it (each option's reason in the message).
    """
    options = options or BackendOptions()
    path = Path(model_path)
    candidates, skipped = plan_auto(path, device)
    faster = list(skipped)
    for candidate in candidates:
        try:
            backend = open_candidate(candidate, options)
        except ModelLoadError as exc:
            if candidate.model_path == path:
                raise
            # A stale or broken sibling must not hide the file that was asked for.
            LOG.warning("backend auto: %s cannot load %s (%s); trying the next option",
                        candidate.option, candidate.model_path, exc)
            faster.append((candidate.option, str(exc)))
        except Exception as exc:  # CUDA/TensorRT initialisation fails in many ways
            LOG.warning("backend auto: %s did not start (%s); trying the next option",
                        candidate.option, _first_line(exc))
            faster.append((candidate.option, f"did not start: {_first_line(exc)}"))
        else:
            position = AUTO_ORDER.index(candidate.option)
            before = [(o, r) for o, r in faster if AUTO_ORDER.index(o) < position]
            # Only when this selection skipped TensorRT for not importing (not, say, because
            # the CPU was asked for while an earlier probe's ImportError is still recorded).
            if any(o == "tensorrt" and "not importable" in r for o, r in before):
                _say_not_importable_once()
            LOG.info("backend auto: %s for %s%s", backend.description, candidate.model_path,
                     "" if not before else "; faster options skipped: "
                     + "; ".join(f"{o}: {r}" for o, r in before))
            return backend, before
    if not any(model_file(f, path) for f in MODEL_SUFFIX):
        raise ModelLoadError(f"model file not found: {path}")
    raise BackendUnavailable(f"no backend can run {path} here: "
                             + "; ".join(f"{o}: {r}" for o, r in faster))


def open_named(backend: str, model_path: str | os.PathLike, device: str = "auto",
               options: BackendOptions | None = None) -> Any:
    """Open the backend asked for by name (``tensorrt``, ``onnxruntime``, ``torch``) on the
    device asked for (``auto``: the GPU where this backend can use one). Errors propagate."""
    options = options or BackendOptions()
    kind, index = parse_device(device)
    path = Path(model_path)
    file = model_file(backend, path)
    if file is None:
        suffix = MODEL_SUFFIX[backend]
        if path.suffix == suffix:
            raise ModelLoadError(f"model file not found: {path}")
        raise ModelLoadError(f"backend {backend!r} needs a {suffix} file; "
                             f"{path.with_suffix(suffix)} (beside {path}) does not exist")
    if file != path:
        LOG.info("backend %s: using %s for %s", backend, file, path)
    if backend == "tensorrt":
        if kind == "cpu":
            raise ValueError("the tensorrt backend runs on CUDA devices only, not on device cpu")
        return _open_tensorrt(file, index, options)
    if backend == "onnxruntime":
        if options.providers is not None:
            return _onnxruntime(file, index, options, list(options.providers))
        if kind == "cpu":
            return _onnxruntime(file, index, options, [CPU_PROVIDER])
        if kind == "cuda":
            reason = probe_onnxruntime_gpu()
            if reason is not None:
                raise BackendUnavailable(f"onnxruntime on {device}: {reason}")
            return open_candidate(Candidate("onnxruntime-gpu", file, index), options)
        return _onnxruntime(file, index, options, None)
    if kind == "auto":
        kind = "cuda" if _probe("torch-cuda", index) is None else "cpu"
    return TorchBackend(file, options.num_threads,
                        device=f"cuda:{index}" if kind == "cuda" else "cpu")
