"""The retrain flow under Prefect's test harness on a tiny copy of the project (its whole loop, on a growing
folder and a team's servers, is tests/pipelines/test_team.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pipelines.retrain import StageFailed, _retry_transient, command_exit_code, reproduce, retrain
from tests.params import TINY, project_params
from tests.project import BIN, tiny_project
from unetpp.errors import EXIT_FAILURE, EXIT_USER_ERROR, UserError


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


def test_push_without_a_default_remote_is_bad_input(tmp_path: Path) -> None:
    """`--push` on a project with no DVC remote names the fix and is never retried (a UserError)."""
    from pipelines.retrain import push
    from tests.project import run

    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert run(args, tmp_path).returncode == 0
    with pytest.raises(UserError, match="no default DVC remote: add one with `dvc remote add -d"):
        push.fn(tmp_path)
