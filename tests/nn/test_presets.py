"""Presets: the paper's parameter counts, exactly, and the seed model's size."""

from __future__ import annotations

import pytest

from unetpp.nn.networks import UNet, UNetPlusPlus, count_parameters

PAPER_PRUNED_FAST = {1: 100_961, 2: 511_105, 3: 2_204_961, 4: 9_041_601}


def test_paper_full_model_with_four_heads() -> None:
    assert count_parameters(UNetPlusPlus.from_preset("paper")) == 9_041_700


@pytest.mark.parametrize("level", sorted(PAPER_PRUNED_FAST))
def test_paper_pruned_levels(level: int) -> None:
    model = UNetPlusPlus.from_preset("paper")
    assert count_parameters(model.prune(level, "fast")) == PAPER_PRUNED_FAST[level]


def test_paper_unet_baseline() -> None:
    assert count_parameters(UNet.from_preset("paper")) == 7_759_521


def test_seed_preset_is_the_36_6m_model() -> None:
    model = UNetPlusPlus.from_preset("seed")
    assert model.config["in_channels"] == 3 and model.config["widths"][-1] == 1024
    assert count_parameters(model) == 36_622_792


def test_overrides_win_over_the_preset() -> None:
    model = UNetPlusPlus.from_preset("paper", num_classes=2, in_channels=3)
    assert model.config["num_classes"] == 2 and model.config["in_channels"] == 3
    assert model.config["norm"] == "none"
