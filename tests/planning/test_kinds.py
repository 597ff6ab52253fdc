"""Data unlike the default learns with every recipe value `auto` (the plan decides): a small 12-bit
microscopy-like set, where a fixed weight average and 65535-scaling had given Dice 0, and large images
with small targets, which the plan trains on patches and segments with sliding windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.kinds import cells12, specks
from tests.params import project_params
from tests.project import BUSY, run, tiny_project
from unetpp.nn.checkpoint import load_checkpoint


@pytest.mark.slow
@pytest.mark.timeout(BUSY)
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


@pytest.mark.slow
@pytest.mark.timeout(BUSY)
def test_large_images_with_small_targets_train_on_patches(tmp_path: Path) -> None:
    source = tmp_path / "slides"
    names = specks(source, count=8, side=512, radius=(3, 5))
    project = tiny_project(tmp_path / "repo")
    raw = project_params(
        {
            "model": {"class_names": names},
            "data": {"source": "folder", "path": str(source)},
            "validate": {"min_train": 2},
            "train": {"budget_tflop": 8.0},  # ~180 steps of 4 patches
            "evaluate": {"repeats": 2, "warmup": 1},
        }
    )
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    done = run(["dvc", "repro", "select"], project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    plan = json.loads((project / "plans.json").read_text())
    geometry = plan["recipe"]["geometry"]
    assert geometry["value"]["mode"] == "patch" and geometry["tried"][0]["ceiling"]["target"] < 0.95, geometry
    best = json.loads((project / "metrics/train.json").read_text())["best"]
    assert best["dice_target"] > 0.6, (best, {k: v["value"] for k, v in plan["recipe"].items()})
    _, meta = load_checkpoint(project / "models/pruned/model.pt")
    assert meta["geometry"] == geometry["value"]
