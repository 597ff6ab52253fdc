"""Metrics: known values, and the documented rule for empty masks."""

from __future__ import annotations

import pytest
import torch

from unetpp.scoring.metrics import SegmentationMetrics


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.zeros(1, 2, 10, 10)
    target[0, 0, :, :5] = 1  # disc: 50 pixels
    target[0, 1, :2, :5] = 1  # cup: 10 pixels
    probs = torch.zeros(1, 2, 10, 10)
    probs[0, 0, :, :4] = 0.9  # 40 predicted, all inside the disc
    probs[0, 1, :2, :5] = 0.8  # cup exact
    return probs, target


def test_known_dice_iou_per_class_and_mean() -> None:
    m = SegmentationMetrics(["disc", "cup"])
    m.update(*_masks())
    out = m.compute()
    assert out["dice"]["disc"] == pytest.approx(2 * 40 / (40 + 50))
    assert out["iou"]["disc"] == pytest.approx(40 / 50)
    assert out["dice"]["cup"] == pytest.approx(1.0)
    assert out["dice"]["mean"] == pytest.approx((80 / 90 + 1) / 2)


def test_bce_of_probabilities() -> None:
    probs, target = _masks()
    m = SegmentationMetrics(["disc", "cup"])
    m.update(probs, target)
    expected = torch.nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), target, reduction="none")
    assert m.compute()["bce"]["disc"] == pytest.approx(float(expected[0, 0].mean()), rel=1e-5)


def test_empty_masks_count_one_if_predicted_empty_and_zero_otherwise() -> None:
    target = torch.zeros(2, 1, 8, 8)  # both samples have an empty ground truth
    probs = torch.zeros(2, 1, 8, 8)
    probs[1, 0, 0, 0] = 0.7  # the second predicts one false pixel
    m = SegmentationMetrics(["cup"])
    m.update(probs, target)
    out = m.compute()
    assert out["dice"]["cup"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert out["iou"]["cup"] == pytest.approx(0.5)


def test_batches_accumulate_per_sample() -> None:
    probs, target = _masks()
    one, two = SegmentationMetrics(["disc", "cup"]), SegmentationMetrics(["disc", "cup"])
    one.update(torch.cat([probs, probs]), torch.cat([target, target]))
    two.update(probs, target)
    two.update(probs, target)
    assert one.compute() == two.compute()


def test_bad_input() -> None:
    m = SegmentationMetrics(["disc", "cup"])
    with pytest.raises(ValueError, match="no batch was added"):
        m.compute()
    with pytest.raises(ValueError, match=r"must match and have 2 channels \(disc, cup\)"):
        m.update(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
