"""The ingest stage: read the source, prepare arrays (fixed-size and at the source resolution) and a
manifest, gate, then swap in.

Everything is written to a staging folder beside `data/prepared` first. Only when the manifest
passes the data gate (`unetpp.validate`) does staging replace the old folder, so a failing ingest
leaves the previous prepared data exactly as it was, and the source folder is never written.
"""

from __future__ import annotations

import hashlib
import json
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
from unetpp.runtime.preprocess import prepare_image, resize_masks

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
            source_image=loaded.image,  # as a request decodes it: scored as served, resampled for patches
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


INGEST_RECORD = "ingest.json"  # beside the manifest: what this ingest prepared, reused and removed
# the code that turns a source file into a prepared sample: an edit to it invalidates every reuse
PREPARING_CODE = (
    "data/ingest.py",
    "data/sources.py",
    "data/synthetic.py",
    "runtime/images.py",
    "runtime/preprocess.py",
)
LEDGER_COLUMNS = ["id", "group", "split"]


def prepare_key(params: Params) -> str:
    """What a prepared sample depends on besides its source files: the preparing params and code.

    Split params (fractions, seed, group pattern) are not in it: they never change a sample's arrays; nor is
    `data.path`: a moved folder holds the same bytes, which each sample's own hash covers.
    """
    data = params.data.model_dump(exclude={"path", "val_fraction", "test_fraction", "group_pattern", "seed", "workers"})
    h = hashlib.sha256(json.dumps([data, params.model.in_channels, params.model.class_names], sort_keys=True).encode())
    package = Path(__file__).resolve().parents[1]
    for name in PREPARING_CODE:
        h.update((package / name).read_bytes())
    return h.hexdigest()


def source_sha256(raw: RawSample) -> str:
    """The hash of a sample's source files' bytes (a missing file, or a generated sample: its name)."""
    h = hashlib.sha256()
    for name in (raw.source_image, *raw.source_masks):
        path = Path(name)
        h.update(path.read_bytes() if path.is_file() else f"absent:{name}".encode())
    return h.hexdigest()


def source_stat(raw: RawSample) -> str:
    """Size and modification time (ns) of a sample's source files: when they equal the last ingest's, its
    hash is taken as unchanged without reading the bytes (DVC's state database makes the same bet)."""
    stats = (Path(name).stat() if Path(name).is_file() else None for name in (raw.source_image, *raw.source_masks))
    return ";".join("absent" if st is None else f"{st.st_size}:{st.st_mtime_ns}" for st in stats)


def read_ledger(path: Path | None) -> pd.DataFrame:
    """The splits ledger (`id`, `group`, `split`): every sample's split since it was first ingested."""
    if path is None or not path.is_file():
        return pd.DataFrame(columns=LEDGER_COLUMNS)
    ledger = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(ledger.columns) != LEDGER_COLUMNS:
        raise UserError(f"{path}: expected the columns {LEDGER_COLUMNS}; got {list(ledger.columns)}")
    return ledger


def _previous(out_dir: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Last ingest's readable rows by id, and the prepare key they were made with (none before a first)."""
    record = out_dir / INGEST_RECORD
    if not record.is_file():
        return {}, None
    manifest = load_manifest(out_dir)
    rows = {str(r["id"]): r for r in manifest[manifest["error"].isna()].to_dict("records")}
    return rows, json.loads(record.read_text()).get("prepare_key")


def _reuse(
    raw: RawSample, old: dict[str, Any] | None, digest: str, old_dir: Path, samples_dir: Path
) -> dict[str, Any] | None:
    """The old row of an unchanged sample, its arrays linked into staging (no copy); None when changed."""
    if old is None or old.get("source_sha256") != digest:
        return None
    if raw.split != "test":  # test samples have no arrays (ingest only measures them)
        stored = old_dir / "samples" / f"{raw.id}.npz"
        if not stored.is_file():
            return None
        os.link(stored, samples_dir / stored.name)
    return old | dict(
        split=raw.split, group=raw.group, source_image=raw.source_image, source_masks=";".join(raw.source_masks)
    )


def ingest(params: Params, out_dir: Path, ledger_path: Path | None = None) -> pd.DataFrame:
    """Prepare the configured source into `out_dir`; raise `DataValidationError` (nothing replaced) if gated.

    Incremental: a sample whose source files' bytes, preparing params and code are unchanged since the
    last ingest keeps its arrays and row (hard-linked), so a grown data set costs its new samples' work.
    With `ledger_path`, the gate refuses a sample whose split differs from the ledger's, and on success
    the ledger gains the new samples (a sample once assigned keeps its row, even while absent).
    """
    from unetpp.data.validate import validate_manifest

    samples = READERS[params.data.source](params.data)
    key, ledger = prepare_key(params), read_ledger(ledger_path)
    previous, old_key = _previous(out_dir)
    reusable = previous if old_key == key else {}
    assigned = dict(zip(ledger["id"], ledger["split"], strict=True))
    staging = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "samples").mkdir(parents=True)
    try:
        rows, status = [], []
        for raw in samples:
            old, stat = reusable.get(raw.id), source_stat(raw)
            digest = old["source_sha256"] if old and old.get("source_stat") == stat else source_sha256(raw)
            row = _reuse(raw, old, digest, out_dir, staging / "samples")
            status.append("reused" if row else "changed" if raw.id in previous else "new")
            row = (row or prepare_sample(raw, params, staging / "samples")) | {
                "source_sha256": digest,
                "source_stat": stat,
            }
            rows.append(row | {"ledger_split": assigned.get(raw.id)})
        manifest = pd.DataFrame(rows)
        manifest.to_csv(staging / MANIFEST, index=False)
        validate_manifest(manifest, params).raise_for_failure()
        record = ingest_record(manifest, status, sorted(set(previous) - {s.id for s in samples}), key)
        (staging / INGEST_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if ledger_path is not None:
        write_ledger(ledger, manifest, ledger_path)
    return manifest


def ingest_record(manifest: pd.DataFrame, status: list[str], removed: list[str], key: str) -> dict[str, Any]:
    """What this ingest did, per split: samples new since the last ingest, changed (re-prepared), reused."""
    frame = manifest.assign(status=status)
    counts = {s: {k: int(n) for k, n in g["split"].value_counts().items()} for s, g in frame.groupby("status")}
    return dict(
        prepare_key=key,
        samples=len(manifest),
        new=counts.get("new", {}),
        changed=counts.get("changed", {}),
        reused=counts.get("reused", {}),
        removed=removed,
    )


def write_ledger(ledger: pd.DataFrame, manifest: pd.DataFrame, path: Path) -> None:
    """The ledger with the manifest's new samples added (written aside, then renamed)."""
    known = set(ledger["id"])
    fresh = manifest[~manifest["id"].astype(str).isin(known)][LEDGER_COLUMNS].astype(str)
    out = pd.concat([ledger, fresh], ignore_index=True).sort_values("id", kind="stable")
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)


def load_manifest(prepared: Path) -> pd.DataFrame:
    """The manifest of a prepared folder, with a clear error when ingest has not run."""
    path = prepared / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: no manifest; run `unetpp ingest` (or `dvc repro ingest`) first")
    return pd.read_csv(path, keep_default_na=True, dtype={"id": str, "group": str})  # "001" stays "001"
