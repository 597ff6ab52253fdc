"""How the network sees an image — the plan's choice, carried by every checkpoint — and the one forward
pass over it, shared by training's validation, evaluate, the registry gate and the served handler.

- `whole`: the image resized to `size` x `size` (one forward; fine when the smallest objects survive it);
- `patch`: the image resampled by `scale` (1.0 = its source resolution), trained on `size` x `size`
  patches and segmented by MONAI's `sliding_window_inference` with Gaussian blending, so a large image
  is segmented at the resolution it was trained at. Either way the caller brings the probabilities
  back to the input's size (`unetpp.runtime.readout.masks_at`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from unetpp.runtime.inference import inference_context
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.preprocess import resize_image, resize_masks

# Windows overlap by a quarter (MONAI's default): a 1024-px image at source resolution takes 121 windows
# of 128 px instead of 225 at nnU-Net's half overlap; the Gaussian weights hide the seams either way.
OVERLAP = 0.25
WINDOWS_PER_CALL = 8  # windows batched into one forward


@dataclass(frozen=True)
class Geometry:
    """`mode` whole or patch; `size` the network's input side; `scale` source px -> trained px (patch)."""

    mode: Literal["whole", "patch"]
    size: int
    scale: float = 1.0

    def shape_of(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image of this size is resampled to before the network sees it."""
        if self.mode == "whole":
            return self.size, self.size
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))

    def windows(self, height: int, width: int) -> int:
        """Forwards one image of this size costs (1 for whole)."""
        if self.mode == "whole":
            return 1
        step = max(1, int(self.size * (1 - OVERLAP)))
        h, w = self.shape_of(height, width)
        return int(np.prod([1 + max(0, -(-(n - self.size) // step)) for n in (h, w)]))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Geometry:
        """A checkpoint's geometry (checkpoints from before the plan chose one: whole at image_size)."""
        g = meta.get("geometry") or {"mode": "whole", "size": int(meta["image_size"])}
        return cls(g["mode"], int(g["size"]), float(g.get("scale", 1.0)))


def resample_image(image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(H, W, C) as decoded to the network's grid, (h, w, C), values and dtype kept."""
    return resize_image(image, geometry.shape_of(*image.shape[:2]))


def resample_masks(masks: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(classes, H, W) bool to the network's grid, with the image's own filter."""
    return resize_masks(masks, geometry.shape_of(*masks.shape[1:]))


def network_input(image: np.ndarray, geometry: Geometry, intensity: Intensity) -> torch.Tensor:
    """A decoded (H, W, C) image to the standardised (in_channels, h, w) tensor the network sees."""
    return intensity.tensor(resample_image(image, geometry))


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
