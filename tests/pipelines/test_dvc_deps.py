"""dvc.yaml's code deps cannot drift from the code: every module a stage's command imports is a dep,
and editing one makes `dvc status` report the stage changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.imports import command_closure, module_file
from tests.project import ROOT, run, tiny_project


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def uncovered(stage_defs: dict[str, dict]) -> list[tuple[str, str]]:
    """(stage, module) for each `unetpp` module a stage's command imports that no dep of it covers."""
    missing = []
    for name, stage in stage_defs.items():
        program, subcommand = stage["cmd"].split()[:2]
        assert program == "unetpp", f"stage {name!r} does not run `unetpp`: {stage['cmd']}"
        deps = [Path(d if isinstance(d, str) else next(iter(d))) for d in stage["deps"]]
        for module in sorted(command_closure(subcommand)):
            path = module_file(module)
            assert path is not None, module
            rel = path.relative_to(ROOT)
            if not any(rel == dep or dep in rel.parents for dep in deps):
                missing.append((name, module))
    return missing


def test_every_imported_module_is_a_dep_of_its_stage() -> None:
    missing = uncovered(stages())
    assert not missing, "dvc.yaml misses deps: " + ", ".join(f"stage {s!r} imports {m}" for s, m in missing)


def test_a_removed_dep_is_named() -> None:
    edited = stages()
    edited["ingest"]["deps"].remove("src/unetpp/runtime")
    assert ("ingest", "unetpp.runtime.preprocess") in uncovered(edited)


@pytest.mark.slow
def test_editing_an_imported_module_marks_the_stage_changed(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "repo")
    done = run(["dvc", "repro", "ingest"], project)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ingest" not in run(["dvc", "status", "ingest"], project).stdout
    cache = project / "src/unetpp/runtime/__pycache__"  # what importing the code leaves behind
    cache.mkdir(exist_ok=True)
    (cache / "preprocess.cpython-311.pyc").write_bytes(b"byte code")
    assert "ingest" not in run(["dvc", "status", "ingest"], project).stdout, "byte-code caches changed a stage"
    with (project / "src/unetpp/runtime/preprocess.py").open("a") as fh:
        fh.write("\n# an edit\n")
    status = run(["dvc", "status", "ingest"], project).stdout
    assert "ingest:" in status and "modified:" in status and "src/unetpp/runtime" in status, status
