"""The project's layout: where each stage reads and writes, relative to the project folder. The CLI's
defaults, the Prefect flows and the stage messages name these; dvc.yaml's commands spell the same paths (a
test holds each command's flags to the CLI's defaults)."""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
SPLITS = Path("splits.csv")  # the splits ledger, kept in git
PREPARED = Path("data/prepared")
PLANS = Path("plans.json")
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")
RUN_FILE = MODELS / "run.json"  # the pipeline's MLflow run, opened by `train`
SELECTED = MODELS / "selected.json"


def served_checkpoint(models: Path) -> Path:
    """What `select` exports and `test` scores, under a models folder (models/, models/unet/ for the
    baseline)."""
    return models / "pruned" / "model.pt"
