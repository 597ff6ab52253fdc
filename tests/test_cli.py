"""The `unetpp` command and the DVC pipeline, run for real on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.params import project_params
from tests.project import run

TINY = project_params(
    {
        "model": {"widths": [8, 16, 32, 64, 128]},
        "data": {"image_size": 64, "synthetic": {"count": 8, "size": 64}},
        "validate": {"min_train": 2},
    }
)


def test_summary_reports_every_level_and_mode(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    proc = run(["unetpp", "summary"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "reports/model.json").read_text())
    rows = {(r["level"], r["mode"]): r for r in summary["levels"]}
    assert len(rows) == 8
    flops = [rows[(lvl, "fast")]["gflops"] for lvl in (1, 2, 3, 4)]
    assert flops == sorted(flops) and flops[0] < 0.2 * flops[3]
    assert rows[(4, "accurate")]["parameters"] == summary["parameters"]
    assert "L4" in proc.stdout


def test_unet_summary_has_one_row(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(project_params(TINY, {"model": {"arch": "unet"}})))
    proc = run(["unetpp", "summary"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((tmp_path / "reports/model.json").read_text())["levels"]) == 1


@pytest.mark.parametrize(
    "params, message",
    [
        ({"model": {"norm": "group"}}, "model.norm"),
        ({"model": {"widths": [8, 16]}}, "model.widths"),
        ({"modle": {}}, "modle"),
    ],
)
def test_bad_params_name_the_field_and_keep_old_output(tmp_path: Path, params: dict, message: str) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/model.json").write_text("{}")
    proc = run(["unetpp", "summary"], tmp_path)
    assert proc.returncode == 2
    assert "params.yaml" in proc.stderr and message in proc.stderr
    assert (tmp_path / "reports/model.json").read_text() == "{}"
