"""One Prefect test server for the whole session (starting one costs ~10 s), with the promotion limit
that any configured Prefect server must have (`unetpp.registry.lock`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    from unetpp.registry.lock import ensure_promotion_limit

    with prefect_test_harness(server_startup_timeout=120):
        ensure_promotion_limit()
        yield
