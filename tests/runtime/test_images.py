"""Decoding keeps what the instrument wrote: dtype, every data channel, channel-first TIFFs; alpha only
where the format declares it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetpp.runtime.images import UnsupportedImage, decode_image, display_rgb8, read_array

RNG = np.random.default_rng(0)


def _tiff(arr: np.ndarray, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue()


def test_channel_first_tiffs_become_channels_last() -> None:
    two = RNG.integers(0, 65535, (2, 40, 50), dtype=np.uint16)
    out = decode_image(_tiff(two))
    assert out.shape == (40, 50, 2) and out.dtype == np.uint16 and np.array_equal(out[..., 1], two[1])


@pytest.mark.parametrize("channels", [1, 2, 4, 7])
def test_every_data_channel_is_kept(channels: int) -> None:
    arr = RNG.integers(0, 4095, (30, 40, channels), dtype=np.uint16)
    stored = _tiff(arr, photometric="minisblack", planarconfig="contig") if channels > 1 else _tiff(arr[..., 0])
    out = decode_image(stored)
    assert out.shape == (30, 40, channels) and np.array_equal(out, arr)


def test_declared_alpha_is_dropped_and_undeclared_channels_kept() -> None:
    rgba = RNG.integers(0, 255, (20, 30, 4), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(png, format="PNG")
    assert np.array_equal(decode_image(png.getvalue()), rgba[..., :3])
    assert decode_image(_tiff(rgba, photometric="rgb", extrasamples=[2])).shape == (20, 30, 3)
    assert decode_image(_tiff(rgba, photometric="rgb", extrasamples=[0])).shape == (20, 30, 4)


def test_float_images_are_read_and_volumes_refused(tmp_path: Path) -> None:
    f = RNG.normal(0, 1, (16, 24)).astype(np.float32)
    (tmp_path / "f.tif").write_bytes(_tiff(f))
    assert np.array_equal(read_array(tmp_path / "f.tif")[..., 0], f)
    with pytest.raises(UnsupportedImage, match="expected a 2-D image with 1 to 16 channels"):
        decode_image(_tiff(np.zeros((3, 20, 30, 40), np.uint8)))


def test_display_stretches_deep_images_for_the_eye_only() -> None:
    frame = (33_000 + RNG.integers(0, 400, (32, 32, 1))).astype(np.uint16)
    shown = display_rgb8(frame)
    assert shown.shape == (32, 32, 3) and shown.dtype == np.uint8 and shown.max() >= 250 and shown.min() <= 5
    photo = RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(display_rgb8(photo), photo)
