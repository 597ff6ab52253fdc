"""`unetpp predict`: a small HTTP client of the served model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from unetpp.errors import UserError
from unetpp.params import Params
from unetpp.serving.server import Server

REFUSED = (400, 413, 415, 422)  # the handler refused the image itself (see unetpp.runtime.payload)
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


def predict(params: Params, image: Path, overlay: Path | None = None) -> tuple[dict[str, Any], Path]:
    """POST `image` to the model; returns the JSON answer and where the overlay PNG was written."""
    ctype = CONTENT_TYPES.get(image.suffix.lower())
    if ctype is None:
        raise UserError(f"{image}: expected a .png, .jpg or .tif image; got {image.suffix or 'no suffix'!r}")
    if not image.is_file():
        raise UserError(f"{image}: no such file")
    server = Server(params)
    url = f"{server.inference}/predictions/{server.name}"
    auth = f"Bearer {server.keys()['inference']}"
    body = image.read_bytes()
    answers = []
    for accept in ("application/json", "image/png"):
        resp = requests.post(
            url, data=body, headers={"Content-Type": ctype, "Accept": accept, "Authorization": auth}, timeout=120
        )
        if resp.status_code != 200:
            kind = UserError if resp.status_code in REFUSED else RuntimeError
            raise kind(f"{url} answered {resp.status_code}: {resp.text.strip()}")
        answers.append(resp)
    overlay = overlay or image.with_name(f"{image.stem}.overlay.png")
    overlay.write_bytes(answers[1].content)
    return answers[0].json(), overlay
