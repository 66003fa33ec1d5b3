"""TensorRT engine cache: keys, optimisation profiles, atomic files, load-or-build.

Pure Python (no TensorRT, no CUDA), so all of it is tested on any machine. An engine only runs
on the GPU model and TensorRT version it was built with, for the precision and shape range it
was built for, from the exact ONNX bytes it was built from: all of these go into its key, and
the key into its file name, ``<cache dir>/<key>.plan``, with the key's fields beside it in
``<key>.json`` so that an engine built for a wider shape range (``training/export.py
--min-size/--max-size``) is found by a backend that needs one size inside that range.

One recipe for the profile (``engine_profile``) and the key (``EngineKey``) serves
``training/export.py`` and the nodes' backend alike, so an exported engine is the one the node
loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
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
MANIFEST_SUFFIX = ".json"

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

    Sizes must be multiples of ``stride``; by default min and max are the optimal size (an
    engine for one size: the running camera's network size, which is what fits an 8 GB
    Jetson; a range costs memory and speed and is built only on request).
    ``input_channels`` maps input names to channel counts (default: ``image`` with 3); every
    input shares batch, height and width, as the model I/O contract says. ``batch`` is
    (min, opt, max).
    """
    opt = _check_size("opt", opt_size, stride)
    low = _check_size("min", min_size, stride) if min_size is not None else opt
    high = _check_size("max", max_size, stride) if max_size is not None else opt
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


def input_channels(kind: str) -> dict[str, int]:
    """Network input names and channel counts for a model kind (the I/O contract)."""
    return {"image": 3, "sparse_depth": 1} if kind == "fusion" else {"image": 3}


def engine_profile(stride: int, kind: str, opt_size: tuple[int, int],
                   min_size: tuple[int, int] | None = None,
                   max_size: tuple[int, int] | None = None,
                   max_batch: int = 1) -> OptimizationProfile:
    """The profile recipe every engine is built and looked up with (export and nodes alike).

    ``opt_size`` is the network (height, width) the engine is tuned for; min and max default
    to it; batch runs from 1 to ``max_batch`` with 1 as the optimum.
    """
    return profile_for_sizes(stride, opt_size, min_size, max_size, input_channels(kind),
                             batch=(1, 1, max(int(max_batch), 1)))


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in shape)


def describe_profile(profile: OptimizationProfile) -> str:
    """``image 1x3x352x1216`` for one size, ``image 1x3x192x640 to 1x3x384x1280 (opt …)``."""
    parts = []
    for item in profile.inputs:
        if item.min == item.max:
            parts.append(f"{item.name} {_shape_text(item.opt)}")
        else:
            parts.append(f"{item.name} {_shape_text(item.min)} to {_shape_text(item.max)} "
                         f"(opt {_shape_text(item.opt)})")
    return ", ".join(parts)


def profile_covers(outer: OptimizationProfile, inner: OptimizationProfile) -> bool:
    """Whether every shape ``inner`` admits is admitted by ``outer`` (same inputs)."""
    if sorted(outer.input_names) != sorted(inner.input_names):
        return False
    return all(outer[item.name].contains(item.min) and outer[item.name].contains(item.max)
               for item in inner.inputs)


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

    def to_json(self) -> dict:
        """Every field as plain JSON types (the digest's input, and the manifest's content)."""
        fields = asdict(self)
        fields["profile"] = self.profile.to_json()
        return fields

    @classmethod
    def from_json(cls, fields: dict) -> EngineKey:
        """The key ``to_json`` wrote; ``ValueError`` (or ``KeyError``/``TypeError``) if it is
        not one."""
        profile = OptimizationProfile(tuple(
            InputProfile(str(i["name"]), tuple(int(v) for v in i["min"]),
                         tuple(int(v) for v in i["opt"]), tuple(int(v) for v in i["max"]))
            for i in fields["profile"]))
        return cls(gpu_name=str(fields["gpu_name"]),
                   compute_capability=str(fields["compute_capability"]),
                   tensorrt_version=str(fields["tensorrt_version"]),
                   precision=str(fields["precision"]), profile=profile,
                   onnx_sha256=str(fields["onnx_sha256"]))

    def same_engine_family(self, other: EngineKey) -> bool:
        """Equal in everything but the profile: same GPU, TensorRT, precision and ONNX."""
        return (self.gpu_name, self.compute_capability, self.tensorrt_version, self.precision,
                self.onnx_sha256) == (other.gpu_name, other.compute_capability,
                                      other.tensorrt_version, other.precision,
                                      other.onnx_sha256)

    def digest(self) -> str:
        """sha256 of the canonical JSON of every field (hex)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
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


def manifest_path(plan_path: str | os.PathLike) -> Path:
    """The ``<key>.json`` beside a ``<key>.plan``."""
    return Path(plan_path).with_suffix(MANIFEST_SUFFIX)


def write_manifest(plan_path: str | os.PathLike, key: EngineKey) -> Path:
    """Record the key of the engine at ``plan_path`` beside it (atomically)."""
    text = json.dumps(key.to_json(), sort_keys=True, indent=1)
    return write_bytes_durably(manifest_path(plan_path), text.encode())


def covering_engines(directory: str | os.PathLike, key: EngineKey) -> list[tuple[Path, EngineKey]]:
    """Cached engines of the same GPU, TensorRT, precision and ONNX whose profile covers
    ``key``'s, best first: the exact key, then those tuned for ``key``'s optimum, then the
    narrowest range. Plans without a readable manifest are skipped."""
    found = []
    for manifest in sorted(Path(directory).glob(f"*{MANIFEST_SUFFIX}")):
        plan = manifest.with_suffix(ENGINE_SUFFIX)
        if not plan.is_file():
            continue
        try:
            cached = EngineKey.from_json(json.loads(manifest.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            LOG.debug("skipping engine manifest %s: %s", manifest, exc)
            continue
        if cached.same_engine_family(key) and profile_covers(cached.profile, key.profile):
            found.append((plan, cached))

    def rank(item: tuple[Path, EngineKey]) -> tuple:
        cached = item[1]
        exact = cached == key
        same_opt = all(cached.profile[i.name].opt == i.opt for i in key.profile.inputs)
        volume = sum(math.prod(i.max) for i in cached.profile.inputs)
        return (not exact, not same_opt, volume, item[0].name)

    return sorted(found, key=rank)


def load_cached_or_build(directory: str | os.PathLike, key: EngineKey,
                         build: Callable[[], bytes],
                         deserialize: Callable[[bytes], T | None]
                         ) -> tuple[T, Path, EngineKey, bool]:
    """The engine for ``key``: its own plan, else a cached plan whose profile covers it
    (``covering_engines``), else built now and cached under ``key``.

    Returns (engine, plan path, the key of the engine loaded — its profile is the one to
    check inputs against —, built). A covering plan that does not deserialise is removed
    with its manifest and the next is tried.
    """
    directory = Path(directory)
    exact = directory / key.filename()
    if not exact.is_file():
        for plan, cached in covering_engines(directory, key):
            try:
                engine = deserialize(plan.read_bytes())
            except Exception as exc:  # TensorRT raises RuntimeError/TypeError for bad plans
                LOG.warning("cached engine %s does not deserialise (%s); removing it", plan, exc)
                engine = None
            if engine is None:
                plan.unlink(missing_ok=True)
                manifest_path(plan).unlink(missing_ok=True)
                continue
            LOG.info("engine cache hit: %s (built for %s, which covers %s)", plan,
                     describe_profile(cached.profile), describe_profile(key.profile))
            return engine, plan, cached, False
    engine, built = load_or_build(exact, build, deserialize)
    if built or not manifest_path(exact).is_file():
        write_manifest(exact, key)
    return engine, exact, key, built
