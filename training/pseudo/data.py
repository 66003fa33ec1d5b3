"""Pseudo-labelled batches for training (Depth Anything's data engine): a Dataset over
pseudo-labelled images with strong perturbations, and a stream of pseudo-labelled batches that
accompanies every labelled batch.

Mixing (one combined step rather than alternating batches): every training step takes the
usual labelled batch *and* a pseudo-labelled batch ``ratio`` times its size (1:2 by default,
as Depth Anything samples labelled and unlabelled images in each batch). Why combined: both
losses shape every optimiser step (alternating steps would let Adam's moments swing between
two objectives), the trainer's step, epoch and resume arithmetic stays that of the labelled
set, and the pseudo batch of step k is a pure function of (seed, rank, k), so a resumed run
and every DDP rank know where they are without extra state.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from depth_ros.inference.preprocessing import resize_rgb
from training.config import PseudoConfig
from training.data.sampler import EpochSampler
from training.data.transforms import (
    ColorJitter,
    Compose,
    GaussianBlur,
    HueJitter,
    RandomApply,
    RandomGrayscale,
    Sample,
    cutmix,
    resize_depth,
)
from training.pseudo.labels import (
    PseudoLabelError,
    PseudoManifest,
    label_name,
    read_image_rgb,
    read_label,
)


def strong_perturbation(config: PseudoConfig) -> Compose:
    """The photometric perturbations of pseudo-labelled samples (image only): colour jitter
    with probability ``jitter_prob``, greyscale, Gaussian blur."""
    j = config.jitter
    return Compose([RandomApply([ColorJitter(j, j, j), HueJitter(config.hue)],
                                config.jitter_prob),
                    RandomGrayscale(config.grayscale_prob),
                    GaussianBlur(config.blur_prob, 0.1, config.blur_sigma_max)])


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
                resize_depth(label, self.width, self.height))

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
        shard = EpochSampler(len(dataset), seed, rank=rank,
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
            indices = EpochSampler(len(self.dataset), self.seed, epoch,
                                   offset * self.batch_size, self.rank, self.world_size)
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
