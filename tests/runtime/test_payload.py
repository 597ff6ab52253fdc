"""Request bodies to images: every accepted form, and each refusal's status and message."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetpp.params import ServeParams
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.payload import BadRequest, Limits, decode_request

LIMITS = Limits(ServeParams().max_bytes, ServeParams().max_pixels)  # what params.yaml serves with
COLOUR, GRAY = Intensity(3, 3), Intensity(1, 1)


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()


RGB = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)


def test_accepted_forms_give_the_values_as_stored() -> None:
    raw = _png(RGB)
    palette = io.BytesIO()
    Image.fromarray(RGB).convert("P").save(palette, format="PNG")
    for body, ctype in (
        (raw, "image/png"),
        (raw, "application/octet-stream"),
        (json.dumps({"image": base64.b64encode(raw).decode()}), "application/json"),
        ({"image": base64.b64encode(raw).decode()}, "application/json; charset=utf-8"),  # TorchServe decoded it
    ):
        out = decode_request(body, ctype, LIMITS, COLOUR)
        assert out.dtype == np.uint8 and np.array_equal(out, RGB)
    assert decode_request(palette.getvalue(), "image/png", LIMITS, COLOUR).shape == (20, 30, 3)
    tif = io.BytesIO()
    tifffile.imwrite(tif, RGB.astype(np.uint16) * 257)
    assert np.array_equal(decode_request(tif.getvalue(), "image/tiff", LIMITS, COLOUR), RGB.astype(np.uint16) * 257)
    gray16 = decode_request(_png(RGB[..., 0].astype(np.uint16) * 257), "image/png", LIMITS, GRAY)
    assert gray16.dtype == np.uint16 and np.array_equal(gray16[..., 0], RGB[..., 0].astype(np.uint16) * 257)


@pytest.mark.parametrize(
    ("body", "ctype", "status", "words"),
    [
        (b"", "image/png", 400, "empty request body"),
        (None, "image/png", 400, "empty request body"),
        (b"\x89PNG garbage", "image/png", 400, "not a readable image"),
        (_png(RGB)[:60], "image/png", 400, "not a readable image"),
        (_png(np.zeros((300, 300), np.uint8)), "image/png", 413, "over the limit of 40000"),
        (_tiff(np.zeros((40, 50, 60), np.uint16)), "image/tiff", 415, "expected a 2-D image with 1 to 16 channels"),
        (_tiff(np.zeros((2, 50, 60), np.uint16)), "image/tiff", 422, "2-channel image; expected 3 channels"),
        (_png(np.zeros((50, 60), np.uint8)), "image/png", 422, "1-channel image; expected 3 channels"),
        ("{oops", "application/json", 400, "invalid JSON"),
        ('{"image": "@@@"}', "application/json", 400, "not valid base64"),
        ('["image"]', "application/json", 400, 'string field "image"'),
        (b"abc", "text/plain", 415, "unsupported Content-Type 'text/plain'"),
        (b"abc", None, 415, "unsupported Content-Type '(none)'"),
    ],
)
def test_refusals(body: object, ctype: str | None, status: int, words: str) -> None:
    with pytest.raises(BadRequest, match=None) as err:
        decode_request(body, ctype, Limits(max_bytes=10_000_000, max_pixels=40_000), COLOUR)
    assert err.value.status == status and words in str(err.value)


def test_byte_limit_is_checked_before_decoding() -> None:
    with pytest.raises(BadRequest) as err:
        decode_request(_png(RGB), "image/png", Limits(max_bytes=100, max_pixels=LIMITS.max_pixels), COLOUR)
    assert err.value.status == 413 and "over the limit of 100 bytes" in str(err.value)


def test_a_16bit_frame_keeps_every_value() -> None:
    """A camera's frame in a narrow band near 2^15 reaches the model with its thousands of levels, not 16."""
    frame = (33_000 + np.random.default_rng(1).integers(0, 3_800, (64, 64))).astype(np.uint16)
    out = decode_request(_tiff(frame), "image/tiff", LIMITS, GRAY)
    assert out.dtype == np.uint16 and np.array_equal(out[..., 0], frame) and len(np.unique(out)) > 2_000
