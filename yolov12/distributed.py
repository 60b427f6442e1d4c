"""Several processes, one evaluation: ``torchrun --nproc-per-node N -m yolov12 val ...`` (and
``predict`` over a folder).

torchrun starts N copies of the command with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set. Each
joins one process group (NCCL when it runs on a GPU, gloo on CPU), takes the batches ``rank``,
``rank + N``, ``rank + 2N``, ... of the single-process run, and sends what it found to rank 0,
which writes the results and computes the metrics. Whole batches are dealt out, never single
images: each batch is padded to its largest image, so an image's detections depend on the batch it
is in; dealing batches keeps every batch exactly as a single process forms it, hence exactly the
single-process detections and metrics (same numerics given, e.g., the same thread count).

Without torchrun (``WORLD_SIZE`` unset or 1) nothing here does anything: ``Context`` is rank 0 of 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0

    def my_batches(self, n_batches: int) -> list[int]:
        """Indices of the batches this process runs: rank, rank + world, ..."""
        return list(range(self.rank, n_batches, self.world))

    def gather(self, obj) -> list | None:
        """Every process's ``obj``, in rank order, on rank 0 (None on the others)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process."""
        if self.world == 1:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()
            self.owns_group = False


def wants_cuda(device: str | None) -> bool:
    """Whether ``--device`` (None: the default) puts this run on CUDA."""
    if device is None or device == "":
        return torch.cuda.is_available()
    text = str(device).strip().lower()
    return text.isdigit() or text.startswith("cuda")


def setup(device: str | None = None) -> Context:
    """The process group of a torchrun launch (joined here), or a single-process Context."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Context()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        on_cuda = wants_cuda(device)
        if on_cuda:
            torch.cuda.set_device(local)  # NCCL's object collectives use the current device
        dist.init_process_group("nccl" if on_cuda else "gloo")
        owns = True
    return Context(rank, world, local, owns)


def device_for(ctx: Context, device: str | None) -> str | None:
    """``--device`` for this process: under torchrun, CUDA means this process's own GPU
    (cuda:LOCAL_RANK); an explicit cuda:N would put every process on the same GPU."""
    if ctx.world == 1 or not wants_cuda(device):
        return device
    text = "" if device is None else str(device).strip().lower()
    if text not in ("", "cuda"):
        raise SystemExit(f"--device: {device!r} under torchrun: each process takes its own GPU "
                         "(cuda:LOCAL_RANK); give --device cuda (or none)")
    return f"cuda:{ctx.local_rank}"
