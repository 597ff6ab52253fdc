"""A two-stage cascade end to end, for real, on generated large photographs: 1,024-px fundus images whose disc
is about a seventh of the width. The plan chooses the cascade from the data, `train` fits both stages,
evaluate, select and `test` score the chain as served, and the served checkpoint answers at the source size."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from tests.background import Background, heavy_run
from tests.params import TINY, project_params
from tests.project import BUSY, run, tiny_project
from unetpp.data.synthetic import generate_fundus
from unetpp.runtime.served import load_served

LARGE = {"count": 10, "size": 1024}  # 6 train, 2 val, 2 test


@heavy_run("cascade")
def _cascaded(tmp: Path, environ: Mapping[str, str]) -> Path:
    """`dvc repro test` on the large photographs with the plan's every value `auto` but a short budget."""
    project = tiny_project(tmp / "repo", environ=environ)
    raw = project_params(
        TINY,
        {
            "model": {"widths": [8, 16, 32, 64, 128]},
            "data": {"image_size": 64, "synthetic": LARGE},
            "train": {"scale": "auto", "epochs": "auto", "budget_tflop": 1.5, "cap_tflop": 1.5, "lr": 0.003},
        },
    )
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    done = run(["dvc", "repro", "test"], project, environ)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return project


@pytest.mark.slow
@pytest.mark.timeout(BUSY)
@pytest.mark.background("cascade")
def test_large_photographs_get_a_cascade_scored_as_served_at_the_source_size(background: Background) -> None:
    project = background.result("cascade")
    recipe = json.loads((project / "plans.json").read_text())["recipe"]
    region = recipe["region"]
    assert region["value"] is not None and recipe["geometry"]["value"] == {"mode": "whole", "size": 64, "scale": 1.0}
    assert region["spans_px"]["cup"] < region["needs_px"]["cup"] == 40  # the whole grid hides the cup's boundary
    assert region["forward_px"]["cascade"] < min(v for k, v in region["forward_px"].items() if k != "cascade")
    trained = json.loads((project / "metrics/train.json").read_text())
    assert trained["first_stage"]["validations"] >= 1 and trained["validations"] >= 1
    served = load_served(project / "models/pruned/model.pt")
    assert [s.config.geometry.size for s in served.stages] == [64, region["value"]["size"]]
    held_out = json.loads((project / "metrics/test.json").read_text())
    assert held_out["cases"] == 2 and held_out["dice_disc"]["mean"] > 0.5, held_out  # scored as served
    photograph = generate_fundus(3, size=1024, seed=7)  # a stream the data set does not hold
    answer = next(served.answers([photograph.image]))
    assert answer.seen.region is not None and answer.masks.shape == (2, 1024, 1024)
    box = answer.seen.region
    outside = answer.masks.copy()
    outside[:, box.top : box.bottom, box.left : box.right] = False
    assert not outside.any() and answer.body["size"] == [1024, 1024]  # pasted back: nothing outside the region
