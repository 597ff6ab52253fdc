"""The retrain flow under Prefect's test harness on a tiny copy of the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pipelines.retrain import StageFailed, _retry_transient, command_exit_code, reproduce, retrain, stage_names
from tests.conftest import labelled_pairs
from tests.params import TINY, project_params
from tests.project import BIN, BUSY, run, tiny_project
from unetpp.errors import EXIT_FAILURE, EXIT_USER_ERROR, UserError


@pytest.mark.slow
@pytest.mark.timeout(BUSY)
def test_the_retraining_loop_on_a_growing_folder(
    tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Run 1 -> version 1, champion; eight new labelled pairs -> run 2 ingests only them, trains, registers
    version 2 and gates it on paired val cases; run 3 with nothing new runs nothing and registers nothing."""
    from prefect.artifacts import Artifact

    from unetpp.params import load_params
    from unetpp.registry.promotion import Registry

    source = tmp_path / "source"
    labelled_pairs(source, range(12), size=96)  # by split_of: 8 train, 3 val, 1 test
    project = tiny_project(tmp_path / "repo")
    folder = {"model": {"class_names": ["disc"]}, "data": {"source": "folder", "path": str(source)}}
    (project / "params.yaml").write_text(yaml.safe_dump(project_params(TINY, folder)))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    first = retrain(project=str(project))
    assert first["stages"] == dict.fromkeys(stage_names(project), "ran")
    assert first["data"]["new"] == {"train": 8, "val": 3, "test": 1}
    assert first["registered"] == {"name": "unetpp", "version": "1", "created": True}
    assert first["decision"]["promoted"] and "no champion yet" in first["decision"]["reason"]
    assert first["package"]["archive"].endswith("model-store/unetpp-v1.mar")
    for key in ("validation", "metrics-per-level", "selection", "promotion"):
        assert Artifact.get(key) is not None, key
    ledger = (project / "splits.csv").read_text().splitlines()

    labelled_pairs(source, range(12, 20), size=96)  # a month of labelling: 4 train, 3 val, 1 test
    status = run(["dvc", "status", "ingest"], project).stdout
    assert "modified:" in status and str(source) in status, status
    second = retrain(project=str(project))
    assert second["stages"]["ingest"] == second["stages"]["train"] == "ran"
    assert second["data"]["new"] == {"train": 4, "val": 3, "test": 1} and second["data"]["reused"] == {
        "train": 8,
        "val": 3,
        "test": 1,
    }
    assert second["registered"] == {"name": "unetpp", "version": "2", "created": True}
    decision = second["decision"]
    assert "paired on 6 val cases, as served" in decision["reason"] and decision["difference"]["n"] == 6
    assert decision["test"]["cases"] == 2 and {"challenger_dice", "champion_dice"} <= set(decision["test"])
    assert (project / "splits.csv").read_text().splitlines()[: len(ledger)] == ledger  # 20 ids: the 12 sort first
    registry = Registry(load_params(project / "params.yaml"), project)
    tags = registry.version("2").tags
    assert tags["gate.cases"] == "6" and tags["gate.difference_ci95"].startswith("[")
    assert tags["gate.champion_version"] == "1" and "info.test.champion_dice" in tags

    third = retrain(project=str(project))
    assert third["stages"] == dict.fromkeys(stage_names(project), "skipped") and third["data"] is None
    assert third["registered"] == {"name": "unetpp", "version": "2", "created": False}
    assert [str(v.version) for v in registry.versions()] == ["1", "2"]
    out = caplog.text
    assert "none ran: nothing changed" in out and "source unchanged since the last run" in out
    assert "already registered: no new version" in out


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
    """Real `dvc repro` of `ingest` on a folder source without images/: the command exits 2, DVC 255."""
    project = tiny_project(tmp_path / "repo")
    raw = project_params(TINY, {"model": {"class_names": ["cell"]}})
    (tmp_path / "empty").mkdir()
    raw["data"] |= {"source": "folder", "path": str(tmp_path / "empty")}
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


def test_a_missing_source_is_refused_before_any_stage(tmp_path: Path, prefect_harness: None) -> None:
    """DVC would fail on the missing dependency with its own exit code (retried as if transient): the flow
    refuses it first, as bad input, naming the path."""
    project = tiny_project(tmp_path / "repo")
    raw = project_params(TINY, {"model": {"class_names": ["cell"]}})
    raw["data"] |= {"source": "folder", "path": str(tmp_path / "missing")}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"data.path .*missing: no such file or folder"):
        retrain(project=str(project))
    assert not (project / "dvc.lock").exists()


def test_the_exit_code_file_decides_and_a_missing_one_means_retry(tmp_path: Path) -> None:
    (tmp_path / "exit.json").write_text('{"command": "train", "code": 2, "error": "x"}')
    assert command_exit_code(tmp_path / "exit.json") == EXIT_USER_ERROR
    assert command_exit_code(tmp_path / "none.json") == EXIT_FAILURE
