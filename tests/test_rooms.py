"""The rooms keep their walls: what a served archive ships (`unetpp.serving.server.SHIPPED`: the `nn` and
`runtime` rooms, `errors` and `files`) imports nothing of the pipeline, and the handler needs nothing else;
each room imports only rooms on the floors below it; no module but the CLI imports a stage."""

from __future__ import annotations

import ast

import pytest

from scripts.code_imports import SRC, closure, imported_names
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


# The rooms from the ground up: each imports only rooms below it (`__init__`: the package's version).
FLOORS = [
    ["__init__", "errors", "files", "layout"],
    ["params", "nn"],
    ["runtime"],
    ["data"],
    ["scoring", "tracking"],
    ["planning"],
    ["training"],
    ["evaluation"],
    ["registry"],
    ["monitoring", "serving"],
    ["stack"],
    ["cli"],
]


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, set[str]]:
    """Each `unetpp` module and the `unetpp` modules it imports."""
    out = {}
    for path in sorted((SRC / "unetpp").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        out[name] = imported_names(ast.parse(path.read_text()))
    return out


def test_every_room_imports_only_rooms_below_it() -> None:
    floor = {room: k for k, rooms in enumerate(FLOORS) for room in rooms}
    found = {_room(m) for m in _modules()}
    assert found <= set(floor), f"rooms without a floor: {sorted(found - set(floor))}"
    upward = [
        f"{m} imports {i}"
        for m, imports in _modules().items()
        for i in imports
        if _room(i) != _room(m) and floor[_room(i)] >= floor[_room(m)]
    ]
    assert not upward, upward


# The modules that are a pipeline stage (what `unetpp <stage>` runs); the GX gate (`data.validate`) is a
# library ingest calls as well as a stage of its own.
STAGE_MODULES = {
    "unetpp.data.ingest",
    "unetpp.planning.plan",
    "unetpp.training.loop",
    "unetpp.evaluation.evaluate",
    "unetpp.evaluation.select",
    "unetpp.evaluation.test",
    "unetpp.evaluation.report",
    "unetpp.evaluation.summary",
}


def test_no_phase_imports_a_stage_module() -> None:
    """A stage module is imported by the CLI alone: what phases share lives in the rooms below the stages."""
    modules = _modules()
    assert modules.keys() >= STAGE_MODULES
    wrong = [f"{m} imports {i}" for m, imports in modules.items() if m != "unetpp.cli" for i in imports & STAGE_MODULES]
    assert not wrong, wrong
