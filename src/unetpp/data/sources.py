"""Where samples come from: the synthetic generator, the Drishti-GS1 layout, or a generic folder.

Each reader lists `RawSample`s without reading pixels; `RawSample.load()` reads them and raises
`ImageReadError` naming the file when it cannot, so one bad file becomes one flagged manifest row.
The source folder is only ever read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetpp.data.synthetic import generate_fundus
from unetpp.errors import UserError
from unetpp.params import DataParams
from unetpp.runtime.images import IMAGE_SUFFIXES, ImageReadError, bit_depth, read_array


@dataclass
class Loaded:
    """Pixels of one sample, as read, before resizing."""

    image: np.ndarray  # (H, W, C) as decoded: the source's values, dtype and channels (`decode_image`)
    masks: np.ndarray  # (classes, h, w) bool; h, w may differ from H, W (the gate flags it)
    channels: int  # data channels of the source image (declared alpha dropped)
    dtype: str  # of the source image
    mask_values: list[int]  # distinct values found in the mask files
    mask_valid: bool  # the values are those the source's mask convention allows
    cup_to_disc: float | None = None  # known only for generated images
    bits: int = 8  # the source image's bit depth (`unetpp.runtime.images.bit_depth`)


@dataclass
class RawSample:
    id: str
    split: str
    source_image: str
    load: Callable[[], Loaded] = field(repr=False)
    source_masks: list[str] = field(default_factory=list)
    group: str = ""  # samples of one group (a patient, say) share a split


SPLITS = ("train", "val", "test")


def group_of(stem: str, pattern: str | None, sample_id: str) -> str:
    """The group of a file: `pattern`'s first group (or whole match) in its stem; without a pattern, the
    sample alone (its id: equal stems in two split folders are two samples)."""
    if pattern is None:
        return sample_id
    found = re.search(pattern, stem)
    if found is None:
        raise UserError(f"{stem}: data.group_pattern {pattern!r} does not match this file name; expected every file to")
    return found.group(1) if found.groups() else found.group(0)


def split_of(group: str, fractions: dict[str, float], seed: int) -> str:
    """A group's split: a pure function of the group and the seed, so data that grow never move a sample.

    The group's SHA-256 (salted with the seed) read as a number u in [0, 1) falls into the splits of
    `fractions` in their order (u < f1: the first, u < f1 + f2: the second, ...), else train. Each
    group lands independently, so the shares are the fractions on average: a small set can get more or
    fewer (the data gate refuses a split with fewer than `validate.min_*` samples).
    """
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u, bound = int.from_bytes(digest[:8], "big") / 2**64, 0.0
    for split, share in fractions.items():
        bound += share
        if u < bound:
            return split
    return "train"


def _image(path: Path) -> tuple[np.ndarray, int, str, int]:
    """The image as decoded, (H, W, C), and its channels, dtype and bit depth."""
    arr = read_array(path)
    return arr, arr.shape[-1], str(arr.dtype), bit_depth(arr)


def synthetic_samples(p: DataParams) -> list[RawSample]:
    """`count` generated photographs, in test, val and train by `split_of` (`test_fraction`, `val_fraction`)."""
    cfg = p.synthetic
    ids = [f"synthetic_{i:04d}" for i in range(cfg.count)]
    fractions = {"test": p.test_fraction, "val": p.val_fraction}
    splits = [split_of(i, fractions, p.seed) for i in ids]

    def loader(i: int) -> Callable[[], Loaded]:
        def load() -> Loaded:
            s = generate_fundus(i, cfg.size, cfg.seed)
            return Loaded(s.image, s.masks, 3, "uint8", [0, 1], True, s.cup_to_disc)

        return load

    return [
        RawSample(ids[i], splits[i], f"synthetic:{cfg.seed}/{i}", loader(i), group=ids[i]) for i in range(cfg.count)
    ]


def drishti_samples(p: DataParams) -> list[RawSample]:
    """Drishti-GS1: `Test/` is the test split (the dataset's own); val is assigned from `Training/` (`split_of`:
    `val_fraction`, by `group_pattern`), the rest of it is train.

    Soft maps (the experts' average marking, 0-255) are thresholded at `drishti.threshold`
    (default 0.5: a pixel belongs to the disc/cup when at least half the experts marked it).
    """
    root = Path(p.path or "")
    if not (root / "Training" / "Images").is_dir():
        raise UserError(f"{root}: not a Drishti-GS1 folder (expected Training/Images and Test/Images)")
    samples = []
    for folder, split, gt_names in (("Training", "train", ("GT",)), ("Test", "test", ("Test_GT", "GT"))):
        images = root / folder / "Images"
        if not images.is_dir():
            continue
        gt_root = next(
            (root / folder / g for g in gt_names if (root / folder / g).is_dir()), root / folder / gt_names[0]
        )
        for img in sorted(q for q in images.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES):
            name = img.stem
            soft = gt_root / name / "SoftMap"
            masks = [soft / f"{name}_ODsegSoftmap.png", soft / f"{name}_cupsegSoftmap.png"]
            samples.append(
                RawSample(
                    name,
                    split,
                    str(img),
                    _drishti_loader(img, masks, p.drishti.threshold),
                    [str(m) for m in masks],
                    group_of(name, p.group_pattern, name),
                )
            )
    if not samples:
        raise UserError(f"{root}: no images under Training/Images or Test/Images")
    return _assign_missing(samples, p)


def _assign_missing(samples: list[RawSample], p: DataParams) -> list[RawSample]:
    """Assign each split that no folder provided (val, test) to train samples by their group's hash."""
    fractions = {"test": p.test_fraction, "val": p.val_fraction}
    missing = {s: f for s, f in fractions.items() if not any(x.split == s for x in samples)}
    if missing:
        for sample in (x for x in samples if x.split == "train"):
            sample.split = split_of(sample.group, missing, p.seed)
    return samples


def _drishti_loader(img: Path, masks: list[Path], threshold: float) -> Callable[[], Loaded]:
    def load() -> Loaded:
        image, channels, dtype, bits = _image(img)
        soft = [to_label(read_array(m), m) for m in masks]
        if soft[0].shape != soft[1].shape:
            raise ImageReadError(f"{masks[1]}: size {soft[1].shape} differs from {masks[0]} {soft[0].shape}")
        top = 65535 if max(int(s.max()) for s in soft) > 255 else 255
        binary = np.stack([s >= threshold * top for s in soft])
        return Loaded(image, binary, channels, dtype, [0, 1], True, bits=bits)

    return load


def folder_samples(p: DataParams) -> list[RawSample]:
    """`images/` + `masks/` matched by file stem, split by subfolders or by `split_of`.

    With `images/train`, `images/val`, `images/test` subfolders (and the same under `masks/`) those are
    the splits; a split with no subfolder (or all of them, without subfolders) is assigned from train by
    its fraction, whole groups at a time (`data.group_pattern`).
    """
    root = Path(p.path or "")
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise UserError(f"{root}: a folder source needs images/ and masks/ subfolders")
    found = [(d.name, d.name) for d in sorted((root / "images").iterdir()) if d.is_dir() and d.name in SPLITS]
    pairs: list[tuple[Path, Path, str]] = []
    for sub, split in found or [("", "train")]:
        img_dir, mask_dir = root / "images" / sub, root / "masks" / sub
        masks = (
            {m.stem: m for m in mask_dir.glob("*") if m.suffix.lower() in IMAGE_SUFFIXES} if mask_dir.is_dir() else {}
        )
        for img in sorted(q for q in img_dir.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES):
            pairs.append((img, masks.get(img.stem, mask_dir / f"{img.stem}.png"), split))
    if not pairs:
        raise UserError(f"{root}/images: no png, jpg or tif images")
    samples = [
        RawSample(
            f"{img.parent.name}_{img.stem}" if found else img.stem,
            split,
            str(img),
            _folder_loader(img, mask, p),
            [str(mask)],
            group_of(img.stem, p.group_pattern, f"{img.parent.name}_{img.stem}" if found else img.stem),
        )
        for img, mask, split in pairs
    ]
    return _assign_missing(samples, p)


def _folder_loader(img: Path, mask: Path, p: DataParams) -> Callable[[], Loaded]:
    def load() -> Loaded:
        image, channels, dtype, bits = _image(img)
        if not mask.is_file():
            raise ImageReadError(f"{mask}: mask not found for image {img.name} (masks are matched by file stem)")
        labels = to_label(read_array(mask), mask)
        values = sorted(int(v) for v in np.unique(labels))
        cfg = p.folder
        if cfg.mask_mode == "labels":
            allowed = {0} | {v for vs in cfg.label_values.values() for v in vs}
            masks = np.stack([np.isin(labels, cfg.label_values[c]) for c in cfg.label_values])
            valid = set(values) <= allowed
        elif cfg.mask_mode == "instance":
            masks, valid = (labels > 0)[None], True
        else:  # binary: 0 and one foreground value (1, 255 or 65535)
            masks = (labels > 0)[None]
            valid = any(set(values) <= {0, top} for top in (1, 255, 65535))
        return Loaded(image, masks, channels, dtype, values, valid, bits=bits)

    return load


def check_source(p: DataParams) -> Path:
    """The configured source path, refused with a clear error when it does not exist (DVC, which hashes it
    as ingest's dependency, would fail on it with no hint that the params are wrong)."""
    path = Path(p.path)
    if not path.exists():
        raise UserError(f"data.path {p.path}: no such file or folder; expected the {p.source} source's folder")
    return path


READERS: dict[str, Callable[[DataParams], list[RawSample]]] = {
    "synthetic": synthetic_samples,
    "drishti": drishti_samples,
    "folder": folder_samples,
}


def to_label(arr: np.ndarray, path: Path) -> np.ndarray:
    """A 2-D integer label map from a decoded mask file (colour masks: their first channel); a float mask
    with fractional values (a soft map) is refused, not truncated."""
    first = arr[..., 0]
    if first.dtype.kind == "f" and not np.array_equal(first, np.round(first)):
        raise ImageReadError(f"{path}: a mask with fractional values; expected integer labels (0 and 1, 255, ...)")
    return first.astype(np.int64)
