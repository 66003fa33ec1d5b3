"""TensorRT engine cache: keys, optimisation profiles, atomic files, load-or-build.

Pure Python (no TensorRT, no CUDA), so all of it is tested on any machine. An engine only runs
on the GPU model and TensorRT version it was built with, for the precision and shape range it
was built for, from the exact ONNX bytes it was built from: all of these go into its key, and
the key into its file name, ``<cache dir>/<key>.plan``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from depth_ros.fileio import write_bytes_atomic

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
# Read when the cache directory is asked for, never at import time.
CACHE_DIR_ENV = "DEPTH_ROS_ENGINE_CACHE"
ENGINE_SUFFIX = ".plan"

Shape = tuple[int, ...]
T = TypeVar("T")


class EngineCacheError(RuntimeError):
    """A cached engine could neither be loaded nor rebuilt."""


@dataclass(frozen=True)
class InputProfile:
    """The shape range of one network input in an optimisation profile (N, C, H, W each)."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Sequence[int]) -> bool:
        """Whether a concrete input shape lies within [min, max] on every axis."""
        shape = tuple(int(v) for v in shape)
        return len(shape) == len(self.min) and all(
            lo <= v <= hi for lo, v, hi in zip(self.min, shape, self.max, strict=True))


@dataclass(frozen=True)
class OptimizationProfile:
    """One TensorRT optimisation profile: a shape range for every network input."""

    inputs: tuple[InputProfile, ...]

    def __getitem__(self, name: str) -> InputProfile:
        for item in self.inputs:
            if item.name == name:
                return item
        raise KeyError(f"profile has no input {name!r} (inputs: {self.input_names})")

    @property
    def input_names(self) -> list[str]:
        """Input names in order."""
        return [item.name for item in self.inputs]

    def check(self, shapes: dict[str, Sequence[int]]) -> None:
        """Raise ``ValueError`` naming the first input shape outside the profile."""
        for name, shape in shapes.items():
            item = self[name]
            if not item.contains(shape):
                raise ValueError(f"input {name!r} shape {tuple(shape)} is outside the engine's "
                                 f"profile (min {item.min}, max {item.max}); rebuild the engine "
                                 f"with a wider --min-size/--max-size")

    def to_json(self) -> list[dict]:
        """Plain lists for the cache key (stable order, no tuples)."""
        return [{"name": i.name, "min": list(i.min), "opt": list(i.opt), "max": list(i.max)}
                for i in self.inputs]


def _round_up(value: float, stride: int) -> int:
    return max(stride, -(-int(round(value)) // stride) * stride)


def _check_size(what: str, size: tuple[int, int], stride: int) -> tuple[int, int]:
    height, width = (int(v) for v in size)
    if height < stride or width < stride or height % stride or width % stride:
        raise ValueError(f"{what} size {height}x{width} must be positive multiples of the "
                         f"model's stride {stride}")
    return height, width


def profile_for_sizes(stride: int, opt_size: tuple[int, int],
                      min_size: tuple[int, int] | None = None,
                      max_size: tuple[int, int] | None = None,
                      input_channels: dict[str, int] | None = None,
                      batch: tuple[int, int, int] = (1, 1, 1)) -> OptimizationProfile:
    """The optimisation profile for a range of input sizes (height, width).

    Sizes must be multiples of ``stride``; by default the range runs from half the optimal
    size to twice it (each rounded up to the stride). ``input_channels`` maps input names to
    channel counts (default: ``image`` with 3); every input shares batch, height and width,
    as the model I/O contract says. ``batch`` is (min, opt, max).
    """
    opt = _check_size("opt", opt_size, stride)
    low = (_check_size("min", min_size, stride) if min_size is not None
           else tuple(_round_up(v / 2, stride) for v in opt))
    high = (_check_size("max", max_size, stride) if max_size is not None
            else tuple(_round_up(v * 2, stride) for v in opt))
    if not all(lo <= o <= hi for lo, o, hi in zip(low, opt, high, strict=True)):
        raise ValueError(f"need min <= opt <= max on both axes, got min {low[0]}x{low[1]}, "
                         f"opt {opt[0]}x{opt[1]}, max {high[0]}x{high[1]}")
    b_min, b_opt, b_max = (int(v) for v in batch)
    if not 1 <= b_min <= b_opt <= b_max:
        raise ValueError(f"need 1 <= min batch <= opt batch <= max batch, got {batch}")
    channels = input_channels or {"image": 3}
    return OptimizationProfile(tuple(
        InputProfile(name, (b_min, c, *low), (b_opt, c, *opt), (b_max, c, *high))
        for name, c in channels.items()))


def sha256_of_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (the ONNX model's identity in the cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; equal keys mean an interchangeable engine.

    Args:
        gpu_name: the CUDA device name (``torch.cuda.get_device_name``).
        compute_capability: ``"major.minor"``, e.g. ``"8.7"`` for Jetson Orin.
        tensorrt_version: ``tensorrt.__version__``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        profile: the optimisation profile (shape range of every input).
        onnx_sha256: hex sha256 of the ONNX file's bytes.
    """

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    precision: str
    profile: OptimizationProfile
    onnx_sha256: str

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 hex digits, got {self.onnx_sha256!r}")

    def digest(self) -> str:
        """sha256 of the canonical JSON of every field (hex)."""
        fields = asdict(self)
        fields["profile"] = self.profile.to_json()
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def filename(self) -> str:
        """``<onnx>_<precision>_<gpu>_sm<cc>_trt<version>_<digest>.plan``: readable, and
        unique through the digest of all fields."""
        sm = self.compute_capability.replace(".", "")
        return (f"{self.onnx_sha256[:12]}_{self.precision}_{_slug(self.gpu_name)}_sm{_slug(sm)}"
                f"_trt{_slug(self.tensorrt_version)}_{self.digest()[:16]}{ENGINE_SUFFIX}")


def engine_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The engine cache directory: ``cache_dir`` if given, else ``$DEPTH_ROS_ENGINE_CACHE``,
    else ``~/.cache/depth_ros/engines`` (looked up now, not at import time)."""
    if cache_dir is not None and str(cache_dir):
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "depth_ros" / "engines"


def write_bytes_durably(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` so that ``path`` holds either its old content or all of the new one.

    Temporary file in the same directory (the writer's pid in its name), flushed and fsynced,
    renamed over ``path``, then the directory fsynced; any failure on the way, interruptions
    included, removes the temporary file.
    """
    return write_bytes_atomic(path, data)


def load_or_build(path: str | os.PathLike, build: Callable[[], bytes],
                  deserialize: Callable[[bytes], T | None]) -> tuple[T, bool]:
    """The engine at ``path``, built first when it is missing or does not deserialise.

    ``build()`` returns the serialised engine; ``deserialize(data)`` returns the runtime
    engine, or None (or raises) when the bytes are unusable — a truncated file, another
    TensorRT version's plan. An unusable cached file is deleted and rebuilt. Returns
    (engine, built) where ``built`` says whether ``build`` ran.
    """
    path = Path(path)
    if path.is_file():
        try:
            engine = deserialize(path.read_bytes())
        except Exception as exc:  # TensorRT raises RuntimeError/TypeError for foreign plans
            LOG.warning("cached engine %s does not deserialise (%s); rebuilding", path, exc)
            engine = None
        else:
            if engine is None:
                LOG.warning("cached engine %s does not deserialise; rebuilding", path)
        if engine is not None:
            LOG.info("engine cache hit: %s", path)
            return engine, False
        path.unlink(missing_ok=True)
    data = bytes(build())
    write_bytes_durably(path, data)
    engine = deserialize(data)
    if engine is None:
        path.unlink(missing_ok=True)
        raise EngineCacheError(f"the engine just built for {path.name} does not deserialise")
    LOG.info("engine built and cached: %s (%.1f MB)", path, len(data) / 1e6)
    return engine, True
