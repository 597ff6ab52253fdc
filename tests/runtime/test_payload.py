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
from unetpp.runtime.images import bit_depth
from unetpp.runtime.payload import BadRequest, Limits, decode_request

LIMITS = Limits(ServeParams().max_bytes, ServeParams().max_pixels)  # what params.yaml serves with


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


RGB = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)


def test_accepted_forms_give_the_same_rgb8() -> None:
    raw = _png(RGB)
    tif = io.BytesIO()
    tifffile.imwrite(tif, RGB.astype(np.uint16) * 257)
    palette = io.BytesIO()
    Image.fromarray(RGB).convert("P").save(palette, format="PNG")
    for body, ctype in (
        (raw, "image/png"),
        (raw, "application/octet-stream"),
        (tif.getvalue(), "image/tiff"),
        (json.dumps({"image": base64.b64encode(raw).decode()}), "application/json"),
        ({"image": base64.b64encode(raw).decode()}, "application/json; charset=utf-8"),  # TorchServe decoded it
    ):
        out = decode_request(body, ctype, LIMITS)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
        assert np.array_equal(out, RGB)
    assert decode_request(palette.getvalue(), "image/png", LIMITS).shape == (20, 30, 3)
    gray16 = decode_request(_png(RGB[..., 0].astype(np.uint16) * 257), "image/png", LIMITS)
    assert np.array_equal(gray16[..., 0], RGB[..., 0])


@pytest.mark.parametrize(
    ("body", "ctype", "status", "words"),
    [
        (b"", "image/png", 400, "empty request body"),
        (None, "image/png", 400, "empty request body"),
        (b"\x89PNG garbage", "image/png", 400, "not a readable image"),
        (_png(RGB)[:60], "image/png", 400, "not a readable image"),
        (_png(np.zeros((300, 300), np.uint8)), "image/png", 413, "over the limit of 40000"),
        (_png(np.zeros((4, 4, 2), np.uint8), mode="LA"), "image/png", 415, "gray, RGB or RGBA"),
        ("{oops", "application/json", 400, "invalid JSON"),
        ('{"image": "@@@"}', "application/json", 400, "not valid base64"),
        ('["image"]', "application/json", 400, 'string field "image"'),
        (b"abc", "text/plain", 415, "unsupported Content-Type 'text/plain'"),
        (b"abc", None, 415, "unsupported Content-Type '(none)'"),
    ],
)
def test_refusals(body: object, ctype: str | None, status: int, words: str) -> None:
    with pytest.raises(BadRequest, match=None) as err:
        decode_request(body, ctype, Limits(max_bytes=10_000_000, max_pixels=40_000))
    assert err.value.status == status and words in str(err.value)


def test_byte_limit_is_checked_before_decoding() -> None:
    with pytest.raises(BadRequest) as err:
        decode_request(_png(RGB), "image/png", Limits(max_bytes=100, max_pixels=LIMITS.max_pixels))
    assert err.value.status == 413 and "over the limit of 100 bytes" in str(err.value)


@pytest.mark.parametrize("bits", [10, 12, 16])
def test_deep_images_keep_their_grey_levels(bits: int) -> None:
    """A 12-bit image (max 4095) in a 16-bit file is scaled by 4095, not 65535: 256 levels, not 16."""
    ramp = np.linspace(0, 2**bits - 1, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    out = decode_request(_png(ramp), "image/png", LIMITS)
    assert bit_depth(ramp) == bits and len(np.unique(out)) == 256 and out.max() == 255
