"""Where samples come from: the synthetic generator, the Drishti-GS1 layout, or a generic folder.

Each reader lists `RawSample`s without reading pixels; `RawSample.load()` reads them and raises
`ImageReadError` naming the file when it cannot, so one bad file becomes one flagged manifest row.
A sample's split is its folder's; the splits no folder gives are drawn from train by ingest
(`unetpp.data.splits`). The source folder is only ever read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetpp.data.synthetic import generate_fundus
from unetpp.errors import UserError
from unetpp.params import DataParams, FolderParams
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
    background: int | None = None  # label maps: the one value no class names (`FolderParams.mask_mode`)


@dataclass
class RawSample:
    id: str
    split: str
    source_image: str
    load: Callable[[], Loaded] = field(repr=False)
    source_masks: list[str] = field(default_factory=list)
    group: str = ""  # samples of one group (a patient, say) share a split
    drawn: bool = False  # in train by its folder (or none): a split no folder gives may be drawn from it
    rule: str = ""  # how its split was decided (`unetpp.data.splits.assign_splits`)
    expert_cdrs: tuple[float, ...] = ()  # each expert's vertical cup-to-disc ratio, where the source gives them


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


def _image(path: Path) -> tuple[np.ndarray, int, str, int]:
    """The image as decoded, (H, W, C), and its channels, dtype and bit depth."""
    arr = read_array(path)
    return arr, arr.shape[-1], str(arr.dtype), bit_depth(arr)


def synthetic_samples(p: DataParams, class_names: list[str]) -> list[RawSample]:
    """`count` generated photographs (disc and cup), every split drawn."""
    cfg = p.synthetic
    ids = [f"synthetic_{i:04d}" for i in range(cfg.count)]

    def loader(i: int) -> Callable[[], Loaded]:
        def load() -> Loaded:
            s = generate_fundus(i, cfg.size, cfg.seed)
            return Loaded(s.image, s.masks, 3, "uint8", [0, 1], True, s.cup_to_disc)

        return load

    return [
        RawSample(ids[i], "train", f"synthetic:{cfg.seed}/{i}", loader(i), group=ids[i], drawn=True)
        for i in range(cfg.count)
    ]


def drishti_samples(p: DataParams, class_names: list[str]) -> list[RawSample]:
    """Drishti-GS1: `Test/` is the test split (the dataset's own); val is drawn from `Training/` (by
    `group_pattern`), the rest of it is train. Photographs anywhere under `Images/` (a download: `Images/ALL/`).

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
        for img in _image_files(images, nested=True):
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
                    drawn=split == "train",
                    expert_cdrs=_expert_cdrs(gt_root / name / f"{name}_cdrValues.txt"),
                )
            )
    if not samples:
        raise UserError(f"{root}: no png, jpg or tif images under Training/Images or Test/Images")
    return samples


def _expert_cdrs(path: Path) -> tuple[float, ...]:
    """Drishti-GS1's `<name>_cdrValues.txt`: each expert's vertical cup-to-disc ratio (none where absent)."""
    if not path.is_file():
        return ()
    try:
        return tuple(float(v) for v in path.read_text().split())
    except ValueError as err:
        raise UserError(f"{path}: expected the experts' cup-to-disc ratios as numbers ({err})") from err


def _marked(masks: list[Path], share: float) -> np.ndarray:
    """(classes, H, W) bool from Drishti-GS1 soft maps (the experts' average marking, 0 to their top value): the
    pixels at least `share` of the experts marked."""
    soft = [to_label(read_array(m), m) for m in masks]
    if soft[0].shape != soft[1].shape:
        raise ImageReadError(f"{masks[1]}: size {soft[1].shape} differs from {masks[0]} {soft[0].shape}")
    top = 65535 if max(int(s.max()) for s in soft) > 255 else 255
    return np.stack([s >= share * top for s in soft])


def consensus_masks(sample: RawSample) -> np.ndarray:
    """(classes, H, W) bool: the pixels every expert marked, the reference published baselines on Drishti-GS1
    score against."""
    return _marked([Path(m) for m in sample.source_masks], 1.0)


def _drishti_loader(img: Path, masks: list[Path], threshold: float) -> Callable[[], Loaded]:
    def load() -> Loaded:
        image, channels, dtype, bits = _image(img)
        return Loaded(image, _marked(masks, threshold), channels, dtype, [0, 1], True, bits=bits)

    return load


def mask_layout(root: Path, folder: FolderParams, class_names: list[str]) -> str:
    """How the folder's masks give classes (`FolderParams.mask_mode`; `auto`: `labels` when label values are
    set, `per_class` when `masks/` holds a folder named for each class, else `binary`)."""
    if folder.mask_mode != "auto":
        return folder.mask_mode
    if folder.label_values:
        return "labels"
    if all((root / "masks" / name).is_dir() for name in class_names):
        return "per_class"
    return "binary"


def _image_files(folder: Path, nested: bool = False) -> list[Path]:
    """The image files directly in `folder` (`nested`: anywhere under it), sorted; none when it does not exist."""
    files = (folder.rglob("*") if nested else folder.iterdir()) if folder.is_dir() else []
    return sorted(q for q in files if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)


def folder_samples(p: DataParams, class_names: list[str]) -> list[RawSample]:
    """`images/` + `masks/` matched by file stem, split by subfolders or drawn.

    With `images/train`, `images/val`, `images/test` subfolders (and the same under `masks/`) those are
    the splits; a split with no subfolder (or all of them, without subfolders) is drawn from train, whole
    groups at a time (`data.group_pattern`). Per-class masks (`mask_layout`): the mask of class c for
    `images/<sub>/<stem>.*` is `masks/<c>/<sub>/<stem>.*`.
    """
    root = Path(p.path or "")
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise UserError(f"{root}: a folder source needs images/ and masks/ subfolders")
    layout = mask_layout(root, p.folder, class_names)
    if layout == "binary" and len(class_names) != 1:
        raise UserError(
            f"{root}/masks: {len(class_names)} classes {class_names} need data.folder.label_values (one label map "
            f"per image) or a folder per class ({', '.join(f'masks/{c}/' for c in class_names)}); found neither"
        )
    mask_roots = [root / "masks" / c for c in class_names] if layout == "per_class" else [root / "masks"]
    found = [d.name for d in sorted((root / "images").iterdir()) if d.is_dir() and d.name in SPLITS]
    samples = []
    for sub in found or [""]:
        stems = [({m.stem: m for m in _image_files(folder / sub)}, folder / sub) for folder in mask_roots]
        for img in _image_files(root / "images" / sub):
            sample_id = f"{sub}_{img.stem}" if found else img.stem
            masks = [by_stem.get(img.stem, folder / f"{img.stem}.png") for by_stem, folder in stems]
            samples.append(
                RawSample(
                    sample_id,
                    sub or "train",
                    str(img),
                    _folder_loader(img, masks, layout, p.folder),
                    [str(m) for m in masks],
                    group_of(img.stem, p.group_pattern, sample_id),
                    drawn=(sub or "train") == "train",
                )
            )
    if not samples:
        raise UserError(f"{root}/images: no png, jpg or tif images")
    return samples


def _binary(labels: np.ndarray) -> tuple[np.ndarray, bool]:
    """A binary mask's foreground and whether its values are 0 and one foreground value (1, 255 or 65535)."""
    values = set(np.unique(labels).tolist())
    return labels > 0, any(values <= {0, top} for top in (1, 255, 65535))


def _folder_loader(img: Path, masks: list[Path], layout: str, cfg: FolderParams) -> Callable[[], Loaded]:
    def load() -> Loaded:
        image, channels, dtype, bits = _image(img)
        for mask in masks:
            if not mask.is_file():
                raise ImageReadError(f"{mask}: mask not found for image {img.name} (masks are matched by file stem)")
        maps = [to_label(read_array(m), m) for m in masks]
        for mask, other in zip(masks[1:], maps[1:], strict=True):
            if other.shape != maps[0].shape:
                raise ImageReadError(f"{mask}: size {other.shape} differs from {masks[0]} {maps[0].shape}")
        values = sorted(set().union(*(np.unique(m).tolist() for m in maps)))
        background = None
        if layout == "labels":  # the values no class names: one, the background (the same in every mask: the gate)
            others = sorted(set(values) - {v for vs in cfg.label_values.values() for v in vs})
            valid = len(others) <= 1 and cfg.background in ("auto", *others)
            background = others[0] if others else None
            stacked = np.stack([np.isin(maps[0], cfg.label_values[c]) for c in cfg.label_values])
        elif layout == "instance":
            stacked, valid = (maps[0] > 0)[None], True
        else:  # binary, or per_class: one binary mask per class
            pairs = [_binary(m) for m in maps]
            stacked, valid = np.stack([fg for fg, _ in pairs]), all(ok for _, ok in pairs)
        return Loaded(image, stacked, channels, dtype, values, valid, bits=bits, background=background)

    return load


def mask_reference(p: DataParams) -> str:
    """What the reference masks are, in words, for the figures scored against them (`test.json`, the report)."""
    if p.source == "drishti":
        t = p.drishti.threshold
        return f"the experts' soft maps at {t:g}: a pixel is in a class where at least {t:.0%} of the experts marked it"
    if p.source == "folder":
        return f"the folder's mask files (data.folder.mask_mode {p.folder.mask_mode})"
    return "the generator's exact masks"


def check_source(p: DataParams) -> Path:
    """The configured source path, refused with a clear error when it does not exist (DVC, which hashes it
    as ingest's dependency, would fail on it with no hint that the params are wrong)."""
    path = Path(p.path)
    if not path.exists():
        raise UserError(f"data.path {p.path}: no such file or folder; expected the {p.source} source's folder")
    return path


READERS: dict[str, Callable[[DataParams, list[str]], list[RawSample]]] = {
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
