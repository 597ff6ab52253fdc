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
    then turn that fixed offset into label noise. A cup inside its disc stays inside: the filter's
    weights are non-negative.
    """
    if masks.shape[1:] == (size, size):
        return masks.astype(bool)
    return np.stack(
        [np.asarray(Image.fromarray(m.astype(np.float32)).resize((size, size), Image.BILINEAR)) > 0.5
         for m in masks]
    )


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
