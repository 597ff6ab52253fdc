"""The one resampling, shared by ingest, the training dataset, evaluation and the served handler.

An image as decoded, (H, W, C) in its source's dtype, is resampled to the plan's grid by `resize_image`
(values kept: 8/16-bit sources stay in their dtype, 32-bit ones become float32) and then read by the plan's
intensity rule (`unetpp.runtime.intensity.Intensity.tensor`) into the float tensor the network sees.
`unetpp.runtime.geometry.network_input` is both steps, for a request. Masks are resized by
`resize_masks` with the image's own filter, so their boundaries stay where the image's are.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

Shape = int | tuple[int, int]  # a square side, or (height, width)


def _hw(size: Shape) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_image(image: np.ndarray, size: Shape) -> np.ndarray:
    """(H, W, C) to (size, size, C) or (*size, C): bilinear, antialiased when shrinking, each channel in
    float32 (Pillow's "F" mode: 16-bit values are not squeezed into 8); 8- and 16-bit integer sources
    rounded back to their dtype (float32 holds them exactly), 32-bit ones kept in float32 (their dtype
    could not hold a rounded float32 at its extremes)."""
    h, w = _hw(size)
    if image.shape[:2] == (h, w):
        return image
    planes = [Image.fromarray(np.ascontiguousarray(image[..., c], np.float32)) for c in range(image.shape[-1])]
    out = np.stack([np.asarray(p.resize((w, h), Image.BILINEAR)) for p in planes], axis=-1)
    if image.dtype.kind in "ui" and image.dtype.itemsize <= 2:
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    return out


def resize_masks(masks: np.ndarray, size: Shape) -> np.ndarray:
    """(classes, h, w) bool to (classes, *size) bool: the image's filter, then thresholded at 0.5.

    Resampled exactly like `resize_image`, each mask's boundary stays where the image's is. Nearest
    neighbour would put it up to half a source pixel off, to one side; horizontal flips in training
    then turn that fixed offset into label noise. A pixel whose centre falls exactly on the source
    boundary (value 0.5, common when halving) is a tie: ties go in on alternate pixels, since
    always-out shrank discs by ~2% of their area and always-in would grow them. A cup inside its
    disc stays inside: the filter's weights are non-negative and both masks break ties alike.
    """
    h, w = _hw(size)
    if masks.shape[1:] == (h, w):
        return masks.astype(bool)
    soft = np.stack([np.asarray(Image.fromarray(m.astype(np.float32)).resize((w, h), Image.BILINEAR)) for m in masks])
    alternate = np.add.outer(np.arange(h), np.arange(w)) % 2 == 1
    return (soft > 0.5 + 1e-6) | ((np.abs(soft - 0.5) <= 1e-6) & alternate)
