"""A minimal optic disc + cup phantom for tests and benchmarks that need a learnable target."""

from __future__ import annotations

import torch


def disc_cup_phantom(size: int = 64, cup_ratio: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 3, size, size) reddish image with a bright disc and brighter cup, and (1, 2, size, size) masks.

    The cup (radius `cup_ratio` x the disc's) lies inside the disc, so both masks overlap.
    """
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size * 0.5) ** 2 + (xx - size * 0.55) ** 2).sqrt()
    disc = (r < size * 0.3).float()
    cup = (r < size * 0.3 * cup_ratio).float()
    img = torch.stack([0.6 + 0.3 * disc + 0.1 * cup, 0.2 + 0.5 * disc + 0.2 * cup, 0.1 + 0.2 * disc])
    img = img + 0.05 * torch.randn(3, size, size, generator=torch.Generator().manual_seed(seed))
    return img[None], torch.stack([disc, cup])[None]
