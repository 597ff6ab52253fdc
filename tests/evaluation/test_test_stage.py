"""The test stage's scoring: per-case Dice, IoU, HD95 and cup-to-disc error; means with bootstrap intervals;
and no stage but `ingest` (the data gate) and `test` opens a test file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.params import project_params
from tests.project import run, tiny_project
from unetpp.data.synthetic import generate_fundus
from unetpp.scoring.metrics import mean_with_interval as summarize


def test_means_come_with_a_bootstrap_interval_over_finite_cases() -> None:
    values = [0.9, 0.8, 0.95, 0.7, float("nan")]
    s = summarize(values)
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.8375, abs=1e-4)
    assert 0.7 <= s["ci95"][0] < s["mean"] < s["ci95"][1] <= 0.95
    assert summarize(values) == s  # seeded
    assert summarize([float("nan")]) == {"mean": None, "ci95": None, "n": 0}


AUDIT = """
import os, sys
_watch, _log = os.environ["UNETPP_AUDIT_WATCH"], os.environ["UNETPP_AUDIT_LOG"]
def _hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if path.startswith(_watch) and os.path.basename(sys.argv[0]) == "unetpp":
            with open(_log, "a") as fh:
                fh.write(sys.argv[1] + " " + path + "\\n")
sys.addaudithook(_hook)
"""


@pytest.mark.slow
def test_only_the_data_gate_and_the_test_stage_open_test_files(tmp_path: Path) -> None:
    """A folder set with train/val/test subfolders through every stage, each `unetpp` process watched by an
    audit hook: `ingest` measures the test files for the gate, `test` scores them, no other stage opens one."""
    source = tmp_path / "source"
    for split, indices in (("train", range(6)), ("val", range(6, 8)), ("test", range(8, 10))):
        for sub in ("images", "masks"):
            (source / sub / split).mkdir(parents=True)
        for i in indices:
            s = generate_fundus(i, 96, seed=7)
            Image.fromarray(s.image).save(source / "images" / split / f"eye{i}.png")
            Image.fromarray(s.masks[0].astype(np.uint8) * 255).save(source / "masks" / split / f"eye{i}.png")
    project = tiny_project(tmp_path / "repo")
    raw = project_params(
        yaml.safe_load((project / "params.yaml").read_text()),
        {"model": {"class_names": ["disc"]}, "data": {"source": "folder", "path": str(source)}},
    )
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    hooks, log = tmp_path / "hooks", tmp_path / "opened.log"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    env = {"PYTHONPATH": str(hooks), "UNETPP_AUDIT_WATCH": str(source), "UNETPP_AUDIT_LOG": str(log)}
    done = run(["dvc", "repro"], project, **env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    opened = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert {stage for stage, _ in opened} == {"ingest", "test"}  # the hook saw the source being read
    test_files = {(stage, str(Path(p).relative_to(source))) for stage, p in opened if "/test/" in p}
    assert {stage for stage, _ in test_files} == {"ingest", "test"}, sorted(test_files)
    assert {f for stage, f in test_files if stage == "test"} == {
        f"{sub}/test/eye{i}.png" for sub in ("images", "masks") for i in (8, 9)
    }
    assert json.loads((project / "metrics/test.json").read_text())["cases"] == 2
