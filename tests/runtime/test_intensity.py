"""The plan's intensity reading: blind to a camera's offset and gain, clipped where outliers would set the
scale, and strict about channel counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetpp.errors import UserError
from unetpp.runtime.geometry import Geometry, network_input
from unetpp.runtime.intensity import ChannelMismatch, Intensity


def test_other_channel_counts_are_refused() -> None:
    with pytest.raises(UserError, match="cannot be made from 3-channel images"):
        Intensity(3, 2)
    with pytest.raises(ChannelMismatch, match="3-channel image; expected 2 channels"):
        network_input(np.zeros((8, 8, 3), np.uint8), Geometry("whole", 8), Intensity(2, 2))


def test_the_reading_is_blind_to_offset_and_gain() -> None:
    """A 16-bit camera frame and the same frame stretched to 8 bits reach the network alike (z-score)."""
    frame = (33_000 + 300 * np.random.default_rng(0).random((32, 32, 1))).astype(np.uint16)
    lo, hi = frame.min(), frame.max()
    stretched = ((frame.astype(np.float64) - lo) * 255 / (hi - lo)).round().astype(np.uint8)
    gray = Intensity(1, 1)
    assert torch.allclose(gray.tensor(frame), gray.tensor(stretched), atol=0.02)


def test_clipping_keeps_hot_pixels_from_setting_the_scale() -> None:
    frame = (1_000 + 100 * np.random.default_rng(0).random((64, 64, 1))).astype(np.uint16)
    hot = frame.copy()
    hot[::16, ::16] = 65_535  # 16 hot pixels
    clipped = Intensity(1, 1, (0.5, 99.5))
    cold = torch.from_numpy(hot[..., 0] != 65_535)
    assert torch.allclose(clipped.tensor(hot)[0][cold], clipped.tensor(frame)[0][cold], atol=0.1)
    assert Intensity(1, 1).tensor(hot)[0][cold].std() < 0.2  # unclipped: the hot pixels take the variance


def test_a_checkpoint_carries_its_reading_and_older_ones_read_rgb() -> None:
    assert Intensity.of({"intensity": Intensity(2, 2, (0.5, 99.5)).as_dict()}, 2) == Intensity(2, 2, (0.5, 99.5))
    assert Intensity.of({}, 3) == Intensity(3, 3) and Intensity.of({}, 1) == Intensity(3, 1)
    with pytest.raises(UserError, match="its network takes 3"):
        Intensity.of({"intensity": Intensity(2, 2).as_dict()}, 3)
