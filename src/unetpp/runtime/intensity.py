"""How the network reads an image's values: the plan's intensity rule, carried by every checkpoint beside
its `Geometry`, so training, evaluation, the registry gate, `test` and the served handler read alike.

The rule, as nnU-Net's for non-CT images: every channel of every image on its own, to zero mean and unit
variance (MONAI's `NormalizeIntensity`). It is blind to an image's offset and gain, so a 16-bit camera's
frames whose values sit in a narrow band near 2^15 are read exactly like the same frames stretched to 8 bits,
and no bit depth is scaled or quantized first. The plan adds one step where the training images' fingerprint
shows outliers (hot pixels, saturated specks: `unetpp.planning.recipe`): each image's channel is clipped at
its own percentiles first (MONAI's `ClipIntensityPercentiles`), so a few extreme pixels do not set the scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import ClipIntensityPercentiles, NormalizeIntensity
from monai.utils import convert_to_tensor

from unetpp.errors import UserError

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 (Pillow's "L"): the one reduction of RGB to one channel


class ChannelMismatch(UserError):
    """An image with another channel count than the model was trained on."""


@dataclass(frozen=True)
class Intensity:
    """`channels` a source image (and a request) has; `in_channels` the network sees (`channels`, or 1 from
    3 by `LUMA`); `clip` the per-image percentiles clipped before standardising, or None."""

    channels: int
    in_channels: int
    clip: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.in_channels != self.channels and (self.in_channels, self.channels) != (1, 3):
            raise UserError(
                f"model.in_channels {self.in_channels} cannot be made from {self.channels}-channel images; expected "
                f"{self.channels} (or 1 from 3-channel RGB, by luma)"
            )

    def check(self, image: np.ndarray, name: str) -> None:
        """Refuse an (H, W, C) image whose channel count is not the training images'."""
        if image.shape[-1] != self.channels:
            raise ChannelMismatch(
                f"{name}: {image.shape[-1]}-channel image; expected {self.channels} channels, as the model was trained"
            )

    def tensor(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, channels) of any dtype to the standardised (in_channels, H, W) float32 tensor."""
        self.check(image, "image")
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))
        if self.in_channels != self.channels:
            x = torch.tensordot(torch.tensor(LUMA), x, dims=1)[None]
        if self.clip is not None:
            x = ClipIntensityPercentiles(*self.clip, channel_wise=True)(x)
        return convert_to_tensor(_normalize(x), track_meta=False)  # a plain tensor, not MONAI's MetaTensor

    def as_dict(self) -> dict[str, Any]:
        """As plans.json and a checkpoint hold it (lists, not tuples: the two compare equal)."""
        return asdict(self) | {"clip": None if self.clip is None else list(self.clip)}

    @classmethod
    def of(cls, meta: dict[str, Any], in_channels: int) -> Intensity:
        """A checkpoint's rule, checked against its network's `in_channels`. Checkpoints from before the plan
        chose one took RGB images (a 1-channel network: their luma), standardised: read so (a gray request,
        which they took as RGB, now gets 422)."""
        got = meta.get("intensity") or {"channels": RGB.channels, "in_channels": in_channels}
        clip = got.get("clip")
        reading = cls(int(got["channels"]), int(got["in_channels"]), None if clip is None else tuple(map(float, clip)))
        if reading.in_channels != in_channels:
            raise UserError(
                f"the checkpoint reads images to {reading.in_channels} channels; its network takes {in_channels}"
            )
        return reading


_normalize = NormalizeIntensity(channel_wise=True)

RGB = Intensity(3, 3)  # the default photographs' reading (and that of checkpoints from before the plan chose)
