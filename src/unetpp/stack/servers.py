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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from unetpp.stack import postgres
from unetpp.stack.processes import (
    StackError,
    alive,
    free_port,
    port_taken,
    spawn,
    started_at,
    stop,
    wait_until,
)

BIN = Path(sys.executable).parent
SERVICES = ("postgres", "mlflow", "prefect")  # the order they start in (and stop in, reversed)
STOP_SIGNAL = {"postgres": signal.SIGINT}  # PostgreSQL's fast shutdown (SIGTERM waits for clients to leave)
WILDCARDS = ("0.0.0.0", "::")
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


@dataclass
class State:
    """What `.stack/stack.json` remembers: the bind address, the artifact store, each server's port, PID
    and start time (`processes.started_at`: a PID alone may name another process after a reboot)."""

    host: str = "127.0.0.1"
    artifacts: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    started: dict[str, str | None] = field(default_factory=dict)

    def running(self, name: str) -> bool:
        return alive(self.pids.get(name), self.started.get(name))


@dataclass
class Launch:
    """A server just spawned: its PID, how to tell it is ready, its log, what to do once it is."""

    pid: int
    ready: Callable[[], bool]
    log: Path
    then: Callable[[], None] = lambda: None


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
        """Where clients reach each server that has a port (the machine's name when bound to every interface)."""
        state = state or self.state()
        host = _machine_name() if state.host in WILDCARDS else state.host
        made = {
            "postgres": lambda port: postgres.url(port, "mlflow"),
            "mlflow": lambda port: f"http://{host}:{port}",
            "prefect": lambda port: f"http://{host}:{port}/api",
        }
        return {name: made[name](port) for name, port in state.ports.items()}

    def client_env(self, state: State | None = None) -> dict[str, str]:
        """The two variables that point the pipeline (and `unetpp` commands) at the stack."""
        urls = self.urls(state)
        return {"MLFLOW_TRACKING_URI": urls["mlflow"], "PREFECT_API_URL": urls["prefect"]}

    # --- up / down / status ----------------------------------------------------------------
    def up(self, host: str | None = None, artifacts: str | None = None, timeout: float = 120) -> dict[str, Any]:
        """Start whatever is not running; returns the status (URLs, PIDs)."""
        state = self.state()
        running = {name for name in SERVICES if state.running(name)}
        if running and host is not None and host != state.host:
            raise StackError(f"the stack runs bound to {state.host}; `unetpp stack down` before binding to {host}")
        state.host = host or state.host
        state.artifacts = artifacts or state.artifacts or str(self.folder / "mlflow" / "artifacts")
        for name in SERVICES:
            if name in running:
                continue
            bind = "127.0.0.1" if name == "postgres" else state.host
            port = state.ports.get(name) or free_port(bind)
            if port_taken(_probe(bind), port):
                raise StackError(f"port {port} (kept for {name} in {self.file}) is taken by another process")
            state.ports[name] = port
            launch = getattr(self, f"_launch_{name}")(state)
            state.pids[name], state.started[name] = launch.pid, started_at(launch.pid)
            self._save(state)  # the PID as soon as it exists: `down` stops a server that never became ready
            try:
                wait_until(launch.ready, launch.pid, name, launch.log, timeout)
                launch.then()
            except Exception:
                stop(launch.pid, state.started[name], STOP_SIGNAL.get(name, signal.SIGTERM))
                del state.pids[name], state.started[name]
                self._save(state)
                raise
        self._prefect_limit(state)
        return self.status()

    def down(self, timeout: float = 60) -> dict[str, bool]:
        """Stop every server by its PID (in reverse order); data folders are kept. name -> was running."""
        state = self.state()
        stopped = {}
        for name in reversed(SERVICES):
            pid, started = state.pids.pop(name, None), state.started.pop(name, None)
            stopped[name] = pid is not None and stop(pid, started, STOP_SIGNAL.get(name, signal.SIGTERM), timeout)
            self._save(state)
        return stopped

    def status(self) -> dict[str, Any]:
        state = self.state()
        urls = self.urls(state)
        services = {
            name: {"running": state.running(name), "pid": state.pids.get(name), "url": urls[name]}
            for name in SERVICES
            if name in urls
        }
        env = self.client_env(state) if {"mlflow", "prefect"} <= urls.keys() else {}
        return {"folder": str(self.folder), "artifacts": state.artifacts, "services": services, "env": env}

    # --- each server ------------------------------------------------------------------------
    def _pg_env(self) -> dict[str, str]:
        return {"PGPASSFILE": str(postgres.pgpass(self.folder / "postgres"))}

    def _launch_postgres(self, state: State) -> Launch:
        folder, port = self.folder / "postgres", state.ports["postgres"]
        postgres.initialise(folder)
        log = self.folder / "logs" / "postgres.log"
        return Launch(
            postgres.start(folder, port, log),
            lambda: postgres.ready(folder, port),
            log,
            lambda: postgres.create_databases(folder, port),
        )

    def _launch_mlflow(self, state: State) -> Launch:
        port, log = state.ports["mlflow"], self.folder / "logs" / "mlflow.log"
        if "://" not in state.artifacts:
            Path(state.artifacts).mkdir(parents=True, exist_ok=True)
        command = [
            str(BIN / "mlflow"), "server", "--host", state.host, "--port", str(port), "--workers", "1",
            "--backend-store-uri", postgres.url(state.ports["postgres"], "mlflow"),
            "--artifacts-destination", state.artifacts,
        ]  # fmt: skip
        if state.host not in ("127.0.0.1", "localhost"):  # MLflow matches the whole Host header, port included
            names = {_machine_name(), socket.gethostname(), "localhost", "127.0.0.1", state.host} - set(WILDCARDS)
            command += ["--allowed-hosts", ",".join(f"{name}:*" for name in sorted(names))]
        # no job runner: its six huey consumers poll for GenAI scorer jobs this project never submits
        env = {**QUIET, **self._pg_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        pid = spawn(command, log, env=env, cwd=self.folder)
        return Launch(pid, lambda: _healthy(f"http://{_probe(state.host)}:{port}/health"), log)

    def _launch_prefect(self, state: State) -> Launch:
        port, log = state.ports["prefect"], self.folder / "logs" / "prefect.log"
        env = {
            **QUIET,
            **self._pg_env(),
            "PREFECT_HOME": str(self.folder / "prefect"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.url(
                state.ports["postgres"], "prefect", "postgresql+asyncpg"
            ),
            "PREFECT_API_URL": "",  # the server is not a client of another one
            "PREFECT_UI_API_URL": self.urls(state)["prefect"],  # what a browser elsewhere must call
            # a promotion waiting for the limit asks again within ~5 s of its release (Prefect caps it at 30 s)
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
            # leases on disk: a restart while a gate holds the limit does not leave its slot taken forever
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
        }
        command = [str(BIN / "prefect"), "server", "start", "--host", state.host, "--port", str(port)]
        pid = spawn(command, log, env, cwd=self.folder)
        return Launch(pid, lambda: _healthy(f"http://{_probe(state.host)}:{port}/api/health"), log)

    def _prefect_limit(self, state: State) -> None:
        """The promotion limit on this stack's Prefect server, made once."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from unetpp.registry.lock import ensure_promotion_limit

        with temporary_settings({PREFECT_API_URL: self.client_env(state)["PREFECT_API_URL"]}):
            ensure_promotion_limit()


def _machine_name() -> str:
    """The name other hosts reach this one by (the fully qualified one, unless that is only `localhost`)."""
    fqdn = socket.getfqdn()
    return socket.gethostname() if fqdn.startswith("localhost") else fqdn


def _probe(host: str) -> str:
    """The address to check a server on: loopback when it listens on every interface."""
    return "127.0.0.1" if host in WILDCARDS else host


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
    width = max(len(info["url"]) for info in status["services"].values())
    for name, info in status["services"].items():
        state = f"running, pid {info['pid']}" if info["running"] else "stopped"
        lines.append(f"  {name:<9} {info['url']:<{width}}  {state}")
    lines.append("point the pipeline at it (this shell, or every host of the team):")
    lines += [f"  export {key}={value}" for key, value in status["env"].items()]
    return "\n".join(lines)
