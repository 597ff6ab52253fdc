"""MLflow: one tracking store per project, one run per pipeline execution shared by its stages.

`train` opens the run and writes its id to `models/run.json` (a DVC output); `evaluate` and
`select` reopen that run. The store is SQLite at an absolute path (processes change directory),
with artifacts beside it, unless MLFLOW_TRACKING_URI points elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import mlflow
from mlflow.tracking import MlflowClient

from unetpp import layout as L
from unetpp.errors import UserError
from unetpp.files import write_json
from unetpp.params import TrackingParams


def store_dir(tracking: TrackingParams, root: Path | None = None) -> Path:
    """The project's MLflow folder (SQLite database, artifacts, the registry lock)."""
    return ((root or Path.cwd()) / tracking.store).resolve()


def configure(tracking: TrackingParams, root: Path | None = None) -> str:
    """Point MLflow at the project's store (or MLFLOW_TRACKING_URI) and return the experiment id.

    `root` is the project folder (default: the working directory).
    """
    store = store_dir(tracking, root)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        store.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    # artifacts beside a SQLite database (MLflow's default would be relative to the working directory)
    sqlite = uri.startswith("sqlite:///")
    location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri() if sqlite else None
    return client.create_experiment(tracking.experiment, artifact_location=location)


def git_revision() -> str:
    """The checkout's commit (with `-dirty` when it has changes), or `unknown` outside git."""
    try:
        cwd = Path.cwd()
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_run_file(run_id: str, experiment_id: str, path: Path = L.RUN_FILE) -> None:
    write_json(path, {"run_id": run_id, "experiment_id": experiment_id})


@contextmanager
def pipeline_run(tracking: TrackingParams, models_dir: Path, root: Path | None = None) -> Iterator[Any]:
    """The pipeline's MLflow run (its id in `models_dir`/run.json, written by `train`), reopened on the store
    of the project at `root`: how every stage after train logs to it."""
    configure(tracking, root)
    with mlflow.start_run(run_id=read_run_id(L.run_file(models_dir))) as run:
        yield run


def read_run_id(path: Path = L.RUN_FILE) -> str:
    """The pipeline run's id, written by `train`."""
    if not path.is_file():
        raise UserError(f"{path}: no MLflow run id; run `unetpp train` (or `dvc repro train`) first")
    return json.loads(path.read_text())["run_id"]
