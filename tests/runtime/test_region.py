"""The cascade's region: the square around the classes' union with its margin, jittered boxes, pasting back."""

from __future__ import annotations

import numpy as np
import torch

from unetpp.runtime.region import Box, Region, found_box, jittered_box, paste, region_box, square_box


def _masks(height: int, width: int, top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((2, height, width), bool)
    m[0, top : top + side, left : left + side] = True
    m[1, top + 2 : top + side - 2, left + 2 : left + 4] = True  # inside the first class
    return m


def test_the_box_is_the_unions_square_widened_by_the_margin_on_each_side() -> None:
    box = region_box(_masks(300, 400, 100, 200, 40), margin=0.25)
    assert box == Box(90, 190, 150, 250) and box.shape == (60, 60)


def test_a_box_near_the_border_moves_inside_and_one_larger_than_the_image_is_cut_by_it() -> None:
    assert region_box(_masks(300, 400, 0, 360, 40), margin=0.25) == Box(0, 340, 60, 400)
    assert square_box(50, 50, 500, 100, 300) == Box(0, 0, 100, 300)


def test_empty_masks_have_no_region() -> None:
    assert region_box(np.zeros((2, 50, 50), bool), margin=0.25) is None


def test_jittered_boxes_stay_within_the_shift_and_scale_asked_and_inside_the_image() -> None:
    rng = np.random.default_rng(0)
    box = Box(100, 100, 200, 200)
    boxes = [jittered_box(box, 0.1, 0.2, 1000, 1000, rng) for _ in range(200)]
    sides = np.array([b.shape[0] for b in boxes])
    centres = np.array([((b.top + b.bottom) / 2, (b.left + b.right) / 2) for b in boxes])
    assert all(b.shape[0] == b.shape[1] for b in boxes) and 80 <= sides.min() < 90 and 110 < sides.max() <= 120
    assert np.abs(centres - 150).max() <= 10.5 and np.abs(centres - 150).max() > 8
    corner = [jittered_box(Box(0, 0, 90, 90), 0.5, 0.5, 100, 100, rng) for _ in range(50)]
    assert all(0 <= b.top < b.bottom <= 100 and 0 <= b.left < b.right <= 100 for b in corner)


def test_paste_puts_the_crops_probabilities_back_at_the_source_size_and_zero_outside() -> None:
    image = np.zeros((3, 120, 160), np.float32)
    image[:, 30:70, 50:90] = 0.25 + np.arange(3)[:, None, None] / 4
    box = Box(30, 50, 70, 90)
    crop = torch.from_numpy(box.crop(image, axes=(1, 2)).copy())
    back = paste(crop, box, 120, 160)
    assert back.shape == (3, 120, 160) and torch.equal(back, torch.from_numpy(image))
    small = torch.nn.functional.interpolate(crop[None], size=(20, 20), mode="bilinear")[0]  # the stage's grid
    assert torch.allclose(paste(small, box, 120, 160), torch.from_numpy(image), atol=1e-6)


def test_the_first_stages_region_is_its_largest_found_part_scaled_to_the_source_and_widened() -> None:
    """A 2-class map on a 32-px grid of a 320 x 640 image: a 4 x 4 cell part at rows 8-11, columns 16-19, and a
    stray speck; the box is the part's extent in source pixels (40 x 80 px, its larger side 80) widened by the
    margin, centred where the part is; nothing found: no region."""
    probs = torch.zeros((2, 32, 32))
    probs[0, 8:12, 16:20] = 0.9
    probs[1, 9:11, 17:19] = 0.8
    probs[0, 0, 0] = 0.9  # a speck: not the region
    box = found_box(probs, 320, 640, margin=0.25)
    assert box == square_box(100, 360, 80 * 1.5, 320, 640) and box.shape == (120, 120)
    assert found_box(torch.full((2, 32, 32), 0.1), 320, 640, margin=0.25) is None


def test_a_region_rule_round_trips_through_its_entry() -> None:
    region = Region(128, 0.25, 0.1, 0.15)
    assert Region.of(region.as_dict()) == region and Region.of(None) is None
