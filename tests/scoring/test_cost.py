"""The FLOP count every stage reports equals `torch.utils.flop_counter`'s on the networks the project builds."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unetpp.nn.networks import build_model, variants
from unetpp.scoring.cost import count_flops


def _reference(module: torch.nn.Module, shape: tuple[int, ...]) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(shape))
    return int(counter.get_total_flops())


@pytest.mark.parametrize("arch", ["unetpp", "unet"])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_each_variant_counts_as_torch_flop_counter_does(arch: str, upsample: str) -> None:
    model = build_model(arch, in_channels=2, num_classes=3, widths=[4, 8, 16, 32, 64], upsample=upsample).eval()
    shape = (2, 2, 32, 48)
    for level, mode in variants(model):
        module = model.prune(level, mode)
        assert count_flops(module, shape) == _reference(module, shape) > 0, (level, mode)


def test_a_linear_layer_counts_its_multiply_adds() -> None:
    head = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, groups=1), torch.nn.Flatten(), torch.nn.Linear(5 * 6 * 6, 7))
    assert count_flops(head, (4, 3, 8, 8)) == _reference(head, (4, 3, 8, 8))
