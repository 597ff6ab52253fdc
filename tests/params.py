"""Test params: the project's params.yaml (the recipe that ships) with explicit overrides, deep-merged."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from unetpp.params import Params

ROOT = Path(__file__).resolve().parents[1]
# what every tiny pipeline in the tests changes: a small network, images and data set, two epochs
TINY: dict[str, Any] = {
    "model": {"widths": [4, 8, 16, 32, 64]},
    "data": {"image_size": 48, "synthetic": {"count": 10, "size": 96}},  # 6 train, 2 val, 2 test (`rank_splits`)
    "validate": {"min_train": 2},
    # too short to learn; the whole image (the resolution rule is tested on its own)
    "train": {"epochs": 2, "batch_size": 4, "lr": 0.003, "learning_guard": False, "scale": "whole"},
    "evaluate": {"repeats": 3, "warmup": 1, "overlays": 2},
    "promote": {"min_dice": 0.0},
    "serve": {"threads": 1},  # one thread per lane (tests/background.py)
}


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def project_params(*overrides: dict[str, Any]) -> dict[str, Any]:
    """params.yaml as a dict with each of `overrides` merged in turn: every declared key stays (DVC wants it)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for layer in overrides:
        params = merge(params, layer)
    return params


def tiny_params(*overrides: dict[str, Any]) -> Params:
    """params.yaml + TINY + `overrides`, validated."""
    return Params.model_validate(project_params(TINY, *overrides))
