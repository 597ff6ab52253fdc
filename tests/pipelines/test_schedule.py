"""Scheduled flows: serving the deployments against a real local Prefect server creates their cron schedules
(retrain and monitor, side by side)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.project import BIN, ROOT, free_ports


def _stop(proc: subprocess.Popen) -> None:
    """Stop what the test started, by its process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def _deployment(api: str, name: str) -> object | None:
    from prefect.client.orchestration import PrefectClient
    from prefect.exceptions import ObjectNotFound

    async with PrefectClient(api=api) as client:
        try:
            return await client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


@pytest.mark.slow
def test_serving_the_deployment_creates_its_cron_schedule(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    logs = tmp_path / "server.log"
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=logs.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    serve = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail(f"Prefect server not healthy in 120 s:\n{logs.read_text()[-2000:]}")
        serve = subprocess.Popen(
            [sys.executable, "-m", "pipelines.schedule", "--cron", "*/30 2 * * *", "--monitor-cron", "15 * * * *"],
            cwd=ROOT, env={**env, "PREFECT_API_URL": api}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        found = None
        while found is None and time.monotonic() < deadline + 60 and serve.poll() is None:
            found = asyncio.run(_deployment(api, "retrain/scheduled-retrain"))
            time.sleep(1)
        assert found is not None, "the deployment was not created"
        crons = [s.schedule.cron for s in found.schedules]
        assert crons == ["*/30 2 * * *"] and all(s.active for s in found.schedules)
        assert found.parameters["project"] == str(ROOT)
        watching = None
        while watching is None and time.monotonic() < deadline + 60:
            watching = asyncio.run(_deployment(api, "monitor/scheduled-monitor"))
            time.sleep(1)
        assert watching is not None, "the monitor's deployment was not created"
        assert [s.schedule.cron for s in watching.schedules] == ["15 * * * *"]
    finally:
        for proc in (serve, server):
            if proc is not None:
                _stop(proc)


def test_prefect_yaml_deploys_the_retrain_flow_on_the_params_cron() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert deployment["entrypoint"] == "pipelines/retrain.py:retrain"
    assert deployment["schedules"][0]["cron"] == params["schedule"]["cron"]
    assert deployment["work_pool"]["name"]


def test_schedule_refuses_to_run_without_a_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.schedule"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "PREFECT_API_URL is not set" in done.stderr
