"""The region a cascade's second stage segments: the box around what the first stage found, with a margin.

A fundus disc, a colony or a lesion occupies one small part of a large image. The first stage finds it on a
coarse whole-image grid (`found_box`); the second segments the square box around the classes' union, widened
by a margin on every side (the first stage's error must not cut the target), on its own grid (`Region.size`);
its probabilities are pasted back at the source size, zero outside the box (`paste`). Training takes the same
boxes from the reference masks (`region_box`), moved and resized as a first stage errs (`jittered_box`:
nnU-Net's cascade corrupts its hint for the same reason), so the second stage has seen every box it will be
given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from unetpp.runtime.readout import bbox, binarize, largest_part, probabilities_at


@dataclass(frozen=True)
class Region:
    """A cascade's second stage, as the plan chose it: its grid side `size`, the box's `margin` (a share of the
    union's extent added on each side) and the training boxes' jitter (`shift` of the side along each axis,
    sides scaled within 1 +- `scale`)."""

    size: int
    margin: float
    shift: float
    scale: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, value: dict[str, Any] | None) -> Region | None:
        """A plan's or checkpoint's region entry (None: no cascade)."""
        if not value:
            return None
        return cls(int(value["size"]), float(value["margin"]), float(value["shift"]), float(value["scale"]))


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

    def shifted(self, dy: int, dx: int) -> Box:
        """The same box in the coordinates of an image whose origin lies at (`dy`, `dx`) of this one's."""
        return Box(self.top - dy, self.left - dx, self.bottom - dy, self.right - dx)


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


def _widened(top: float, left: float, bottom: float, right: float, margin: float, height: int, width: int) -> Box:
    """The square around the (half-open) extent, its side the larger extent widened by `margin` on each side."""
    side = max(bottom - top, right - left) * (1 + 2 * margin)
    return square_box((top + bottom) / 2, (left + right) / 2, side, height, width)


def region_box(masks: np.ndarray, margin: float) -> Box | None:
    """The square around the union of (classes, H, W) `masks`, its side the union's larger extent widened by
    `margin` of it on each side; None when the masks are empty."""
    union = masks.any(0)
    found = bbox(union)
    if found is None:
        return None
    return _widened(found[1], found[0], found[3] + 1, found[2] + 1, margin, *union.shape)


def found_box(probs: torch.Tensor, height: int, width: int, margin: float) -> Box | None:
    """The region of a (height, width) image from the first stage's (classes, h, w) probabilities on its grid:
    the largest connected part of the classes' union (one region: a stray speck must not stretch the box),
    its extent scaled to the source and widened by `margin`; None when the first stage found nothing."""
    union = largest_part(binarize(probs).any(0).cpu().numpy())
    found = bbox(union)
    if found is None:
        return None
    sy, sx = height / union.shape[0], width / union.shape[1]
    return _widened(found[1] * sy, found[0] * sx, (found[3] + 1) * sy, (found[2] + 1) * sx, margin, height, width)


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
