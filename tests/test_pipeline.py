"""The whole pipeline, for real, on tiny data in a copy of the project: the retrain flow with nothing configured."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.background import Background, heavy_run
from tests.project import run, tiny_project

STAGES = ("summarize", "ingest", "validate", "plan", "train", "evaluate", "select", "test", "baseline", "report")


@heavy_run("pipeline")
def _retrained(tmp: Path, environ: Mapping[str, str]) -> tuple[Path, str]:
    """The retrain flow (every DVC stage, register, gate, package) on a tiny copy of the project with nothing
    configured, as `bash scripts/run.sh` runs it: MLflow in the project's `mlruns/`, Prefect's per-process
    server. Its folder and output."""
    project = tiny_project(tmp / "repo", environ=environ)
    first = run([sys.executable, "-m", "pipelines.retrain"], project, environ, MLFLOW_TRACKING_URI="")
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-3000:]
    return project, out


@pytest.fixture(scope="module")
def reproduced(background: Background) -> tuple[Path, str]:
    """The background run's folder and output (each test that uses it fails, not skips, when it broke)."""
    return background.result("pipeline")


@pytest.mark.slow
@pytest.mark.background("pipeline")
def test_dvc_repro_end_to_end(reproduced: tuple[Path, str]) -> None:
    project, stdout = reproduced
    for stage in STAGES:
        assert f"Running stage '{stage}'" in stdout
    assert "promotion: promoted: no champion yet" in stdout  # the embedded default's registry ...
    assert f"taking the promotion lock (file lock {project / 'mlruns' / 'registry.lock'})" in stdout  # ... and lock
    assert (project / "model-store" / "unetpp-v1.mar").is_file()
    for out in (
        "reports/model.json",
        "data/prepared/manifest.csv",
        "reports/validation.json",
        "plans.json",
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
        "models/selected.json",
        "metrics/test.json",
        "reports/test_cases.csv",
        "reports/test_worst.png",
        "metrics/unet/eval.json",
        "metrics/unet/test.json",
        "models/unet/pruned/model.pt",
        "reports/report.md",
        "reports/report_pareto.png",
        "reports/report_curves.png",
        "splits.csv",
        "data/ingest.json",
    ):
        assert (project / out).is_file(), out
    test = json.loads((project / "metrics/test.json").read_text())
    assert test["split"] == "test" and test["cases"] == 2 and test["resolution"].startswith("source")
    assert set(test["dice_disc"]) == {"mean", "ci95", "n"} and test["dice_disc"]["n"] == 2
    assert test["dice_disc"]["ci95"][0] <= test["dice_disc"]["mean"] <= test["dice_disc"]["ci95"][1]
    assert "cdr_abs_error" in test and len(list((project / "reports/test_masks").glob("*.png"))) == 2 * 2
    assert {"failed_disc", "failed_cup", "hd95_cup"} <= set(test)
    baseline = json.loads((project / "metrics/unet/eval.json").read_text())
    assert sorted(baseline) == ["L4_fast", "L4_fast_tta"]  # U-Net: one network, with and without mirroring
    report = (project / "reports/report.md").read_text()
    assert "| U-Net | L4 fast" in report and "| UNet++ | L" in report and "(selected)" in report
    assert (
        "Scored against the generator's exact masks." in report and test["reference"] == "the generator's exact masks"
    )
    assert "## UNet++ against U-Net on the same test cases (paired)" in report and "| dice_mean | " in report

    rows = json.loads((project / "metrics/eval.json").read_text())
    # L1 accurate averages head 1 alone: it is L1 fast, measured once; each with and without mirroring
    base = ["L1_fast"] + [f"L{lv}_{m}" for lv in (2, 3, 4) for m in ("fast", "accurate")]
    assert sorted(rows) == sorted(base + [f"{key}_tta" for key in base])
    assert all(rows[f"{key}_tta"]["tta_flips"] == [1] for key in base)  # fundus: left-right only
    assert all(
        {"dice_disc", "iou_cup", "hd95_disc", "bce_cup", "failed_cup", "gflops", "latency_ms", "parameters"} <= set(r)
        and r["cases"] == 2
        for r in rows.values()
    )
    assert rows["L4_accurate"]["grid_dice_mean"] >= 0  # training's validation on the grid, beside the served figure

    selected = json.loads((project / "models/selected.json").read_text())
    best = max(r["dice_mean"] for r in rows.values())
    eligible = [r for r in rows.values() if r["dice_mean"] >= best - 0.01]
    noise = max(r["latency_spread_ms"] for r in eligible)
    assert selected["metrics"]["latency_ms"] <= min(r["latency_ms"] for r in eligible) + noise

    second = run(["dvc", "repro"], project)  # nothing changed: nothing runs
    assert second.returncode == 0 and "Running stage" not in second.stdout


@pytest.mark.slow
@pytest.mark.background("pipeline")
def test_mlflow_run_holds_params_metrics_artifacts_and_a_model(reproduced: tuple[Path, str]) -> None:
    import mlflow
    import numpy as np

    project = reproduced[0]
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
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
