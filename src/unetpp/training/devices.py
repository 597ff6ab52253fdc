"""Where training runs: the device, mixed precision, and the process group under torchrun."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from unetpp.errors import UserError
from unetpp.runtime.inference import resolve_device


def training_device(name: str) -> torch.device:
    """`resolve_device`, and under torchrun on CUDA this process's own GPU (LOCAL_RANK)."""
    device = resolve_device(name, "train.device")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """fp32: nothing; bf16 on CPU or CUDA; fp16 on CUDA only."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise UserError("train.precision 'fp16' needs CUDA; use 'bf16' or 'fp32' on CPU")
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)
