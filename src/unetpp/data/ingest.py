"""The ingest stage: read the source, prepare arrays (fixed-size and at the source resolution) and a
manifest, gate, then swap in.

Everything is written to a staging folder beside `data/prepared` first. Only when the manifest
passes the data gate (`unetpp.validate`) does staging replace the old folder, so a failing ingest
leaves the previous prepared data exactly as it was, and the source folder is never written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from unetpp.data.sources import READERS, RawSample
from unetpp.errors import UserError
from unetpp.params import Params
from unetpp.runtime.images import ImageReadError
from unetpp.runtime.preprocess import prepare_image, resize_masks, to_channels

MANIFEST = "manifest.csv"


def object_diameters(mask: np.ndarray) -> list[float]:
    """Equivalent diameters (2 sqrt(area / pi)) of the mask's 8-connected objects, in its own pixels."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return sorted(float(2 * np.sqrt(a / np.pi)) for a in areas)


def sha256(arr: np.ndarray) -> str:
    """The hash the manifest keeps of a prepared array (the test stage checks its sources against it)."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def prepare_sample(raw: RawSample, params: Params, samples_dir: Path) -> dict[str, Any]:
    """Load, measure, resize and save one sample (test samples: measured for the gate, not saved); its
    manifest row (with `error` set if unreadable)."""
    row: dict[str, Any] = dict(
        id=raw.id,
        split=raw.split,
        group=raw.group,
        source_image=raw.source_image,
        source_masks=";".join(raw.source_masks),
        error=None,
    )
    try:
        loaded = raw.load()
    except ImageReadError as err:
        row["error"] = str(err)
        return row
    size, source_masks = params.data.image_size, loaded.masks
    image = prepare_image(loaded.image, size, params.model.in_channels)
    masks = resize_masks(source_masks, size)
    if raw.split != "test":  # test is scored from its source files by the `test` stage alone
        # the whole image at data.image_size, and the source resolution for a plan that trains on patches
        np.savez(
            samples_dir / f"{raw.id}.npz",
            image=image,
            mask=masks.astype(np.uint8),
            source_image=to_channels(loaded.image, params.model.in_channels),
            source_mask=source_masks.astype(np.uint8),
        )
    row.update(
        width=loaded.image.shape[1],
        height=loaded.image.shape[0],
        channels=loaded.channels,
        dtype=loaded.dtype,
        bits=loaded.bits,
        mask_width=loaded.masks.shape[2],
        mask_height=loaded.masks.shape[1],
        mask_values=",".join(map(str, loaded.mask_values[:16])),
        mask_valid=loaded.mask_valid,
        image_sha256=sha256(image),
        mask_sha256=sha256(masks),
        mean_intensity=float(image.mean()),
        std_intensity=float(image.std()),
        cup_to_disc=loaded.cup_to_disc,
    )
    for name, source in zip(params.model.class_names, loaded.masks, strict=True):
        row[f"fg_{name}"] = float(source.mean())  # at the source: small targets may vanish at image_size
        row[f"diameters_{name}"] = " ".join(f"{d:.1f}" for d in object_diameters(source))
    if params.fundus:
        cup, disc = masks[1], masks[0]
        row["cup_outside_disc"] = float((cup & ~disc).sum() / max(int(cup.sum()), 1))
    return row


def ingest(params: Params, out_dir: Path) -> pd.DataFrame:
    """Prepare the configured source into `out_dir`; raise `DataValidationError` (nothing replaced) if gated."""
    from unetpp.data.validate import validate_manifest

    samples = READERS[params.data.source](params.data)
    staging = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "samples").mkdir(parents=True)
    try:
        manifest = pd.DataFrame([prepare_sample(s, params, staging / "samples") for s in samples])
        manifest.to_csv(staging / MANIFEST, index=False)
        validate_manifest(manifest, params).raise_for_failure()
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def load_manifest(prepared: Path) -> pd.DataFrame:
    """The manifest of a prepared folder, with a clear error when ingest has not run."""
    path = prepared / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: no manifest; run `unetpp ingest` (or `dvc repro ingest`) first")
    return pd.read_csv(path, keep_default_na=True, dtype={"id": str, "group": str})  # "001" stays "001"
