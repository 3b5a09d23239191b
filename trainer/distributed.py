"""Several processes, one training run: torchrun's ranks, the process group, each rank's share of the data.

`torchrun --nproc_per_node N -m trainer ...` starts N copies of the trainer and tells each its RANK,
WORLD_SIZE and LOCAL_RANK; DistributedDataParallel keeps their G and D in step. A plain
`python -m trainer` is the same code with a world of one, where every method here returns at once
without a collective. Only this module reads torchrun's variables or calls torch.distributed.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from infer.errors import UserError


class SharedError(UserError):
    """A refusal every rank raises together; rank 0 alone prints it, so the user reads it once."""


class Distributed:
    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, launched: bool = False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.launched = launched  # started by torchrun (which forwards Ctrl-C to every rank itself)

    @classmethod
    def from_environment(cls) -> Distributed:
        """What torchrun set for this process; a world of one without it."""
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
                   launched=True)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, writes files and tracks."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    # ---- the process group --------------------------------------------------------------------

    def trains_on_cuda(self, requested: str) -> bool:
        """Whether --device `requested` puts this rank on a GPU: asked for, or auto where torch has kernels for it."""
        if requested.startswith("cuda"):
            return True
        if requested != "auto" or not torch.cuda.is_available():
            return False
        from .device import unsupported_gpu

        return not unsupported_gpu(torch.device("cuda", min(self.local_rank, torch.cuda.device_count() - 1)))

    def start(self, requested: str = "auto") -> None:
        """Join the process group: gloo for CPU tensors, NCCL for CUDA tensors when this run trains on CUDA
        (--device cpu on a GPU machine neither initialises CUDA nor asks for NCCL)."""
        if not self.active or dist.is_initialized():
            return
        backend = "gloo"
        if self.trains_on_cuda(requested) and torch.cuda.is_available():
            if self.local_rank < torch.cuda.device_count():  # more ranks than GPUs: refused in device_name()
                torch.cuda.set_device(self.local_rank)  # one GPU per process
            backend = "cpu:gloo,cuda:nccl"  # refusals and agreements travel on the CPU, tensors on the GPU
        dist.init_process_group(backend)

    def stop(self) -> None:
        """Leave the process group, and free it while Python is whole.

        DistributedDataParallel holds the group, so a wrapper still alive at interpreter exit frees it
        there, and gloo's threads can then abort the process (SIGABRT, "terminate called without an
        active exception"). The trainer drops its wrappers when its run ends; collect them first.
        """
        if self.active and dist.is_initialized():
            gc.collect()
            dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.active:
            dist.barrier()

    def device_name(self, requested: str) -> str:
        """--device for this rank: under torchrun every rank has its own GPU, cuda:LOCAL_RANK."""
        if not self.active:
            return requested
        if requested.startswith("cuda:"):
            raise UserError(f"--device {requested}: under torchrun each process uses cuda:LOCAL_RANK; "
                            "pass --device cuda (or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs")
        if requested == "cuda" or (requested == "auto" and self.trains_on_cuda(requested)):
            return f"cuda:{self.local_rank}"
        return requested

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel across the ranks (it averages gradients in backward); the model itself alone.

        BatchNorm keeps per-rank statistics, as in a single process at --batch-size (README).
        """
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    # ---- the data ---------------------------------------------------------------------------------

    def shard(self, order: torch.Tensor, batch_size: int) -> torch.Tensor:
        """This rank's images of an epoch, in step order, from the permutation every rank draws alike.

        Step s takes the s-th block of world_size x batch_size images; rank r takes the r-th batch of it.
        So the ranks' shares are disjoint and together cover the epoch (bar the last partial block);
        a world of one gets the permutation itself, batch after batch.
        """
        block = self.world_size * batch_size
        steps = len(order) // block
        return order[: steps * block].view(steps, self.world_size, batch_size)[:, self.rank].reshape(-1)

    # ---- agreeing ----------------------------------------------------------------------------

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over the ranks of each rank's values (a new tensor)."""
        values = values.clone()
        if self.active:
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def max(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        if self.active:
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a stop signal one rank got)."""
        if not self.active:
            return flag
        return bool(self.max(torch.tensor([float(flag)])).item())

    def gather(self, value: object) -> list:
        """Every rank's value, on every rank (picklable objects, sent over the CPU)."""
        if not self.active:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def from_main(self, value: object) -> object:
        """Rank 0's value, on every rank."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextlib.contextmanager
    def all_or_none(self) -> Iterator[None]:
        """Run a block that may refuse (UserError) on every rank; if any rank refused, every rank raises.

        The ranks stay in step (none goes on to a collective the others never reach), and the message
        is printed once: as it is when every rank refused alike, prefixed with the rank otherwise.
        """
        error = None
        try:
            yield
        except UserError as e:
            if not self.active:
                raise
            error = str(e)
        failed = [(rank, message) for rank, message in enumerate(self.gather(error)) if message is not None]
        if not failed:
            return
        messages = {message for _, message in failed}
        if len(failed) == self.world_size and len(messages) == 1:
            raise SharedError(messages.pop())
        rank, message = failed[0]
        raise SharedError(f"rank {rank}: {message}")


def same_everywhere(dist: Distributed, options: dict, local: tuple[str, ...] = ()) -> None:
    """Refuse (on every rank) a job whose ranks were started with different options: they would not keep step.

    `local` names options that may differ per machine (paths).
    """
    mine = {k: v for k, v in options.items() if k not in local}
    for rank, theirs in enumerate(dist.gather(mine)):
        different = [k for k in mine if theirs[k] != mine[k]]
        if different:
            k = different[0]
            raise SharedError(f"the ranks were started with different options: --{k.replace('_', '-')} is "
                              f"{theirs[k]} on rank {rank} and {mine[k]} on rank {dist.rank}; start every node "
                              "with the same options")


def is_peer_failure(error: BaseException) -> bool:
    """A collective that failed because another rank is gone (crashed, or stopped by torchrun)."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "NCCL communicator")
    )
