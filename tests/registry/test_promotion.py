"""The registry on a temporary MLflow store: register, the gate's cases, rollback, racing promotions."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.models import TINY_PARAMS, fit_tiny, log_selection
from tests.params import project_params
from unetpp.data.ingest import ingest
from unetpp.data.prepared import prepared_cases
from unetpp.errors import UserError
from unetpp.nn.networks import UNetPlusPlus
from unetpp.params import Params, PromoteParams
from unetpp.registry.promotion import CHALLENGER, CHAMPION, PREVIOUS, Registry, RegistryError, decide
from unetpp.runtime.served import ServedModel
from unetpp.scoring.cases import per_case_dice, score_cases

SIZE = 48


# --- the policy ----------------------------------------------------------------------------
CASES = np.linspace(0.6, 0.95, 30)  # a champion's per-case Dice on 30 validation cases


@pytest.mark.parametrize(
    ("shift", "promoted", "words"),
    [
        (0.02, True, "+0.0200"),  # better on every case
        (-0.02, False, "< -tolerance 0.005"),  # worse on every case
        (0.0, True, ">= -tolerance"),  # equal
        (-0.004, True, "tolerance 0.005"),  # worse, within the tolerance
    ],
)
def test_decide_on_the_paired_difference(shift: float, promoted: bool, words: str) -> None:
    ok, reason, diff = decide(list(CASES + shift), 10.0, list(CASES), PromoteParams(tolerance=0.005))
    assert ok is promoted and words in reason and diff["n"] == 30 and "paired on 30 val cases" in reason


def test_pairing_sees_what_two_overlapping_intervals_hide() -> None:
    """The challenger is better on 27 of 30 cases by 0.01; the cases vary by 0.35: paired, the gain is clear."""
    rng = np.random.default_rng(0)
    challenger = CASES + 0.01 + rng.normal(0, 0.002, 30)
    challenger[:3] -= 0.03
    ok, _, diff = decide(list(challenger), 10.0, list(CASES), PromoteParams(tolerance=0.0))
    assert ok and diff["ci95"][0] > 0
    ok, _, diff = decide(list(CASES - 0.01), 10.0, list(CASES), PromoteParams(tolerance=0.005))
    assert not ok and diff["ci95"][1] < 0


@pytest.mark.parametrize(("dice", "promoted"), [(0.6, True), (0.4, False)])
def test_without_a_champion_the_floor_decides(dice: float, promoted: bool) -> None:
    ok, reason, diff = decide([dice] * 5, 10.0, None, PromoteParams(min_dice=0.5))
    assert ok is promoted and "no champion yet" in reason and diff is None


def test_decide_latency_budget() -> None:
    ok, reason, _ = decide([0.99], 30.0, [0.5], PromoteParams(max_latency_ms=20))
    assert not ok and "over the budget" in reason


# --- the registry, for real ------------------------------------------------------------------
def _params(**overrides: dict) -> Params:
    return Params.model_validate(project_params(TINY_PARAMS, overrides))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder: params.yaml, tiny prepared data, and its own MLflow store."""
    root = tmp_path_factory.mktemp("registry")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    ingest(_params(), root / "data" / "prepared")
    return root


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="module")
def trained(project: Path) -> UNetPlusPlus:
    return fit_tiny(_params(), project / "data" / "prepared")


def _random() -> UNetPlusPlus:
    return fit_tiny(_params(), Path(), steps=0, seed=1)


def _select(model: UNetPlusPlus, models: Path, **kw: object) -> Path:
    return log_selection(model, models, _params(), **kw)


def _register(registry: Registry, model: UNetPlusPlus, folder: Path, **kw: object) -> str:
    version, created = registry.register(_select(model, folder, **kw))
    assert created
    return str(version.version)


def test_register_once_with_tags(project: Path, store: str, tmp_path: Path) -> None:
    registry = Registry(_params(), project)
    models = _select(_random(), tmp_path / "m1", manifest_sha="f" * 64)
    first, created = registry.register(models)
    again, created_again = registry.register(models)
    assert created and not created_again and str(first.version) == str(again.version) == "1"
    assert registry.aliases() == {"challenger": "1"}
    tags = first.tags
    assert tags["level"] == "2" and tags["mode"] == "fast" and tags["data_manifest_sha256"] == "f" * 64
    assert {"val.dice_disc", "val.dice_cup", "latency_ms", "git_revision", "pipeline_run_id"} <= set(tags)


def test_no_champion_then_better_then_worse_then_rollback(
    project: Path, store: str, tmp_path: Path, trained: UNetPlusPlus
) -> None:
    prepared = project / "data" / "prepared"
    registry = Registry(_params(), project)
    v1 = _register(registry, _random(), tmp_path / "a")
    first = registry.gate(v1, prepared)
    assert first.promoted and "no champion yet" in first.reason and registry.aliases()[CHAMPION] == v1

    v2 = _register(registry, trained, tmp_path / "b")
    better = registry.gate(v2, prepared)
    assert better.promoted and better.challenger_dice > better.champion_dice
    assert registry.aliases()[CHAMPION] == v2 and registry.aliases()[PREVIOUS] == v1
    assert registry.version(v2).tags["replaced"] == v1

    v3 = _register(registry, _random(), tmp_path / "c")
    worse = registry.gate(v3, prepared)
    assert not worse.promoted and worse.champion_after == v2 and "<" in worse.reason
    assert registry.aliases()[CHAMPION] == v2
    tags = registry.version(v3).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.cases"] == str(worse.cases) == "2"
    assert float(tags["gate.difference"]) == pytest.approx(worse.difference["mean"], abs=1e-4)
    assert worse.difference["mean"] < 0
    assert tags["gate.difference_ci95"].startswith("[") and tags["info.test.cases"] == "2"
    assert {"info.test.challenger_dice", "info.test.champion_dice"} <= set(tags)

    assert registry.rollback() == (v2, v1)
    assert registry.aliases()[CHAMPION] == v1 and PREVIOUS not in registry.aliases()
    with pytest.raises(RegistryError, match="no 'previous'"):
        registry.rollback()


def test_equal_is_promoted_and_already_champion_is_a_no_op(
    project: Path, store: str, tmp_path: Path, trained: UNetPlusPlus
) -> None:
    prepared = project / "data" / "prepared"
    registry = Registry(_params(), project)
    v1 = _register(registry, trained, tmp_path / "a")
    registry.gate(v1, prepared)
    v2 = _register(registry, trained, tmp_path / "b")
    equal = registry.gate(v2, prepared)
    assert equal.promoted and equal.challenger_dice == equal.champion_dice
    again = registry.gate(v2, prepared)
    assert not again.promoted and "already the champion" in again.reason and registry.aliases()[CHAMPION] == v2


def test_below_the_floor_and_over_budget(project: Path, store: str, tmp_path: Path, trained: UNetPlusPlus) -> None:
    prepared = project / "data" / "prepared"
    floor = Registry(_params(promote={"min_dice": 0.999}), project)
    v1 = _register(floor, trained, tmp_path / "a")
    low = floor.gate(v1, prepared)
    assert not low.promoted and "promote.min_dice 0.999" in low.reason and CHAMPION not in floor.aliases()
    budget = Registry(_params(promote={"max_latency_ms": 1.0}), project)
    slow = budget.gate(v1, prepared)
    assert not slow.promoted and "over the budget" in slow.reason


def test_champion_is_rescored_on_the_challengers_data(
    project: Path, store: str, tmp_path: Path, trained: UNetPlusPlus
) -> None:
    """Data changed: the champion's score is measured on the new data, not taken from its tags."""
    other = tmp_path / "other"
    ingest(_params(data={"synthetic": {"count": 10, "size": 96, "seed": 7}}), other)
    registry = Registry(_params(), project)
    v1 = _register(registry, trained, tmp_path / "a", manifest_sha="1" * 64)
    registry.gate(v1, project / "data" / "prepared")
    v2 = _register(registry, trained, tmp_path / "b", manifest_sha="2" * 64)
    decision = registry.gate(v2, other)
    champion = registry.served(registry.version(v1))
    on_new = float(np.mean(per_case_dice(registry.score(champion, other), champion.names)))
    on_old = float(np.mean(per_case_dice(registry.score(champion, project / "data" / "prepared"), champion.names)))
    assert decision.champion_dice == pytest.approx(on_new) and on_new != on_old
    assert decision.data_sha256 == registry.version(v2).tags["gate.data_sha256"] != "1" * 64


def test_two_racing_promotions_leave_a_consistent_registry(
    project: Path, store: str, tmp_path: Path, trained: UNetPlusPlus
) -> None:
    registry = Registry(_params(), project)
    v1 = _register(registry, _random(), tmp_path / "a")
    registry.gate(v1, project / "data" / "prepared")
    v2 = _register(registry, trained, tmp_path / "b")
    v3 = _register(registry, trained, tmp_path / "c")
    cli = [sys.executable, "-m", "unetpp.cli", "registry", "promote", "--version"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    procs = [subprocess.Popen([*cli, v], cwd=project, env=env, stdout=subprocess.PIPE, text=True) for v in (v2, v3)]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    aliases = registry.aliases()
    champion = registry.version(aliases[CHAMPION])
    assert aliases[CHAMPION] in (v2, v3) and all(o["promoted"] for o in outs)  # equal models: both pass
    # serialised: the second promotion replaced the first, which had replaced v1
    first = v3 if aliases[CHAMPION] == v2 else v2
    assert champion.tags["replaced"] == aliases[PREVIOUS] == first
    assert registry.version(first).tags["replaced"] == v1


def test_the_gate_scores_what_the_in_process_model_serves(
    project: Path, store: str, tmp_path: Path, trained: UNetPlusPlus
) -> None:
    registry = Registry(_params(), project)
    v1 = _register(registry, trained, tmp_path / "a")
    prepared = project / "data" / "prepared"
    meta = {"class_names": ["disc", "cup"], "image_size": SIZE}
    local = score_cases(ServedModel.of(trained.prune(2, "fast"), meta), prepared_cases(prepared, "val"))
    served = registry.score(registry.served(registry.version(v1)), prepared)
    assert [r["id"] for r in served] == [r["id"] for r in local] and len(local) == 2
    for got, want in zip(served, local, strict=True):
        assert got["dice_disc"] == pytest.approx(want["dice_disc"], abs=1e-6)
        assert got["height"] == 96  # the source resolution, not the network's 48-px grid


def test_a_store_that_cannot_be_read_fails_the_gate_and_changes_no_alias(
    project: Path, store: str, tmp_path: Path, trained: UNetPlusPlus
) -> None:
    """A locked database is not "no champion": the gate raises the store's error (exit 1, retried)."""
    prepared = project / "data" / "prepared"
    registry = Registry(_params(), project)
    v1 = _register(registry, trained, tmp_path / "a")
    assert registry.gate(v1, prepared).promoted
    v2 = _register(registry, _random(), tmp_path / "b")
    before = registry.aliases()

    holder = sqlite3.connect(store.removeprefix("sqlite:///"), timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the store: every read fails
    try:
        with pytest.raises(Exception, match="locked") as failed:
            registry.gate(v2, prepared)
    finally:
        holder.rollback()
        holder.close()
    assert not isinstance(failed.value, UserError)
    assert registry.aliases() == before == {CHALLENGER: v2, CHAMPION: v1}
    assert "gate.decision" not in registry.version(v2).tags
