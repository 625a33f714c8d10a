"""Data parallelism over torch.distributed (launched by ``torchrun`` or ``accelerate launch``).

The design keeps what TRICE computes independent of the number of processes:

- Every rank runs the same loop on the same *global* minibatch (the same seed gives the same
  permutation), so the method's bookkeeping (memory, MH step, beta, Mv, the subsample drawn with the
  shared resampler generator) is identical everywhere and equals the single-process one.
- The expensive work is split by row: :func:`trice.generation.sampler.sample` samples only this rank's rows
  (``rows(n)``) and all-gathers the results; each row's randomness depends on its position in the
  call and a key drawn once per call, never on which rank or batch it lands in. The trainer scores
  only this rank's rows of the weighted sequences and :meth:`World.all_reduce_` sums the gradients,
  so the update is the single-process update (up to float summation order).
- Rank 0 alone writes the run directory (metrics, checkpoints, memory, parameters).

Written by hand because no library splits TRICE's steps this way: DDP/accelerate all-reduce
gradients but know nothing of sampling, memories or a subsample shared across ranks. The gradient
all-reduce itself is one flat ``all_reduce`` of the trainable parameters' gradients (soft prompts and
LoRA are small; this is what DDP's reducer does, without overlapping it with the backward pass).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import TriceError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, n: int) -> list[int]:
        """The rows of an n-row global list that this rank handles (round robin: balanced)."""
        return list(range(self.rank, n, self.size))

    def gather_rows(self, n: int, mine: list) -> list:
        """Every rank's ``mine`` (its rows' results, in ``rows(n)`` order) as one list in global order."""
        if self.size == 1:
            return list(mine)
        parts: list = [None] * self.size
        dist.all_gather_object(parts, list(mine))
        out: list = [None] * n
        for rank, part in enumerate(parts):
            for i, value in zip(range(rank, n, self.size), part, strict=True):
                out[i] = value
        return out

    def map_rows(self, n: int, work) -> list:
        """``work(rows)`` on this rank's rows of an n-row job (``rows(n)``; it returns one result per
        row, in order), gathered so that every rank gets all n results in global order: the one way
        sampling and checking split their rows across processes."""
        return self.gather_rows(n, work(self.rows(n)))

    def all_reduce_(self, tensors: list[torch.Tensor]) -> None:
        """Sum ``tensors`` over ranks, in place, in one flat all-reduce."""
        if self.size == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def collective_device(self) -> str:
        """Where small tensors for a collective live: the GPU under NCCL, else the CPU."""
        return _collective_device() if self.size > 1 else "cpu"

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any (e.g. a stop signal that reached one rank)."""
        if self.size == 1:
            return bool(flag)
        t = torch.tensor([int(bool(flag))], device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _collective_device() -> str:
    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


_WORLD = World()


def world() -> World:
    """This process's place in the job (rank 0 of 1 unless :func:`init` joined a group)."""
    return _WORLD


def init(device: str | None = None) -> World:
    """Join the process group described by the launcher's environment (``WORLD_SIZE`` > 1), with
    NCCL when training on GPUs and gloo on CPUs; a no-op for a single process."""
    global _WORLD
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        device = device or default_device()
        local = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        if device.startswith("cuda") and device not in ("cuda", local):
            raise TriceError(f"--device {device} under a launcher: each process uses its own GPU ({local} "
                             "here); leave --device unset")
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    if dist.is_initialized():
        _WORLD = World(dist.get_rank(), dist.get_world_size())
    return _WORLD


def default_device() -> str:
    """``cuda:LOCAL_RANK`` when a GPU is present, else ``cpu``."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"
