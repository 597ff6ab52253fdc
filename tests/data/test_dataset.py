"""The training dataset: shapes, normalisation, and augmentation that keeps masks aligned and in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unetpp.data.augment import train_augmentation, training_transform
from unetpp.data.dataset import PreparedDataset, RegionDataset, make_loader
from unetpp.data.ingest import ingest
from unetpp.data.prepared import load_manifest, sha256, source_arrays
from unetpp.errors import UserError
from unetpp.params import Params
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.intensity import RGB
from unetpp.runtime.preprocess import resize_masks
from unetpp.runtime.region import Region, region_box


def _augment(seed: int):
    return train_augmentation(seed, flip_axes=(1,), translate_px=6)


WHOLE = Geometry("whole", 64)  # the fixture's data.image_size


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "prepared"
    params = Params.model_validate(
        {"data": {"image_size": 64, "synthetic": {"count": 10, "size": 96}}, "validate": {"min_train": 1}}
    )
    ingest(params, out)
    return out


def test_eval_items_are_standardised(prepared: Path) -> None:
    ds = PreparedDataset(prepared, "val", RGB, WHOLE)
    assert len(ds) == 2  # 10 images: 6 train, 2 val, 2 test (`rank_splits`)
    image, mask = ds[0]
    assert image.shape == (3, 64, 64) and mask.shape == (2, 64, 64)
    torch.testing.assert_close(image.mean(dim=(1, 2)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(image.std(dim=(1, 2), correction=0), torch.ones(3), atol=1e-3, rtol=0)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_augmentation_moves_image_and_mask_together(prepared: Path) -> None:
    ds = PreparedDataset(prepared, "train", RGB, WHOLE, augment=_augment(3))
    changed = 0
    plain = PreparedDataset(prepared, "train", RGB, WHOLE)
    for _ in range(3):
        for i in range(len(ds)):
            image, mask = ds[i]
            assert mask.min() >= 0 and mask.max() <= 1
            disc = mask[0] > 0.5
            assert image[0][disc].mean() > image[0][~disc].mean()  # the bright disc is still under its mask
            assert (mask[1] <= mask[0] + 1e-6).all()  # the cup still lies inside the disc
            changed += int(not torch.equal(mask, plain[i][1]))
    assert changed > 0


def test_resampled_masks_are_soft_only_at_boundaries(prepared: Path) -> None:
    """Bilinear resampling: partial pixels on the rim, none inside or far outside."""
    ds = PreparedDataset(prepared, "train", RGB, WHOLE, augment=_augment(3))
    masks = torch.stack([ds[i][1] for i in range(len(ds))])
    soft = (masks > 0) & (masks < 1)
    assert soft.any()
    pool = torch.nn.functional.max_pool2d
    near_inside = pool(masks, 5, stride=1, padding=2) >= 0.5
    near_outside = -pool(-masks, 5, stride=1, padding=2) < 0.5
    assert not (soft & ~(near_inside & near_outside)).any()  # every soft pixel is within 2 px of the rim


def test_augmentation_is_seeded(prepared: Path) -> None:
    a = [PreparedDataset(prepared, "train", RGB, WHOLE, augment=_augment(5))[i][0] for i in range(3)]
    b = [PreparedDataset(prepared, "train", RGB, WHOLE, augment=_augment(5))[i][0] for i in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_loader_batches(prepared: Path) -> None:
    params = Params().data
    loader = make_loader(
        PreparedDataset(prepared, "train", RGB, WHOLE, augment=_augment(0)), params, batch_size=4, shuffle=True
    )
    images, masks = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and masks.shape == (4, 2, 64, 64)


def test_missing_split_or_manifest(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="read by the `test` stage alone"):
        PreparedDataset(prepared, "test", RGB, WHOLE)
    with pytest.raises(UserError, match="run `unetpp ingest`"):
        PreparedDataset(tmp_path, "train", RGB, WHOLE)


def test_patch_plans_train_on_patches_and_validate_whole_resampled_images(prepared: Path) -> None:
    """Training items are 32-px patches of the 96-px sources resampled to 72 px, a third of them centred
    on foreground; validation items are the whole 72-px image, for sliding windows."""
    geometry = Geometry("patch", 32, 0.75)
    sampling = training_transform(0, (1,), 3, augment=False, patch=32)
    train = PreparedDataset(prepared, "train", RGB, geometry, augment=sampling)
    val = PreparedDataset(prepared, "val", RGB, geometry)
    image, mask = val[0]
    assert image.shape == (3, 72, 72) and mask.shape == (2, 72, 72)
    patches = [train[i % len(train)] for i in range(60)]
    assert all(x.shape == (3, 32, 32) and y.shape == (2, 32, 32) for x, y in patches)
    centred = sum(bool(y[:, 16, 16].any()) for _, y in patches) / len(patches)
    whole_share = float(torch.stack([val[i][1].any(0).float().mean() for i in range(len(val))]).mean())
    assert centred > whole_share  # oversampled: more patch centres on foreground than its share of the image
    augmented = training_transform(0, (1,), 3, augment=True, patch=32)
    assert PreparedDataset(prepared, "train", RGB, geometry, augment=augmented)[0][0].shape == (
        3,
        32,
        32,
    )


def test_a_geometry_feeds_its_own_grid_from_the_source(prepared: Path) -> None:
    """Every grid is resampled from the one stored source: the gate re-scores a champion at its own side, and
    at data.image_size the arrays are those ingest measured and hashed (what the test stage checks)."""
    other = PreparedDataset(prepared, "val", RGB, Geometry("whole", 32))
    assert other[0][0].shape == (3, 32, 32) and other[0][1].shape == (2, 32, 32)
    at_ingest = PreparedDataset(prepared, "val", RGB, WHOLE)
    row = load_manifest(prepared).set_index("id").loc[at_ingest.ids[0]]
    image, mask = at_ingest.arrays(0)
    assert sha256(image) == row["image_sha256"] and sha256(mask.astype(bool)) == row["mask_sha256"]


def test_a_cascades_region_stage_sees_the_box_around_the_targets_on_its_grid_jittered_per_epoch(
    prepared: Path,
) -> None:
    """Each sample's region is the union's square with its margin, moved and resized as a first stage errs, on
    the region's grid: one fixed draw for validation (whatever the epoch), and for training the same draw for
    the same epoch seed (a resumed run matches) and another for the next epoch."""
    region = Region(40, 0.25, 0.1, 0.15)
    val = RegionDataset(prepared, "val", RGB, region)
    image, mask = val[0]
    assert image.shape == (3, 40, 40) and mask.shape == (2, 40, 40) and mask[0].mean() > 0.2
    source = source_arrays(prepared, val.ids[0])[1]
    centred = resize_masks(region_box(source, region.margin).crop(source, (1, 2)), 40)
    assert not np.array_equal(val.arrays(0)[1], centred)  # not the box the truth centres
    val.reseed(7)
    assert np.array_equal(val[0][1].numpy(), mask.numpy())
    jittered = RegionDataset(prepared, "train", RGB, region, augment=_augment(0))
    jittered.reseed(5)
    first = jittered.sample(0)[1]
    jittered.reseed(5)
    assert np.array_equal(first, jittered.sample(0)[1])
    jittered.reseed(6)
    assert not np.array_equal(first, jittered.sample(0)[1]) and jittered[0][0].shape == (3, 40, 40)
    shares = jittered.foreground()
    assert 0.2 < shares[0] < 0.7 and 0 < shares[1] < shares[0]  # what the heads start at
