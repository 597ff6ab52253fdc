"""dvc.yaml's code deps cannot drift from the code: they are what `scripts.dvc_deps` generates, a stage's
code deps are exactly the modules its commands import (every command of a multi-command stage; a folder for
a package it imports whole), and editing one makes `dvc status` report the stage changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.dvc_deps import code_deps, expanded, folded, generate, imported_files
from tests.project import ROOT, run, tiny_project
from unetpp import layout as L
from unetpp.cli import COMMANDS


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def uncovered(stage_defs: dict[str, dict]) -> list[tuple[str, str]]:
    """(stage, file) for each module a stage's commands import that is not a dep, and each code dep that
    none of them imports (a dep too broad: editing it would re-run the stage for nothing)."""
    wrong = []
    for name, stage in stage_defs.items():
        imported, deps = imported_files(stage["cmd"]), expanded(code_deps(stage))
        wrong += [(name, f"imports {f}") for f in sorted(imported - deps)]
        wrong += [(name, f"depends on {f}, which it does not import") for f in sorted(deps - imported)]
    return wrong


def test_every_imported_module_is_a_dep_of_its_stage() -> None:
    wrong = uncovered(stages())
    assert not wrong, "dvc.yaml deps differ from the imports: " + "; ".join(f"stage {s!r} {w}" for s, w in wrong)


def test_dvc_yaml_is_what_the_generator_writes() -> None:
    text = (ROOT / "dvc.yaml").read_text()
    assert generate(text) == text, "dvc.yaml's code deps are stale: run `python -m scripts.dvc_deps`"


def test_a_removed_dep_and_a_broad_one_are_named() -> None:
    edited = stages()
    edited["ingest"]["deps"].remove("src/unetpp/runtime/preprocess.py")
    edited["report"]["deps"].append("src/unetpp/training/loop.py")
    edited["baseline"]["deps"].remove("src/unetpp/evaluation/test.py")  # its last command, `unetpp test`
    assert ("ingest", "imports src/unetpp/runtime/preprocess.py") in uncovered(edited)
    assert ("report", "depends on src/unetpp/training/loop.py, which it does not import") in uncovered(edited)
    assert ("baseline", "imports src/unetpp/evaluation/test.py") in uncovered(edited)


def test_a_folder_stands_for_its_files_only_when_every_one_is_imported() -> None:
    every = expanded(["src/unetpp/scoring"])
    assert Path("src/unetpp/scoring/risk.py") in every and folded(every) == ["src/unetpp/scoring"]
    assert folded(every - {Path("src/unetpp/scoring/risk.py")}) == sorted(
        str(p) for p in every - {Path("src/unetpp/scoring/risk.py")}
    )


@pytest.mark.slow
def test_editing_an_imported_module_marks_the_stage_changed(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "repo")
    done = run(["dvc", "repro", "ingest"], project)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ingest" not in run(["dvc", "status", "ingest"], project).stdout
    report = project / "src/unetpp/evaluation/report.py"
    report.write_text(report.read_text() + "\n# an edit\n")
    assert "ingest" not in run(["dvc", "status", "ingest"], project).stdout, "a module ingest does not import"
    cache = project / "src/unetpp/runtime/__pycache__"  # what importing the code leaves behind
    cache.mkdir(exist_ok=True)
    (cache / "preprocess.cpython-311.pyc").write_bytes(b"byte code")
    assert "ingest" not in run(["dvc", "status", "ingest"], project).stdout, "byte-code caches changed a stage"
    with (project / "src/unetpp/runtime/preprocess.py").open("a") as fh:
        fh.write("\n# an edit\n")
    status = run(["dvc", "status", "ingest"], project).stdout
    assert "ingest:" in status and "modified:" in status and "src/unetpp/runtime/preprocess.py" in status, status


def test_stage_commands_name_the_project_layout() -> None:
    """Each path a stage command passes is the CLI's default (`unetpp.layout`), or a folder inside it (the
    baseline's models/unet): dvc.yaml and the code agree on where each stage reads and writes."""
    wrong = []
    for name, stage in stages().items():
        for part in stage["cmd"].split("&&"):
            words = part.split()
            defaults = COMMANDS[words[1]][1] | {"--params": str(L.PARAMS)}
            for flag, value in zip(words[2::2], words[3::2], strict=True):
                default = defaults.get(flag)
                if default is not None and value != default and Path(value).parent != Path(default):
                    wrong.append(f"stage {name!r}: {flag} {value} (the layout's: {default})")
    assert not wrong, wrong
