"""The one forward pass over an image on the network's grid (`unetpp.runtime.geometry`), shared by training's
validation, evaluate, the registry gate, `test` and the served handler: one call (whole) or MONAI's
`sliding_window_inference` with Gaussian blending (patch), test-time mirroring as nnU-Net does it, and
`forward_images`: decoded images to what the answer and the guard read from the same passes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from unetpp.nn.networks import NodeNet
from unetpp.runtime.descriptors import with_descriptors
from unetpp.runtime.geometry import OVERLAP, Geometry, network_input
from unetpp.runtime.inference import inference_context
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.region import Box

WINDOWS_PER_CALL = 8  # windows batched into one forward

Predictor = Callable[[torch.Tensor], Any]


def forward(predictor: Predictor, x: torch.Tensor, geometry: Geometry) -> Any:
    """`predictor` over a batch at the network's grid: one call (whole), or blended windows (patch).

    The predictor's output (a tensor, or a list of heads' logits) keeps the batch's height and width.
    """
    if geometry.mode == "whole":
        return predictor(x)
    listed = False

    def windows(t: torch.Tensor) -> Any:
        nonlocal listed
        out = predictor(t)
        listed = isinstance(out, list | tuple)
        return tuple(out) if listed else out

    out = sliding_window_inference(
        x,
        roi_size=(geometry.size, geometry.size),
        sw_batch_size=WINDOWS_PER_CALL,
        predictor=windows,
        overlap=OVERLAP,
        mode="gaussian",
        padding_mode="constant",
    )
    if not listed:
        return out
    return list(out) if isinstance(out, tuple) else [out]  # MONAI unwraps a one-head list


def mirrorings(flips: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every combination of the image axes in `flips` (0 rows, 1 columns) as tensor dims, none first."""
    dims = [axis + 2 for axis in sorted(flips)]
    return [combo for r in range(len(dims) + 1) for combo in itertools.combinations(dims, r)]


def segment(
    module: torch.nn.Module,
    x: torch.Tensor,
    geometry: Geometry,
    *,
    channels_last: bool = True,
    flips: tuple[int, ...] = (),
) -> torch.Tensor:
    """Probabilities of a probability-returning (served) module over a batch on the network's grid, under
    the inference context (around the whole sliding window: its blending buffers are inference tensors
    too); float32. With `flips`, test-time mirroring as nnU-Net does it: the mean of the probabilities
    over every combination of those mirrorings, each flipped back."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return mirrored(lambda t: module(t.contiguous(memory_format=layout)), x, geometry, flips)


def mirrored(predictor: Predictor, x: torch.Tensor, geometry: Geometry, flips: tuple[int, ...]) -> torch.Tensor:
    """`forward` of a predictor returning one spatial tensor, averaged over the mirrorings of `flips`, in the
    inference context; float32."""
    combos = mirrorings(flips)
    with inference_context(x.device):
        total = torch.zeros(())
        for dims in combos:
            total = total + forward(predictor, x.flip(dims), geometry).float().flip(dims)
        return total / len(combos)


@dataclass(frozen=True)
class Inspection:
    """One image's pass: the answer's probabilities (classes, h, w) on the network's grid, every held head's
    (heads, classes, h, w), and what the guard reads (F,): the pooled bottleneck features, then the input's
    descriptors (`unetpp.runtime.descriptors`). A cascade's pass (`unetpp.runtime.served`) is its second stage's
    on the `region` of the source image it segmented, with the whole image's features from its first stage;
    `missed`: the first stage found no region, and the answer is empty."""

    probs: torch.Tensor
    heads: torch.Tensor
    features: torch.Tensor
    region: Box | None = None
    missed: bool = False


def forward_images(
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
    passes: list[tuple[torch.Tensor, torch.Tensor]] = []  # per image: its heads and pooled features
    for batch in batches:
        pooled: list[torch.Tensor] = []

        def predictor(t: torch.Tensor, pooled: list[torch.Tensor] = pooled) -> torch.Tensor:
            heads, features = module.guard_outputs(t.contiguous(memory_format=torch.channels_last))
            pooled.append(features.float())
            return heads.flatten(1, 2)  # one spatial tensor: what sliding windows blend

        heads = mirrored(predictor, batch, geometry, flips).unflatten(1, (len(module.head_ids), -1))
        features = torch.stack(pooled).mean(0) if geometry.mode == "whole" else torch.cat(pooled).mean(0)[None]
        passes += zip(heads, features, strict=True)
    return [
        Inspection(h[answer].mean(0), h, with_descriptors(f, image))
        for (h, f), image in zip(passes, images, strict=True)
    ]
