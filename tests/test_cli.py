"""The `unetpp` command and the DVC pipeline, run for real on a tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {
    "model": {"widths": [8, 16, 32, 64, 128]},
    "data": {"image_size": 64, "synthetic": {"count": 8, "size": 64}},
    "validate": {"min_train": 2},
}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_summary_reports_every_level_and_mode(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    proc = _run(["unetpp", "summary"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "reports/model.json").read_text())
    rows = {(r["level"], r["mode"]): r for r in summary["levels"]}
    assert len(rows) == 8
    flops = [rows[(lvl, "fast")]["gflops"] for lvl in (1, 2, 3, 4)]
    assert flops == sorted(flops) and flops[0] < 0.2 * flops[3]
    assert rows[(4, "accurate")]["parameters"] == summary["parameters"]
    assert "L4" in proc.stdout


def test_unet_summary_has_one_row(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "arch": "unet"}}))
    proc = _run(["unetpp", "summary"], tmp_path)
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
    proc = _run(["unetpp", "summary"], tmp_path)
    assert proc.returncode == 2
    assert "params.yaml" in proc.stderr and message in proc.stderr
    assert (tmp_path / "reports/model.json").read_text() == "{}"


def _project_params(**overrides: dict) -> dict:
    """The project's params.yaml with sections updated: DVC wants every declared key present."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section] = {**params[section], **values}
    return params


def _outside_the_checkout(folder: str, names: list[str]) -> set[str]:
    """What a fresh clone does not have: the venv, git and DVC state, pipeline outputs, caches."""
    top = {".venv", ".git", ".dvc", "reports", "data", "dvc.lock"} if Path(folder) == ROOT else set()
    return {n for n in names if n in top or "cache" in n}


@pytest.mark.slow
def test_dvc_repro_runs_then_skips(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(ROOT, work, ignore=_outside_the_checkout)
    (work / "params.yaml").write_text(yaml.safe_dump(_project_params(**TINY)))
    assert _run(["dvc", "init", "--no-scm", "-q"], work).returncode == 0
    first = _run(["dvc", "repro"], work)
    assert first.returncode == 0, first.stderr
    for stage in ("summarize", "ingest", "validate"):
        assert f"Running stage '{stage}'" in first.stdout
    assert json.loads((work / "reports/model.json").read_text())["config"]["widths"] == [8, 16, 32, 64, 128]
    assert len((work / "data/prepared/manifest.csv").read_text().splitlines()) == 9
    assert json.loads((work / "reports/validation.json").read_text())["success"] is True
    assert (work / "reports/data_docs/index.html").is_file()
    second = _run(["dvc", "repro"], work)
    assert second.returncode == 0 and "Running stage" not in second.stdout
    (work / "params.yaml").write_text(
        yaml.safe_dump(_project_params(**{**TINY, "model": {**TINY["model"], "norm": "none"}}))
    )
    third = _run(["dvc", "repro"], work)
    assert "Running stage 'summarize'" in third.stdout and "Running stage 'ingest'" not in third.stdout
