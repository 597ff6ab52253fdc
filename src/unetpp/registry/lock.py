"""What serialises the registry's mutations (register, gate, rollback): one at a time, everywhere it runs.

With a Prefect server configured (PREFECT_API_URL, in the environment or the Prefect profile) the lock
is the server's global concurrency limit `PROMOTION_LIMIT`, which reaches every host that talks to the
same server. It is strict: a missing limit, or one that admits more than one holder, is an error
naming the fix, never a silent pass. Without a Prefect server (the embedded default, one machine) it
is a file lock beside the tracking store, which only holds while the registry is on this machine too: a
tracking server (MLFLOW_TRACKING_URI over HTTP or a database) without a Prefect server is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from unetpp.errors import UserError

PROMOTION_LIMIT = "unetpp-promotion"
WAIT_SECONDS = 1800  # a gate scores two models on every val case: minutes on a CPU, never hours


class PromotionLockError(UserError):
    """The Prefect server cannot serialise promotion (no such limit, or a limit above 1)."""


def prefect_server() -> str | None:
    """The configured Prefect API URL, or None for Prefect's per-process ephemeral server."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def ensure_promotion_limit() -> None:
    """Create the limit with one slot on the configured Prefect server, once (what `unetpp stack up` does)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(PROMOTION_LIMIT)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=PROMOTION_LIMIT, limit=1))


def _check_limit(server: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    fix = f"create it with `unetpp stack up` or `prefect gcl create {PROMOTION_LIMIT} --limit 1`"
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(PROMOTION_LIMIT)
        except ObjectNotFound:
            raise PromotionLockError(
                f"the Prefect server {server} has no global concurrency limit {PROMOTION_LIMIT!r}, so promotion "
                f"cannot be serialised across hosts: {fix}"
            ) from None
    if limit.limit != 1 or not limit.active:
        raise PromotionLockError(
            f"the Prefect server's global concurrency limit {PROMOTION_LIMIT!r} must be active with 1 slot "
            f"(it has {limit.limit}, {'active' if limit.active else 'inactive'}): one promotion at a time"
        )


def _local_registry() -> bool:
    """The MLflow registry is a file of this machine (the embedded SQLite store, or a file store)."""
    import mlflow

    return mlflow.get_tracking_uri().split(":", 1)[0] in ("sqlite", "file")


def describe(store: Path) -> str:
    """Which lock `promotion_lock` takes, in words (for the flow's log)."""
    server = prefect_server()
    return f"file lock {store / 'registry.lock'}" if server is None else f"{PROMOTION_LIMIT!r} on {server}"


@contextlib.contextmanager
def promotion_lock(store: Path) -> Iterator[None]:
    """Hold the registry: Prefect's global limit when a server is configured, else a file lock in `store`."""
    server = prefect_server()
    if server is None and not _local_registry():
        import mlflow

        raise PromotionLockError(
            f"the registry is on a tracking server ({mlflow.get_tracking_uri()}) that other hosts share, and no "
            "Prefect server is configured to serialise promotion across them: set PREFECT_API_URL (what "
            "`unetpp stack up` prints)"
        )
    if server is None:
        store.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store / "registry.lock"), timeout=WAIT_SECONDS):
            yield
        return
    from prefect.concurrency.sync import concurrency

    _check_limit(server)
    with concurrency(PROMOTION_LIMIT, occupy=1, timeout_seconds=WAIT_SECONDS, strict=True):
        yield
