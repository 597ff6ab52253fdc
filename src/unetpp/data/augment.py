"""Training augmentation: MONAI dictionary transforms move image and mask together, so a flip or an
affine never separates them. Works on standardised images (the plan's `Intensity.tensor` of the whole
image, as served): zero padding is the image's mean, and the intensity jitter (gamma, contrast, brightness in
units of the image's standard deviation) is not undone by a later standardisation. nnU-Net also
augments after normalising."""

from __future__ import annotations

from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)

KEYS = ("image", "mask")


# A third of the patches centred on foreground, as nnU-Net samples them: small objects are seen every step.
FOREGROUND_PATCHES = (1, 2)  # (pos, neg) of MONAI's RandCropByPosNegLabeld


def patch_sampling(patch: int) -> list:
    """Pad to at least `patch` px, then one `patch` x `patch` crop, centred on foreground one time in three."""
    pos, neg = FOREGROUND_PATCHES
    return [
        SpatialPadd(keys=KEYS, spatial_size=(patch, patch)),
        RandCropByPosNegLabeld(
            keys=KEYS, label_key="mask", spatial_size=(patch, patch), pos=pos, neg=neg, num_samples=1
        ),
    ]


def train_augmentation(seed: int, flip_axes: tuple[int, ...], translate_px: int, patch: int | None = None) -> Compose:
    """With `patch`, a patch first (`patch_sampling`); then flips along `flip_axes` (1: left-right, 0:
    up-down; each on its own), a small affine (rotation up to 15 degrees, scale 0.9-1.1, shift up to
    `translate_px`) and colour/gamma jitter, seeded. The plan (`unetpp.planning.recipe`) says which
    flips, how far to shift and whether to take patches."""
    aug = Compose(
        [
            *(patch_sampling(patch) if patch is not None else ()),
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


def training_transform(
    seed: int, flip_axes: tuple[int, ...], translate_px: int, *, augment: bool, patch: int | None
) -> Compose | None:
    """What the training split goes through: `train_augmentation` when `augment`, else patch sampling
    alone (patch plans) or nothing."""
    if augment:
        return train_augmentation(seed, flip_axes, translate_px, patch)
    if patch is None:
        return None
    sampling = Compose(patch_sampling(patch))
    sampling.set_random_state(seed=seed)
    return sampling
