"""The served prediction: decoded images to masks at their own size. The TorchServe handler and the
`test` stage both call these, so what is scored on the test split is what a request gets back."""

from __future__ import annotations

import numpy as np
import torch

from unetpp.runtime.geometry import Geometry, network_input, segment
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.readout import anatomical, masks_at


def probabilities(
    module: torch.nn.Module,
    images: list[np.ndarray],
    geometry: Geometry,
    intensity: Intensity,
    flips: tuple[int, ...] = (),
) -> list[torch.Tensor]:
    """Per decoded (H, W, C) image (read by `intensity`), its (classes, h, w) probabilities on the network's
    grid (mirrored along `flips` and averaged: the variant's test-time augmentation): one batch for
    whole-image models, one image at a time (any size) for sliding windows."""
    device = next(module.parameters()).device
    inputs = [network_input(image, geometry, intensity).to(device) for image in images]
    if geometry.mode == "whole":
        return list(segment(module, torch.stack(inputs), geometry, flips=flips))
    return [segment(module, x[None], geometry, flips=flips)[0] for x in inputs]


def tta_flips(meta: dict) -> tuple[int, ...]:
    """The test-time mirroring axes a served checkpoint was selected with (none when absent)."""
    return tuple(int(a) for a in meta.get("tta_flips") or ())


def served_masks(probs: torch.Tensor, height: int, width: int, names: list[str]) -> np.ndarray:
    """(classes, height, width) bool: the probabilities at the input's size, thresholded, and for disc +
    cup one disc with the cup inside it (`anatomical`)."""
    return anatomical(masks_at(probs, height, width), names)
