"""Inference speed-ups shared by evaluation, benchmarks and serving.

- batch norm folded into the preceding convolution (one pass over the activations instead of two);
- channels_last memory format, which oneDNN and cuDNN convolutions run fastest on;
- `torch.inference_mode` (no autograd bookkeeping) and an opt-in bf16 autocast on CPU and CUDA.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from unetpp.errors import UserError
from unetpp.nn.blocks import ConvBlock


def resolve_device(name: str, field: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; an absent CUDA asked for by params `field` is a UserError."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{field} is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every Conv -> BatchNorm pair inside `ConvBlock`s, in place; the module must be in eval mode.

    The batch statistics become the convolution's scale and bias, so the outputs agree to float
    tolerance while each block does two passes over memory fewer.
    """
    if module.training:
        raise ValueError("fold_batchnorm needs a module in eval mode (call .eval() first)")
    for block in module.modules():
        if not isinstance(block, ConvBlock):
            continue
        for idx in range(len(block) - 1):
            conv, bn = block[idx], block[idx + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                block[idx] = fuse_conv_bn_eval(conv, bn)
                block[idx + 1] = nn.Identity()
    return module


def optimize_for_inference(module: nn.Module, *, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """Put `module` in eval mode, fold its batch norms and (optionally) use channels_last, in place.

    `compile=True` also wraps it in `torch.compile` with weight freezing (Inductor): convolutions get
    their ReLU fused and concatenations are written in place, which pays most on the thin,
    high-resolution nodes of the low pruning levels. The first call per input shape compiles
    (about 10-20 s on 2 CPU cores); call it under `inference_context`.
    """
    fold_batchnorm(module.eval())
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if compile:
        return torch.compile(module, options={"freezing": True})
    return module


@contextlib.contextmanager
def inference_context(device: torch.device | str = "cpu", *, bf16: bool = False) -> Iterator[None]:
    """`inference_mode`, plus bf16 autocast on `device` when asked."""
    device_type = torch.device(device).type
    with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        yield


def run_inference(module: nn.Module, x: Tensor, *, bf16: bool = False, channels_last: bool = True) -> Tensor:
    """Call `module` on `x` in the inference context; the result is float32 whatever the autocast."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with inference_context(x.device, bf16=bf16):
        out = module(x)
    return out.float()
