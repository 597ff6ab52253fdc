"""What the data is: counts per split, source sizes, channels, dtype and bit depth, intensities per channel
in the source's units, and per class
the foreground fraction and the sizes of its objects (read from the manifest that ingest wrote)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unetpp.data.prepared import load_manifest, readable, source_arrays


def _percentiles(values: np.ndarray, qs: tuple[float, ...]) -> dict[str, float]:
    if values.size == 0:
        return {f"p{q:g}": float("nan") for q in qs}
    return {f"p{q:g}": round(float(np.percentile(values, q)), 3) for q in qs}


def diameters(rows: pd.DataFrame, name: str) -> list[np.ndarray]:
    """Per manifest row, the equivalent diameters of the class's objects (source pixels)."""
    column = rows[f"diameters_{name}"].fillna("")
    return [np.array(str(cell).split(), dtype=float) for cell in column]


PIXELS_PER_IMAGE = 1 << 18  # an image's pixels are subsampled (evenly) to at most this many per channel


def intensity(prepared: Path, ids: list[str], limit: int = 64) -> list[dict[str, float]]:
    """Per channel, in the source's units, over up to `limit` training images as decoded: percentiles of the
    pooled pixels, and `outlier_tail`: per image, how far its extreme pixels lie beyond its 0.5th/99.5th
    percentiles in units of the span between them (hot pixels or saturated specks: tens; none: under 1),
    the median over images."""
    pooled: list[list[np.ndarray]] = []
    tails: list[list[float]] = []
    for sample in ids[:limit]:
        image = source_arrays(prepared, sample)[0]
        for c in range(image.shape[-1]):
            if c == len(pooled):
                pooled.append([])
                tails.append([])
            channel = image[..., c]
            values = channel.ravel()[:: max(1, channel.size // PIXELS_PER_IMAGE)].astype(np.float64)
            lo, hi = np.percentile(values, (0.5, 99.5))  # the extremes from every pixel: hot pixels are few
            tails[c].append(max(float(channel.max()) - hi, lo - float(channel.min())) / max(hi - lo, 1e-12))
            pooled[c].append(values)
    out = []
    for values, tail in zip(pooled, tails, strict=True):
        every = np.concatenate(values)
        out.append(
            {
                **_percentiles(every, (0.5, 50, 99.5)),
                "mean": round(float(every.mean()), 3),
                "std": round(float(every.std()), 3),
                "outlier_tail": round(float(np.median(tail)), 3),
            }
        )
    return out


def fingerprint(prepared: Path, class_names: list[str], image_size: int) -> dict[str, Any]:
    """The data's fingerprint, from `prepared`'s manifest and training images."""
    manifest = load_manifest(prepared)
    counted = readable(manifest)
    rows = counted[counted["split"] != "test"]  # the test split informs nothing but the test stage
    train = rows[rows["split"] == "train"]
    side = np.sqrt(rows["width"].to_numpy(float) * rows["height"].to_numpy(float))
    classes = {}
    for c in class_names:
        per_row = diameters(rows, c)
        every = np.concatenate([*per_row, np.zeros(0)])
        # what is left of each object's diameter once its image is resized to image_size
        trained = np.concatenate([*(d * image_size / s for d, s in zip(per_row, side, strict=True)), np.zeros(0)])
        classes[c] = {
            "foreground_fraction": _percentiles(rows[f"fg_{c}"].to_numpy(float), (0, 50, 100)),
            "objects_per_image": round(every.size / max(len(rows), 1), 2),
            "diameter_source_px": _percentiles(every, (5, 50)),
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
        "dtype": sorted(str(d) for d in rows["dtype"].unique()),
        "intensity": intensity(prepared, train["id"].astype(str).tolist()),  # per channel, source units
        "classes": classes,
    }
