"""Pseudo-label distillation (Depth Anything's data engine): the label format, a Dataset over
pseudo-labelled images with strong perturbations, a stream of pseudo-labelled batches that
accompanies every labelled batch, and the loss against the teacher's labels.

``training/pseudo_label.py`` writes a directory::

    <out>/pseudo_labels.json                  the manifest (see ``PseudoManifest``)
    <out>/<relative image path>.npy           one label per image: the image path relative
                                              to the images root, suffix replaced by .npy

A label is the teacher's raw output at the image's own resolution, H×W little-endian float16
(float32 where a value exceeds float16's range), NaN where the teacher gave no finite value:
metric depth in metres (``kind: metric``) or affine-invariant inverse depth (``kind:
relative``, e.g. Depth Anything V2's relative models; only its ordering and proportions mean
something, so it is compared after per-image scale-and-shift alignment).

Mixing (one combined step rather than alternating batches): every training step takes the
usual labelled batch *and* a pseudo-labelled batch ``ratio`` times its size (1:2 by default,
as Depth Anything samples labelled and unlabelled images in each batch). Why combined: both
losses shape every optimiser step (alternating steps would let Adam's moments swing between
two objectives), the trainer's step, epoch and resume arithmetic stays that of the labelled
set, and the pseudo batch of step k is a pure function of (seed, rank, k), so a resumed run
and every DDP rank know where they are without extra state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

if TYPE_CHECKING:
    from training.datasets import EpochSampler

from depth_ros.inference.estimator import resize_rgb
from training.losses import silog_loss, ssi_loss
from training.transforms import (
    ColorJitter,
    Compose,
    GaussianBlur,
    HueJitter,
    RandomApply,
    RandomGrayscale,
    Sample,
    cutmix,
)

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


# --- Format ------------------------------------------------------------------------------------


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


# --- Configuration -----------------------------------------------------------------------------


@dataclass
class PseudoConfig:
    """Training on pseudo-labelled images (``pseudo:`` in a training config).

    Off unless ``enabled`` and ``dirs`` is not empty. The perturbations are applied to the
    pseudo-labelled samples only (the labelled ones keep ``augment:``); their defaults follow
    UniMatch / Depth Anything's strong perturbations.
    """

    dirs: list[str] = field(default_factory=list)  # pseudo_label.py output directories
    enabled: bool = True  # false: ignore dirs
    ratio: int = 2  # pseudo-labelled samples per labelled sample in each step (1:ratio)
    loss_weight: float = 1.0  # total loss = labelled loss + loss_weight × pseudo loss
    # SSI normalisation for relative labels: median (Depth Anything) | lstsq (MiDaS).
    ssi_method: str = "median"
    hflip_prob: float = 0.5  # left-right flip of image and label together
    jitter_prob: float = 0.8  # probability of colour jitter (brightness/contrast/sat./hue)
    jitter: float = 0.5  # brightness, contrast and saturation factors from [1 − x, 1 + x]
    hue: float = 0.25  # hue rotation from [−hue, hue] of the colour circle (≤ 0.5)
    grayscale_prob: float = 0.2  # probability of turning the image grey
    blur_prob: float = 0.5  # probability of a Gaussian blur
    blur_sigma_max: float = 2.0  # its sigma is drawn from [0.1, blur_sigma_max] pixels
    cutmix_prob: float = 0.5  # probability that a sample gets a box of its partner's pixels
    cutmix_area_min: float = 0.02  # box area as a fraction of the image, uniform in
    cutmix_area_max: float = 0.4  # [cutmix_area_min, cutmix_area_max]

    @property
    def active(self) -> bool:
        """Whether pseudo-labelled batches are used."""
        return self.enabled and bool(self.dirs)

    def validate(self, error: type[ValueError] = ValueError) -> None:
        """Raise ``error`` (e.g. the trainer's ``ConfigError``) naming the first field out of
        range."""
        probabilities = ("hflip_prob", "jitter_prob", "grayscale_prob", "blur_prob",
                         "cutmix_prob")
        checks = [("ratio", self.ratio >= 1), ("loss_weight", self.loss_weight >= 0),
                  ("ssi_method", self.ssi_method in ("median", "lstsq")),
                  ("jitter", 0 <= self.jitter <= 1), ("hue", 0 <= self.hue <= 0.5),
                  ("blur_sigma_max", self.blur_sigma_max >= 0.1),
                  ("cutmix_area_min", 0 < self.cutmix_area_min <= self.cutmix_area_max),
                  ("cutmix_area_max", self.cutmix_area_max <= 1),
                  *((name, 0 <= getattr(self, name) <= 1) for name in probabilities)]
        for name, ok in checks:
            if not ok:
                raise error(f"pseudo.{name} is out of range: {getattr(self, name)!r}")
        if not all(isinstance(d, str) and d for d in self.dirs):
            raise error(f"pseudo.dirs must be a list of directory paths, got {self.dirs}")


def strong_perturbation(config: PseudoConfig) -> Compose:
    """The photometric perturbations of pseudo-labelled samples (image only): colour jitter
    with probability ``jitter_prob``, greyscale, Gaussian blur."""
    j = config.jitter
    return Compose([RandomApply([ColorJitter(j, j, j), HueJitter(config.hue)],
                                config.jitter_prob),
                    RandomGrayscale(config.grayscale_prob),
                    GaussianBlur(config.blur_prob, 0.1, config.blur_sigma_max)])


# --- Dataset -----------------------------------------------------------------------------------


def _datasets() -> Any:
    """``training.datasets``, imported on first use: it imports ``training.config``, which
    takes ``PseudoConfig`` from this module, so importing it here at the top would be a
    cycle."""
    import training.datasets

    return training.datasets


def _seed_of(*keys: int) -> int:
    """A 32-bit seed for every tuple of non-negative keys (independent streams)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class PseudoLabelFrames(Dataset):
    """Pseudo-labelled images from one or more ``pseudo_label.py`` directories, resized to the
    network input size (``resize_rgb`` for the image, ``resize_depth`` for the label).

    Items are dicts: ``image`` 3×H×W float32 in [0, 1], ``label`` 1×H×W float32 (0 outside
    the mask), ``mask`` 1×H×W bool (finite labels; metric ones also > 0), ``kind`` (str).

    An index may be an int (random draws from torch's global generator, like the other
    datasets) or ``(index, seed)``: the perturbations are then a function of the seed alone,
    whichever process or worker loads it (``PseudoBatchStream`` does this).

    Args:
        dirs: pseudo-label directories; all must hold the same kind of label.
        height: network input height.
        width: network input width.
        config: perturbations (flip, ``strong_perturbation``); None: none (e.g. to inspect).
        images_roots: where each directory's images are now, when they moved since
            labelling; default: each manifest's ``images_root``.
    """

    def __init__(self, dirs: str | os.PathLike | Sequence[str | os.PathLike], height: int,
                 width: int, config: PseudoConfig | None = None,
                 images_roots: Sequence[str | os.PathLike] | None = None) -> None:
        dirs = [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)
        if not dirs:
            raise PseudoLabelError("no pseudo-label directories given")
        if images_roots is not None and len(images_roots) != len(dirs):
            raise PseudoLabelError("images_roots needs one entry per directory")
        self.height, self.width = int(height), int(width)
        self.items: list[tuple[Path, Path]] = []
        kinds = {}
        for i, directory in enumerate(dirs):
            manifest = PseudoManifest.read(directory)
            kinds[str(directory)] = manifest.kind
            root = Path(images_roots[i] if images_roots is not None else manifest.images_root)
            self.items += [(root / rel, Path(directory) / label_name(rel))
                           for rel in manifest.images]
        if len(set(kinds.values())) > 1:
            raise PseudoLabelError(f"pseudo-label directories mix label kinds: {kinds}; train "
                                   "on one kind at a time")
        if not self.items:
            raise PseudoLabelError(f"no pseudo-labels in {', '.join(map(str, dirs))}")
        self.label_kind: str = next(iter(kinds.values()))
        self.config = config
        self.perturb = strong_perturbation(config) if config is not None else None

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The resized image (H×W×3 uint8) and label (H×W float32, NaN = none) of an item."""
        image_path, label_path = self.items[index]
        rgb = read_image_rgb(image_path)
        label = read_label(label_path)
        if label.shape != rgb.shape[:2]:
            raise PseudoLabelError(f"{label_path} is {label.shape}, its image {image_path} "
                                   f"{rgb.shape[:2]}")
        return (resize_rgb(rgb, self.width, self.height),
                _datasets().resize_depth(label, self.width, self.height))

    def _augment(self, sample: Sample) -> Sample:
        if torch.rand(()).item() < self.config.hflip_prob:
            sample = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in sample.items()}
        return self.perturb(sample)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = (index if isinstance(index, tuple) else (index, None))
        rgb, label = self.load(int(index))
        sample = {"rgb": rgb.astype(np.float32) * np.float32(1 / 255), "label": label}
        if self.perturb is not None:
            if seed is None:
                sample = self._augment(sample)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    sample = self._augment(sample)
        label = torch.from_numpy(np.ascontiguousarray(sample["label"]))[None]
        mask = torch.isfinite(label)
        if self.label_kind == "metric":
            mask &= label > 0
        return {"image": torch.from_numpy(np.ascontiguousarray(
                    sample["rgb"].transpose(2, 0, 1), dtype=np.float32)),
                "label": torch.where(mask, label, torch.zeros_like(label)),
                "mask": mask, "kind": self.label_kind}


# --- Batches -----------------------------------------------------------------------------------


@dataclass
class PseudoBatch:
    """A collated pseudo-labelled batch after CutMix.

    ``image`` N×3×H×W, ``label`` N×1×H×W, ``mask`` N×1×H×W bool, ``region`` N×1×H×W bool (the
    pixels CutMix took from another sample; its label lives in that sample's affine frame),
    ``kind`` (``metric`` | ``relative``), ``step`` (the training step it belongs to).
    """

    image: torch.Tensor
    label: torch.Tensor
    mask: torch.Tensor
    region: torch.Tensor
    kind: str
    step: int

    def __len__(self) -> int:
        return self.image.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PseudoBatch:
        """The batch on ``device``."""
        return replace(self, **{k: getattr(self, k).to(device, non_blocking=non_blocking)
                                for k in ("image", "label", "mask", "region")})

    def split(self, parts: int) -> list[PseudoBatch]:
        """``parts`` micro-batches (``tensor_split``, for gradient accumulation)."""
        chunks = [getattr(self, k).tensor_split(parts)
                  for k in ("image", "label", "mask", "region")]
        return [PseudoBatch(*tensors, self.kind, self.step) for tensors in zip(*chunks,
                                                                               strict=True)]


class _SeededIndices(Sampler):
    """An ``EpochSampler``'s indices, each paired with a seed for its perturbations."""

    def __init__(self, indices: EpochSampler, seed: int, rank: int) -> None:
        self.indices, self.seed, self.rank = indices, seed, rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first = self.indices.start
        for position, index in enumerate(self.indices, start=first):
            yield index, _seed_of(self.seed, self.rank, self.indices.epoch, position)

    def __len__(self) -> int:
        return len(self.indices)


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([i["image"] for i in items]),
            "label": torch.stack([i["label"] for i in items]),
            "mask": torch.stack([i["mask"] for i in items]), "kind": items[0]["kind"]}


class PseudoBatchStream:
    """Endless pseudo-labelled batches, one per training step, ``ratio`` × the labelled batch.

    Batch k (k = the training step) is a pure function of (seed, rank, k): the samples come
    from ``EpochSampler`` permutations of ``seed + epoch`` (sharded over the ranks like the
    labelled set), every sample's perturbations from a seed of its own, CutMix from a generator
    seeded by (seed, rank, k). Starting at ``start_step`` therefore continues exactly where a
    run from step 0 would be, whatever the number of loader workers.

    Args:
        dataset: the pseudo-labelled frames.
        labelled_batch_size: samples per step of the labelled set on this rank.
        config: ``ratio`` and the CutMix settings.
        seed: the training seed.
        rank: this process's rank.
        world_size: the number of processes.
        start_step: the training step of the first batch.
        num_workers: ``DataLoader`` worker processes.
        pin_memory: pin batches for faster copies to a GPU.
    """

    def __init__(self, dataset: PseudoLabelFrames, labelled_batch_size: int,
                 config: PseudoConfig, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, num_workers: int = 0, pin_memory: bool = False) -> None:
        self.dataset, self.config = dataset, config
        self.batch_size = int(labelled_batch_size) * config.ratio
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_step, self.num_workers, self.pin_memory = start_step, num_workers, pin_memory
        shard = _datasets().EpochSampler(len(dataset), seed, rank=rank,
                                         num_replicas=world_size).shard_size
        self.steps_per_epoch = shard // self.batch_size
        if self.steps_per_epoch < 1:
            raise PseudoLabelError(
                f"a pseudo-labelled batch of {self.batch_size} (ratio {config.ratio} × "
                f"{labelled_batch_size}) × {world_size} process(es) exceeds the {len(dataset)} "
                "pseudo-labelled images")

    def batch_seed(self, step: int) -> int:
        """The seed of step ``step``'s CutMix generator."""
        return _seed_of(self.seed, self.rank, step, 1)

    def __iter__(self) -> Iterator[PseudoBatch]:
        step = self.start_step
        while True:
            epoch, offset = divmod(step, self.steps_per_epoch)
            indices = _datasets().EpochSampler(len(self.dataset), self.seed, epoch,
                                               offset * self.batch_size, self.rank,
                                               self.world_size)
            loader = DataLoader(self.dataset, batch_size=self.batch_size,
                                sampler=_SeededIndices(indices, self.seed, self.rank),
                                drop_last=True, num_workers=self.num_workers,
                                collate_fn=_collate, pin_memory=self.pin_memory,
                                # A generator of its own: without one the loader draws its
                                # base seed from the global stream that the labelled
                                # augmentation uses, and a resumed run would diverge.
                                generator=torch.Generator().manual_seed(
                                    self.batch_seed(step)))
            for batch in loader:
                yield self.finish(batch, step)
                step += 1

    def finish(self, batch: dict[str, Any], step: int) -> PseudoBatch:
        """CutMix a collated batch with step ``step``'s generator."""
        generator = torch.Generator().manual_seed(self.batch_seed(step))
        (image, label, mask), region, _ = cutmix(
            [batch["image"], batch["label"], batch["mask"]], generator,
            self.config.cutmix_prob, (self.config.cutmix_area_min, self.config.cutmix_area_max))
        return PseudoBatch(image, label, mask, region, batch["kind"], step)


def mix_batches(labelled: Iterable[Any], pseudo: Iterable[PseudoBatch] | None
                ) -> Iterator[tuple[Any, PseudoBatch | None]]:
    """Pair each labelled batch with the next pseudo-labelled one (``None`` when pseudo is
    None). ``pseudo`` is an iterator that lives across labelled epochs (``iter(stream)``)."""
    pseudo = iter(pseudo) if pseudo is not None else None
    for batch in labelled:
        yield batch, (next(pseudo) if pseudo is not None else None)


# --- Loss --------------------------------------------------------------------------------------


def _ssi_regions(inverse: torch.Tensor, label: torch.Tensor, mask: torch.Tensor,
                 region: torch.Tensor, method: str) -> torch.Tensor:
    """Per image, the SSI loss inside and outside ``region`` separately, weighted by their
    shares of the valid pixels (Depth Anything's CutMix loss), averaged over the images."""
    losses = []
    for i in range(inverse.shape[0]):
        total = int(mask[i].sum())
        if total < 2:
            continue
        loss = inverse.new_zeros(())
        for part in (region[i], ~region[i]):
            m = (mask[i] & part)[None]
            count = int(m.sum())
            if count >= 2:
                loss = loss + (count / total) * ssi_loss(inverse[i:i + 1], label[i:i + 1], m,
                                                         method)
        losses.append(loss)
    if not losses:
        return inverse.sum() * 0.0
    return torch.stack(losses).mean()


def pseudo_label_loss(pred_depth: torch.Tensor, label: torch.Tensor, mask: torch.Tensor,
                      label_kind: str | Sequence[str], region: torch.Tensor | None = None,
                      silog_lambda: float = 0.85, ssi_method: str = "median",
                      depth_range: tuple[float, float] | None = None,
                      student_output: str = "metric") -> torch.Tensor:
    """The student's loss against pseudo-labels (N×1×H×W tensors).

    Metric labels: SILog of the predicted depth against the label (clamped into
    ``depth_range`` when given, as the labelled loss does). Relative labels (affine-invariant
    inverse depth): the scale-and-shift-invariant loss of the student's inverse depth
    (``1 / pred_depth``, or ``pred_depth`` itself for a ``relative`` student) against the
    label; with a CutMix ``region`` the pixels inside and outside it are aligned separately,
    since each came from a different image whose label has its own scale and shift.

    Args:
        pred_depth: the student's output, metres (positive) for a metric student.
        label: the pseudo-labels.
        mask: bool, where the label is valid.
        label_kind: ``metric`` or ``relative`` (or one per sample, all equal).
        region: bool, the CutMix boxes (``PseudoBatch.region``); None: no CutMix.
        silog_lambda: SILog's λ for metric labels.
        ssi_method: ``median`` (Depth Anything) or ``lstsq`` (MiDaS) for relative labels.
        depth_range: (min, max) metres the metric labels are clamped into.
        student_output: ``metric`` (depth in metres) or ``relative`` (inverse depth).
    """
    kinds = {label_kind} if isinstance(label_kind, str) else set(label_kind)
    if len(kinds) != 1 or not kinds <= set(LABEL_KINDS):
        raise ValueError(f"label_kind must be one of {LABEL_KINDS} for the whole batch, got "
                         f"{sorted(kinds)}")
    if student_output not in ("metric", "relative"):
        raise ValueError(f"student_output must be metric or relative, got {student_output!r}")
    (kind,) = kinds
    if kind == "metric":
        if student_output != "metric":
            raise ValueError("metric pseudo-labels need a metric student")
        mask = mask & (label > 0)
        target = label if depth_range is None else label.clamp(*depth_range)
        return silog_loss(pred_depth, target, mask, silog_lambda)
    inverse = pred_depth if student_output == "relative" else 1.0 / pred_depth.clamp(min=1e-6)
    if region is None:
        return ssi_loss(inverse, label, mask, ssi_method)
    return _ssi_regions(inverse, label, mask, region, ssi_method)
