"""One process per device, the ``torchrun`` way: the launcher sets ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; without them (plain ``python training/train.py``) there is one process
and every collective below is a no-op.

    torchrun --nproc_per_node 4 training/train.py --config ...

Rank 0 writes checkpoints and logs; the others compute. The run directory (and, for
multi-node runs, the data) must be on a filesystem every node sees: each rank reads the
checkpoint it resumes from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from training.config import ConfigError

# Rank 0 renders synthetic data and validates while the others wait in a collective: allow
# longer than NCCL's default 10 minutes before a wait counts as a hang.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available), ``cuda`` or ``cpu``; CUDA is ``cuda:<local_rank>``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but torch sees no CUDA device")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; a single-process job by default."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether there are other processes to talk to."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.is_distributed:
            dist.barrier(device_ids=[self.local_rank] if self.device.type == "cuda" else None)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over the ranks."""
        if not self.is_distributed:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (every rank gets the same answer)."""
        return self.sum([float(flag)])[0] > 0 if self.is_distributed else flag

    def max(self, value: float) -> float:
        """The largest ``value`` over the ranks (every rank gets the same answer)."""
        if not self.is_distributed:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def mean(self, value: float) -> float:
        """``value`` averaged over the ranks."""
        return self.sum([value])[0] / self.world_size

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.is_distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm statistics) to every rank, so that what the
        ranks validate and what rank 0 saves are one model."""
        if self.is_distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def close(self) -> None:
        """Leave the process group (after the last collective)."""
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> DistContext:
    """Join the ``torchrun`` job this process belongs to (NCCL on CUDA, Gloo on CPU), or
    describe a single-process one when not launched by ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    torch_device = resolve_device(device, local_rank)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
        dist.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT, device_id=torch_device)
    else:
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    return DistContext(rank, world_size, local_rank, torch_device)


def wrap_model(model: nn.Module, context: DistContext,
               find_unused_parameters: bool = False) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when there are several ranks, else itself."""
    if not context.is_distributed:
        return model
    device_ids = [context.local_rank] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids,
                                   find_unused_parameters=find_unused_parameters)
