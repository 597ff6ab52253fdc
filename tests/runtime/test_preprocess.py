"""The one preprocessing: mask resizing keeps boundaries where the image's are, areas kept, the cup in
the disc; ingest + dataset and a request's `network_input` agree for gray and RGB models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.params import tiny_params
from unetpp.data.dataset import PreparedDataset
from unetpp.data.ingest import ingest
from unetpp.data.synthetic import generate_fundus
from unetpp.runtime.geometry import Geometry, network_input
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.preprocess import resize_image, resize_masks


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


@pytest.mark.parametrize("in_channels", [1, 3])
def test_the_dataset_sees_what_a_request_becomes(tmp_path, in_channels: int) -> None:
    """Ingest + the dataset, and `network_input` of the same decoded image, give the same tensor."""
    params = tiny_params({"model": {"in_channels": in_channels}, "data": {"synthetic": {"count": 6}}})
    ingest(params, tmp_path / "prepared")
    reading = Intensity(3, in_channels)
    geometry = Geometry("whole", params.data.image_size)
    dataset = PreparedDataset(tmp_path / "prepared", "val", reading, geometry)
    index = int(dataset.ids[0].rsplit("_", 1)[1])
    source = generate_fundus(index, params.data.synthetic.size, params.data.synthetic.seed).image
    x = network_input(source, geometry, reading)
    assert x.shape == (in_channels, 48, 48)
    assert torch.equal(dataset[0][0], x)


def test_resizing_keeps_the_source_dtype_and_values() -> None:
    """16-bit values are resampled in float and rounded back to 16 bits, never squeezed into 8."""
    frame = (33_000 + np.random.default_rng(0).integers(0, 400, (64, 48, 2))).astype(np.uint16)
    half = resize_image(frame, (32, 24))
    assert half.dtype == np.uint16 and half.shape == (32, 24, 2)
    assert abs(float(half.mean()) - float(frame.mean())) < 2 and len(np.unique(half)) > 100
    extreme = np.full((4, 4, 1), np.iinfo(np.int32).max, np.int32)
    assert resize_image(extreme, 2).dtype == np.float32 and resize_image(extreme, 2).min() > 2e9  # no wrap-around
