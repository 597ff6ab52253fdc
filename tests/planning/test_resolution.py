"""The resolution rule: the coarsest grid whose round trip keeps the training masks (Dice >= CEILING), and a
cascade where that grid does not show the smallest target and the targets lie in one small region."""

from __future__ import annotations

import numpy as np

from unetpp.planning.resolution import CEILING, SPAN_PX, ceiling, choose, entry
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.region import region_box


def _disks(side: int, radius: float, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    mask = np.zeros((side, side), bool)
    for cy, cx in rng.uniform(radius + 2, side - radius - 2, (count, 2)):
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    return mask[None]


def test_large_objects_keep_the_whole_image() -> None:
    masks = [_disks(256, 40, 1, s) for s in range(4)]
    geometry, tried = choose(masks, ["disc"], 128, 256)
    assert geometry == Geometry("whole", 128) and len(tried) == 1
    assert tried[0]["ceiling"]["disc"] >= CEILING


def test_small_objects_in_large_images_get_patches_at_the_coarsest_scale_that_keeps_them() -> None:
    masks = [_disks(1024, 6, 15, s) for s in range(3)]
    geometry, tried = choose(masks, ["target"], 128, 1024)
    assert geometry.mode == "patch" and geometry.size == 128 and geometry.scale < 1
    assert tried[0]["mode"] == "whole" and tried[0]["ceiling"]["target"] < 0.7  # resizing erases them
    assert all(t["ceiling"]["target"] < CEILING for t in tried[:-1]) and tried[-1]["ceiling"]["target"] >= CEILING
    assert [t["scale"] for t in tried[1:]] == sorted(t["scale"] for t in tried[1:])  # coarse first
    assert ceiling(masks, Geometry("patch", 128, 1.0))[0] == 1.0  # the source itself loses nothing


def test_params_scale_overrides_and_is_measured() -> None:
    masks = [_disks(512, 5, 10)]
    objects = {"target": [np.full(10, 10.0)]}
    geometry, item, region, single = entry(0.5, masks, objects, ["target"], 64, 512)
    assert geometry == Geometry("patch", 64, 0.5) and item["from"] == "params"
    assert region is None and single["from"] == "params"
    assert 0 < item["tried"][0]["ceiling"]["target"] < 1
    assert entry("whole", masks, objects, ["target"], 64, 512)[0] == Geometry("whole", 64)


def _eyes(count: int, side: int, disc: float, cup: float) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """Disc + cup pairs (radii `disc` and `cup`) at random places of `side`-px images, and their diameters."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:side, :side]
    masks = []
    for cy, cx in rng.uniform(disc * 2, side - disc * 2, (count, 2)):
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        masks.append(np.stack([d2 < disc**2, d2 < cup**2]))
    return masks, {"disc": [np.array([2.0 * disc])] * count, "cup": [np.array([2.0 * cup])] * count}


def test_a_small_region_of_a_large_image_gets_a_cascade_whose_grid_shows_the_smallest_target() -> None:
    """A 1,024-px image, a disc a seventh of its width, a cup of 60 px: 7.5 px on the 128-px grid."""
    masks, objects = _eyes(6, 1024, 73, 30)
    geometry, _, region, weighed = entry("auto", masks, objects, ["disc", "cup"], 128, 1024)
    assert geometry == Geometry("whole", 128) and region is not None and weighed["value"] == region.as_dict()
    assert weighed["spans_px"]["cup"] < SPAN_PX == weighed["needs_px"]["cup"]
    box = max(region_box(m, region.margin).shape[0] for m in masks)
    assert region.size % 16 == 0 and region.size <= box + 15  # no finer than the source's region
    assert 60 * region.size / box >= SPAN_PX  # the cup spans what it needs on the region's grid
    assert weighed["forward_px"]["cascade"] < min(v for k, v in weighed["forward_px"].items() if k != "cascade")


def test_targets_the_grid_shows_or_spread_over_the_image_keep_one_stage() -> None:
    masks, objects = _eyes(4, 256, 60, 45)  # 45-px cups on a 128-px grid of a 256-px image
    assert entry("auto", masks, objects, ["disc", "cup"], 128, 256)[2] is None
    spread = [_disks(1024, 6, 15, s) for s in range(3)]
    sizes = {"target": [np.full(15, 12.0)] * 3}
    region, weighed = entry("auto", spread, sizes, ["target"], 128, 1024)[2:]
    assert region is None and "spans up to" in weighed["why"]
