"""The loss: BCE + soft Dice per class on every head, weights checked."""

from __future__ import annotations

import pytest
import torch

from unetpp.training.losses import BceDiceLoss, DeepSupervisionLoss


def test_perfect_logits_give_near_zero_loss() -> None:
    target = torch.zeros(2, 2, 16, 16)
    target[:, 0, 4:12, 4:12] = 1
    target[:, 1, 6:10, 6:10] = 1  # cup inside disc: both labels on the same pixels
    logits = (target * 2 - 1) * 20
    assert BceDiceLoss()(logits, target) < 1e-3


def test_bce_and_dice_parts_are_weighted() -> None:
    logits, target = torch.randn(2, 2, 8, 8), (torch.rand(2, 2, 8, 8) > 0.5).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(BceDiceLoss(bce_weight=1, dice_weight=0)(logits, target), bce)
    both = BceDiceLoss(bce_weight=2, dice_weight=3)(logits, target)
    dice = BceDiceLoss(bce_weight=0, dice_weight=1)(logits, target)
    torch.testing.assert_close(both, 2 * bce + 3 * dice)


def test_per_image_dice_weighs_a_small_structure_as_much_as_a_large_one() -> None:
    target = torch.zeros(2, 1, 32, 32)
    target[0, 0, 2:30, 2:30] = 1  # a large disc, found
    target[1, 0, 14:18, 14:18] = 1  # a small one, missed
    logits = torch.where(target.bool(), 20.0, -20.0)
    logits[1] = -20.0
    batch = BceDiceLoss(bce_weight=0)(logits, target)
    image = BceDiceLoss(bce_weight=0, per_image=True)(logits, target)
    assert batch < 0.05  # the missed 16 pixels hardly count against the found 784
    assert image == pytest.approx(0.5, abs=1e-3)  # one image right, one wholly wrong
    heads = DeepSupervisionLoss(bce_weight=0, dice_per_image=True)([logits, logits], target)
    torch.testing.assert_close(heads, image)


def test_heads_are_weighted_and_normalised() -> None:
    target = (torch.rand(1, 2, 8, 8) > 0.5).float()
    heads = [torch.randn(1, 2, 8, 8) for _ in range(4)]
    per_head = [BceDiceLoss()(h, target) for h in heads]
    torch.testing.assert_close(DeepSupervisionLoss()(heads, target), torch.stack(per_head).mean())
    only_last = DeepSupervisionLoss(head_weights=[0, 0, 0, 5])(heads, target)
    torch.testing.assert_close(only_last, per_head[3])


def test_bad_weights_and_shapes() -> None:
    with pytest.raises(ValueError, match="head_weights must be >= 0"):
        DeepSupervisionLoss(head_weights=[0, 0])
    with pytest.raises(ValueError, match="2 head_weights given for a model with 4 heads"):
        DeepSupervisionLoss(head_weights=[1, 1])([torch.zeros(1, 1, 4, 4)] * 4, torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="must have the same shape"):
        BceDiceLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="loss weights must be >= 0"):
        BceDiceLoss(bce_weight=0, dice_weight=0)
