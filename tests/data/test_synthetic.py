"""The synthetic fundus generator: deterministic, and anatomically consistent."""

from __future__ import annotations

import numpy as np
import pytest

from unetpp.data.synthetic import generate_fundus, vertical_cup_to_disc


def test_same_seed_same_image_other_seed_other_image() -> None:
    a, b = generate_fundus(3, 96, seed=7), generate_fundus(3, 96, seed=7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, generate_fundus(3, 96, seed=8).image)
    assert not np.array_equal(a.image, generate_fundus(4, 96, seed=7).image)


@pytest.mark.parametrize("index", range(12))
def test_geometry(index: int) -> None:
    s = generate_fundus(index, 128, seed=0)
    disc, cup = s.masks
    assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
    assert s.masks.shape == (2, 128, 128) and s.masks.dtype == bool
    assert cup.any() and not (cup & ~disc).any()  # the cup lies inside the disc
    assert 0.15 <= s.cup_to_disc <= 0.95
    assert 0.005 < disc.mean() < 0.08
    assert s.image[:4, :4].max() < 20  # outside the circular field of view: black
    assert s.image[disc].mean() > s.image[~disc & (s.image.sum(-1) > 30)].mean()  # the disc is bright


def test_cup_to_disc_spans_the_clinical_range() -> None:
    ratios = [generate_fundus(i, 96, seed=0).cup_to_disc for i in range(40)]
    assert min(ratios) < 0.35 and max(ratios) > 0.75


def test_vertical_cup_to_disc() -> None:
    disc = np.zeros((20, 20), bool)
    disc[2:12, 5:15] = True
    cup = np.zeros_like(disc)
    cup[4:9, 8:11] = True
    assert vertical_cup_to_disc(disc, cup) == pytest.approx(0.5)
    assert vertical_cup_to_disc(disc, np.zeros_like(disc)) == 0.0
