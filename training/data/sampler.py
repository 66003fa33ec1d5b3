"""Which samples each step sees: ``EpochSampler`` (per-epoch permutations, sharded over the
ranks, resumable mid-epoch) and ``seed_worker`` for ``DataLoader`` workers."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """A fresh permutation each epoch from ``seed + epoch``, optionally sharded over
    ``num_replicas`` processes and starting part-way in (``start``): a resumed run sees
    exactly the samples it had not yet seen that epoch.

    Sharding is ``DistributedSampler``'s, index for index: every rank draws the same
    permutation, pads it to a multiple of ``num_replicas`` with its first indices and takes
    every ``num_replicas``-th from ``rank``. ``start`` counts this rank's samples; skipping them
    here (rather than in the loader) means they are neither loaded nor augmented.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0, start: int = 0, rank: int = 0,
                 num_replicas: int = 1) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.size, self.seed, self.epoch, self.start = size, seed, epoch, start
        self.rank, self.num_replicas = rank, num_replicas

    @property
    def shard_size(self) -> int:
        """Samples each rank gets per epoch (the padded total over ``num_replicas``)."""
        return math.ceil(self.size / self.num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the permutation of ``epoch``, skipping this rank's first ``start`` samples."""
        self.epoch, self.start = epoch, start

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        indices = torch.randperm(self.size, generator=generator).tolist()
        total = self.shard_size * self.num_replicas
        indices = (indices * math.ceil(total / max(self.size, 1)))[:total]
        return iter(indices[self.rank::self.num_replicas][self.start:])

    def __len__(self) -> int:
        return max(self.shard_size - self.start, 0)


def seed_worker(worker_id: int) -> None:
    """``DataLoader`` ``worker_init_fn``: seed numpy and ``random`` from the torch seed the
    loader gave this worker (its generator's draw + ``worker_id``), so that any augmentation
    is repeatable, whichever library it draws from."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
