"""The served prediction: decoded images to masks at their own size, and what the guard reads from the same
passes. The TorchServe handler and the `test` stage both call these, so what is scored on the test split is
what a request gets back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unetpp.nn.networks import NodeNet
from unetpp.runtime.geometry import Geometry, mirrored, network_input
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.readout import anatomical, masks_at


@dataclass(frozen=True)
class Inspection:
    """One image's pass: the answer's probabilities (classes, h, w) on the network's grid, every held head's
    (heads, classes, h, w), and the pooled bottleneck features (F,)."""

    probs: torch.Tensor
    heads: torch.Tensor
    features: torch.Tensor


def inspect(
    module: NodeNet,
    images: list[np.ndarray],
    geometry: Geometry,
    intensity: Intensity,
    flips: tuple[int, ...] = (),
) -> list[Inspection]:
    """Per decoded (H, W, C) image (read by `intensity`), its `Inspection` (mirrored along `flips` and
    averaged: the variant's test-time augmentation): one batch for whole-image models, one image at a time
    (any size) for sliding windows, whose features are the mean over every window and mirroring."""
    device = next(module.parameters()).device
    inputs = [network_input(image, geometry, intensity).to(device) for image in images]
    batches = [torch.stack(inputs)] if geometry.mode == "whole" else [x[None] for x in inputs]
    answer = [module.head_ids.index(k) for k in module.answer_heads]
    out: list[Inspection] = []
    for batch in batches:
        pooled: list[torch.Tensor] = []

        def predictor(t: torch.Tensor, pooled: list[torch.Tensor] = pooled) -> torch.Tensor:
            heads, features = module.guard_outputs(t.contiguous(memory_format=torch.channels_last))
            pooled.append(features.float())
            return heads.flatten(1, 2)  # one spatial tensor: what sliding windows blend

        heads = mirrored(predictor, batch, geometry, flips).unflatten(1, (len(module.head_ids), -1))
        features = torch.stack(pooled).mean(0) if geometry.mode == "whole" else torch.cat(pooled).mean(0)[None]
        out += [Inspection(h[answer].mean(0), h, f) for h, f in zip(heads, features, strict=True)]
    return out


def tta_flips(meta: dict) -> tuple[int, ...]:
    """The test-time mirroring axes a served checkpoint was selected with (none when absent)."""
    return tuple(int(a) for a in meta.get("tta_flips") or ())


def served_masks(probs: torch.Tensor, height: int, width: int, names: list[str]) -> np.ndarray:
    """(classes, height, width) bool: the probabilities at the input's size, thresholded, and for disc +
    cup one disc with the cup inside it (`anatomical`)."""
    return anatomical(masks_at(probs, height, width), names)
