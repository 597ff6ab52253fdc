"""dvc.yaml's code deps, generated: each stage depends on exactly the modules its commands import (their
import closure, read from the source by `scripts.code_imports`), a package folder standing for its files when
the stage imports every one of them. Run after moving or adding an import:

    python -m scripts.dvc_deps          # rewrite dvc.yaml's src/ deps in place (the rest is kept as written)
    python -m scripts.dvc_deps --check  # exit 1, naming the stages, when dvc.yaml is not what this generates

tests/pipelines/test_dvc_deps.py runs the check, so deps never drift from the code.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from scripts.code_imports import SRC, command_closure, module_file

ROOT = SRC.parent
DVC_YAML = ROOT / "dvc.yaml"
PACKAGE = Path("src/unetpp")
CODE_DEP = re.compile(r"^\s+- src/")


def imported_files(cmd: str) -> set[Path]:
    """The files (relative to the project) of every `unetpp` module the commands of `cmd` (joined by &&)
    import."""
    files = set()
    for part in cmd.split("&&"):
        program, subcommand = part.split()[:2]
        if program != "unetpp":
            raise ValueError(f"a stage command that does not run `unetpp`: {part.strip()!r}")
        files |= {module_file(m).relative_to(ROOT) for m in command_closure(subcommand)}
    return files


def folded(files: set[Path]) -> list[str]:
    """`files` as deps: a package folder below src/unetpp in place of its files where every .py file in it (at
    any depth) is imported."""
    folders = {parent for f in files for parent in f.parents if PACKAGE in parent.parents}
    whole = {d for d in folders if {p.relative_to(ROOT) for p in (ROOT / d).rglob("*.py")} <= files}
    return sorted(str(f) for f in files | whole if not any(a in whole for a in f.parents))


def expanded(deps: list[str]) -> set[Path]:
    """The code files a stage's src/ deps name (a folder: its .py files)."""
    files = set()
    for dep in deps:
        path = ROOT / dep
        files |= {p.relative_to(ROOT) for p in path.rglob("*.py")} if path.is_dir() else {Path(dep)}
    return files


def code_deps(stage: dict) -> list[str]:
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
    return [d for d in deps if d.startswith("src/")]


def generate(text: str) -> str:
    """`text` (dvc.yaml) with each stage's src/ deps replaced by those its commands import, at the place of
    the first one; everything else as written."""
    stages = yaml.safe_load(text)["stages"]
    lines, out = text.splitlines(keepends=True), []
    current: str | None = None
    written: set[str] = set()
    for line in lines:
        name = re.match(r"^  ([A-Za-z0-9_-]+):", line)
        if name:
            current = name.group(1)
        if current is not None and CODE_DEP.match(line):
            if current not in written:
                indent = line[: len(line) - len(line.lstrip())]
                out += [f"{indent}- {dep}\n" for dep in folded(imported_files(stages[current]["cmd"]))]
                written.add(current)
            continue
        out.append(line)
    missing = sorted(set(stages) - written)
    if missing:
        raise ValueError(f"stages without a src/ dep to put the generated ones in place of: {', '.join(missing)}")
    return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml differs from what is generated")
    args = parser.parse_args()
    text = DVC_YAML.read_text()
    new = generate(text)
    if args.check:
        if new != text:
            old, fresh = yaml.safe_load(text)["stages"], yaml.safe_load(new)["stages"]
            stale = [s for s in old if code_deps(old[s]) != code_deps(fresh[s])]
            print(f"dvc.yaml's code deps are stale for: {', '.join(stale)}; run `python -m scripts.dvc_deps`")
            return 1
        return 0
    DVC_YAML.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
