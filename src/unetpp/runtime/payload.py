"""An HTTP request body to an image: raw bytes with a Content-Type, or JSON {"image": "<base64>"}.

Every refusal is a `BadRequest` with the HTTP status to answer and a message naming what was
wrong and what was expected; the serving handler turns it into that response.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from unetpp.errors import UserError
from unetpp.runtime.images import ImageReadError, ImageTooLarge, UnsupportedImage, decode_image
from unetpp.runtime.intensity import ChannelMismatch, Intensity

IMAGE_TYPES = ("image/png", "image/jpeg", "image/tiff", "application/octet-stream")
EXPECTED = 'image bytes (PNG, JPEG or TIFF; 8, 16 or 32 bit; any channel count) or JSON {"image": "<base64>"}'


class BadRequest(UserError):
    """A request the service refuses; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """The largest body and image a request may carry; the values come from `serve.*` in params.yaml."""

    max_bytes: int
    max_pixels: int


def decode_request(body: Any, content_type: str | None, limits: Limits, intensity: Intensity) -> np.ndarray:
    """The request's image as decoded, (H, W, C) with its own values, or `BadRequest` (422 for a channel count
    other than the model's training images had, naming both)."""
    return decode_body(request_bytes(body, content_type, limits), limits, intensity)


def request_bytes(body: Any, content_type: str | None, limits: Limits) -> bytes:
    """The image file a request carries (raw, or the base64 of a JSON body), or `BadRequest`."""
    if body is None or (isinstance(body, bytes | bytearray | str) and len(body) == 0):
        raise BadRequest(f"empty request body; expected {EXPECTED}")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if isinstance(body, dict | list) or ctype == "application/json":
        raw = _from_json(body)
    elif ctype.startswith("image/") or ctype in IMAGE_TYPES:
        raw = bytes(body) if not isinstance(body, str) else body.encode()
    else:
        raise BadRequest(f"unsupported Content-Type {ctype or '(none)'!r}; expected {EXPECTED}", 415)
    if len(raw) > limits.max_bytes:
        raise BadRequest(f"request body of {len(raw)} bytes is over the limit of {limits.max_bytes} bytes", 413)
    return raw


def decode_body(raw: bytes, limits: Limits, intensity: Intensity) -> np.ndarray:
    """An image file's bytes decoded, (H, W, C) with its own values, checked against the model's channels."""
    try:
        image = decode_image(raw, "request body", limits.max_pixels)
        intensity.check(image, "request body")
        return image
    except ChannelMismatch as err:
        raise BadRequest(str(err), 422) from None
    except ImageTooLarge as err:
        raise BadRequest(str(err), 413) from None
    except UnsupportedImage as err:
        raise BadRequest(str(err), 415) from None
    except ImageReadError as err:
        raise BadRequest(f"{err}; expected {EXPECTED}") from None


def _from_json(body: Any) -> bytes:
    if isinstance(body, bytes | bytearray | str):
        try:
            body = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BadRequest(f'invalid JSON body ({err}); expected {{"image": "<base64>"}}') from None
    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise BadRequest('JSON body must be an object with a string field "image" (the base64 of an image file)')
    try:
        return base64.b64decode(body["image"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRequest(f'field "image" is not valid base64 ({err})') from None
