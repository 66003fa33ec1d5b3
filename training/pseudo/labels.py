"""The pseudo-label format that ``training/pseudo_label.py`` writes and training reads::

    <out>/pseudo_labels.json                  the manifest (see ``PseudoManifest``)
    <out>/<relative image path>.npy           one label per image: the image path relative
                                              to the images root, suffix replaced by .npy

A label is the teacher's raw output at the image's own resolution, H×W little-endian float16
(float32 where a value exceeds float16's range), NaN where the teacher gave no finite value:
metric depth in metres (``kind: metric``) or affine-invariant inverse depth (``kind:
relative``, e.g. Depth Anything V2's relative models; only its ordering and proportions mean
something, so it is compared after per-image scale-and-shift alignment).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

MANIFEST_NAME = "pseudo_labels.json"
MANIFEST_VERSION = 1
LABEL_SUFFIX = ".npy"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_KINDS = ("metric", "relative")
# What a label's numbers are, by kind (written into the manifest for people and tools).
LABEL_MEANING = {"metric": "depth in metres",
                 "relative": "affine-invariant inverse depth (scale and shift unknown)"}
FLOAT16_MAX = float(np.finfo(np.float16).max)


class PseudoLabelError(ValueError):
    """A pseudo-label directory, manifest, image or label is missing or malformed."""


def label_name(image_rel: str) -> str:
    """The label's path relative to the output directory for an image's relative path."""
    return str(Path(image_rel).with_suffix(LABEL_SUFFIX).as_posix())


def encode_label(values: np.ndarray) -> np.ndarray:
    """A teacher output as stored: float16, or float32 when a finite value would overflow
    float16 (|v| > 65504); non-finite values become NaN."""
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    out = np.where(finite, values, np.float32(np.nan))
    if finite.any() and np.abs(values[finite]).max() > FLOAT16_MAX:
        return out.astype("<f4")
    return out.astype("<f2")


def read_label(path: str | os.PathLike) -> np.ndarray:
    """A stored label as float32 H×W (NaN = no label)."""
    try:
        label = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PseudoLabelError(f"cannot read pseudo-label {path}: {exc}") from exc
    if label.ndim != 2 or label.dtype not in (np.float16, np.float32):
        raise PseudoLabelError(f"{path}: expected an H×W float16/float32 label, got "
                               f"{label.dtype} {label.shape}")
    return label.astype(np.float32)


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit image file as H×W×3 uint8 RGB (grey and BGRA converted).

    Unlike ``kitti.read_rgb_png`` this refuses 16-bit files: a uint16 depth PNG decoded as an
    8-bit photograph would be labelled and trained on as one.
    """
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PseudoLabelError(f"cannot read image {path}")
    if image.dtype != np.uint8:
        raise PseudoLabelError(f"{path}: not an 8-bit image ({image.dtype})")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise PseudoLabelError(f"{path}: unsupported image shape {image.shape}")


@dataclass
class PseudoManifest:
    """``pseudo_labels.json``: what made the labels and what they mean.

    Args:
        kind: ``metric`` (labels are depth in metres) or ``relative`` (affine-invariant
            inverse depth).
        teacher: the teacher: ``path``, ``sha256``, ``format`` (``depth_anything_v2_pth``,
            ``depth_ros_checkpoint`` or ``onnx``), ``architecture``, ``output`` and, for
            official Depth Anything V2 weights, ``encoder`` and ``max_depth_m``.
        images_root: the directory the image paths are relative to (absolute).
        input_size: the teacher's network (height, width); with the ``depth_anything_v2``
            preprocessing the smallest size, both sides reached, aspect ratio kept.
        preprocess: ``default`` or ``depth_anything_v2`` (``DepthEstimator``'s).
        images: relative paths of the images that have a label (label: ``label_name``).
        unreadable: relative paths of the images that were skipped as unreadable.
        complete: false while a run is writing labels (an interrupted run leaves it false).
        label: ``LABEL_MEANING[kind]``.
        label_format: how a label file is stored.
        count: ``len(images)``.
        version: the manifest format's version.
    """

    kind: str
    teacher: dict[str, Any]
    images_root: str
    input_size: list[int]
    preprocess: str
    images: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    complete: bool = False
    label: str = ""
    label_format: str = ("numpy .npy, H×W at the image's resolution, little-endian float16 "
                         "(float32 if a value exceeds 65504), NaN = no label")
    count: int = 0
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if self.kind not in LABEL_KINDS:
            raise PseudoLabelError(f"kind must be one of {LABEL_KINDS}, got {self.kind!r}")
        self.label = LABEL_MEANING[self.kind]
        self.count = len(self.images)

    def identity(self) -> dict[str, Any]:
        """What makes two runs' labels interchangeable: the teacher's bytes, how it was run and
        which images it saw."""
        return {"sha256": self.teacher.get("sha256"), "kind": self.kind,
                "images_root": self.images_root,
                "max_depth_m": self.teacher.get("max_depth_m"),
                "encoder": self.teacher.get("encoder"), "input_size": list(self.input_size),
                "preprocess": self.preprocess}

    def to_json(self) -> str:
        """The manifest file's text."""
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def read(cls, directory: str | os.PathLike) -> PseudoManifest:
        """Read ``<directory>/pseudo_labels.json``."""
        path = Path(directory) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise PseudoLabelError(f"no pseudo-label manifest: {path}") from exc
        except (OSError, ValueError) as exc:
            raise PseudoLabelError(f"cannot read pseudo-label manifest {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise PseudoLabelError(f"{path}: not a version {MANIFEST_VERSION} pseudo-label "
                                   "manifest")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError as exc:
            raise PseudoLabelError(f"{path}: {exc}") from exc
