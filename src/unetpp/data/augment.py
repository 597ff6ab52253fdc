"""Training augmentation: MONAI dictionary transforms move image and mask together, so a flip or an
affine never separates them. Works on [0, 1] images (`to_unit_tensor`); the dataset standardises after."""

from __future__ import annotations

from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

KEYS = ("image", "mask")


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
        ]
    )
    aug.set_random_state(seed=seed)
    return aug
