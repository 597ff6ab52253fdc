"""The read-out: RLE round trip, boxes, the vertical cup-to-disc ratio on ellipses of known ratio, overlays."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from unetpp.runtime.readout import (
    anatomical,
    bbox,
    binarize,
    colour,
    describe_colours,
    masks_at,
    overlay_png,
    readout,
    rle_decode,
    rle_encode,
    vertical_cdr,
)


def _ellipse(size: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


@pytest.mark.parametrize("ratio", [0.2, 0.35, 0.5, 0.65, 0.8, 0.9])
@pytest.mark.parametrize("size", [128, 256])
def test_vertical_cdr_of_ellipses_with_a_known_ratio(ratio: float, size: int) -> None:
    ry = size * 0.12
    disc = _ellipse(size, size / 2, size / 2, ry, ry * 0.9)
    cup = _ellipse(size, size / 2 + 2, size / 2 - 3, ratio * ry, ratio * ry * 1.1) & disc
    assert vertical_cdr(disc, cup) == pytest.approx(ratio, abs=0.05)


def test_cdr_without_disc_or_cup() -> None:
    empty = np.zeros((8, 8), bool)
    disc = empty.copy()
    disc[2:6, 2:6] = True
    assert vertical_cdr(empty, empty) is None and vertical_cdr(disc, empty) == 0.0


def test_rle_round_trip_and_bbox() -> None:
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (5, 7), (64, 48)):
        for p in (0.0, 0.3, 1.0):
            mask = rng.random(shape) < p
            assert (rle_decode(rle_encode(mask)) == mask).all()
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    assert bbox(mask) == [3, 2, 8, 4] and bbox(np.zeros((3, 3), bool)) is None
    assert rle_encode(mask)["counts"][0] == 3 * 10 + 2  # column-major, starting with background


def test_readout_and_masks_at_the_input_size() -> None:
    probs = torch.zeros(2, 16, 16)
    probs[0, 4:12, 4:12] = 0.9
    probs[1, 6:10, 6:10] = 0.8
    masks = masks_at(probs, 64, 48)
    assert masks.shape == (2, 64, 48)
    out = readout(masks, ["disc", "cup"])
    assert out["size"] == [64, 48] and out["classes"]["disc"]["area"] == int(masks[0].sum())
    assert out["vertical_cdr"] == round(vertical_cdr(masks[0], masks[1]), 4) == pytest.approx(0.5, abs=0.1)
    assert "vertical_cdr" not in readout(masks[:1], ["vessel"])
    png = overlay_png(np.zeros((64, 48, 3), np.uint8), masks, ["disc", "cup"])
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.shape == (64, 48, 3) and tuple(img[32, 24]) != (0, 0, 0) and tuple(img[0, 0]) == (0, 0, 0)


def test_anatomical_keeps_one_disc_and_the_cup_inside_it() -> None:
    """Stray blobs would stretch the boxes the cup-to-disc ratio is read from."""
    disc, cup = _ellipse(64, 32, 30, 10, 10), _ellipse(64, 32, 30, 5, 5)
    disc[2:4, 2:4] = True  # a stray disc blob
    cup[60:63, 5:8] = True  # a stray cup blob, outside the disc
    disc_kept, cup_kept = anatomical(np.stack([disc, cup]), ["disc", "cup"])
    assert disc_kept.sum() == disc.sum() - 4 and not disc_kept[2:4, 2:4].any()
    assert cup_kept.sum() == cup.sum() - 9 and not (cup_kept & ~disc_kept).any()
    assert vertical_cdr(disc_kept, cup_kept) == pytest.approx(0.5, abs=0.05)
    other = np.stack([disc])
    assert anatomical(other, ["vessel"]) is other


def test_one_colour_table_names_the_classes() -> None:
    assert describe_colours(["disc", "cup"]) == "disc red, cup yellow"
    assert describe_colours(["nucleus", "membrane"]) == "nucleus blue, membrane green"
    assert colour("cup", 0) == (255, 255, 0)


def test_the_threshold_is_inclusive_everywhere() -> None:
    probs = torch.tensor([[[0.4999, 0.5, 0.75]]])
    assert binarize(probs).tolist() == [[[False, True, True]]]
    assert masks_at(probs, 1, 3).tolist() == [[[False, True, True]]]
