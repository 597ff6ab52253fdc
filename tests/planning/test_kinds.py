"""A small 12-bit microscopy-like set learns with every recipe value `auto` (the plan decides), where
a fixed weight average and 65535-scaling had given Dice 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.kinds import cells12
from tests.params import project_params
from tests.project import run, tiny_project


@pytest.mark.slow
def test_a_small_12bit_set_learns_with_the_plan(tmp_path: Path) -> None:
    source = tmp_path / "cells"
    names = cells12(source, count=8, side=128)
    project = tiny_project(tmp_path / "repo")
    raw = project_params(
        {
            "model": {"class_names": names},  # the shipped network and side
            "data": {"source": "folder", "path": str(source)},
            "validate": {"min_train": 2},
            "train": {"budget_tflop": 12.0},  # a short run: ~180 steps; every recipe value stays `auto`
        }
    )
    assert all(raw["train"][k] == "auto" for k in ("epochs", "batch_size", "step_size", "ema_decay"))
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    done = run(["dvc", "repro", "train"], project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    plan = json.loads((project / "plans.json").read_text())
    assert plan["fingerprint"]["bit_depth"] == [12] and plan["recipe"]["flip_axes"]["value"] == [0, 1]
    best = json.loads((project / "metrics/train.json").read_text())["best"]
    assert best["dice_cell"] > 0.7, (best, {k: v["value"] for k, v in plan["recipe"].items()})
