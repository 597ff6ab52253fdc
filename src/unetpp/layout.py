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
BASELINE = "unet"  # the U-Net baseline's folder under models/, metrics/, plots/ and reports/


# Under a models folder (models/, models/unet/ for the baseline):
def best_checkpoint(models: Path) -> Path:
    """The kept epoch's model (`train`), which evaluate and select read."""
    return models / "best.pt"


def last_checkpoint(models: Path) -> Path:
    """Training's resume scratch: not a DVC output, git-ignored."""
    return models / "last.pt"


def coarse_models(models: Path) -> Path:
    """A cascade's first stage while training (its best.pt, last.pt, curve): scratch, git-ignored; the second
    stage's best.pt holds it."""
    return models / "coarse"


def run_file(models: Path) -> Path:
    """The pipeline's MLflow run id, written by `train`, reopened by every later stage."""
    return models / "run.json"


def selected_file(models: Path) -> Path:
    """What `select` chose and why, with the logged model's URI (what the registry registers)."""
    return models / "selected.json"


def served_checkpoint(models: Path) -> Path:
    """What `select` exports and `test` scores: the served model's checkpoint."""
    return models / "pruned" / "model.pt"


RUN_FILE = run_file(MODELS)
SELECTED = selected_file(MODELS)
