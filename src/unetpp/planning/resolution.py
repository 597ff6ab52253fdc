"""The plan's resolution rule: the coarsest grid that keeps the masks, and a cascade where the image does not
show the smallest target's boundary on it.

1. **The masks' ceiling.** A model trained on a grid can at best return the ground truth resampled to that
   grid and brought back to the source size the way the handler does it (`resample_masks`, then
   `masks_at`). That round trip's Dice is the ceiling the resolution puts on any model, measured on the
   training masks per class. The rule takes the cheapest grid whose ceiling is at least `CEILING` for every
   class: the whole image at `data.image_size` when it passes, else patches of `data.image_size` px from the
   image resampled to source x k/8 (k = 1 .. 8; k = 8 is the source itself, whose ceiling is 1).
2. **What the image must show.** A model's boundary is good to about one pixel of its grid, and an object
   d px across whose boundary is one pixel off loses about 2/d of its Dice; so to lose at most 1 - `CEILING`
   the smallest target (each class's 5th-percentile object diameter) must span `SPAN_PX` = 2 / (1 - CEILING)
   = 40 px on the grid (2.5 cells of the network's deepest stride, 16: the bottleneck sees it too), or its
   full source size where the source shows less. Where the ceiling's grid leaves a class under that and the
   targets lie in one region of at most `REGION_SHARE` of the image side in every training image (a fundus
   disc, a lesion, one colony), the plan weighs a **cascade**: the whole image on the ceiling's grid finds
   the region, a second stage segments the region on a grid where the smallest target spans what it needs
   (`unetpp.runtime.region`). It is chosen when it costs fewer forward pixels than the patches that would
   show the same (the grid side squared, times the windows of the median image). Targets spread over the
   image (many small cells) keep the ceiling's grid, with its warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice

from unetpp.data.prepared import source_arrays
from unetpp.nn.networks import PAD_MULTIPLE
from unetpp.runtime.geometry import Geometry, resample_masks
from unetpp.runtime.readout import masks_at
from unetpp.runtime.region import Region, region_box

CEILING = 0.95  # a resolution may cost a perfect model at most 5% Dice on any class
SCALE_STEPS = 8  # patch scales k / 8 of the source
MAX_IMAGES = 32  # training images the ceiling is measured on
SPAN_PX = round(2 / (1 - CEILING))  # 40: what the smallest target must span on the grid (see above)
REGION_SHARE = 0.5  # a cascade only where the region's side is at most half the image's, in every training image
# The region: the union's box widened by a quarter of its extent on each side, so a first stage whose box is a
# few coarse pixels off (a 128-px grid over a 2,000-px photograph: 16 source px each) still holds the targets;
# training boxes move by up to a tenth of the side and resize by up to 15%, a first stage's errors and more.
MARGIN, SHIFT, SCALE = 0.25, 0.1, 0.15


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


Planned = tuple[Geometry, dict[str, Any], Region | None, dict[str, Any]]


def entry(
    params_scale: Any,
    masks: list[np.ndarray],
    diameters: dict[str, list[np.ndarray]],
    names: list[str],
    size: int,
    side: float,
) -> Planned:
    """The plan's `geometry` and `region` entries: chosen by `choose` and `cascade`, or set by `train.scale`
    (whole or a number: no cascade). `diameters`: per class, each training image's object diameters (source px)."""
    if params_scale != "auto":
        geometry = Geometry("whole", size) if params_scale == "whole" else Geometry("patch", size, float(params_scale))
        tried = [_tried(masks, names, geometry)]
        single = {"value": None, "from": "params", "rule": "train.scale is set: one stage"}
        chosen = {"value": geometry.as_dict(), "from": "params", "rule": "train.scale", "tried": tried}
        return geometry, chosen, None, single
    geometry, tried = choose(masks, names, size, side)
    rule = (
        f"the coarsest grid whose round trip (masks resampled to it and back, as served) keeps mean Dice >= "
        f"{CEILING} for every class on {len(masks)} training masks: whole image at {size} px, else patches of "
        f"{size} px at source x k/{SCALE_STEPS}"
    )
    region, weighed = cascade(masks, diameters, names, geometry, size)
    if region is not None:  # the first stage finds the region on the whole image
        geometry = Geometry("whole", size)
        rule += f"; a cascade's first stage: the whole image at {size} px (it finds the region)"
    return geometry, {"value": geometry.as_dict(), "from": "plan", "rule": rule, "tried": tried}, region, weighed


def _p5(values: list[float]) -> float:
    return float(np.percentile(values, 5)) if values else float("nan")


def smallest(per_image: list[np.ndarray]) -> float:
    """A class's smallest target: the p5 of its objects' diameters over the images (source px)."""
    return _p5([float(d) for ds in per_image for d in ds])


def needs(diameters: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """Per class, the span its smallest target must have on the grid: `SPAN_PX`, or its source size where that
    is less (no grid shows more than the source)."""
    return {c: min(float(SPAN_PX), smallest(per)) for c, per in diameters.items()}


def spans(diameters: dict[str, list[np.ndarray]], sides: list[float], geometry: Geometry) -> dict[str, float]:
    """Per class, the p5 diameter of its objects on `geometry`'s grid (the whole image: each at its own side)."""
    out = {}
    for c, per in diameters.items():
        scales = [geometry.size / s if geometry.mode == "whole" else geometry.scale for s in sides]
        out[c] = _p5([float(d) * k for ds, k in zip(per, scales, strict=True) for d in ds])
    return out


def _up(px: float) -> int:
    """Up to the networks' padding multiple."""
    return int(-(-px // PAD_MULTIPLE) * PAD_MULTIPLE)


def cascade(
    masks: list[np.ndarray], diameters: dict[str, list[np.ndarray]], names: list[str], geometry: Geometry, size: int
) -> tuple[Region | None, dict[str, Any]]:
    """The `region` entry: a `Region` where neither the ceiling's `geometry` nor the whole image shows a class's
    smallest target as it `needs` and a cascade (the whole image at `size`, then the region) costs fewer
    forward pixels than the one stage that shows it, else None; with the figures weighed (see the module)."""
    n = len(masks)
    per = {c: d[:n] for c, d in diameters.items()}
    sides = [float(np.sqrt(m.shape[1] * m.shape[2])) for m in masks]
    whole = Geometry("whole", size)
    need, have = needs(per), spans(per, sides, geometry)
    names = [c for c in names if np.isfinite(need[c])]  # a class with no object in these images asks nothing
    out: dict[str, Any] = {
        "value": None,
        "from": "plan",
        "rule": (
            f"a second stage on the targets' region where the grid leaves a class's p5 diameter under "
            f"min({SPAN_PX} px, its source size), the region (the classes' union widened by {MARGIN} of its extent "
            f"each side) is at most {REGION_SHARE} of the image side in every training image, and the two stages "
            f"cost fewer forward pixels than one that shows it"
        ),
        "needs_px": {c: round(v, 2) for c, v in need.items()},
        "spans_px": {c: round(v, 2) for c, v in have.items()},
    }
    shown = all(have[c] >= need[c] for c in names)
    if not names or (shown and geometry == whole):
        return None, out | {"why": "the whole image's grid shows every class's smallest target: one stage"}
    boxes = [region_box(m, MARGIN) for m in masks]
    if any(b is None for b in boxes):
        return None, out | {"why": "a training image has no target: no region to find there"}
    box_sides = [float(max(b.shape)) for b in boxes if b is not None]
    share = max(b / max(m.shape[1:]) for b, m in zip(box_sides, masks, strict=True))
    out["region_share_max"] = round(share, 3)
    if share > REGION_SHARE:
        return None, out | {"why": f"the targets' region spans up to {share:.2f} of the image side: one stage"}
    ratios = {c: _p5([float(min(ds)) / b for ds, b in zip(per[c], box_sides, strict=True) if len(ds)]) for c in names}
    wanted = max(need[c] / ratios[c] for c in names)
    grid = _up(min(wanted, float(np.percentile(box_sides, 95))))  # no finer than the source's region
    if shown:
        one = geometry
    else:  # the patches whose scale shows the smallest target
        scale = min(1.0, max(need[c] / smallest(per[c]) for c in names))
        one = Geometry("patch", size, -(-scale * SCALE_STEPS // 1) / SCALE_STEPS)
    median = sorted(masks, key=lambda m: m.shape[1] * m.shape[2])[n // 2].shape[1:]
    two, single = size**2 + grid**2, size**2 * one.windows(*median)
    label = "whole" if one.mode == "whole" else f"patches_x{one.scale:g}"
    out |= {
        "smallest_over_region_p5": {c: round(v, 4) for c, v in ratios.items()},
        "grid_px": {"wanted": round(wanted, 1), "chosen": grid},
        "forward_px": {"cascade": two, label: single},
    }
    if two >= single:
        return None, out | {"why": f"one stage ({label}) would show the targets for less: no cascade"}
    region = Region(grid, MARGIN, SHIFT, SCALE)
    return region, out | {"value": region.as_dict(), "why": "a cascade shows every class for the least"}
