"""The training dataset over data/prepared, and its DataLoader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import set_track_meta
from monai.transforms import Compose
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from unetpp.data.ingest import load_manifest
from unetpp.errors import UserError
from unetpp.params import DataParams
from unetpp.runtime.preprocess import standardize, to_model_input, to_unit_tensor

set_track_meta(False)  # plain tensors out of MONAI transforms: no metadata bookkeeping per sample


class PreparedDataset(Dataset):
    """(image, mask) pairs of one split: image (C, H, W) standardised, mask (classes, H, W) in [0, 1].

    Masks are binary except where augmentation resamples them: there they are interpolated
    bilinearly, so a boundary pixel carries the fraction of it that is inside (no staircase of
    nearest-neighbour labels half a pixel off the image's boundary).
    """

    def __init__(self, prepared: Path, split: str, *, augment: Compose | None = None) -> None:
        manifest = load_manifest(prepared)
        rows = manifest[(manifest["split"] == split) & manifest["error"].isna()]
        if rows.empty:
            raise UserError(f"{prepared}: no readable samples in split {split!r}; expected at least one")
        self.ids = rows["id"].astype(str).tolist()
        self.paths = [prepared / "samples" / f"{i}.npz" for i in self.ids]
        self.augment = augment  # `unetpp.data.augment.train_augmentation`, or None: as stored

    def reseed(self, seed: int) -> None:
        """Restart the augmentation stream: training reseeds per epoch, so a resumed run matches."""
        if self.augment is not None:
            self.augment.set_random_state(seed=seed)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with np.load(self.paths[index]) as npz:
            image, mask = npz["image"], npz["mask"]
        mask_t = torch.from_numpy(mask.astype(np.float32))
        if self.augment is None:
            return to_model_input(image), mask_t
        out = self.augment({"image": to_unit_tensor(image), "mask": mask_t})
        return standardize(torch.as_tensor(out["image"])), torch.as_tensor(out["mask"]).clamp(0.0, 1.0)


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
