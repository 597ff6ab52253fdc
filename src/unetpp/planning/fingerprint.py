"""What the data is: counts per split, source sizes, channels and bit depth, intensities, and per class
the foreground fraction and the sizes of its objects (read from the manifest that ingest wrote)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unetpp.data.ingest import load_manifest


def _percentiles(values: np.ndarray, qs: tuple[float, ...]) -> dict[str, float]:
    if values.size == 0:
        return {f"p{q:g}": float("nan") for q in qs}
    return {f"p{q:g}": round(float(np.percentile(values, q)), 3) for q in qs}


def _diameters(rows: pd.DataFrame, name: str) -> list[np.ndarray]:
    """Per manifest row, the equivalent diameters of the class's objects (source pixels)."""
    column = rows[f"diameters_{name}"].fillna("")
    return [np.array(str(cell).split(), dtype=float) for cell in column]


def intensity_percentiles(prepared: Path, ids: list[str], limit: int = 64) -> dict[str, float]:
    """Percentiles of the prepared (8-bit) training images' pixels, over up to `limit` images."""
    pixels = []
    for sample in ids[:limit]:
        with np.load(prepared / "samples" / f"{sample}.npz") as npz:
            pixels.append(npz["image"].ravel())
    return _percentiles(np.concatenate(pixels) if pixels else np.array([]), (0.5, 50, 99.5))


def fingerprint(prepared: Path, class_names: list[str], image_size: int) -> dict[str, Any]:
    """The data's fingerprint, from `prepared`'s manifest and training images."""
    manifest = load_manifest(prepared)
    counted = manifest[manifest["error"].isna()]
    rows = counted[counted["split"] != "test"]  # the test split informs nothing but the test stage
    train = rows[rows["split"] == "train"]
    side = np.sqrt(rows["width"].to_numpy(float) * rows["height"].to_numpy(float))
    classes = {}
    for c in class_names:
        per_row = _diameters(rows, c)
        diameters = np.concatenate([*per_row, np.zeros(0)])
        # what is left of each object's diameter once its image is resized to image_size
        trained = np.concatenate([*(d * image_size / s for d, s in zip(per_row, side, strict=True)), np.zeros(0)])
        classes[c] = {
            "foreground_fraction": _percentiles(rows[f"fg_{c}"].to_numpy(float), (0, 50, 100)),
            "objects_per_image": round(diameters.size / max(len(rows), 1), 2),
            "diameter_source_px": _percentiles(diameters, (5, 50)),
            "diameter_trained_px": _percentiles(trained, (5, 50)),
        }
    return {
        "images": {s: int((counted["split"] == s).sum()) for s in ("train", "val", "test")},
        "source_size": {
            "width": _percentiles(rows["width"].to_numpy(float), (0, 50, 100)),
            "height": _percentiles(rows["height"].to_numpy(float), (0, 50, 100)),
        },
        "channels": sorted(int(c) for c in rows["channels"].unique()),
        "bit_depth": sorted(int(b) for b in rows["bits"].unique()),
        "intensity_8bit": intensity_percentiles(prepared, train["id"].astype(str).tolist()),
        "classes": classes,
    }
