"""The retrain flow under Prefect's test harness on a tiny copy of the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pipelines.retrain import StageFailed, _retry_transient, command_exit_code, reproduce, retrain, stage_names
from tests.params import TINY, project_params
from tests.project import BIN, tiny_project
from unetpp.errors import EXIT_FAILURE, EXIT_USER_ERROR


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_project(tmp_path_factory.mktemp("flow") / "repo")


@pytest.mark.slow
def test_retrain_runs_every_stage_then_promotes_and_reruns_as_a_no_op(
    project: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.artifacts import Artifact

    from unetpp.params import load_params
    from unetpp.registry.promotion import Registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project.parent / 'mlflow.db'}")
    first = retrain(project=str(project))
    assert first["stages"] == dict.fromkeys(stage_names(project), "ran")
    assert first["registered"] == {"name": "unetpp", "version": "1", "created": True}
    assert first["decision"]["promoted"] and "no champion yet" in first["decision"]["reason"]
    out = caplog.text
    assert "retrain summary" in out and "promotion: promoted" in out and "champion:  version 1" in out
    assert first["package"]["archive"].endswith("model-store/unetpp-v1.mar")
    assert first["package"]["action"].startswith("packaged; TorchServe not running")
    for key in ("validation", "metrics-per-level", "selection", "promotion"):
        assert Artifact.get(key) is not None, key

    second = retrain(project=str(project))
    assert second["stages"] == dict.fromkeys(stage_names(project), "skipped")
    assert second["registered"] == {"name": "unetpp", "version": "1", "created": False}
    assert not second["decision"]["promoted"] and "already the champion" in second["decision"]["reason"]
    assert second["package"]["action"].startswith("already packaged")
    registry = Registry(load_params(project / "params.yaml"), project)
    assert [str(v.version) for v in registry.versions()] == ["1"]
    assert registry.aliases() == {"challenger": "1", "champion": "1"}


def test_only_failures_that_may_pass_are_retried() -> None:
    class State:
        def __init__(self, err: Exception) -> None:
            self.err = err

        def result(self) -> None:
            raise self.err

    bad_input = StageFailed("ingest", EXIT_USER_ERROR, ["ERROR: failed to reproduce 'ingest'"])
    crashed = StageFailed("train", EXIT_FAILURE, ["ERROR: failed to reproduce 'train': ... exited with 2"])
    assert not _retry_transient(None, None, State(bad_input))
    assert _retry_transient(None, None, State(crashed))  # the code decides, not the text
    assert _retry_transient(None, None, State(OSError("disk busy")))


def test_a_stage_that_rejects_its_input_fails_with_its_own_exit_code(
    tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real `dvc repro` of `ingest` on a folder source that does not exist: the command exits 2, DVC 255."""
    project = tiny_project(tmp_path / "repo")
    raw = project_params(TINY, {"model": {"class_names": ["cell"]}})
    raw["data"] |= {"source": "folder", "path": str(tmp_path / "missing")}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    from prefect import flow

    @flow
    def ingest_only() -> str:
        return reproduce("ingest", project)

    with pytest.raises(StageFailed) as failed:
        ingest_only()
    assert failed.value.code == EXIT_USER_ERROR and not failed.value.transient
    assert "a folder source needs images/ and masks/" in str(failed.value)


def test_the_exit_code_file_decides_and_a_missing_one_means_retry(tmp_path: Path) -> None:
    (tmp_path / "exit.json").write_text('{"command": "train", "code": 2, "error": "x"}')
    assert command_exit_code(tmp_path / "exit.json") == EXIT_USER_ERROR
    assert command_exit_code(tmp_path / "none.json") == EXIT_FAILURE
