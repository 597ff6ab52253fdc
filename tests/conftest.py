"""Shared fixtures: deterministic seeds, two threads, trained-looking batch norms."""

from __future__ import annotations

import pytest
import torch

from unetpp.model import NodeNet


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


def randomize_batchnorm(model: NodeNet) -> NodeNet:
    """Give batch norms non-trivial running statistics and affine terms, as after training."""
    gen = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
            mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
    return model
