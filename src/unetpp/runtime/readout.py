"""From per-class probabilities to what a clinical client reads: masks, areas, boxes, cup-to-disc ratio.

Masks travel as COCO-style uncompressed RLE (column-major runs, starting with background), which
pycocotools and most viewers decode; `rle_decode` is the inverse for our own clients and tests.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from unetpp.runtime.images import display_rgb8

# A pixel belongs to a class when its probability is >= THRESHOLD: metrics, plots and the served
# masks all binarize through `binarize`, so what is scored is what is served.
THRESHOLD = 0.5
# overlay colours (name, RGB) by class name, for the served overlay and the evaluation plots alike
Colour = tuple[str, tuple[int, int, int]]
COLOURS: dict[str, Colour] = {"disc": ("red", (255, 0, 0)), "cup": ("yellow", (255, 255, 0))}
PALETTE: tuple[Colour, ...] = (  # other classes, by their index
    ("blue", (0, 160, 255)),
    ("green", (0, 200, 80)),
    ("magenta", (255, 0, 255)),
    ("orange", (255, 128, 0)),
)


def binarize(probs: torch.Tensor) -> torch.Tensor:
    """Probabilities to a bool mask at the one threshold."""
    return probs >= THRESHOLD


def _entry(name: str, index: int) -> Colour:
    return COLOURS.get(name, PALETTE[index % len(PALETTE)])


def colour(name: str, index: int) -> tuple[int, int, int]:
    """The overlay colour (RGB) of class `name`, the `index`-th class of its model."""
    return _entry(name, index)[1]


def describe_colours(names: list[str]) -> str:
    """A legend for titles: 'disc red, cup yellow'."""
    return ", ".join(f"{n} {_entry(n, i)[0]}" for i, n in enumerate(names))


def probabilities_at(probs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(C, h, w) probabilities brought to (C, height, width), bilinearly, as the served masks are."""
    if probs.shape[-2:] == (height, width):
        return probs.float()
    return F.interpolate(probs[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]


def masks_at(probs: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(C, h, w) probabilities to (C, height, width) bool masks (bilinear, then `binarize`)."""
    return binarize(probabilities_at(probs, height, width)).cpu().numpy()


def anatomical(masks: np.ndarray, names: list[str]) -> np.ndarray:
    """For disc + cup: the disc's largest connected part, and the largest part of the cup inside it.

    An eye has one disc and the cup lies inside it; a few stray pixels elsewhere cost little Dice
    but stretch a bounding box, and the vertical cup-to-disc ratio is read from the boxes. Other
    tasks' masks come back unchanged.
    """
    if names != ["disc", "cup"]:
        return masks
    disc = largest_part(masks[0])
    return np.stack([disc, largest_part(masks[1] & disc)])


def largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of a bool mask (the mask itself when it has at most one)."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    return labels == np.bincount(labels.ravel())[1:].argmax() + 1


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [0]])))
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    counts = runs[:-1] if runs[-1] == 0 else runs
    return {"size": list(mask.shape), "counts": counts.astype(int).tolist()}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2
    flat = np.repeat(values.astype(bool), rle["counts"])
    flat = np.concatenate([flat, np.zeros(h * w - flat.size, bool)])
    return flat.reshape((h, w), order="F")


def bbox(mask: np.ndarray) -> list[int] | None:
    """[x_min, y_min, x_max, y_max] (inclusive pixels), or None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def vertical_cdr(disc: np.ndarray, cup: np.ndarray) -> float | None:
    """Vertical cup-to-disc ratio: the cup's vertical extent over the disc's (None without a disc)."""
    d, c = bbox(disc), bbox(cup)
    if d is None:
        return None
    return 0.0 if c is None else (c[3] - c[1] + 1) / (d[3] - d[1] + 1)


def readout(masks: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per class: area in pixels, bounding box and RLE mask; the vertical CDR for the disc + cup task."""
    out: dict[str, Any] = {
        "size": list(masks.shape[1:]),
        "classes": {
            name: {"area": int(m.sum()), "bbox": bbox(m), "rle": rle_encode(m)}
            for name, m in zip(names, masks, strict=True)
        },
    }
    if names == ["disc", "cup"]:
        cdr = vertical_cdr(masks[0], masks[1])
        out["vertical_cdr"] = None if cdr is None else round(cdr, 4)
    return out


def overlay_png(image: np.ndarray, masks: np.ndarray, names: list[str], alpha: float = 0.45) -> bytes:
    """The image (`display_rgb8`) with each class blended in its colour (`colour`), as PNG bytes."""
    out = display_rgb8(image).astype(np.float32)
    for i, (name, m) in enumerate(zip(names, masks, strict=True)):
        out[m] = (1 - alpha) * out[m] + alpha * np.asarray(colour(name, i), np.float32)
    buf = io.BytesIO()
    Image.fromarray(out.round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def served_masks(probs: torch.Tensor, height: int, width: int, names: list[str]) -> np.ndarray:
    """(classes, height, width) bool: the probabilities at the input's size, thresholded, and for disc +
    cup one disc with the cup inside it (`anatomical`)."""
    return anatomical(masks_at(probs, height, width), names)
