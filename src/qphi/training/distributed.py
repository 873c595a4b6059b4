"""Process-group plumbing for `torchrun`: gloo on CPU, NCCL on GPU, rank 0 writes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from qphi.errors import QPhiError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def check_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device; a malformed name or a GPU this machine lacks is a `QPhiError`."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise QPhiError(f"'{device}' is not a device: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise QPhiError(f"device '{device}' was requested but no CUDA GPU is available: use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise QPhiError(f"device '{device}' does not exist: use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


def _env_int(name: str, default: int, low: int, high: int | None = None) -> int:
    """An integer that torchrun sets in the environment, checked to lie in [low, high)."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value >= high):
        bound = f"from {low} to {high - 1}" if high is not None else f"{low} or more"
        raise QPhiError(
            f"{name}={text!r} is not a whole number {bound}: unset {name}, or start the processes with torchrun"
        )
    return value


def setup(device: str) -> DistContext:
    """Join the process group that `torchrun` describes in the environment (if any)."""
    world_size = _env_int("WORLD_SIZE", 1, 1)
    rank, local_rank = _env_int("RANK", 0, 0, world_size), _env_int("LOCAL_RANK", 0, 0, world_size)
    if device == "cuda" and not torch.cuda.is_available():
        raise QPhiError("train.device=cuda but no CUDA GPU is available: use train.device=cpu or auto")
    if world_size > 1 and not dist.is_initialized() and "MASTER_ADDR" not in os.environ:
        raise QPhiError(
            f"WORLD_SIZE={world_size} is set but not the rest of a torchrun environment (MASTER_ADDR): "
            "start the processes with torchrun --nproc-per-node=N, or unset WORLD_SIZE"
        )
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_across_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average scalar metrics over processes (a no-op in a single process)."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return {k: v / ctx.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def any_across_ranks(flag: bool, ctx: DistContext) -> bool:
    """True on every process if it is true on any (a no-op in a single process)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.long, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_int(value: int, ctx: DistContext) -> int:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.long, device=ctx.device)
    dist.broadcast(t, src=0)
    return int(t.item())
