"""Decoding keeps what the instrument wrote: dtype, every data channel, channel-first TIFFs; alpha only
where the format declares it."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetpp.runtime.images import ImageTooLarge, UnsupportedImage, decode_image, display_rgb8, read_array

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


def test_axes_come_from_the_file_not_the_shape() -> None:
    """A planar 3 x 3 RGB is moved (its shape alone could not say); a 2-row contiguous RGB is not; pages of
    no declared meaning are channels; a declared volume or time series is refused."""
    planar = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
    assert decode_image(_tiff(planar, photometric="rgb", planarconfig="separate"))[0, 0].tolist() == [0, 9, 18]
    flat = RNG.integers(0, 255, (2, 50, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(_tiff(flat, photometric="rgb")), flat)
    assert decode_image(_tiff(np.zeros((2, 40, 50), np.uint16), imagej=True, metadata={"axes": "CYX"})).shape == (
        40,
        50,
        2,
    )
    with pytest.raises(UnsupportedImage, match="axes ZYX"):
        decode_image(_tiff(np.zeros((5, 40, 50), np.uint16), imagej=True, metadata={"axes": "ZYX"}))
    with pytest.raises(UnsupportedImage, match="40 channels"):
        decode_image(_tiff(np.zeros((40, 50, 60), np.uint16)))


def test_the_pixel_limit_is_read_from_the_header_of_a_stack() -> None:
    with pytest.raises(ImageTooLarge, match="300x200"):
        decode_image(_tiff(np.zeros((40, 200, 300), np.uint8)), max_pixels=50_000)


def test_declared_alpha_is_dropped_and_undeclared_channels_kept() -> None:
    rgba = RNG.integers(0, 255, (20, 30, 4), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(png, format="PNG")
    assert np.array_equal(decode_image(png.getvalue()), rgba[..., :3])
    assert decode_image(_tiff(rgba, photometric="rgb", extrasamples=[2])).shape == (20, 30, 3)
    assert decode_image(_tiff(rgba, photometric="rgb", extrasamples=[0])).shape == (20, 30, 4)
    five = RNG.integers(0, 255, (20, 30, 5), dtype=np.uint8)  # RGB, then alpha, then a data channel
    kept = decode_image(_tiff(five, photometric="rgb", extrasamples=[2, 0]))
    assert np.array_equal(kept, five[..., [0, 1, 2, 4]])
    palette = io.BytesIO()
    Image.fromarray(rgba[..., :3]).convert("P").save(palette, format="PNG", transparency=0)
    assert decode_image(palette.getvalue()).shape == (20, 30, 3)


def _png16(colour_type: int, channels: int) -> bytes:
    """A valid 16-bit PNG of 4 x 4 px written by hand (Pillow cannot write one with colour or alpha)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    samples = RNG.integers(0, 65535, (4, 4 * channels), dtype=np.uint16).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in samples)  # filter type 0, then the row's samples
    header = struct.pack(">IIBBBBB", 4, 4, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("colour_type", "channels"), [(2, 3), (4, 2), (6, 4)])
def test_a_16bit_png_with_colour_or_alpha_is_refused_rather_than_cut_to_8_bits(colour_type: int, channels: int) -> None:
    with pytest.raises(UnsupportedImage, match="16-bit PNG with colour or alpha"):
        decode_image(_png16(colour_type, channels))
    assert decode_image(_png16(0, 1)).dtype == np.uint16  # 16-bit gray is read in full


def test_float_images_are_read_and_volumes_refused(tmp_path: Path) -> None:
    f = RNG.normal(0, 1, (16, 24)).astype(np.float32)
    (tmp_path / "f.tif").write_bytes(_tiff(f))
    assert np.array_equal(read_array(tmp_path / "f.tif")[..., 0], f)
    with pytest.raises(UnsupportedImage, match="expected a 2-D image"):
        decode_image(_tiff(np.zeros((3, 20, 30, 40), np.uint8)))


def test_display_stretches_deep_images_for_the_eye_only() -> None:
    frame = (33_000 + RNG.integers(0, 400, (32, 32, 1))).astype(np.uint16)
    shown = display_rgb8(frame)
    assert shown.shape == (32, 32, 3) and shown.dtype == np.uint8 and shown.max() >= 250 and shown.min() <= 5
    photo = RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(display_rgb8(photo), photo)
    two = display_rgb8(RNG.integers(0, 4095, (8, 8, 2), dtype=np.uint16))  # red and green: both seen
    assert two.shape == (8, 8, 3) and two[..., 1].max() > 200 and two[..., 2].max() == 0
