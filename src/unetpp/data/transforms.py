"""Image preprocessing shared by ingest, training and serving (one copy), and training augmentation.

MONAI dictionary transforms move image and mask together, so a flip or affine never separates them.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import (
    Compose,
    NormalizeIntensity,
    NormalizeIntensityd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from PIL import Image

KEYS = ("image", "mask")


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) uint8 to (size, size, C): bilinear, antialiased when shrinking."""
    if image.shape[:2] == (size, size):
        return image
    squeeze = image.shape[-1] == 1
    out = np.asarray(Image.fromarray(image[..., 0] if squeeze else image).resize((size, size), Image.BILINEAR))
    return out[..., None] if squeeze else out


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """(classes, h, w) bool to (classes, size, size) bool: the image's filter, then thresholded at 0.5.

    Resampled exactly like `resize_image`, each mask's boundary stays where the image's is. Nearest
    neighbour would put it up to half a source pixel off, to one side; horizontal flips in training
    then turn that fixed offset into label noise. A pixel whose centre falls exactly on the source
    boundary (value 0.5, common when halving) is a tie: ties go in on alternate pixels, since
    always-out shrank discs by ~2% of their area and always-in would grow them. A cup inside its
    disc stays inside: the filter's weights are non-negative and both masks break ties alike.
    """
    if masks.shape[1:] == (size, size):
        return masks.astype(bool)
    soft = np.stack(
        [np.asarray(Image.fromarray(m.astype(np.float32)).resize((size, size), Image.BILINEAR)) for m in masks]
    )
    alternate = np.add.outer(np.arange(size), np.arange(size)) % 2 == 1
    return (soft > 0.5 + 1e-6) | ((np.abs(soft - 0.5) <= 1e-6) & alternate)


_normalize = NormalizeIntensity(channel_wise=True)


def to_model_input(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 to a (C, H, W) float tensor, standardised per image and channel.

    Per-image standardisation absorbs the illumination and exposure differences between cameras.
    """
    chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
    return torch.as_tensor(_normalize(chw))


def train_augmentation(seed: int) -> Compose:
    """Flips, a small affine (rotation, scale, shift) and colour/gamma jitter, seeded."""
    aug = Compose(
        [
            RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1),
            RandAffined(
                keys=KEYS,
                prob=0.5,
                rotate_range=0.26,
                scale_range=0.1,
                translate_range=(12, 12),
                mode="bilinear",
                padding_mode="zeros",
            ),
            RandAdjustContrastd(keys="image", prob=0.4, gamma=(0.7, 1.5)),
            RandScaleIntensityd(keys="image", prob=0.4, factors=0.15, channel_wise=True),
            RandShiftIntensityd(keys="image", prob=0.4, offsets=0.05),
            NormalizeIntensityd(keys="image", channel_wise=True),
        ]
    )
    aug.set_random_state(seed=seed)
    return aug
