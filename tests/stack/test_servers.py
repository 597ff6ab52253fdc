"""`unetpp stack`: real PostgreSQL, MLflow and Prefect servers on loopback, stopped by PID, data kept."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg2
import pytest
import requests

from unetpp.stack import postgres
from unetpp.stack.processes import alive
from unetpp.stack.servers import Stack, render


def _experiments(stack: Stack) -> set[str]:
    """What MLflow wrote into PostgreSQL, read from the database itself."""
    state = stack.state()
    pgpass = postgres.pgpass(stack.folder / "postgres")
    with psycopg2.connect(host="127.0.0.1", port=state.ports["postgres"], user=postgres.ROLE, dbname="mlflow",
                          passfile=str(pgpass)) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("SELECT name FROM experiments")
        return {row[0] for row in cur.fetchall()}


@pytest.mark.slow
def _descendants(pid: int) -> list[str]:
    """The command lines of every process below `pid` (`ps`, walked from the parent ids)."""
    rows = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True).stdout
    table = [row.split(None, 2) for row in rows.splitlines() if len(row.split(None, 2)) == 3]
    below, found = {pid}, []
    for _ in range(len(table)):
        new = [(int(p), args) for p, parent, args in table if int(parent) in below and int(p) not in below]
        if not new:
            break
        below |= {p for p, _ in new}
        found += [args for _, args in new]
    return found


def test_up_prints_urls_down_stops_by_pid_and_the_data_stay(
    team_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from unetpp.cli import main

    status = team_stack.status()
    assert all(info["running"] for info in status["services"].values()), status
    env = status["env"]
    assert env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert env["PREFECT_API_URL"].startswith("http://127.0.0.1:") and env["PREFECT_API_URL"].endswith("/api")
    assert main(["stack", "status", "--folder", str(team_stack.folder)]) == 0
    text = capsys.readouterr().out
    assert text.strip() == render(status) and f"export MLFLOW_TRACKING_URI={env['MLFLOW_TRACKING_URI']}" in text
    assert requests.get(f"{env['PREFECT_API_URL']}/health", timeout=5).json() is True
    commands = _descendants(status["services"]["mlflow"]["pid"])
    assert commands and not any("mlflow.server.jobs" in c or "huey" in c for c in commands), commands  # no job runner
    name = "kept-between-runs"
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name)
    assert name in _experiments(team_stack)  # the runs live in PostgreSQL, not in a file of the client's

    pids = {n: info["pid"] for n, info in status["services"].items()}
    stopped = team_stack.down()
    assert stopped == {"prefect": True, "mlflow": True, "postgres": True}
    assert not any(alive(pid) for pid in pids.values())
    assert not any(info["running"] for info in team_stack.status()["services"].values())

    again = team_stack.up()
    assert again["env"] == env  # the same ports: the URLs a team wrote down stay true
    assert name in _experiments(team_stack)
    assert MlflowClient(env["MLFLOW_TRACKING_URI"]).get_experiment_by_name(name) is not None


def test_a_taken_port_is_named(team_stack: Stack, tmp_path: Path) -> None:
    """A second stack whose kept PostgreSQL port the first stack's MLflow now holds refuses it, and says which."""
    import json

    from unetpp.stack.processes import StackError

    taken = team_stack.state().ports["mlflow"]
    other = Stack(folder=tmp_path / ".stack")
    other.folder.mkdir(parents=True)
    other.file.write_text(json.dumps({"host": "127.0.0.1", "artifacts": "", "ports": {"postgres": taken}, "pids": {}}))
    with pytest.raises(StackError, match=f"port {taken} .*postgres.* is taken"):
        other.up()
