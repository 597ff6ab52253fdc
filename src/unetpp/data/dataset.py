"""The training dataset over data/prepared, and its DataLoader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, set_track_meta
from monai.transforms import Compose
from torch.utils.data import Dataset, DistributedSampler

from unetpp.data.prepared import load_manifest, readable, source_arrays
from unetpp.errors import UserError
from unetpp.params import DataParams
from unetpp.runtime.geometry import Geometry, resample_image, resample_masks
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.region import Box, Region, jittered_box, region_box, square_box

set_track_meta(False)  # plain tensors out of MONAI transforms: no metadata bookkeeping per sample


class PreparedDataset(Dataset):
    """(image, mask) pairs of one split: image (in_channels, H, W) read by the plan's `intensity`, mask
    (classes, H, W) in [0, 1], on a grid (`geometry`) resampled from the source arrays ingest stored: the
    whole image at one side, or the resampled source (training takes patches of it through `augment`;
    validation gets it whole, for sliding windows).

    Masks are binary except where augmentation resamples them: there they are interpolated
    bilinearly, so a boundary pixel carries the fraction of it that is inside (no staircase of
    nearest-neighbour labels half a pixel off the image's boundary).
    """

    def __init__(
        self,
        prepared: Path,
        split: str,
        intensity: Intensity,
        geometry: Geometry,
        *,
        augment: Compose | None = None,
    ) -> None:
        if split == "test":
            raise UserError("the test split is read by the `test` stage alone, from its source files")
        manifest = load_manifest(prepared)
        rows = readable(manifest, split)
        if rows.empty:
            raise UserError(f"{prepared}: no readable samples in split {split!r}; expected at least one")
        self.ids = rows["id"].astype(str).tolist()
        self.prepared = prepared
        self.intensity = intensity
        self.augment = augment  # `unetpp.data.augment.train_augmentation`, or None: as stored
        # the source resampled to a checkpoint's or the plan's grid, so a model is fed what it was trained on
        self.geometry = geometry
        self._resampled: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def reseed(self, seed: int) -> None:
        """Restart the augmentation stream: training reseeds per epoch, so a resumed run matches."""
        if self.augment is not None:
            self.augment.set_random_state(seed=seed)

    def __len__(self) -> int:
        return len(self.ids)

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, C) image (source values) and (classes, H, W) uint8 masks on the network's grid (not augmented)."""
        if index not in self._resampled:  # resampled once: a large image costs more than a training step's share
            image, mask = source_arrays(self.prepared, self.ids[index])
            resampled = resample_masks(mask, self.geometry).astype(np.uint8)
            self._resampled[index] = resample_image(image, self.geometry), resampled
        return self._resampled[index]

    def foreground(self) -> list[float]:
        """Per class, its share of the pixels of the split's images on the grid (`arrays`)."""
        masks = [self.arrays(i)[1] for i in range(len(self))]
        return [float(np.mean([m[c].mean() for m in masks])) for c in range(masks[0].shape[0])]

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """What training step `index` is drawn from (before augmentation): `arrays`."""
        return self.arrays(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.sample(index) if self.augment is not None else self.arrays(index)
        mask_t = torch.from_numpy(mask.astype(np.float32))
        if self.augment is None:
            return self.intensity.tensor(image), mask_t
        # standardised whole, as served (a patch keeps the image's statistics), then augmented: zero padding
        # is the mean, as in sliding windows, and intensity jitter is not undone by a later standardisation
        out = self.augment({"image": self.intensity.tensor(image), "mask": mask_t})
        out = out[0] if isinstance(out, list) else out  # patch sampling returns a list of one
        return torch.as_tensor(out["image"]), torch.as_tensor(out["mask"]).clamp(0.0, 1.0)


FIXED_DRAW = 2**31  # the seed of validation's boxes (training's are the epoch seeds, far below it)


class RegionDataset(PreparedDataset):
    """A cascade's second stage's pairs: the region around each sample's reference masks (`region_box`) on the
    region's grid, moved and resized as a first stage errs (`jittered_box`). Training (with `augment`) draws a
    box per sample and epoch (seeded by the epoch's seed and the index, so a resumed run draws the same);
    validation and the learning guard (`arrays`) see one fixed draw per sample (`FIXED_DRAW`): boxes as served,
    not centred on the truth, on which a centred prior would score as no first stage lets it. Each sample keeps
    only the crop every draw lies in (`outer`): a 2,000-px photograph's region is a few hundred pixels. A sample
    without a target gets the centre square of half its shorter side, empty: what a first stage's false find
    shows."""

    def __init__(
        self,
        prepared: Path,
        split: str,
        intensity: Intensity,
        region: Region,
        *,
        augment: Compose | None = None,
    ) -> None:
        super().__init__(prepared, split, intensity, Geometry("whole", region.size), augment=augment)
        self.region = region
        self.seed = 0
        self._crops: dict[int, tuple[np.ndarray, np.ndarray, Box]] = {}

    def reseed(self, seed: int) -> None:
        super().reseed(seed)
        self.seed = seed

    @property
    def outer(self) -> float:
        """The cached crop's side over the region's: a box resized by 1 + scale and moved by shift of its side
        along each axis stays inside."""
        return 1 + self.region.scale + 2 * self.region.shift

    def crop(self, index: int) -> tuple[np.ndarray, np.ndarray, Box]:
        """The cached (h, w, C) image and (classes, h, w) masks around sample `index`'s region, and the region's
        box in them."""
        if index not in self._crops:
            image, mask = source_arrays(self.prepared, self.ids[index])
            height, width = image.shape[:2]
            box = region_box(mask, self.region.margin) or square_box(
                height / 2, width / 2, min(height, width) / 2, height, width
            )
            centre = ((box.top + box.bottom) / 2, (box.left + box.right) / 2)
            outer = square_box(*centre, max(box.shape) * self.outer, height, width)
            kept = outer.crop(image).copy(), outer.crop(mask, (1, 2)).copy()
            self._crops[index] = (*kept, box.shifted(outer.top, outer.left))
        return self._crops[index]

    def _on_grid(self, image: np.ndarray, mask: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
        cut = box.crop(mask, (1, 2))
        return resample_image(box.crop(image), self.geometry), resample_masks(cut, self.geometry).astype(np.uint8)

    def _drawn(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask, box = self.crop(index)
        r, rng = self.region, np.random.default_rng([seed, index])
        return self._on_grid(image, mask, jittered_box(box, r.shift, r.scale, *image.shape[:2], rng))

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample `index`'s fixed draw of its region on the region's grid (validation's, the guard's)."""
        if index not in self._resampled:
            self._resampled[index] = self._drawn(index, FIXED_DRAW)
        return self._resampled[index]

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """A jittered box of sample `index` on the region's grid: the epoch's draw."""
        return self._drawn(index, self.seed)


def make_loader(
    dataset: PreparedDataset,
    params: DataParams,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A DataLoader with workers from params, pinned memory on CUDA, and a DistributedSampler under DDP.

    Shuffling is seeded: call `set_epoch(loader, seed, epoch)` before each epoch.
    """
    sampler = DistributedSampler(dataset, world, rank, shuffle=shuffle, seed=seed) if world > 1 else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=params.workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed),
    )


def set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Make epoch `epoch`'s order and augmentation a function of (seed, epoch) alone."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif loader.generator is not None:
        loader.generator.manual_seed(seed + epoch)
    loader.dataset.reseed(seed + 1000 * epoch)
