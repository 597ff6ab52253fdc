"""Generated data sets unlike the default, for tests and `bench/data_kinds.py`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

from unetpp.data.synthetic import generate_fundus


def cells12(root: Path, count: int = 14, side: int = 400, radius: tuple[float, float] = (4.5, 8)) -> list[str]:
    """Gray 16-bit TIFFs with a 12-bit range (0..4095), 20-40 bright blobs of `radius` px on a dark,
    noisy background (microscopy-like); binary masks 0/255. Returns the class names."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:side, :side]
    for i in range(count):
        rng = np.random.default_rng(1000 + i)
        mask = np.zeros((side, side), bool)
        signal = np.zeros((side, side))
        for _ in range(int(rng.integers(20, 41))):
            cy, cx, r = rng.uniform(10, side - 10), rng.uniform(10, side - 10), rng.uniform(*radius)
            blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
            mask |= blob
            signal += blob * rng.uniform(0.5, 1.0)
        image = 300 + 2600 * ndimage.gaussian_filter(signal, 1.2) + rng.normal(0, 120, (side, side))
        tifffile.imwrite(root / "images" / f"field{i:02d}.tif", np.clip(image, 0, 4095).astype(np.uint16))
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"field{i:02d}.png")
    return ["cell"]


def unrelated(root: Path, count: int = 24, side: int = 256) -> list[str]:
    """Fundus photographs, each with the disc mask of another image (the learning guard's case)."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    samples = [generate_fundus(i, side, seed=31) for i in range(count)]
    for i, s in enumerate(samples):
        Image.fromarray(s.image).save(root / "images" / f"eye{i:02d}.png")
        other = samples[(i + count // 2) % count].masks[0]
        Image.fromarray(other.astype(np.uint8) * 255).save(root / "masks" / f"eye{i:02d}.png")
    return ["disc"]
