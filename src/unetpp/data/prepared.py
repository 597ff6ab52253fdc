"""The prepared data's one owner: the layout ingest writes under `data/prepared` and every way a later phase
reads it.

- `manifest.csv`: one row per source sample (id, split, group, source files, sizes, hashes, `error` for an
  unreadable one);
- `samples/<id>.npz`: each readable train and val sample stored once, as decoded from its source
  (`source_image` in the source's values, `source_mask` per class): every grid a phase needs is resampled
  from it (the dataset, the plan, the learning guard). The test split has none: the `test` stage reads it
  from its source files (`heldout_cases`), checked against the manifest's hash of it at `data.image_size`.

A *case* is a decoded source image (what a request decodes to) and its source masks: what every figure that
chooses or reports a model is scored on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from unetpp.errors import UserError
from unetpp.files import replacing

MANIFEST = "manifest.csv"
SAMPLES = "samples"


@dataclass
class Case:
    """One scored image: its id, the decoded (H, W, C) image (source values) and (classes, H, W) bool masks."""

    id: str
    image: np.ndarray
    masks: np.ndarray


def load_manifest(prepared: Path) -> pd.DataFrame:
    """The manifest of a prepared folder, with a clear error when ingest has not run."""
    path = prepared / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: no manifest; run `unetpp ingest` (or `dvc repro ingest`) first")
    # "001" stays "001"; floats read back bit for bit (pandas 2's default parser can lose the last digit, and a
    # rewritten manifest would then differ from the one DVC hashed)
    return pd.read_csv(path, keep_default_na=True, dtype={"id": str, "group": str}, float_precision="round_trip")


def readable(manifest: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """The manifest's rows ingest could read (of `split`, or of every split)."""
    ok = manifest["error"].isna()
    return manifest[ok if split is None else ok & (manifest["split"] == split)]


def split_ids(prepared: Path, split: str) -> list[str]:
    """The readable sample ids of `split`, in manifest order."""
    return readable(load_manifest(prepared), split)["id"].astype(str).tolist()


def sample_file(prepared: Path, sample_id: str) -> Path:
    """Where ingest keeps a train or val sample's arrays."""
    return prepared / SAMPLES / f"{sample_id}.npz"


def write_sample(prepared: Path, sample_id: str, image: np.ndarray, masks: np.ndarray) -> None:
    """Store a train or val sample's decoded (H, W, C) source image and (classes, H, W) bool masks: aside, then
    renamed, so a file linked from the previous ingest is never written into."""
    with replacing(sample_file(prepared, sample_id)) as tmp, tmp.open("wb") as fh:
        np.savez(fh, source_image=image, source_mask=masks.astype(np.uint8))


def source_arrays(prepared: Path, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A stored sample's decoded (H, W, C) source image and its (classes, H, W) bool source masks."""
    with np.load(sample_file(prepared, sample_id)) as npz:
        return npz["source_image"], npz["source_mask"].astype(bool)


def prepared_cases(prepared: Path, split: str) -> Iterator[Case]:
    """The readable samples of `split` as ingest decoded them from their source files (val, train)."""
    for sample_id in split_ids(prepared, split):
        yield Case(sample_id, *source_arrays(prepared, sample_id))


def sha256(arr: np.ndarray) -> str:
    """The hash the manifest keeps of a prepared array, its dtype and shape with its bytes (the test stage
    checks its sources against it)."""
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
