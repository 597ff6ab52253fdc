"""Small building blocks shared by UNet++, its pruned forms and the U-Net baseline."""

from __future__ import annotations

from typing import Literal

from torch import nn

Norm = Literal["batch", "instance", "none"]
Upsample = Literal["transpose", "bilinear"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of 'batch', 'instance', 'none'; got {kind!r}")


class ConvBlock(nn.Sequential):
    """H(.) of the paper: two 3x3 convolutions, each followed by an optional norm and ReLU.

    Convolutions carry a bias only without a norm layer: a norm's shift makes the bias redundant,
    and the paper's preset (no norm) needs the bias to reproduce its parameter counts.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: Norm) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


def up_block(in_channels: int, out_channels: int, kind: Upsample) -> nn.Module:
    """Up(.) of the paper: x2 upsampling of the node below.

    `transpose` (the paper's) is a learned 2x2 stride-2 transposed convolution to `out_channels`;
    `bilinear` has no weights and keeps `in_channels`, so the node after it sees more channels.
    """
    if kind == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
    if kind == "bilinear":
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    raise ValueError(f"upsample must be 'transpose' or 'bilinear'; got {kind!r}")


def up_channels(in_channels: int, out_channels: int, kind: Upsample) -> int:
    """Channels that `up_block(in_channels, out_channels, kind)` produces."""
    return out_channels if kind == "transpose" else in_channels
