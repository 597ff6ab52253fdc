"""Inputs unlike the training data, generated from the test split's own images (never downloaded): what the
out-of-distribution flag must catch. Each keeps the source's dtype, size and channel count, so it reaches the
network exactly as a request would.

- `blank`, `saturated`: a constant frame at the dtype's floor / ceiling (float: the image's range);
- `noise`: uniform noise over the image's value range; `noisy`: the image plus Gaussian noise of twice its
  own standard deviation;
- `inverted`: the image's values mirrored in its range (a negative);
- `rotated`: turned by 90 degrees; `shrunk`: a third of its size, centred on a floor-valued canvas;
  `zoomed`: its central third enlarged to the full size;
- `spots`: another modality: a dark frame with a few bright round spots (fluorescence-like).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unetpp.runtime.preprocess import resize_image


def _range(image: np.ndarray) -> tuple[float, float]:
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return float(info.min), float(info.max)
    return float(image.min()), float(image.max())


def _cast(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    low, high = _range(like)
    return np.clip(values, low, high).astype(like.dtype)


def _shrunk(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    small = resize_image(image, (max(1, h // 3), max(1, w // 3)))
    canvas = np.full_like(image, _range(image)[0])
    top, left = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    return canvas


def _zoomed(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    centre = image[h // 3 : h - h // 3, w // 3 : w - w // 3]
    return resize_image(centre, (h, w))


def _spots(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w, c = image.shape
    low, high = _range(image)
    yy, xx = np.mgrid[:h, :w]
    frame = np.zeros((h, w), np.float64)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.02, 0.06) * min(h, w)
        frame = np.maximum(frame, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2)))
    values = low + 0.05 * (high - low) + 0.9 * (high - low) * frame
    out = np.full((h, w, c), low)
    out[..., min(1, c - 1)] = values  # one channel lit (the green of an RGB image)
    return _cast(out, image)


KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "blank": lambda im, rng: np.full_like(im, _range(im)[0]),
    "saturated": lambda im, rng: np.full_like(im, _range(im)[1]),
    "noise": lambda im, rng: _cast(rng.uniform(*_range(im), size=im.shape), im),
    "noisy": lambda im, rng: _cast(im + rng.normal(0, 2 * im.std(), size=im.shape), im),
    "inverted": lambda im, rng: _cast(float(im.min()) + float(im.max()) - im.astype(np.float64), im),
    "rotated": lambda im, rng: np.ascontiguousarray(np.rot90(im)),
    "shrunk": _shrunk,
    "zoomed": _zoomed,
    "spots": _spots,
}


def foreign(image: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """`image` (H, W, C) made into a foreign input of `kind` (see the module doc)."""
    return KINDS[kind](image, np.random.default_rng(seed))
