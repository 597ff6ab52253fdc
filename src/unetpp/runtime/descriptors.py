"""What the network's grid cannot show of an input, read from the decoded image at its own size: the guard's
second block of features (`unetpp.runtime.guard`).

The whole image is resampled to the grid: a photograph turned by 90 degrees reaches it squeezed back to the
same square, and noise at the source resolution is averaged away by the antialiased resize (a 2,000-px
photograph with Gaussian noise of twice its own spread arrives at 128 px with an eighth of it). Two numbers
keep what the resampling drops:

- `log_aspect`: log(height / width);
- `log_noise`: log of the finest-scale noise over the image's spread: Donoho's estimate (the median absolute
  diagonal difference of 2 x 2 blocks over 0.6745) on every `ROW_STEP`-th pair of rows of the channel mean.

Both are ratios, so bit depth, channel count and scale do not enter. They follow the pooled bottleneck
features in the vector the guard reads (`with_descriptors`); `BLOCKS` says where each block lies.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DESCRIPTORS = ("log_aspect", "log_noise")
ROW_STEP = 4  # a quarter of the row pairs: the median of a million differences does not need all of them
RESOLUTION = 0.05  # a change under 5% of either ratio (a resize, a re-encoding) is not a new instrument
NOISE_FLOOR = 1e-3  # of the spread: a noiseless image's log stays finite


def input_descriptors(image: np.ndarray) -> torch.Tensor:
    """(len(DESCRIPTORS),) float64: the decoded (H, W, C) image's `log_aspect` and `log_noise`."""
    h, w = image.shape[:2]
    rows = image[: h - h % 2].reshape(h // 2, 2, w, -1)[::ROW_STEP].astype(np.float64).mean(-1)
    spread = float(rows.std()) if rows.size else 0.0
    diagonal = (rows[:, 1, 1:] - rows[:, 1, :-1] - rows[:, 0, 1:] + rows[:, 0, :-1]) / 2
    sigma = float(np.median(np.abs(diagonal))) / 0.6745 if diagonal.size else 0.0
    tiny = np.finfo(np.float64).tiny
    noise = math.log((sigma + NOISE_FLOOR * spread + tiny) / (spread + tiny))
    return torch.tensor([math.log(h / w), noise], dtype=torch.float64)


def with_descriptors(pooled: torch.Tensor, image: np.ndarray) -> torch.Tensor:
    """The vector the guard reads of one image: its pooled bottleneck features (F,), then its descriptors."""
    return torch.cat([pooled, input_descriptors(image).to(pooled)])


def blocks(width: int) -> dict[str, tuple[slice, float]]:
    """Where each block lies in a guard vector of `width`, with the floor of its features' spread: the pooled
    bottleneck features (`network`, none), then the descriptors (`input`, `RESOLUTION`)."""
    split = width - len(DESCRIPTORS)
    return {"network": (slice(0, split), 0.0), "input": (slice(split, width), RESOLUTION)}
