"""The promotion lock on a real Prefect server, taken by separate processes as separate hosts take it:
its global concurrency limit, strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.project import command_env, run
from unetpp.registry.lock import PROMOTION_LIMIT
from unetpp.stack.servers import Stack


def _holder(stack: Stack, seconds: str, store: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.registry.holder", seconds, str(store)],
        cwd=Path(__file__).resolve().parents[2],
        env=command_env(store, **(stack.client_env() | env)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _limit(stack: Stack, slots: int | None) -> None:
    """Set the promotion limit to `slots`, or delete it (None), through Prefect's REST API."""
    url = f"{stack.client_env()['PREFECT_API_URL']}/v2/concurrency_limits/{PROMOTION_LIMIT}"
    if slots is None:
        requests.delete(url, timeout=10).raise_for_status()
    else:
        requests.patch(url, json={"limit": slots}, timeout=10).raise_for_status()


def test_the_limit_lets_one_host_in_at_a_time(team_stack: Stack, tmp_path: Path) -> None:
    hosts = [_holder(team_stack, "1.5", tmp_path / name) for name in ("a", "b")]
    spans = []
    for host in hosts:
        out, err = host.communicate(timeout=120)
        assert host.returncode == 0, err[-2000:]
        spans.append([float(line.split()[1]) for line in out.splitlines()])
    (_, first_out), (second_in, _) = sorted(spans)
    assert first_out <= second_in, spans  # the second got in only after the first let go
    assert not any((tmp_path / name / "registry.lock").exists() for name in ("a", "b"))  # not a file lock


def test_without_the_limit_the_gate_refuses_to_run(team_stack: Stack, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("{}\n")
    env = team_stack.client_env()
    _limit(team_stack, None)
    try:
        refused = run(["unetpp", "registry", "promote"], project, **env)
    finally:
        requests.post(f"{env['PREFECT_API_URL']}/v2/concurrency_limits/", json={"name": PROMOTION_LIMIT, "limit": 1},
                      timeout=10).raise_for_status()  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert f"has no global concurrency limit '{PROMOTION_LIMIT}'" in refused.stderr and "stack up" in refused.stderr
    _limit(team_stack, 2)
    try:
        refused = run(["unetpp", "registry", "promote"], project, **env)
    finally:
        _limit(team_stack, 1)
    assert refused.returncode == 2 and "must be active with 1 slot" in refused.stderr, refused.stderr


def test_a_shared_tracking_server_without_a_prefect_server_is_refused(team_stack: Stack, tmp_path: Path) -> None:
    """The file lock reaches one host only: it never guards a registry that other hosts share."""
    host = _holder(team_stack, "0", tmp_path, PREFECT_API_URL="")
    _, err = host.communicate(timeout=120)
    assert host.returncode == 1 and "no Prefect server is configured" in err, err[-2000:]
