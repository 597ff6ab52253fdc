"""How the network sees an image: the whole image resized, or blended sliding windows on a resampled grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetpp.runtime.forward import forward, mirrorings, segment
from unetpp.runtime.geometry import Geometry, network_input, resample_masks
from unetpp.runtime.intensity import Intensity


def test_the_grid_of_each_mode() -> None:
    assert Geometry("whole", 128).shape_of(300, 500) == (128, 128)
    assert Geometry("patch", 128, 0.5).shape_of(300, 501) == (150, 250)
    assert Geometry("whole", 128).windows(1000, 1000) == 1
    # 1024 px at source resolution: steps of 96 px (a quarter overlap), 11 windows a side
    assert Geometry("patch", 128, 1.0).windows(1024, 1024) == 121
    assert Geometry("patch", 128, 1.0).windows(100, 60) == 1  # padded up to one window


def test_checkpoints_without_a_geometry_are_whole_at_their_side() -> None:
    assert Geometry.of({"image_size": 96}) == Geometry("whole", 96)
    patch = Geometry("patch", 64, 0.625)
    assert Geometry.of({"image_size": 64, "geometry": patch.as_dict()}) == patch


def test_sliding_windows_blend_back_to_the_input() -> None:
    """A predictor that returns its window unchanged gives back the whole input: the Gaussian weights are
    normalised where windows overlap, and every pixel is covered, also at the padded edges."""
    x = torch.rand(1, 2, 150, 97)
    out = forward(lambda t: t * 1.0, x, Geometry("patch", 48, 1.0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)
    heads = forward(lambda t: [t, 2 * t], x, Geometry("patch", 48, 1.0))  # deep supervision: one map per head
    assert isinstance(heads, list) and len(heads) == 2
    torch.testing.assert_close(heads[1], 2 * x, atol=1e-5, rtol=1e-5)
    one = forward(lambda t: [t], x, Geometry("patch", 48, 1.0))  # U-Net: one head, still a list
    assert isinstance(one, list) and len(one) == 1 and one[0].shape == x.shape


def test_the_network_input_and_masks_share_the_grid() -> None:
    image = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    masks = np.zeros((1, 300, 200), bool)
    masks[0, 100:200, 50:150] = True
    g = Geometry("patch", 64, 0.5)
    x = network_input(image, g, Intensity(3, 1))
    assert x.shape == (1, 150, 100) and resample_masks(masks, g).shape == (1, 150, 100)
    assert resample_masks(masks, g)[0].sum() == pytest.approx(50 * 50, rel=0.05)


def test_mirroring_averages_every_combination_flipped_back() -> None:
    assert mirrorings(()) == [()] and mirrorings((1,)) == [(), (3,)]
    assert mirrorings((0, 1)) == [(), (2,), (3,), (2, 3)]
    ramp = torch.linspace(0, 1, 40)  # a module that is not mirror-symmetric: it weighs columns by a ramp
    module = torch.nn.Identity()
    module.forward = lambda t: torch.sigmoid(t[:, :1] * ramp)  # type: ignore[method-assign]
    x = torch.randn(2, 3, 24, 40)
    g = Geometry("whole", 24)
    plain = segment(module, x, g, channels_last=False)
    mirrored = segment(module, x, g, channels_last=False, flips=(1,))
    expected = (plain + segment(module, x.flip(3), g, channels_last=False).flip(3)) / 2
    torch.testing.assert_close(mirrored, expected)
    assert not torch.allclose(mirrored, plain)
