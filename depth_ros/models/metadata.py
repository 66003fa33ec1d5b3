"""Model metadata: what a deployed model needs to say about itself.

The same string map travels in ONNX ``metadata_props`` and in checkpoints, so a model file
is enough to run it correctly (input size, stride, depth range, training focal length).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

KINDS = ("mono", "fusion")
OUTPUTS = ("metric", "relative")
# How a runtime brings a frame to the network (DESIGN.md): ``fixed`` resizes to the training
# input size, ``canonical`` resizes so the focal length equals ``train_focal_px``, ``native``
# runs at the camera's own resolution padded to the stride (completion models).
RESIZE_POLICIES = ("fixed", "canonical", "native")
# Graph outputs besides the depth: a fusion model may add a per-pixel ``confidence`` in [0, 1].
EXTRA_OUTPUTS = ("confidence",)


class MetadataError(ValueError):
    """Model metadata is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a runtime needs to know about a trained depth model.

    Args:
        architecture: registry name (``create_model(architecture, **model_kwargs)``).
        kind: ``mono`` (image only) or ``fusion`` (image + sparse LiDAR depth).
        output: ``metric`` (depth in metres) or ``relative`` (affine-invariant inverse depth).
        stride: network input height and width must be multiples of this.
        train_input_height: network input height during training, pixels.
        train_input_width: network input width during training, pixels.
        min_depth_m: smallest depth the model outputs, metres.
        max_depth_m: largest depth the model outputs, metres.
        train_focal_px: horizontal focal length in pixels at the network input resolution
            during training; metric depth scales with the running camera's focal length.
        train_data: what the model was trained on, free text.
        version: version of the trained model, free text.
        model_kwargs: constructor arguments for ``create_model`` (JSON-serialisable).
        resize_policy: ``fixed`` (the default, older models), ``canonical`` or ``native``
            (see ``RESIZE_POLICIES``).
        outputs: the graph's outputs in order, comma-separated; empty: the depth output alone
            (``depth`` or ``inverse_depth``). Completion models: ``depth,confidence``.
        max_input_height: ``canonical`` models: the largest network input height, a multiple
            of the stride; a frame whose canonical size is larger runs in overlapping tiles.
            0 (older files, the default): no limit.
        max_input_width: the same for the width.
    """

    architecture: str
    kind: str
    output: str
    stride: int
    train_input_height: int
    train_input_width: int
    min_depth_m: float
    max_depth_m: float
    train_focal_px: float
    train_data: str = ""
    version: str = "0"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    resize_policy: str = "fixed"
    outputs: str = ""
    max_input_height: int = 0
    max_input_width: int = 0

    def __post_init__(self) -> None:
        if not self.architecture:
            raise MetadataError("architecture must be a non-empty model name")
        if self.kind not in KINDS:
            raise MetadataError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.output not in OUTPUTS:
            raise MetadataError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.stride < 1:
            raise MetadataError(f"stride must be a positive integer, got {self.stride}")
        for name in ("train_input_height", "train_input_width"):
            value = getattr(self, name)
            if value < self.stride or value % self.stride:
                raise MetadataError(f"{name} must be a positive multiple of the stride "
                                    f"{self.stride}, got {value}")
        if not 0 < self.min_depth_m < self.max_depth_m:
            raise MetadataError(f"need 0 < min_depth_m < max_depth_m, got {self.min_depth_m} "
                                f"and {self.max_depth_m}")
        if not self.train_focal_px > 0:
            raise MetadataError(f"train_focal_px must be positive, got {self.train_focal_px}")
        if not isinstance(self.model_kwargs, dict):
            raise MetadataError(f"model_kwargs must be a dict, got {type(self.model_kwargs)}")
        if self.resize_policy not in RESIZE_POLICIES:
            raise MetadataError(f"resize_policy must be one of {RESIZE_POLICIES}, got "
                                f"{self.resize_policy!r}")
        for name in ("max_input_height", "max_input_width"):
            value = getattr(self, name)
            if value < 0 or value % self.stride:
                raise MetadataError(f"{name} must be 0 (no limit) or a positive multiple of "
                                    f"the stride {self.stride}, got {value}")
        if (self.max_input_height == 0) != (self.max_input_width == 0):
            raise MetadataError("max_input_height and max_input_width are both 0 (no limit) "
                                f"or both set, got {self.max_input_height} and "
                                f"{self.max_input_width}")
        names = self.output_names
        primary = "depth" if self.output == "metric" else "inverse_depth"
        if names[0] != primary or any(n not in EXTRA_OUTPUTS for n in names[1:]) \
                or len(set(names)) != len(names):
            raise MetadataError(f"outputs must be {primary!r} followed by any of "
                                f"{EXTRA_OUTPUTS}, got {self.outputs!r}")

    @property
    def output_names(self) -> tuple[str, ...]:
        """The graph's output names in order (``depth`` or ``inverse_depth`` first)."""
        if not self.outputs:
            return ("depth" if self.output == "metric" else "inverse_depth",)
        return tuple(name.strip() for name in self.outputs.split(","))

    @property
    def has_confidence(self) -> bool:
        """Whether the model outputs a per-pixel ``confidence``."""
        return "confidence" in self.output_names

    @property
    def max_input_size(self) -> tuple[int, int] | None:
        """(height, width) of the largest network input (``canonical`` models), or None."""
        if not self.max_input_height:
            return None
        return self.max_input_height, self.max_input_width

    @property
    def train_input_size(self) -> tuple[int, int]:
        """(height, width) of the network input during training."""
        return self.train_input_height, self.train_input_width

    def to_dict(self) -> dict[str, str]:
        """String map for ONNX ``metadata_props`` and checkpoints (model_kwargs as JSON)."""
        out = {}
        for key, value in asdict(self).items():
            out[key] = json.dumps(value, sort_keys=True) if key == "model_kwargs" else str(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """Parse ``to_dict()``'s output (values may also be already-typed).

        Keys this class does not know (other tools' ONNX metadata) are ignored.
        """
        missing = [f.name for f in fields(cls) if f.name not in data
                   and f.name not in ("train_data", "version", "model_kwargs",
                                      "resize_policy", "outputs", "max_input_height",
                                      "max_input_width")]
        if missing:
            raise MetadataError(f"model metadata lacks {', '.join(missing)}")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            try:
                if f.name == "model_kwargs":
                    kwargs[f.name] = json.loads(value) if isinstance(value, str) else dict(value)
                elif f.type == "int":
                    kwargs[f.name] = _to_int(value)
                elif f.type == "float":
                    kwargs[f.name] = float(value)
                else:
                    kwargs[f.name] = str(value)
            except (TypeError, ValueError) as exc:
                raise MetadataError(f"model metadata {f.name}={value!r}: {exc}") from exc
        return cls(**kwargs)


def _to_int(value: Any) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError("not an integer")
    return int(number)


def read_onnx_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Read ``ModelMetadata`` from an ONNX file's ``metadata_props``.

    Uses the ``onnx`` package where installed (reads the protobuf only) and onnxruntime, the
    runtime dependency, otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        import onnx
    except ImportError:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(os.fspath(path), options,
                                       providers=["CPUExecutionProvider"])
        props = dict(session.get_modelmeta().custom_metadata_map)
    else:
        model = onnx.load(os.fspath(path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
    try:
        return ModelMetadata.from_dict(props)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from exc
