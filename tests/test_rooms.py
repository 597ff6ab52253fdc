"""The rooms keep their walls: what a served archive ships (`unetpp.serving.server.SHIPPED`: the
`nn` and `runtime` rooms and `errors`) imports nothing of the pipeline, and the handler needs nothing else."""

from __future__ import annotations

import ast

import pytest

from tests.imports import SRC, closure, imported_names
from unetpp.serving.server import SHIPPED

SHIPPED_MODULES = {f"unetpp.{name.removesuffix('.py')}" for name in SHIPPED} - {"unetpp.__init__"}


def _shipped(module: str) -> bool:
    return module == "unetpp" or ".".join(module.split(".")[:2]) in SHIPPED_MODULES


@pytest.mark.parametrize("room", ["nn", "runtime"])
def test_nn_and_runtime_import_only_what_ships(room: str) -> None:
    outside = []
    for path in sorted((SRC / "unetpp" / room).rglob("*.py")):
        for module in imported_names(ast.parse(path.read_text())):
            if not _shipped(module):
                outside.append(f"{path.relative_to(SRC)} imports {module}")
    assert not outside, outside


def test_the_handler_needs_only_what_ships() -> None:
    handler = ast.parse((SRC / "unetpp" / "serving" / "handler.py").read_text())
    needed = closure(imported_names(handler))
    assert {"unetpp.nn.checkpoint", "unetpp.runtime.preprocess", "unetpp.runtime.geometry"} <= needed
    assert all(_shipped(m) for m in needed), sorted(m for m in needed if not _shipped(m))
