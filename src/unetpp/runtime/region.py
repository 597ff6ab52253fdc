"""The region a cascade's second stage segments: the box around what the first stage found, with a margin.

A fundus disc, a colony or a lesion occupies one small part of a large image. The first stage finds it on a
coarse whole-image grid; the second segments the square box around the classes' union, widened by a margin on
every side (the first stage's error must not cut the target), at the resolution the plan asks; its
probabilities are pasted back at the source size, zero outside the box. Training takes the same boxes from the
reference masks, moved and resized as the first stage errs (nnU-Net's cascade corrupts its hint for the same
reason), so the second stage has seen every box it will be given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unetpp.runtime.readout import bbox, probabilities_at


@dataclass(frozen=True)
class Box:
    """Rows `top`:`bottom` and columns `left`:`right` of an image (half-open, source pixels)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def crop(self, array: np.ndarray, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
        """`array` cut to the box along its two image `axes` ((0, 1) for (H, W, C), (1, 2) for masks)."""
        index = [slice(None)] * array.ndim
        index[axes[0]], index[axes[1]] = slice(self.top, self.bottom), slice(self.left, self.right)
        return array[tuple(index)]


def square_box(cy: float, cx: float, side: float, height: int, width: int) -> Box:
    """The square of `side` centred on (`cy`, `cx`), moved inside the image where it fits, cut by it where not."""
    side = max(1, round(side))

    def span(centre: float, extent: int) -> tuple[int, int]:
        if side >= extent:
            return 0, extent
        start = min(max(0, round(centre - side / 2)), extent - side)
        return start, start + side

    (top, bottom), (left, right) = span(cy, height), span(cx, width)
    return Box(top, left, bottom, right)


def region_box(masks: np.ndarray, margin: float) -> Box | None:
    """The square around the union of (classes, H, W) `masks`, its side the union's larger extent widened by
    `margin` of it on each side; None when the masks are empty."""
    union = masks.any(0)
    found = bbox(union)
    if found is None:
        return None
    left, top, right, bottom = found[0], found[1], found[2] + 1, found[3] + 1  # inclusive to half-open
    side = max(bottom - top, right - left) * (1 + 2 * margin)
    return square_box((top + bottom) / 2, (left + right) / 2, side, *union.shape)


def jittered_box(box: Box, shift: float, scale: float, height: int, width: int, rng: np.random.Generator) -> Box:
    """`box` moved by up to `shift` of its side along each axis and resized by a factor in [1 - scale, 1 + scale]:
    the boxes a first stage that errs that much gives."""
    h, w = box.shape
    side = max(h, w) * rng.uniform(1 - scale, 1 + scale)
    cy = (box.top + box.bottom) / 2 + rng.uniform(-shift, shift) * h
    cx = (box.left + box.right) / 2 + rng.uniform(-shift, shift) * w
    return square_box(cy, cx, side, height, width)


def paste(probs: torch.Tensor, box: Box, height: int, width: int) -> torch.Tensor:
    """(C, h, w) probabilities of the box's crop to (C, `height`, `width`): resampled to the box, zero outside."""
    canvas = torch.zeros((probs.shape[0], height, width), dtype=torch.float32, device=probs.device)
    canvas[:, box.top : box.bottom, box.left : box.right] = probabilities_at(probs, *box.shape)
    return canvas
