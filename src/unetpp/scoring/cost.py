"""Cost of a model: FLOPs of its convolutions and linear layers, and wall-clock latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def count_flops(module: nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of one forward on a zero tensor of `shape`, counted as `torch.utils.flop_counter` counts them
    (2 per multiply-add of each convolution, transposed or not, and linear layer; bias, norms and pooling
    not counted). Counted from the layers' shapes by forward hooks because `FlopCounterMode` imports
    `torch._dynamo` on first use, 1-2 s in every stage process that reports a cost; tests/scoring holds
    the two counts equal on every network the project builds."""
    counted = (nn.modules.conv._ConvNd, nn.Linear)
    total = 0

    def add(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        x, w = inputs[0], layer.weight
        if isinstance(layer, nn.Linear):
            total += 2 * x.numel() * layer.out_features
            return
        positions = (x if getattr(layer, "transposed", False) else output).shape[2:].numel()
        total += 2 * x.shape[0] * positions * w.numel()

    hooks = [m.register_forward_hook(add) for m in module.modules() if isinstance(m, counted)]
    param = next(module.parameters())
    try:
        with torch.inference_mode():
            module(torch.zeros(shape, dtype=param.dtype, device=param.device))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def median_latency_ms(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 10) -> tuple[float, float]:
    """Median wall-clock milliseconds of `fn()` over `repeats` calls after `warmup` calls, and the spread of
    those calls (half their interquartile range: how far the median can move between two runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return statistics.median(times), (quartiles[2] - quartiles[0]) / 2
