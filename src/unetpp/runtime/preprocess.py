"""The one preprocessing, shared by ingest, the training dataset, evaluation and the served handler.

An image goes (H, W, 3) uint8 --`prepare_image`--> (size, size, in_channels) uint8 (what ingest
stores) --`to_model_input`--> a standardised (in_channels, size, size) tensor (what the network
sees). `unetpp.runtime.geometry.network_input` is both steps on the plan's grid, for a request.
Masks are resized by `resize_masks` with the image's own filter, so their boundaries stay where the
image's are.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import NormalizeIntensity
from PIL import Image


def to_channels(image: np.ndarray, in_channels: int) -> np.ndarray:
    """(H, W, 3) uint8 to (H, W, in_channels): RGB kept for 3, luma (ITU-R 601, Pillow's "L") for 1."""
    if in_channels == 3:
        return image
    if in_channels == 1:
        return np.asarray(Image.fromarray(image).convert("L"))[..., None]
    raise ValueError(f"in_channels must be 1 (gray) or 3 (RGB); got {in_channels}")


Shape = int | tuple[int, int]  # a square side, or (height, width)


def _hw(size: Shape) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_image(image: np.ndarray, size: Shape) -> np.ndarray:
    """(H, W, C) uint8 to (size, size, C) or (*size, C): bilinear, antialiased when shrinking."""
    h, w = _hw(size)
    if image.shape[:2] == (h, w):
        return image
    squeeze = image.shape[-1] == 1
    out = np.asarray(Image.fromarray(image[..., 0] if squeeze else image).resize((w, h), Image.BILINEAR))
    return out[..., None] if squeeze else out


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


def prepare_image(image: np.ndarray, size: Shape, in_channels: int) -> np.ndarray:
    """(H, W, 3) uint8 to the stored form: (size, size, in_channels) or (*size, in_channels) uint8."""
    return resize_image(to_channels(image, in_channels), size)


def to_unit_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 to a (C, H, W) float tensor in [0, 1] (what augmentation works on)."""
    return torch.from_numpy(image.transpose(2, 0, 1).copy()).float() / 255.0  # a copy: decoded arrays are read-only


_normalize = NormalizeIntensity(channel_wise=True)


def standardize(chw: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per image and channel: absorbs exposure differences between cameras."""
    return torch.as_tensor(_normalize(chw))


def to_model_input(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 (as stored by ingest) to the network's standardised (C, H, W) float input."""
    return standardize(to_unit_tensor(image))
