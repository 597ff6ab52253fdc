"""How the network sees an image — the plan's choice, carried by every checkpoint: the grid an image is
resampled to (`unetpp.runtime.forward` runs the network over it).

- `whole`: the image resized to `size` x `size` (one forward; fine when the smallest objects survive it);
- `patch`: the image resampled by `scale` (1.0 = its source resolution), trained on `size` x `size`
  patches and segmented by MONAI's `sliding_window_inference` with Gaussian blending, so a large image
  is segmented at the resolution it was trained at. Either way the caller brings the probabilities
  back to the input's size (`unetpp.runtime.readout.masks_at`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from unetpp.runtime.intensity import Intensity
from unetpp.runtime.preprocess import resize_image, resize_masks

# Windows overlap by a quarter (MONAI's default): a 1024-px image at source resolution takes 121 windows
# of 128 px instead of 225 at nnU-Net's half overlap; the Gaussian weights hide the seams either way.
OVERLAP = 0.25


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
