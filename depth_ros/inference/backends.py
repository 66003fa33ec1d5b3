"""Inference backends behind one interface: ``run(image_nchw) -> output_nchw``.

Each backend owns its runtime session and reports the model's ``ModelMetadata`` and a
``description`` of what runs it (``onnxruntime[CPUExecutionProvider]``, ``torch[cuda:0]``).
torch is imported only by ``TorchBackend``, so onnxruntime inference works without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.errors import DepthRosError, one_line
from depth_ros.models.metadata import MetadataError, ModelMetadata

LOG = logging.getLogger(__name__)


class ModelLoadError(DepthRosError, RuntimeError):
    """A model file is missing, unreadable, or not a depth_ros model; the message names it."""


def onnx_load_problem(exc: BaseException) -> str:
    """What onnxruntime's refusal to load a file means, in one line."""
    text = one_line(exc)
    if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
        return "the file is not an ONNX model (its bytes do not parse as one)"
    if "No graph was found" in text:
        return "the file holds no ONNX graph (empty, or not an ONNX model)"
    return f"onnxruntime refuses it: {text}"


GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"
ProviderSpec = str | tuple[str, dict[str, Any]]


def onnxruntime_providers(requested: Sequence[ProviderSpec] | None, available: Sequence[str],
                          device_id: int = 0, fp16: bool = True,
                          trt_cache_dir: str | os.PathLike | None = None
                          ) -> list[tuple[str, dict[str, Any]]]:
    """Execution providers, with their options, for an onnxruntime session.

    ``requested`` None: every GPU provider this onnxruntime build offers (TensorRT, then
    CUDA), then the CPU. Otherwise the requested ones, in order, less those the build lacks
    (logged); names get default options (device id; for TensorRT its own engine cache and
    FP16), ``(name, options)`` pairs keep theirs. ``ValueError`` if none is left.
    """
    if requested is None:
        requested = [p for p in GPU_PROVIDERS if p in available] + [CPU_PROVIDER]
    chosen: list[tuple[str, dict[str, Any]]] = []
    for spec in requested:
        name, options = (spec, None) if isinstance(spec, str) else (spec[0], dict(spec[1]))
        if name not in available:
            LOG.warning("onnxruntime: this build has no %s (it has %s); skipping it", name,
                        ", ".join(available))
            continue
        if options is None:
            options = {}
            if name in GPU_PROVIDERS:
                options["device_id"] = int(device_id)
            if name == "TensorrtExecutionProvider":
                options.update(trt_fp16_enable=bool(fp16), trt_engine_cache_enable=True,
                               trt_engine_cache_path=os.fspath(trt_cache_dir or "."))
        chosen.append((name, options))
    if not chosen:
        raise ValueError(f"none of the execution providers {[_name(p) for p in requested]} is "
                         f"in this onnxruntime build (it has {', '.join(available)})")
    return chosen


def _name(spec: ProviderSpec) -> str:
    return spec if isinstance(spec, str) else spec[0]


class OnnxRuntimeBackend:
    """onnxruntime session of an exported model (metadata from its ``metadata_props``).

    Args:
        model_path: the ``.onnx`` file.
        num_threads: intra-op threads; 0 lets onnxruntime choose (one per physical core).
        providers: execution provider names (or ``(name, options)`` pairs) in order of
            preference; default: TensorRT and CUDA where this onnxruntime build has them, then
            CPU (see ``onnxruntime_providers``).
        device_id: the CUDA device of the GPU providers.
        fp16: let the TensorRT execution provider build FP16 engines.
        trt_cache_dir: where the TensorRT execution provider caches its engines.
    """

    name = "onnxruntime"

    def __init__(self, model_path: str | os.PathLike, num_threads: int = 0,
                 providers: Sequence[ProviderSpec] | None = None, device_id: int = 0,
                 fp16: bool = True, trt_cache_dir: str | os.PathLike | None = None) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelLoadError(f"model file not found: {self.model_path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(num_threads), 0)
        # Idle pool threads spin by default; in a node they would starve the DDS and executor
        # threads that receive the next frame (measured: most frames lost on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        chosen = onnxruntime_providers(providers, ort.get_available_providers(), device_id,
                                       fp16, trt_cache_dir)
        if trt_cache_dir is not None and any(n == "TensorrtExecutionProvider" for n, _ in chosen):
            Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
        try:
            self.session = ort.InferenceSession(os.fspath(self.model_path), options,
                                                providers=[n for n, _ in chosen],
                                                provider_options=[o for _, o in chosen])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelLoadError(f"cannot load ONNX model {self.model_path}: "
                                 f"{onnx_load_problem(exc)}") from exc
        try:
            self.metadata = ModelMetadata.from_dict(
                self.session.get_modelmeta().custom_metadata_map)
        except MetadataError as exc:
            raise ModelLoadError(f"{self.model_path} has no valid depth_ros metadata: "
                                 f"{exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        expected = ["image", "sparse_depth"] if self.metadata.kind == "fusion" else ["image"]
        if sorted(self.input_names) != expected:
            raise ModelLoadError(f"{self.model_path}: a {self.metadata.kind} model needs the "
                                 f"inputs {expected}, the graph has {self.input_names}")
        graph_outputs = [o.name for o in self.session.get_outputs()]
        self.output_names = self.metadata.output_names
        if self.metadata.outputs and sorted(graph_outputs) != sorted(self.output_names):
            raise ModelLoadError(f"{self.model_path}: the metadata names the outputs "
                                 f"{list(self.output_names)}, the graph has {graph_outputs}")
        if not self.metadata.outputs:  # older files: the first output, whatever its name
            self.output_names = (graph_outputs[0],)

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on, first the preferred one (onnxruntime
        may fall back to others at load or at run time)."""
        return self.session.get_providers()

    @property
    def description(self) -> str:
        """``onnxruntime[<the provider that runs the graph>]``."""
        return f"onnxruntime[{self.providers[0]}]"

    @property
    def on_gpu(self) -> bool:
        """Whether a GPU provider runs the graph."""
        return self.providers[0] in GPU_PROVIDERS

    def run(self, image: np.ndarray, sparse_depth: np.ndarray | None = None) -> np.ndarray:
        """N×3×H×W float32 image (and N×1×H×W sparse depth for fusion models) → N×1×H×W."""
        return self.run_outputs(image, sparse_depth)[0]

    def run_outputs(self, image: np.ndarray, sparse_depth: np.ndarray | None = None
                    ) -> list[np.ndarray]:
        """Every output (``metadata.output_names`` order: the depth, then e.g. the
        confidence), each N×1×H×W."""
        feeds = {"image": image}
        if "sparse_depth" in self.input_names:
            if sparse_depth is None:
                raise ValueError("this fusion model needs sparse_depth")
            feeds["sparse_depth"] = sparse_depth
        return self.session.run(list(self.output_names), feeds)


class TorchBackend:
    """PyTorch eager inference of a weights-only checkpoint (``torch.load(weights_only=True)``).

    Args:
        checkpoint_path: the ``.pt`` checkpoint (``state_dict`` + ``metadata``).
        num_threads: torch intra-op threads (process-wide in torch); 0 leaves torch's setting.
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``).
    """

    name = "torch"

    def __init__(self, checkpoint_path: str | os.PathLike, num_threads: int = 0,
                 device: str = "cpu") -> None:
        self.model_path = Path(checkpoint_path)
        if not self.model_path.is_file():
            raise ModelLoadError(f"checkpoint not found: {self.model_path}")
        try:
            import torch

            from depth_ros.models.checkpoints import (
                REQUIRED_KEYS,
                CheckpointError,
                load_weights_only,
                model_from_checkpoint,
            )
        except ImportError as exc:
            raise ModelLoadError(f"the torch backend needs PyTorch to load {self.model_path}: "
                                 f"{exc}") from exc
        self._torch = torch
        if num_threads > 0:
            torch.set_num_threads(int(num_threads))
        try:
            payload = load_weights_only(self.model_path)
            missing = ([k for k in REQUIRED_KEYS if k not in payload]
                       if isinstance(payload, dict) else list(REQUIRED_KEYS))
            if missing:
                raise ModelLoadError(f"{self.model_path} is not a depth_ros checkpoint: it "
                                     f"lacks {', '.join(missing)}")
            model, self.metadata = model_from_checkpoint(payload)
        except CheckpointError as exc:
            message = str(exc)
            if str(self.model_path) not in message:
                message = f"{self.model_path}: {message}"
            raise ModelLoadError(message) from exc
        self.device = torch.device(device)
        self.model = model.to(self.device)

    @property
    def description(self) -> str:
        """``torch[<device>]``."""
        return f"torch[{self.device}]"

    def run(self, image: np.ndarray, sparse_depth: np.ndarray | None = None) -> np.ndarray:
        """N×3×H×W float32 image (and N×1×H×W sparse depth for fusion models) → N×1×H×W."""
        return self.run_outputs(image, sparse_depth)[0]

    def run_outputs(self, image: np.ndarray, sparse_depth: np.ndarray | None = None
                    ) -> list[np.ndarray]:
        """Every output (the depth, then e.g. the confidence), each N×1×H×W."""
        torch = self._torch
        with torch.inference_mode():
            inputs = [torch.from_numpy(image).to(self.device)]
            if self.metadata.kind == "fusion":
                if sparse_depth is None:
                    raise ValueError("this fusion model needs sparse_depth")
                inputs.append(torch.from_numpy(sparse_depth).to(self.device))
            out = self.model(*inputs)
            outputs = out if isinstance(out, tuple | list) else [out]
            return [t.float().cpu().numpy() for t in outputs]
