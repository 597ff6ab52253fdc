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


def train_augmentation(seed: int, flip_axes: tuple[int, ...], translate_px: int) -> Compose:
    """Flips along `flip_axes` (1: left-right, 0: up-down; each on its own), a small affine (rotation
    up to 15 degrees, scale 0.9-1.1, shift up to `translate_px`) and colour/gamma jitter, seeded.
    The plan (`unetpp.planning.recipe`) says which flips and how far to shift."""
    aug = Compose(
        [
            *(RandFlipd(keys=KEYS, prob=0.5, spatial_axis=axis) for axis in sorted(flip_axes, reverse=True)),
            RandAffined(
                keys=KEYS,
                prob=0.5,
                rotate_range=0.26,
                scale_range=0.1,
                translate_range=(translate_px, translate_px),
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
