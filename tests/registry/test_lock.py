"""The promotion lock on a real Prefect server: its global concurrency limit, strict."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from unetpp.params import Params
from unetpp.registry.lock import PROMOTION_LIMIT, PromotionLockError, ensure_promotion_limit, promotion_lock
from unetpp.registry.promotion import Registry
from unetpp.stack.servers import Stack


@pytest.fixture
def on_the_stack(team_stack: Stack) -> Iterator[Stack]:
    """Prefect's settings pointed at the stack's server (as PREFECT_API_URL does for a user)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: team_stack.client_env()["PREFECT_API_URL"]}):
        yield team_stack


def _limit(slots: int | None) -> None:
    """Set the promotion limit to `slots`, or delete it (None)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    with get_client(sync_client=True) as client:
        if slots is None:
            client.delete_global_concurrency_limit_by_name(PROMOTION_LIMIT)
        else:
            client.update_global_concurrency_limit(PROMOTION_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots))


def test_the_limit_lets_one_holder_in_at_a_time(on_the_stack: Stack, tmp_path: Path) -> None:
    events: list[str] = []

    def hold(name: str) -> None:
        with promotion_lock(tmp_path):
            events.append(f"{name} in")
            time.sleep(1.0)
            events.append(f"{name} out")

    # each thread with this one's context: Prefect's settings are context variables (as in a task's thread)
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(hold, n)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"]), events
    assert not (tmp_path / "registry.lock").exists()  # not the file lock


def test_without_the_limit_the_gate_refuses_to_run(on_the_stack: Stack, tmp_path: Path) -> None:
    params = Params.model_validate({"tracking": {"store": str(tmp_path / "mlruns")}})
    _limit(None)
    try:
        with pytest.raises(PromotionLockError, match=f"no global concurrency limit '{PROMOTION_LIMIT}'.*stack up"):
            Registry(params, tmp_path).gate(None, tmp_path / "prepared")
    finally:
        ensure_promotion_limit()
    _limit(2)
    try:
        with pytest.raises(PromotionLockError, match="must be active with 1 slot"):
            Registry(params, tmp_path).gate(None, tmp_path / "prepared")
    finally:
        _limit(1)
