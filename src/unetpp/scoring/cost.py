"""Cost of a model: parameters, FLOPs (torch.utils.flop_counter) and wall-clock latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(module: nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of one forward on a zero tensor of `shape` (a multiply-add counts as 2)."""
    param = next(module.parameters())
    x = torch.zeros(shape, dtype=param.dtype, device=param.device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops())


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
