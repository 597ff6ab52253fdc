"""Mask resizing: boundaries stay where the image's are, areas are kept, the cup stays in the disc."""

from __future__ import annotations

import numpy as np
import pytest

from unetpp.runtime.preprocess import resize_masks


def _ellipse(size: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] + 0.5  # pixel centres
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1


@pytest.mark.parametrize("centre", [(100.0, 90.0), (131.3, 77.8), (64.5, 170.25)])
def test_halving_keeps_area_and_position(centre: tuple[float, float]) -> None:
    """Nearest neighbour moves masks a quarter pixel; dropping every tie shrinks them ~2%."""
    cy, cx = centre
    disc, cup = _ellipse(256, cy, cx, 24.3, 21.7), _ellipse(256, cy + 2, cx - 1, 9.6, 8.8)
    small = resize_masks(np.stack([disc, cup]), 128)
    assert small.dtype == bool and small.shape == (2, 128, 128)
    assert small[0].sum() == pytest.approx(disc.sum() / 4, rel=0.01)
    (ys, xs), (sy, sx) = np.nonzero(small[0]), np.nonzero(disc)
    # centroids in continuous coordinates (pixel i covers [i, i + 1)); nearest neighbour is 0.25 off
    assert ys.mean() + 0.5 == pytest.approx((sy.mean() + 0.5) / 2, abs=0.1)
    assert xs.mean() + 0.5 == pytest.approx((sx.mean() + 0.5) / 2, abs=0.1)
    assert not (small[1] & ~small[0]).any()


def test_same_size_is_unchanged() -> None:
    masks = np.stack([_ellipse(32, 16, 16, 8, 6)])
    assert (resize_masks(masks, 32) == masks).all()
