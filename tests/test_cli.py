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
    assert len(rows) == 7  # L1 once: both of its modes are head 1
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


def test_exit_codes_tell_bad_input_from_a_failure_and_reach_the_flow(tmp_path: Path) -> None:
    """2: the input is wrong (never retried); 1: anything else (retried). Both written to $UNETPP_EXIT_FILE."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    exit_file = tmp_path / "exit.json"
    missing = run(["unetpp", "evaluate"], tmp_path, UNETPP_EXIT_FILE=str(exit_file))
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr
    assert json.loads(exit_file.read_text())["code"] == 2

    (tmp_path / "models").mkdir()
    (tmp_path / "models/best.pt").write_bytes(b"not a checkpoint")  # a torn file: not the user's input
    torn = run(["unetpp", "evaluate"], tmp_path, UNETPP_EXIT_FILE=str(exit_file))
    assert torn.returncode == 1 and "Traceback" in torn.stderr
    assert json.loads(exit_file.read_text()) | {"error": ""} == {"command": "evaluate", "code": 1, "error": ""}
