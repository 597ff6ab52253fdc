"""The plan's resolution rule: the coarsest grid that keeps the masks themselves.

A model trained on a grid can at best return the ground truth resampled to that grid and brought back
to the source size the way the handler does it (`resample_masks`, then `masks_at`). That round trip's
Dice is the ceiling the resolution puts on any model, measured on the training masks per class. The
plan takes the cheapest grid whose ceiling is at least `CEILING` for every class: the whole image at
`data.image_size` when it passes, else patches of `data.image_size` px from the image resampled to
source x k/8 (k = 1 .. 8; k = 8 is the source itself, whose ceiling is 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice

from unetpp.data.prepared import source_arrays
from unetpp.runtime.geometry import Geometry, resample_masks
from unetpp.runtime.readout import masks_at

CEILING = 0.95  # a resolution may cost a perfect model at most 5% Dice on any class
SCALE_STEPS = 8  # patch scales k / 8 of the source
MAX_IMAGES = 32  # training images the ceiling is measured on


def source_masks(prepared: Path, ids: list[str]) -> list[np.ndarray]:
    """(classes, H, W) bool source-resolution masks of up to `MAX_IMAGES` prepared samples."""
    out = []
    for sample in ids[:MAX_IMAGES]:
        out.append(source_arrays(prepared, sample)[1])
    return out


def ceiling(masks: list[np.ndarray], geometry: Geometry) -> np.ndarray:
    """Per class, the mean Dice of the masks resampled to `geometry` and back (as served) against themselves."""
    scores = []
    for m in masks:
        down = torch.from_numpy(resample_masks(m, geometry).astype(np.float32))
        back = torch.from_numpy(masks_at(down, *m.shape[1:]))[None].float()
        scores.append(compute_dice(back, torch.from_numpy(m)[None].float(), ignore_empty=False)[0])
    return torch.stack(scores).mean(0).numpy()


def candidates(size: int, side: float) -> list[Geometry]:
    """Whole at `size`, then patch scales k/8 whose grid holds more pixels than the whole image's, coarse first."""
    patches = [Geometry("patch", size, k / SCALE_STEPS) for k in range(1, SCALE_STEPS + 1)]
    return [Geometry("whole", size), *(g for g in patches if side * g.scale > size or g.scale == 1.0)]


def _tried(masks: list[np.ndarray], names: list[str], geometry: Geometry) -> dict[str, Any]:
    dice = ceiling(masks, geometry)
    return {**geometry.as_dict(), "ceiling": {c: round(float(d), 4) for c, d in zip(names, dice, strict=True)}}


def choose(masks: list[np.ndarray], names: list[str], size: int, side: float) -> tuple[Geometry, list[dict]]:
    """The coarsest candidate whose ceiling reaches `CEILING` for every class (else the source), and the ceilings
    tried on the way."""
    tried = []
    for g in candidates(size, side):
        tried.append(_tried(masks, names, g))
        if min(tried[-1]["ceiling"].values()) >= CEILING:
            return g, tried
    return g, tried  # the source itself (scale 1), the last candidate: its ceiling is 1


def entry(
    params_scale: Any, masks: list[np.ndarray], names: list[str], size: int, side: float
) -> tuple[Geometry, dict[str, Any]]:
    """The plan's `geometry` entry: chosen by `choose`, or set by `train.scale` (whole or a number)."""
    if params_scale == "auto":
        geometry, tried = choose(masks, names, size, side)
        rule = (
            f"the coarsest grid whose round trip (masks resampled to it and back, as served) keeps mean Dice >= "
            f"{CEILING} for every class on {len(masks)} training masks: whole image at {size} px, else patches of "
            f"{size} px at source x k/{SCALE_STEPS}"
        )
        return geometry, {"value": geometry.as_dict(), "from": "plan", "rule": rule, "tried": tried}
    geometry = Geometry("whole", size) if params_scale == "whole" else Geometry("patch", size, float(params_scale))
    tried = [_tried(masks, names, geometry)]
    return geometry, {"value": geometry.as_dict(), "from": "params", "rule": "train.scale", "tried": tried}
