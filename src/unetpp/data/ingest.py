"""The ingest stage: read the source, prepare arrays (fixed-size and at the source resolution) and a
manifest, gate, then swap in.

Everything is written to a staging folder beside `data/prepared` first. Only when the manifest
passes the data gate (`unetpp.validate`) does staging replace the old folder, so a failing ingest
leaves the previous prepared data exactly as it was, and the source folder is never written.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from unetpp.data.ledger import read_ledger, with_ledger_splits, write_ledger
from unetpp.data.prepared import MANIFEST, SAMPLES, load_manifest, readable, sample_file, sha256, write_sample
from unetpp.data.sources import READERS, RawSample
from unetpp.data.splits import assign_splits
from unetpp.errors import UserError
from unetpp.files import write_json
from unetpp.params import Params
from unetpp.runtime.images import ImageReadError
from unetpp.runtime.preprocess import resize_image, resize_masks


def object_diameters(mask: np.ndarray) -> list[float]:
    """Equivalent diameters (2 sqrt(area / pi)) of the mask's 8-connected objects, in its own pixels."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return sorted(float(2 * np.sqrt(a / np.pi)) for a in areas)


def prepare_sample(raw: RawSample, params: Params, staging: Path) -> dict[str, Any]:
    """Load, measure (at the source and at data.image_size) and store one sample (test samples: measured for
    the gate, not stored); its manifest row (with `error` set if unreadable)."""
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
    image = resize_image(loaded.image, size)  # every channel, the source's values (8/16-bit: its dtype)
    masks = resize_masks(source_masks, size)
    if raw.split != "test":  # test is scored from its source files by the `test` stage alone
        write_sample(staging, raw.id, loaded.image, source_masks)  # as a request decodes it; grids resample it
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
        mask_background=loaded.background,
        image_sha256=sha256(image),
        mask_sha256=sha256(masks),
        mean_intensity=float(loaded.image.mean()),  # source units
        std_intensity=float(loaded.image.std()),
        cup_to_disc=loaded.cup_to_disc,
    )
    for name, source in zip(params.model.class_names, loaded.masks, strict=True):
        row[f"fg_{name}"] = float(source.mean())  # at the source: small targets may vanish at image_size
        row[f"diameters_{name}"] = " ".join(f"{d:.1f}" for d in object_diameters(source))
    if params.fundus:
        cup, disc = masks[1], masks[0]
        row["cup_outside_disc"] = float((cup & ~disc).sum() / max(int(cup.sum()), 1))
    return row


STATE = "ingest.json"  # beside the prepared folder (not in it: no later stage reads it, so it never retrains)
# the code that turns a source file into a prepared sample: an edit to it invalidates every reuse
PREPARING_CODE = (
    "data/ingest.py",
    "data/prepared.py",
    "data/sources.py",
    "data/synthetic.py",
    "runtime/images.py",
    "runtime/preprocess.py",
)
PREPARING_LIBRARIES = ("numpy", "pillow", "scipy", "tifffile")


def prepare_key(params: Params) -> str:
    """What a prepared sample depends on besides its source files: the preparing params, code and libraries.

    Split params (fractions, seed, group pattern) are not in it: they never change a sample's arrays; nor is
    `data.path`: a moved folder holds the same bytes, which each sample's own hash covers.
    """
    data = params.data.model_dump(exclude={"path", "val_fraction", "test_fraction", "group_pattern", "seed", "workers"})
    libraries = [metadata.version(name) for name in PREPARING_LIBRARIES]
    h = hashlib.sha256(json.dumps([data, params.model.class_names, libraries]).encode())
    package = Path(__file__).resolve().parents[1]
    for name in PREPARING_CODE:
        h.update((package / name).read_bytes())
    return h.hexdigest()


def _file_sha256(name: str) -> str:
    path = Path(name)
    return hashlib.sha256(path.read_bytes() if path.is_file() else f"absent:{name}".encode()).hexdigest()


def source_hashes(raw: RawSample) -> dict[str, str]:
    """The hashes of a sample's source files' bytes: all of them (`source_sha256`, what reuse compares) and
    the image's alone (`image_file_sha256`, what the ledger recognises a moved file by). A missing file,
    or a generated sample, hashes its name."""
    files = [_file_sha256(name) for name in (raw.source_image, *raw.source_masks)]
    return {"source_sha256": hashlib.sha256("".join(files).encode()).hexdigest(), "image_file_sha256": files[0]}


def source_stat(raw: RawSample) -> str:
    """Inode, size, modification and change times (ns) of a sample's source files: when they equal the
    last ingest's, its hashes are taken as unchanged without reading the bytes (DVC's state database makes
    the same bet; the change time catches a copy that kept the modification time)."""
    stats = (Path(name).stat() if Path(name).is_file() else None for name in (raw.source_image, *raw.source_masks))
    return ";".join(
        "absent" if st is None else f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}" for st in stats
    )


def _previous(out_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Last ingest's readable rows by id, and its state (prepare key, each sample's file stats and hashes)."""
    state_path = out_dir.parent / STATE
    if not (out_dir / MANIFEST).is_file() or not state_path.is_file():
        return {}, {}
    manifest = load_manifest(out_dir)
    rows = {str(r["id"]): r for r in readable(manifest).to_dict("records")}
    return rows, json.loads(state_path.read_text())


def _reuse(raw: RawSample, old: dict[str, Any] | None, hashes: dict[str, str], old_dir: Path, staging: Path) -> bool:
    """Link an unchanged sample's arrays into staging (no copy); False when it changed or has none."""
    if old is None or old.get("source_sha256") != hashes["source_sha256"]:
        return False
    if raw.split != "test":  # test samples have no arrays (ingest only measures them)
        stored = sample_file(old_dir, raw.id)
        if not stored.is_file():
            return False
        os.link(stored, sample_file(staging, raw.id))
    return True


def _unique_ids(samples: list[RawSample]) -> None:
    """Refuse two source files that would be one sample (e.g. eye1.png and eye1.jpg in one folder)."""
    seen: dict[str, str] = {}
    clashes = [
        f"{seen[s.id]} and {s.source_image}" for s in samples if seen.setdefault(s.id, s.source_image) != s.source_image
    ]
    if clashes:
        raise UserError(f"two source files give one sample id (ids are file stems): {'; '.join(clashes[:10])}")


@contextlib.contextmanager
def _imported_objects_frozen() -> Iterator[None]:
    """CPython's full collections re-traverse every object alive, the imported libraries' (Great
    Expectations, pandas) included, while ingest allocates a row per sample: `gc.freeze` spares the
    objects that exist at the start (a third of an ingest that reuses most samples, measured)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def ingest(params: Params, out_dir: Path, ledger_path: Path | None = None) -> pd.DataFrame:
    """Prepare the configured source into `out_dir` (`_ingest`); raise `DataValidationError` (nothing
    replaced) if gated."""
    with _imported_objects_frozen():
        return _ingest(params, out_dir, ledger_path)


def _ingest(params: Params, out_dir: Path, ledger_path: Path | None) -> pd.DataFrame:
    """Incremental: a sample whose source files' bytes, preparing params, code and libraries are unchanged
    since the last ingest keeps its arrays and row (hard-linked), so a grown data set costs its new
    samples' work; `ingest.json` beside `out_dir` keeps what that needs and what this ingest did. The
    manifest holds content only, so an ingest that changes no sample leaves `out_dir` byte for byte as it
    was (and nothing downstream re-runs). With `ledger_path`, the gate refuses a sample whose split differs
    from the ledger's, and on success the ledger gains the new samples.
    """
    from unetpp.data.validate import validate_manifest

    samples = READERS[params.data.source](params.data, params.model.class_names)
    _unique_ids(samples)
    key, ledger = prepare_key(params), read_ledger(ledger_path)
    assign_splits(samples, params.data, ledger)
    previous, state = _previous(out_dir)
    known = state.get("samples", {}) if state.get("prepare_key") == key else {}
    staging = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / SAMPLES).mkdir(parents=True)
    try:
        rows, status, files = [], [], {}
        for raw in samples:
            stat, seen = source_stat(raw), known.get(raw.id, {})
            hashes = seen["hashes"] if seen.get("stat") == stat else source_hashes(raw)
            reused = bool(known) and _reuse(raw, previous.get(raw.id), hashes, out_dir, staging)
            row = previous[raw.id] if reused else prepare_sample(raw, params, staging)
            row |= dict(split=raw.split, rule=raw.rule, group=raw.group, source_image=raw.source_image, **hashes)
            row["source_masks"] = ";".join(raw.source_masks)
            rows.append(row)
            status.append("reused" if reused else "changed" if raw.id in previous else "new")
            files[raw.id] = {"stat": stat, "hashes": hashes}
        manifest = pd.DataFrame(rows)
        manifest.to_csv(staging / MANIFEST, index=False)
        validate_manifest(with_ledger_splits(manifest, ledger), params).raise_for_failure()
        removed = sorted(set(previous) - {s.id for s in samples})
        state = dict(prepare_key=key, record=ingest_record(manifest, status, removed), samples=files)
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json(out_dir.parent / STATE, state, indent=1)
    if ledger_path is not None:
        write_ledger(ledger, manifest, ledger_path)
    return manifest


def ingest_record(manifest: pd.DataFrame, status: list[str], removed: list[str]) -> dict[str, Any]:
    """What this ingest did, per split: samples new since the last ingest, changed (re-prepared), reused,
    and the ids no longer in the source."""
    frame = manifest.assign(status=status)
    counts = {s: {k: int(n) for k, n in g["split"].value_counts().items()} for s, g in frame.groupby("status")}
    return dict(
        samples=len(manifest),
        new=counts.get("new", {}),
        changed=counts.get("changed", {}),
        reused=counts.get("reused", {}),
        removed=removed,
    )


def read_record(prepared: Path) -> dict[str, Any]:
    """The last ingest's record (`ingest_record`) from the state beside `prepared`."""
    return json.loads((prepared.parent / STATE).read_text())["record"]
