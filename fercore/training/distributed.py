"""Several processes on one run: ``torchrun`` and ``torch.distributed``, used only when asked for.

A user who never starts ``torchrun`` never reaches this module's process group: :func:`context`
returns None unless the environment names more than one process (``WORLD_SIZE`` > 1 with
``RANK`` set, as ``torchrun`` / ``torch.distributed.run`` set them, with ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``). Then the default process group is started once (NCCL when
CUDA is present, else gloo; ``env://`` rendezvous) and every process gets a :class:`Dist`:
its rank, the world size, its device (``cuda:LOCAL_RANK`` or the CPU) and a gloo group for the
small NumPy exchanges of training and recording (counts, flags, the top-K lists, file bytes),
which stay on the CPU whatever the backend of the model's gradients.

Rank 0 is the only process that reads or writes the run directory; the others get what they need
from it by broadcast (:func:`broadcast_bytes`), so several nodes need no shared file system for
the run (each needs the FaceSet file at the same path). ``docs/training.md`` ("Distributed and
GPU") says how to launch.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Dist", "all_gather_arrays", "all_reduce_sum", "barrier", "broadcast_bytes", "broadcast_flag",
           "context", "env_world_size", "gather_arrays", "shard"]


@dataclass(frozen=True)
class Dist:
    """This process's place among the processes of one job.

    Attributes
    ----------
    rank, world_size, local_rank : int
    backend : str
        Backend of the default group (the model's gradients): ``nccl`` or ``gloo``.
    device : torch.device
        ``cuda:LOCAL_RANK`` when CUDA is present, else the CPU.
    cpu_group : ProcessGroup
        A gloo group of all processes for CPU tensors (the default group when it is gloo).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    cpu_group: object

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that reads and writes files and reports progress."""
        return self.rank == 0


def env_world_size() -> int:
    """The number of processes the environment names (``WORLD_SIZE``, 1 when unset or bad)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


_CONTEXT: Dist | None = None


def context() -> Dist | None:
    """The :class:`Dist` of this process, or None for a single process (no ``torchrun``).

    The first call under ``torchrun`` starts the default process group (unless the caller's
    program started one already, which is then used as it is) and a gloo group beside an NCCL one.
    """
    global _CONTEXT
    import torch.distributed as dist

    if _CONTEXT is not None and dist.is_available() and dist.is_initialized():
        return _CONTEXT
    started = dist.is_available() and dist.is_initialized()
    if not started and (env_world_size() < 2 or "RANK" not in os.environ):
        return None
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; "
                           "run a single process (without torchrun)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not started:
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, init_method="env://")
        atexit.register(_shutdown)
    backend = str(dist.get_backend())
    if dist.get_world_size() < 2:
        return None
    cpu_group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    _CONTEXT = Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                    backend=backend, device=device, cpu_group=cpu_group)
    return _CONTEXT


def _shutdown() -> None:
    import torch.distributed as dist

    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = None


def shard(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous part ``[start, end)`` of ``n`` items that ``rank`` takes: the first
    ``n % world_size`` ranks one item more than the others (``np.array_split``'s split)."""
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def barrier(ctx: Dist | None) -> None:
    """Wait for every process (nothing for a single process)."""
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier(group=ctx.cpu_group)


def broadcast_flag(ctx: Dist | None, value: bool | int) -> int:
    """Rank 0's integer (or bool) on every rank."""
    if ctx is None:
        return int(value)
    import torch.distributed as dist

    t = torch.tensor([int(value)], dtype=torch.int64)
    dist.broadcast(t, src=0, group=ctx.cpu_group)
    return int(t.item())


def broadcast_bytes(ctx: Dist | None, data: bytes | None) -> bytes | None:
    """Rank 0's bytes (or None) on every rank (e.g. a checkpoint file that only rank 0 can read)."""
    if ctx is None:
        return data
    import torch.distributed as dist

    size = broadcast_flag(ctx, -1 if data is None else len(data))
    if size < 0:
        return None
    buf = torch.empty(size, dtype=torch.uint8)
    if ctx.rank == 0 and size:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    if size:
        dist.broadcast(buf, src=0, group=ctx.cpu_group)
    return buf.numpy().tobytes()


def all_reduce_sum(ctx: Dist | None, values) -> np.ndarray:
    """The element-wise sum over ranks of a small float64 array (counts, sums)."""
    arr = np.asarray(values, dtype=np.float64)
    if ctx is None:
        return arr
    import torch.distributed as dist

    t = torch.from_numpy(arr.copy().reshape(-1))
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=ctx.cpu_group)
    return t.numpy().reshape(arr.shape)


def _as_bytes(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _exchange(ctx: Dist, arr: np.ndarray, *, dst: int | None) -> list[np.ndarray] | None:
    """Every rank's ``arr`` (same dtype and trailing shape, any length along axis 0), in rank
    order, on every rank (``dst`` None) or on rank ``dst`` only (None elsewhere). Sent as bytes,
    so any NumPy dtype travels; gloo needs equal sizes, so shorter arrays are padded."""
    import torch.distributed as dist

    arr = np.ascontiguousarray(arr)
    row = int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
    counts = torch.tensor([arr.shape[0]], dtype=torch.int64)
    all_counts = [torch.zeros(1, dtype=torch.int64) for _ in range(ctx.world_size)]
    dist.all_gather(all_counts, counts, group=ctx.cpu_group)
    lengths = [int(c.item()) for c in all_counts]
    width = max(lengths) * row
    mine = torch.zeros(max(width, 1), dtype=torch.uint8)
    if arr.size:
        mine[: arr.shape[0] * row] = _as_bytes(arr)
    if dst is None:
        bufs = [torch.empty_like(mine) for _ in range(ctx.world_size)]
        dist.all_gather(bufs, mine, group=ctx.cpu_group)
    else:
        bufs = [torch.empty_like(mine) for _ in range(ctx.world_size)] if ctx.rank == dst else None
        dist.gather(mine, bufs, dst=dst, group=ctx.cpu_group)
        if ctx.rank != dst:
            return None
    out = []
    for buf, n in zip(bufs, lengths, strict=True):
        raw = buf[: n * row].numpy()
        out.append(raw.view(arr.dtype).reshape((n, *arr.shape[1:])).copy())
    return out


def all_gather_arrays(ctx: Dist, arr: np.ndarray) -> list[np.ndarray]:
    """Every rank's array, in rank order, on every rank (axis-0 lengths may differ)."""
    return _exchange(ctx, arr, dst=None)


def gather_arrays(ctx: Dist, arr: np.ndarray, dst: int = 0) -> list[np.ndarray] | None:
    """Every rank's array, in rank order, on rank ``dst`` (None on the others)."""
    return _exchange(ctx, arr, dst=dst)
