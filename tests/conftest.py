"""Shared fixtures: deterministic seeds, two threads, and a generated disc + cup image."""

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


def disc_cup_sample(size: int = 64, cup_ratio: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 3, size, size) image of a bright disc with a brighter cup, and its (1, 2, size, size) masks."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size * 0.5) ** 2 + (xx - size * 0.55) ** 2).sqrt()
    disc = (r < size * 0.3).float()
    cup = (r < size * 0.3 * cup_ratio).float()
    img = torch.stack([0.6 + 0.3 * disc + 0.1 * cup, 0.2 + 0.5 * disc + 0.2 * cup, 0.1 + 0.2 * disc])
    img = img + 0.05 * torch.randn(3, size, size, generator=torch.Generator().manual_seed(2))
    return img[None], torch.stack([disc, cup])[None]
