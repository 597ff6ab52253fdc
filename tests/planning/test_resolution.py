"""The resolution rule: the coarsest grid whose round trip keeps the training masks (Dice >= CEILING)."""

from __future__ import annotations

import numpy as np

from unetpp.planning.resolution import CEILING, ceiling, choose, entry
from unetpp.runtime.geometry import Geometry


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
    geometry, item = entry(0.5, masks, ["target"], 64, 512)
    assert geometry == Geometry("patch", 64, 0.5) and item["from"] == "params"
    assert 0 < item["tried"][0]["ceiling"]["target"] < 1
    assert entry("whole", masks, ["target"], 64, 512)[0] == Geometry("whole", 64)
