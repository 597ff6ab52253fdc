"""`unetpp stack up | down | status`: PostgreSQL, MLflow on it, a Prefect server; their state in `.stack/`.

`up` is idempotent: what runs is left running, what does not is started, each on the port it had
before (ports are chosen free once, then kept, so the URLs a team wrote down stay true). Every server
is remembered by its PID in `.stack/stack.json` and `down` stops each by that PID; the data folders
stay, so the next `up` finds the same runs, registry and flow history.

- PostgreSQL holds MLflow's runs and registry and Prefect's database.
- MLflow serves the artifact store (`--artifacts-destination`: a folder under `.stack/` by default, or
  any URI MLflow accepts, e.g. `s3://bucket/prefix` with its usual AWS variables): clients upload and
  download through the tracking server (`mlflow-artifacts:/`) and need no access to the store.
- Prefect gets the global concurrency limit that serialises promotion (`unetpp.registry.lock`).
"""

from __future__ import annotations

import json
import signal
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from unetpp.stack import postgres
from unetpp.stack.processes import StackError, alive, free_port, port_taken, spawn, stop, wait_until

BIN = Path(sys.executable).parent
SERVICES = ("postgres", "mlflow", "prefect")  # the order they start in (and stop in, reversed)
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


@dataclass
class State:
    """What `.stack/stack.json` remembers: the bind address, each server's port and PID, the artifact store."""

    host: str = "127.0.0.1"
    artifacts: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)


class Stack:
    """The team's servers for one project folder."""

    def __init__(self, root: Path | None = None, folder: Path | None = None) -> None:
        self.root = (root or Path.cwd()).resolve()
        self.folder = (folder or self.root / ".stack").resolve()
        self.file = self.folder / "stack.json"

    # --- state ---------------------------------------------------------------------------
    def state(self) -> State:
        if not self.file.is_file():
            return State()
        return State(**json.loads(self.file.read_text()))

    def _save(self, state: State) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file.write_text(json.dumps(asdict(state), indent=2) + "\n")

    def urls(self, state: State | None = None) -> dict[str, str]:
        """Where clients reach each server (the machine's name when bound to every interface)."""
        state = state or self.state()
        host = socket.getfqdn() if state.host in ("0.0.0.0", "::") else state.host
        return {
            "postgres": postgres.url(state.ports["postgres"], "mlflow"),
            "mlflow": f"http://{host}:{state.ports['mlflow']}",
            "prefect": f"http://{host}:{state.ports['prefect']}/api",
        }

    def client_env(self, state: State | None = None) -> dict[str, str]:
        """The two variables that point the pipeline (and `unetpp` commands) at the stack."""
        urls = self.urls(state)
        return {"MLFLOW_TRACKING_URI": urls["mlflow"], "PREFECT_API_URL": urls["prefect"]}

    # --- up / down / status ----------------------------------------------------------------
    def up(self, host: str | None = None, artifacts: str | None = None, timeout: float = 120) -> dict[str, Any]:
        """Start whatever is not running; returns the status (URLs, PIDs)."""
        state = self.state()
        running = {name for name in SERVICES if alive(state.pids.get(name))}
        if running and host is not None and host != state.host:
            raise StackError(f"the stack runs bound to {state.host}; `unetpp stack down` before binding to {host}")
        state.host = host or state.host
        state.artifacts = artifacts or state.artifacts or str(self.folder / "mlflow" / "artifacts")
        for name in SERVICES:
            if name in running:
                continue
            bind = "127.0.0.1" if name == "postgres" else state.host
            port = state.ports.get(name) or free_port(bind)
            if port_taken("127.0.0.1", port):
                raise StackError(f"port {port} (kept for {name} in {self.file}) is taken by another process")
            state.ports[name] = port
            state.pids[name] = getattr(self, f"_start_{name}")(state, timeout)
            self._save(state)  # each PID as soon as it exists: `down` can stop a half-started stack
        self._prefect_limit(state)
        return self.status()

    def down(self, timeout: float = 60) -> dict[str, bool]:
        """Stop every server by its PID (in reverse order); data folders are kept. name -> was running."""
        state = self.state()
        stopped = {}
        for name in reversed(SERVICES):
            pid = state.pids.pop(name, None)
            # PostgreSQL's fast shutdown is SIGINT (SIGTERM waits for clients to leave)
            stopped[name] = pid is not None and stop(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM,
                                                     timeout)  # fmt: skip
            self._save(state)
        return stopped

    def status(self) -> dict[str, Any]:
        state = self.state()
        if not state.ports:
            return {"folder": str(self.folder), "services": {}, "env": {}}
        urls = self.urls(state)
        services = {
            name: {"running": alive(state.pids.get(name)), "pid": state.pids.get(name), "url": urls[name]}
            for name in SERVICES
        }
        return {"folder": str(self.folder), "artifacts": state.artifacts, "services": services,
                "env": self.client_env(state)}  # fmt: skip

    # --- each server ------------------------------------------------------------------------
    def _pg_env(self) -> dict[str, str]:
        return {"PGPASSFILE": str(postgres.pgpass(self.folder / "postgres"))}

    def _start_postgres(self, state: State, timeout: float) -> int:
        folder, port = self.folder / "postgres", state.ports["postgres"]
        postgres.initialise(folder)
        log = self.folder / "logs" / "postgres.log"
        pid = postgres.start(folder, port, log)
        wait_until(lambda: postgres.ready(folder, port), pid, "PostgreSQL", log, timeout)
        postgres.create_databases(folder, port)
        return pid

    def _start_mlflow(self, state: State, timeout: float) -> int:
        port, log = state.ports["mlflow"], self.folder / "logs" / "mlflow.log"
        if "://" not in state.artifacts:
            Path(state.artifacts).mkdir(parents=True, exist_ok=True)
        command = [
            str(BIN / "mlflow"), "server", "--host", state.host, "--port", str(port), "--workers", "1",
            "--backend-store-uri", postgres.url(state.ports["postgres"], "mlflow"),
            "--artifacts-destination", state.artifacts,
        ]  # fmt: skip
        if state.host not in ("127.0.0.1", "localhost"):
            command += ["--allowed-hosts", f"{socket.getfqdn()},{socket.gethostname()},localhost,127.0.0.1"]
        pid = spawn(command, log, env={**QUIET, **self._pg_env()}, cwd=self.folder)
        wait_until(lambda: _healthy(f"http://127.0.0.1:{port}/health"), pid, "the MLflow server", log, timeout)
        return pid

    def _start_prefect(self, state: State, timeout: float) -> int:
        port, log = state.ports["prefect"], self.folder / "logs" / "prefect.log"
        env = {
            **QUIET,
            **self._pg_env(),
            "PREFECT_HOME": str(self.folder / "prefect"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.url(
                state.ports["postgres"], "prefect", "postgresql+asyncpg"
            ),
            "PREFECT_API_URL": "",  # the server is not a client of another one
            # a promotion waiting for the limit asks again within ~5 s of its release (Prefect caps it at 30 s)
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
        }
        pid = spawn([str(BIN / "prefect"), "server", "start", "--host", state.host, "--port", str(port)], log, env,
                    cwd=self.folder)  # fmt: skip
        wait_until(lambda: _healthy(f"http://127.0.0.1:{port}/api/health"), pid, "the Prefect server", log, timeout)
        return pid

    def _prefect_limit(self, state: State) -> None:
        """The promotion limit on this stack's Prefect server, made once."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from unetpp.registry.lock import ensure_promotion_limit

        with temporary_settings({PREFECT_API_URL: self.client_env(state)["PREFECT_API_URL"]}):
            ensure_promotion_limit()


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def render(status: dict[str, Any]) -> str:
    """`stack up | status` as text: each server's URL and PID, and how to point the pipeline at them."""
    if not status["services"]:
        return f"no stack in {status['folder']} yet: `unetpp stack up` starts one"
    lines = [f"stack in {status['folder']} (artifacts: {status['artifacts']})"]
    for name, info in status["services"].items():
        state = f"running, pid {info['pid']}" if info["running"] else "stopped"
        lines.append(f"  {name:<9} {info['url']:<45} {state}")
    lines.append("point the pipeline at it (this shell, or every host of the team):")
    lines += [f"  export {key}={value}" for key, value in status["env"].items()]
    return "\n".join(lines)
