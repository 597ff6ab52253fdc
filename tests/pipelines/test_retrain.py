"""The retrain flow under Prefect's test harness on a tiny copy of the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.retrain import StageFailed, _retry_transient, retrain, stage_names
from tests.project import tiny_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_project(tmp_path_factory.mktemp("flow") / "repo")


@pytest.mark.slow
def test_retrain_runs_every_stage_then_promotes_and_reruns_as_a_no_op(
    project: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.artifacts import Artifact

    from unetpp.params import load_params
    from unetpp.registry import Registry

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

    bad_input = StageFailed("ingest", 255, ["ERROR: failed to reproduce 'ingest': ... exited with 2"])
    killed = StageFailed("train", 255, ["ERROR: failed to reproduce 'train': ... exited with -9"])
    assert not _retry_transient(None, None, State(bad_input))
    assert _retry_transient(None, None, State(killed))
    assert _retry_transient(None, None, State(OSError("disk busy")))
