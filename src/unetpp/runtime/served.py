"""The served model: a checkpoint loaded by one call (`load_served`) into the network prepared as a request
gets it and the typed config it says of itself, parsed once. The TorchServe handler, the registry gate and the
`test` stage all load through here, so what is gated and reported is what a request gets back.

A served model answers through `inspect` (images to their passes on the network's grid) and `answer` /
`answers` (the probabilities and masks at each image's size, the read-out and the guard's verdict): what the
handler answers with and what `unetpp.scoring.cases` scores, so a chain of stages (a coarse whole-image stage
that finds the region, a fine stage on it, pasted back at the source size) would be served and scored behind
the same calls. (`evaluate` also times `module` itself: the variant's cost.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetpp.nn.checkpoint import load_checkpoint
from unetpp.runtime.forward import Inspection, forward_images
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.guard import Guard
from unetpp.runtime.inference import inference_context, optimize_for_inference
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.readout import probabilities_at, readout, served_masks


@dataclass(frozen=True)
class ServedConfig:
    """What a served checkpoint says of itself: its class names, pruning level and mode (the network's own
    config: stored once, in the checkpoint), the grid, the intensity reading, the test-time mirroring and the
    fitted guard (None for checkpoints from before the pipeline fitted one)."""

    names: tuple[str, ...]
    level: int | None
    mode: str | None
    geometry: Geometry
    intensity: Intensity
    flips: tuple[int, ...]
    guard: Guard | None

    @classmethod
    def parse(cls, meta: dict[str, Any], network: dict[str, Any], flips: tuple[int, ...] | None = None) -> ServedConfig:
        """From a checkpoint's entries (`meta`) and its network's constructor config; `flips` overrides the
        checkpoint's mirroring (evaluate scores every variant's)."""
        level = network.get("level")
        return cls(
            tuple(meta["class_names"]),
            None if level is None else int(level),
            network.get("mode"),
            Geometry.of(meta),
            Intensity.of(meta, int(network["in_channels"])),
            tuple(int(a) for a in meta.get("tta_flips") or ()) if flips is None else flips,
            Guard.of(meta),
        )

    def describe(self) -> dict[str, Any]:
        """What an answer says of the variant that made it."""
        return {"level": self.level, "mode": self.mode} | ({"tta_flips": list(self.flips)} if self.flips else {})


@dataclass(frozen=True)
class Answer:
    """One image's served answer: (classes, H, W) probabilities and bool masks at its size, the JSON body
    (read-out and, with a guard, its verdict) and the pass it came from."""

    probs: torch.Tensor
    masks: np.ndarray
    body: dict[str, Any]
    seen: Inspection


@dataclass
class ServedModel:
    """A network prepared as the handler serves it (batch norm folded, channels_last) and its config."""

    module: torch.nn.Module
    config: ServedConfig

    @classmethod
    def of(cls, model: torch.nn.Module, meta: dict[str, Any], flips: tuple[int, ...] | None = None) -> ServedModel:
        """`model` (a variant, pruned or not, on its device) served with `meta`'s config (or `flips`)."""
        config = ServedConfig.parse(meta, model.config, flips)
        return cls(optimize_for_inference(model, channels_last=True), config)

    @property
    def names(self) -> list[str]:
        return list(self.config.names)

    @property
    def guard(self) -> Guard | None:
        return self.config.guard

    def inspect(self, images: list[np.ndarray]) -> list[Inspection]:
        """Per decoded image, its probabilities on the network's grid and what the guard reads."""
        c = self.config
        return forward_images(self.module, images, c.geometry, c.intensity, c.flips)

    def answer(self, image: np.ndarray, seen: Inspection) -> Answer:
        """What a request for decoded `image` gets back from its pass `seen`: masks, read-out, verdict."""
        names = self.names
        probs = probabilities_at(seen.probs, *image.shape[:2])
        masks = served_masks(probs, *image.shape[:2], names)  # at the image's size already: thresholded as is
        verdict = self.guard.verdict(seen, names) if self.guard is not None else {}
        return Answer(probs, masks, readout(masks, names) | verdict, seen)

    def answers(self, images: list[np.ndarray]) -> Iterator[Answer]:
        """`answer` for each decoded image, their passes batched as `inspect` batches them."""
        for image, seen in zip(images, self.inspect(images), strict=True):
            yield self.answer(image, seen)

    def masks(self, image: np.ndarray) -> np.ndarray:
        """The served masks of one decoded image."""
        return next(self.answers([image])).masks

    def warm_up(self, passes: int = 2) -> None:
        """Forward passes on a blank input, so the first request is answered at full speed."""
        c = self.config
        with inference_context():
            for _ in range(passes):
                self.module.guard_outputs(torch.zeros(1, c.intensity.in_channels, c.geometry.size, c.geometry.size))


def load_served(path: Path) -> ServedModel:
    """The one way a served checkpoint is loaded (weights_only, CPU): by the handler, the gate and `test`."""
    model, meta = load_checkpoint(path)
    return ServedModel.of(model, meta)
