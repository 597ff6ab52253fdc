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


def specks(root: Path, count: int = 12, side: int = 1024, radius: tuple[float, float] = (4, 7)) -> list[str]:
    """Large RGB 8-bit PNGs (`side` px) of a textured, unevenly lit background holding 8-20 small
    dark round targets of `radius` px (a few hundredths of the side: whole-image resizing erases them);
    binary masks 0/255. Returns the class names."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:side, :side] / side
    for i in range(count):
        rng = np.random.default_rng(2000 + i)
        mask = np.zeros((side, side), bool)
        light = 0.75 + 0.25 * np.sin(2 * np.pi * (yy * rng.uniform(0.5, 1.5) + xx * rng.uniform(0.5, 1.5)))
        texture = ndimage.gaussian_filter(rng.normal(0, 1, (side, side)), 3) * 6
        for _ in range(int(rng.integers(8, 21))):
            cy, cx, r = [*rng.uniform(0.03, 0.97, 2).tolist(), rng.uniform(*radius) / side]
            mask |= ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
        gray = (light * 200 + texture) * np.where(ndimage.gaussian_filter(mask.astype(float), 1.0) > 0.5, 0.45, 1.0)
        tint = np.array([1.0, 0.82, 0.9]) * rng.uniform(0.9, 1.1, 3)
        image = np.clip(gray[..., None] * tint + rng.normal(0, 6, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"slide{i:02d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"slide{i:02d}.png")
    return ["target"]


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


def _blobs(rng: np.random.Generator, side: int, count: int, radius: tuple[float, float]) -> np.ndarray:
    """A (side, side) bool mask of `count` round blobs of `radius` px, away from the border."""
    yy, xx = np.mgrid[:side, :side]
    mask = np.zeros((side, side), bool)
    for _ in range(count):
        cy, cx, r = rng.uniform(8, side - 8), rng.uniform(8, side - 8), rng.uniform(*radius)
        mask |= ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
    return mask


def offset16(root: Path, count: int = 20, side: int = 160, stretched: bool = False) -> list[str]:
    """Raw 16-bit camera frames as a fluorescence microscope writes them: a camera offset near 33,000
    counts, shot noise, objects a few hundred counts above it (12-20 blobs per 160 x 160 px) and a few hot
    pixels; binary masks 0/255. `stretched`: the same frames contrast-stretched to 8-bit PNGs (each between
    its own 0.1st and 99.9th percentiles), what a user would export to work around an 8-bit pipeline.
    Returns the class names."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng(3000 + i)
        mask = _blobs(rng, side, max(2, round(rng.integers(12, 21) * (side / 160) ** 2)), (5, 9))  # per 160 px
        signal = ndimage.gaussian_filter(mask * rng.uniform(250, 450), 1.0)
        frame = 33_000 + signal + rng.normal(0, 45, (side, side))
        frame[rng.integers(0, side, 4), rng.integers(0, side, 4)] = 65_535  # hot pixels
        raw = np.clip(frame, 0, 65_535).astype(np.uint16)
        if stretched:
            lo, hi = np.percentile(raw, (0.1, 99.9))
            eight = np.clip((raw.astype(np.float64) - lo) * 255 / (hi - lo), 0, 255).round().astype(np.uint8)
            Image.fromarray(eight).save(root / "images" / f"frame{i:02d}.png")
        else:
            tifffile.imwrite(root / "images" / f"frame{i:02d}.tif", raw)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"frame{i:02d}.png")
    return ["nucleus"]


def two_channel(root: Path, count: int = 14, side: int = 128, radius: tuple[float, float] = (5, 9)) -> list[str]:
    """2-channel 16-bit TIFFs stored channel-first (C, H, W), as microscopes write them, of a 12-bit range (all
    values below 4,096): channel 1 holds blobs that are not the target, channel 2 the targets alone, both
    alike in size and brightness. A model that drops channel 2 sees no target; one that averages the
    channels cannot tell targets from the others. Binary masks 0/255 of the targets. Returns the class names."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng(4000 + i)
        target = _blobs(rng, side, int(rng.integers(6, 11)), radius)
        other = _blobs(rng, side, int(rng.integers(6, 11)), radius) & ~ndimage.binary_dilation(target, iterations=3)
        planes = [
            500 + ndimage.gaussian_filter(m * 2_000.0, 1.0) + rng.normal(0, 60, (side, side)) for m in (other, target)
        ]
        tifffile.imwrite(root / "images" / f"well{i:02d}.tif", np.clip(planes, 0, 65_535).astype(np.uint16))
        Image.fromarray(target.astype(np.uint8) * 255).save(root / "masks" / f"well{i:02d}.png")
    return ["target"]
