"""Inference backends behind one interface: ``run(image_nchw) -> output_nchw``.

Each backend owns its runtime session and reports the model's ``ModelMetadata``. torch is
imported only by ``TorchBackend``, so onnxruntime inference works without it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from depth_ros.models.metadata import MetadataError, ModelMetadata

LOG = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model file is missing, unreadable, or not a depth_ros model; the message names it."""


class OnnxRuntimeBackend:
    """onnxruntime session of an exported model (metadata from its ``metadata_props``).

    Args:
        model_path: the ``.onnx`` file.
        num_threads: intra-op threads; 0 lets onnxruntime choose (one per physical core).
        providers: execution providers in order of preference; default: CUDA where this
            onnxruntime build has it, then CPU.
    """

    name = "onnxruntime"

    def __init__(self, model_path: str | os.PathLike, num_threads: int = 0,
                 providers: list[str] | None = None) -> None:
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
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in available]
        try:
            self.session = ort.InferenceSession(os.fspath(self.model_path), options,
                                                providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelLoadError(f"cannot load ONNX model {self.model_path}: {exc}") from exc
        try:
            self.metadata = ModelMetadata.from_dict(
                self.session.get_modelmeta().custom_metadata_map)
        except MetadataError as exc:
            raise ModelLoadError(f"{self.model_path} has no valid depth_ros metadata: "
                                 f"{exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        if "image" not in self.input_names:
            raise ModelLoadError(f"{self.model_path} has no 'image' input (inputs: "
                                 f"{self.input_names})")
        self.providers = self.session.get_providers()

    def run(self, image: np.ndarray, sparse_depth: np.ndarray | None = None) -> np.ndarray:
        """N×3×H×W float32 image (and N×1×H×W sparse depth for fusion models) → N×1×H×W."""
        feeds = {"image": image}
        if "sparse_depth" in self.input_names:
            if sparse_depth is None:
                raise ValueError("this fusion model needs sparse_depth")
            feeds["sparse_depth"] = sparse_depth
        return self.session.run(None, feeds)[0]


class TorchBackend:
    """PyTorch eager inference of a weights-only checkpoint (``torch.load(weights_only=True)``).

    Args:
        checkpoint_path: the ``.pt`` checkpoint (``state_dict`` + ``metadata``).
        num_threads: torch intra-op threads (process-wide in torch); 0 leaves torch's setting.
        device: torch device string.
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
                CheckpointError,
                load_checkpoint,
                model_from_checkpoint,
            )
        except ImportError as exc:
            raise ModelLoadError(f"the torch backend needs PyTorch to load {self.model_path}: "
                                 f"{exc}") from exc
        self._torch = torch
        if num_threads > 0:
            torch.set_num_threads(int(num_threads))
        try:
            model, self.metadata = model_from_checkpoint(load_checkpoint(self.model_path))
        except CheckpointError as exc:
            raise ModelLoadError(str(exc)) from exc
        self.device = torch.device(device)
        self.model = model.to(self.device)

    def run(self, image: np.ndarray, sparse_depth: np.ndarray | None = None) -> np.ndarray:
        """N×3×H×W float32 image (and N×1×H×W sparse depth for fusion models) → N×1×H×W."""
        torch = self._torch
        with torch.inference_mode():
            inputs = [torch.from_numpy(image).to(self.device)]
            if self.metadata.kind == "fusion":
                if sparse_depth is None:
                    raise ValueError("this fusion model needs sparse_depth")
                inputs.append(torch.from_numpy(sparse_depth).to(self.device))
            return self.model(*inputs).float().cpu().numpy()
