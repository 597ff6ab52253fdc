"""The `unetpp` modules a piece of code imports, read from the source (ast), not by importing it.

Every import counts, including those inside functions: they run when the stage does.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_file(name: str) -> Path | None:
    """The file of module `name` under src/ (a package's __init__.py), or None when there is none."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_names(tree: ast.AST) -> set[str]:
    """`unetpp...` modules named by the imports in `tree` (a `from pkg import sub` counts sub too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "unetpp"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "unetpp":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return found


def closure(roots: set[str]) -> set[str]:
    """`roots` and every `unetpp` module they import, transitively, with the packages holding them."""
    todo, seen = set(roots), set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))} - seen  # parent packages run first
        path = module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo |= imported_names(ast.parse(path.read_text())) - seen
    return seen


def command_closure(subcommand: str) -> set[str]:
    """What `unetpp SUBCOMMAND` imports: the CLI module, its `cmd_<subcommand>` function's imports and those of
    the other `cmd_` functions it names (the baseline runs four)."""
    cli = ast.parse((SRC / "unetpp" / "cli.py").read_text())
    commands = {n.name: n for n in cli.body if isinstance(n, ast.FunctionDef) and n.name.startswith("cmd_")}
    func = commands[f"cmd_{subcommand}"]
    named = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and n.id in commands} - {func.name}
    top = ast.Module(body=[n for n in cli.body if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[])
    names = imported_names(top).union(imported_names(func), *(imported_names(commands[n]) for n in named))
    return closure(names) | {"unetpp.cli"}
