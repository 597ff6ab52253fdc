"""The whole DVC pipeline, for real, on tiny data in a copy of the project, MLflow on a temporary store."""

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
    "model": {"widths": [4, 8, 16, 32, 64]},
    "data": {"image_size": 48, "synthetic": {"count": 8, "size": 64}},
    "validate": {"min_train": 2},
    "train": {"epochs": 2, "batch_size": 4, "lr": 0.003},
    "evaluate": {"repeats": 3, "warmup": 1, "overlays": 2},
}
STAGES = ("summarize", "ingest", "validate", "train", "evaluate", "select")


def _project_params(**overrides: dict) -> dict:
    """The project's params.yaml with sections updated: DVC wants every declared key present."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section] = {**params[section], **values}
    return params


def _outside_the_checkout(folder: str, names: list[str]) -> set[str]:
    """What a fresh clone does not have: the venv, git and DVC state, pipeline outputs, caches."""
    top = {".venv", ".git", ".dvc", "reports", "data", "models", "metrics", "plots", "mlruns", "dvc.lock"}
    return {n for n in names if (Path(folder) == ROOT and n in top) or "cache" in n}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pipeline") / "repo"
    shutil.copytree(ROOT, work, ignore=_outside_the_checkout)
    (work / "params.yaml").write_text(yaml.safe_dump(_project_params(**TINY)))
    assert _run(["dvc", "init", "--no-scm", "-q"], work).returncode == 0
    return work


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd.parent / 'mlflow.db'}",
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_dvc_repro_end_to_end(project: Path) -> None:
    first = _run(["dvc", "repro"], project)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout
    for out in (
        "reports/model.json",
        "data/prepared/manifest.csv",
        "reports/validation.json",
        "reports/data_docs/index.html",
        "models/best.pt",
        "models/last.pt",
        "models/run.json",
        "metrics/train.json",
        "metrics/train_curve.csv",
        "metrics/train_curve.png",
        "metrics/eval.json",
        "plots/pruning.csv",
        "plots/pareto.png",
        "plots/overlays.png",
        "models/pruned/model.pt",
        "models/pruned/model.pt2",
        "models/selected.json",
    ):
        assert (project / out).is_file(), out

    rows = json.loads((project / "metrics/eval.json").read_text())
    assert sorted(rows) == sorted(f"L{lv}_{m}" for lv in (1, 2, 3, 4) for m in ("fast", "accurate"))
    assert all(
        {"dice_disc", "iou_cup", "bce_mean", "gflops", "latency_ms", "parameters"} <= set(r) for r in rows.values()
    )

    selected = json.loads((project / "models/selected.json").read_text())
    best = max(r["dice_mean"] for r in rows.values())
    eligible = [r for r in rows.values() if r["dice_mean"] >= best - 0.01]
    assert selected["metrics"]["latency_ms"] == min(r["latency_ms"] for r in eligible)

    second = _run(["dvc", "repro"], project)
    assert second.returncode == 0 and "Running stage" not in second.stdout


@pytest.mark.slow
def test_mlflow_run_holds_params_metrics_artifacts_and_a_model(project: Path) -> None:
    import mlflow
    import numpy as np

    if not (project / "models/run.json").is_file():
        pytest.skip("the pipeline did not run")
    mlflow.set_tracking_uri(f"sqlite:///{project.parent / 'mlflow.db'}")
    run = mlflow.get_run(json.loads((project / "models/run.json").read_text())["run_id"])
    assert run.data.params["model.arch"] == "unetpp" and run.data.params["train.epochs"] == "2"
    assert {"train_loss", "dice_disc", "best_dice_mean", "L1_fast.latency_ms", "selected.dice_mean"} <= set(
        run.data.metrics
    )
    assert {"git_revision", "data_manifest_sha256", "data_source", "device", "selected_level"} <= set(run.data.tags)
    client = mlflow.MlflowClient()
    paths = {
        a.path
        for folder in ("plots", "checkpoints", "evaluate")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert {"plots/train_curve.png", "checkpoints/best.pt", "evaluate/pareto.png", "evaluate/overlays.png"} <= paths

    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    import torch

    for batch in (1, 3):
        with torch.inference_mode():
            out = model(torch.from_numpy(np.zeros((batch, 3, 48, 48), np.float32)))
        assert out.shape == (batch, 2, 48, 48)
