"""The served guard: confidence estimators on known probabilities, the Mahalanobis score, the verdict an
answer carries, and the guard surviving a weights-only checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unetpp.nn.checkpoint import atomic_save
from unetpp.runtime.forward import Inspection
from unetpp.runtime.guard import Guard, Reference, confidences, head_agreement, soft_dice


def _square(side: int, top: int = 2, size: int = 16, value: float = 0.9) -> torch.Tensor:
    out = torch.zeros(size, size)
    out[top : top + side, top : top + side] = value
    return out


def test_soft_dice_is_one_for_certain_answers_and_falls_with_hesitation() -> None:
    certain = torch.stack([_square(8, value=1.0), torch.zeros(16, 16)])
    assert soft_dice(certain).tolist() == [1.0, 1.0]  # an agreed empty class counts as certain
    hesitant = torch.stack([_square(8, value=0.6), _square(8, value=0.9)])
    sd = soft_dice(hesitant)
    assert sd[0] == pytest.approx(2 * 0.6 / 1.6) and sd[1] == pytest.approx(2 * 0.9 / 1.9)


def test_head_agreement_is_the_mean_pairwise_dice_of_the_heads_masks() -> None:
    one = _square(8)[None]
    heads = torch.stack([one, one, _square(4)[None]])  # two heads agree, the third marks a quarter of it
    quarter = 2 * 16 / (64 + 16)
    assert head_agreement(heads)[0] == pytest.approx((1 + quarter + quarter) / 3)
    assert head_agreement(heads[:1]) is None
    assert set(confidences(Inspection(one, heads[:1], torch.zeros(2)))) == {"soft_dice"}
    assert set(confidences(Inspection(one, heads, torch.zeros(2)))) == {"agreement", "soft_dice", "combined"}


def _guard(threshold: float = 2.0) -> Guard:
    precision = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    network = Reference(0, 2, torch.zeros(2, dtype=torch.float64), precision, threshold)
    descriptors = Reference(2, 3, torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64), 1.0)
    return Guard("soft_dice", {"a": 0.0}, {"a": 0.7}, (network, descriptors))


def test_the_verdict_flags_by_the_fitted_thresholds() -> None:
    guard = _guard()
    near = Inspection(_square(8, value=0.9)[None], _square(8)[None, None], torch.tensor([1.0, 0.0, 0.25]))
    far = Inspection(_square(8, value=0.52)[None], _square(8)[None, None], torch.tensor([0.0, 3.0, 0.0]))
    turned = Inspection(_square(8, value=0.9)[None], _square(8)[None, None], torch.tensor([1.0, 0.0, -1.5]))
    v = guard.verdict(near, ["a"])
    assert v == {
        "confidence": {"a": round(2 * 0.9 / 1.9, 4)},
        "low_confidence": {"a": False},
        "out_of_distribution": False,
        "ood_score": 0.5,  # distance 1 over threshold 2
    }
    v = guard.verdict(far, ["a"])
    assert v["low_confidence"] == {"a": True} and v["out_of_distribution"] and v["ood_score"] == 3.0  # sqrt(4 * 9) / 2
    v = guard.verdict(turned, ["a"])  # the network's block near, the descriptors' over their own threshold
    assert v["out_of_distribution"] and v["ood_score"] == 1.5


def test_the_offset_shifts_and_clips_the_confidence() -> None:
    shifted = Guard("soft_dice", {"a": 0.2}, {"a": 0.5}, _guard().references)
    answer = Inspection(_square(8, value=0.9)[None], _square(8)[None, None], torch.zeros(2))
    assert shifted.confidence(answer, ["a"]) == {"a": 1.0}


def test_the_guard_travels_in_a_weights_only_checkpoint(tmp_path: Path) -> None:
    guard = _guard()
    atomic_save({"guard": guard.as_meta()}, tmp_path / "model.pt")
    back = Guard.of(torch.load(tmp_path / "model.pt", weights_only=True))
    assert back is not None and back.as_meta().keys() == guard.as_meta().keys()
    pairs = zip(back.references, guard.references, strict=True)
    assert all(torch.equal(a.precision, b.precision) and a.as_meta().keys() == b.as_meta().keys() for a, b in pairs)
    assert back.low == guard.low and back.offset == guard.offset
    assert Guard.of({}) is None  # a checkpoint from before the pipeline fitted one


def test_a_champion_fitted_before_the_descriptors_reads_its_leading_features() -> None:
    net = _guard().references[0]
    old = {"estimator": "soft_dice", "offset": {"a": 0.0}, "low": {"a": 0.7}}
    old |= {"center": net.center, "precision": net.precision, "ood_threshold": net.threshold}
    guard = Guard.of({"guard": old})
    assert guard is not None and guard.ood_score(torch.tensor([0.0, 3.0, 9.0])) == 3.0  # the descriptor unread
