"""Heavy runs whose outputs tests only read, started in the background when the session starts.

A tiny pipeline is mostly single-threaded start-ups (each stage imports torch, MONAI, MLflow), so the
suite used about 1.2 of 2 cores. A test module registers such a run with `@heavy_run("name")` and its
tests mark themselves `@pytest.mark.background("name")`; the session starts the runs the collected tests
ask for, `WORKERS` at a time (their subprocesses use the idle core), in the order those tests come, and
each test takes its run's result with `Background.result` (a run that failed fails its tests, never
skips them). Runs see the environment as it was when the session started, not a foreground test's
monkeypatching.

While a run goes, every process of the session computes on `ONE_THREAD` (the conftest's `_seed`): with
three lanes on 2 cores, an OpenMP team of 2 threads spins waiting for a core another lane holds (a small
fit beside two busy processes: 40 s on 2 threads, 12.6 s on one; alone 4.6-6.1 s against 7.9 s).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

Run = Callable[[Path, Mapping[str, str]], Any]  # (its own temporary folder, the session's environment)
RUNS: dict[str, Run] = {}
WAIT = 3600  # s: a run still queued behind the others counts its wait too
WORKERS = 2  # with the foreground, three lanes on 2 cores: start-ups are single-threaded, waits idle
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def heavy_run(name: str) -> Callable[[Run], Run]:
    """Register `fn` as the background run `name`."""

    def register(fn: Run) -> Run:
        if name in RUNS:
            raise ValueError(f"two background runs named {name!r}")
        RUNS[name] = fn
        return fn

    return register


def wanted(items: Iterable[pytest.Item]) -> list[str]:
    """The runs the collected tests mark, in the order of their first test."""
    names: dict[str, None] = {}
    for item in items:
        for marker in item.iter_markers("background"):
            names.setdefault(marker.args[0], None)
    return list(names)


class Background:
    """The session's runs, started in order on `WORKERS` threads."""

    def __init__(self, names: list[str], factory: pytest.TempPathFactory) -> None:
        unknown = [n for n in names if n not in RUNS]
        if unknown:
            raise ValueError(f"no background run registered as {unknown}")
        environ = dict(os.environ) | ONE_THREAD
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="background-run")
        self.futures: dict[str, Future[Any]] = {n: self.pool.submit(RUNS[n], factory.mktemp(n), environ) for n in names}

    def result(self, name: str) -> Any:
        if name not in self.futures:
            raise KeyError(f"background run {name!r} was not started: mark the test @pytest.mark.background")
        return self.futures[name].result(timeout=WAIT)

    def busy(self) -> bool:
        """Whether a run is still queued or going: the foreground then shares the cores with it."""
        return not all(future.done() for future in self.futures.values())

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=True)
