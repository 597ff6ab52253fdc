"""A few optimisation steps on one generated image lower the loss and raise Dice."""

from __future__ import annotations

import torch

from tests.phantom import disc_cup_phantom
from unetpp.nn.networks import UNetPlusPlus
from unetpp.scoring.metrics import SegmentationMetrics
from unetpp.training.losses import DeepSupervisionLoss


def _dice(model: UNetPlusPlus, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    metrics = SegmentationMetrics(["disc", "cup"])
    with torch.inference_mode():
        metrics.update(model.predict(x, 4, "accurate"), y)
    model.train()
    return metrics.compute()["dice"]["mean"]


def test_tiny_overfit() -> None:
    x, y = disc_cup_phantom(64)
    model = UNetPlusPlus.from_preset("tiny", norm="instance")
    loss_fn = DeepSupervisionLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    dice_before = _dice(model, x, y)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    dice_after = _dice(model, x, y)
    assert dice_after > dice_before + 0.3
    assert dice_after > 0.8
