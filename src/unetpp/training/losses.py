"""Training loss: BCE-with-logits + soft Dice per class, summed over the deep-supervision heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiceLoss
from torch import Tensor, nn


class BceDiceLoss(nn.Module):
    """`bce_weight * BCE + dice_weight * soft Dice` on logits, classes independent (multi-label).

    Sigmoid rather than softmax: the optic cup lies inside the disc, so a pixel can be both.
    The soft Dice (MONAI) is computed per class over the whole batch by default, so a sample whose
    mask is empty does not turn the loss into noise. `per_image=True` computes it per image and
    class, then averages: the validation Dice is a mean over images, and this weighs a small disc's
    rim as much as a large one's. Use it only when every image has every class.
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, per_image: bool = False) -> None:
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0; got bce={bce_weight}, dice={dice_weight}")
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.bce = nn.BCEWithLogitsLoss()
        self.dice = DiceLoss(sigmoid=True, batch=not per_image, smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
        target = target.to(logits.dtype)
        return self.bce_weight * self.bce(logits, target) + self.dice_weight * self.dice(logits, target)


class DeepSupervisionLoss(nn.Module):
    """The per-head loss on every head's logits, weighted; weights are normalised to sum to 1.

    `head_weights=None` weighs the heads equally, whatever their number (4 for UNet++, 1 for U-Net).
    """

    def __init__(
        self,
        head_weights: Sequence[float] | None = None,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        dice_per_image: bool = False,
    ) -> None:
        super().__init__()
        if head_weights is not None and (any(w < 0 for w in head_weights) or sum(head_weights) <= 0):
            raise ValueError(f"head_weights must be >= 0 with a positive sum; got {list(head_weights)}")
        self.head_weights = None if head_weights is None else [float(w) for w in head_weights]
        self.per_head = BceDiceLoss(bce_weight, dice_weight, per_image=dice_per_image)

    def forward(self, logits: Sequence[Tensor], target: Tensor) -> Tensor:
        weights = self.head_weights or [1.0] * len(logits)
        if len(weights) != len(logits):
            raise ValueError(f"{len(weights)} head_weights given for a model with {len(logits)} heads")
        total = sum(weights)
        return torch.stack([w / total * self.per_head(t, target) for w, t in zip(weights, logits, strict=True)]).sum()
