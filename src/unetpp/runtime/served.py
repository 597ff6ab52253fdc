"""The served model: a checkpoint loaded by one call (`load_served`) into the network prepared as a request
gets it and the typed config it says of itself, parsed once. The TorchServe handler, the registry gate and the
`test` stage all load through here, so what is gated and reported is what a request gets back.

A served model answers through `inspect` (images to their passes on the network's grid) and `answer` /
`answers` (the probabilities and masks at each image's size, the read-out and the guard's verdict): what the
handler answers with and what `unetpp.scoring.cases` scores. A cascade is a chain behind the same calls: its
checkpoint holds the second stage as a plain one and, under `cascade`, the first stage (a whole-image model
on a coarse grid) and the `Region` rule; the first stage finds the region (`unetpp.runtime.region`), the
second segments it on its own grid and its probabilities are pasted back at the source size. The guard's
confidence reads the second stage's heads (the stage that drew the masks); its out-of-distribution score
reads the first stage's features (the whole image, as a request sent it); a region the first stage misses is
an empty answer with confidence 0. (`evaluate` also times each stage's `module`: the variant's cost.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetpp.nn.checkpoint import load_checkpoint, model_of
from unetpp.nn.networks import NodeNet
from unetpp.runtime.forward import Inspection, forward_images
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.guard import Guard
from unetpp.runtime.inference import inference_context, optimize_for_inference
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.readout import probabilities_at, readout, served_masks
from unetpp.runtime.region import Region, found_box, paste


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
    """A network prepared as the handler serves it (batch norm folded, channels_last) and its config; for a
    cascade, the first stage (`coarse`, itself a served model) and the region rule its answers are cut by."""

    module: torch.nn.Module
    config: ServedConfig
    coarse: ServedModel | None = None
    region: Region | None = None

    @classmethod
    def of(cls, model: torch.nn.Module, meta: dict[str, Any], flips: tuple[int, ...] | None = None) -> ServedModel:
        """`model` (a variant, pruned or not, on its device) served with `meta`'s config (or `flips`); a cascade's
        first stage comes from `meta`, at its full depth (`first_stage_of`)."""
        config = ServedConfig.parse(meta, model.config, flips)
        cascade = meta.get("cascade")
        coarse = None
        if cascade:
            first = first_stage_of(model_of(cascade["coarse"]))
            coarse = cls.of(first.to(next(model.parameters()).device), cascade["coarse"])
        region = Region.of(cascade["region"]) if cascade else None
        return cls(optimize_for_inference(model, channels_last=True), config, coarse, region)

    @property
    def names(self) -> list[str]:
        return list(self.config.names)

    @property
    def guard(self) -> Guard | None:
        return self.config.guard

    def describe(self) -> dict[str, Any]:
        """What an answer says of the model that made it: the variant, and a cascade's two grids."""
        if self.coarse is None or self.region is None:
            return self.config.describe()
        first = self.coarse.config
        grids = {"whole_side": first.geometry.size, "whole_level": first.level, "region_side": self.region.size}
        return self.config.describe() | {"cascade": grids}

    @property
    def stages(self) -> list[ServedModel]:
        """The models a request passes through, in order: the first stage of a cascade, then this one."""
        return [*([] if self.coarse is None else self.coarse.stages), self]

    def _own(self, images: list[np.ndarray]) -> list[Inspection]:
        c = self.config
        return forward_images(self.module, images, c.geometry, c.intensity, c.flips)

    def inspect(self, images: list[np.ndarray]) -> list[Inspection]:
        """Per decoded image, its probabilities on the network's grid and what the guard reads (a cascade: on the
        region its first stage found, whose pass gives the features)."""
        if self.coarse is None or self.region is None:
            return self._own(images)
        found = self.coarse.inspect(images)
        margin = self.region.margin
        boxes = [found_box(s.probs, *image.shape[:2], margin) for s, image in zip(found, images, strict=True)]
        crops = [box.crop(image) for box, image in zip(boxes, images, strict=True) if box is not None]
        fine = iter(self._own(crops) if crops else [])
        out = []
        for first, box in zip(found, boxes, strict=True):
            if box is None:
                out.append(self._missed(first))
                continue
            second = next(fine)
            out.append(Inspection(second.probs, second.heads, first.features, box))
        return out

    def _missed(self, first: Inspection) -> Inspection:
        """A cascade's pass where the first stage found no region: nothing on a one-pixel grid, its features."""
        heads = len(getattr(self.module, "head_ids", (0,)))
        empty = torch.zeros((len(self.names), 1, 1))
        return Inspection(empty, empty.expand(heads, -1, -1, -1), first.features, None, missed=True)

    def answer(self, image: np.ndarray, seen: Inspection) -> Answer:
        """What a request for decoded `image` gets back from its pass `seen`: masks, read-out, verdict."""
        names, (height, width) = self.names, image.shape[:2]
        if seen.missed:
            probs = torch.zeros((len(names), height, width))
        elif seen.region is not None:
            probs = paste(seen.probs.float().cpu(), seen.region, height, width)
        else:
            probs = probabilities_at(seen.probs, height, width)
        masks = served_masks(probs, height, width, names)  # at the image's size already: thresholded as is
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
        """Forward passes on a blank input through every stage, so the first request is answered at full speed."""
        with inference_context():
            for stage in self.stages:
                side, channels = stage.config.geometry.size, stage.config.intensity.in_channels
                for _ in range(passes):
                    stage.module.guard_outputs(torch.zeros(1, channels, side, side))


def first_stage_of(first: NodeNet) -> NodeNet:
    """A cascade's first stage as served: at its full depth, one head (`fast`), where it is stored as trained
    (evaluate scores every variant from the trained checkpoint; select exports it so); as stored where it is
    served already. Only the second stage is pruned to the variant: the first must tell the targets' region
    from everything else in the whole image, which a shallow cut's receptive field (a few grid pixels at L1)
    cannot; on Drishti-GS1 `Training/` an L1 first stage put one region of 10 on another part of a photograph."""
    if first.config.get("level") is not None:
        return first
    return first.prune(max(first.levels), "fast")


def load_served(path: Path) -> ServedModel:
    """The one way a served checkpoint is loaded (weights_only, CPU): by the handler, the gate and `test`."""
    model, meta = load_checkpoint(path)
    return ServedModel.of(model, meta)
