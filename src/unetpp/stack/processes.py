"""Long-running server processes: started in their own session, remembered by PID, stopped by PID.

Each server runs as the leader of a new session, so its PID is also its process group: stopping it
stops the workers it forked (MLflow's uvicorn, Prefect's services) with it, and nothing else. A PID is
remembered with the process's start time (Linux: /proc/PID/stat), so a PID the kernel gave to another
process after a reboot is never taken for the server, nor signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unetpp.errors import UserError


class StackError(UserError):
    """A server of the stack could not start, or its data folder is not what was expected."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str) -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_taken(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None, user: int | None = None
) -> int:
    """Start `command` detached (its own session), stdout and stderr appended to `log`; its PID.

    `user`: run it as that uid (with its primary group, no other groups) instead of ours."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # a file, not a pipe: the server outlives this process
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            **as_user(user),
        )
    return proc.pid


def as_user(uid: int | None) -> dict[str, Any]:
    """Popen's arguments that run a child as `uid` (nothing when None)."""
    if uid is None:
        return {}
    import pwd

    return {"user": uid, "group": pwd.getpwuid(uid).pw_gid, "extra_groups": []}


def started_at(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None where /proc does not say: not Linux, gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def alive(pid: int | None, started: str | None = None) -> bool:
    """True while the process runs and, when `started` is given, is the one that started then (a zombie
    of ours is reaped and counts as gone)."""
    if pid is None:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:  # not our child: ask the kernel
        pass
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the PID now belongs to another user
        return False
    now = started_at(pid)
    return started is None or now is None or now == started


def wait_until(ready: Callable[[], bool], pid: int, what: str, log: Path, timeout: float) -> None:
    """Poll `ready` until it holds; fail early when the process died, with the tail of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive(pid):
            raise StackError(f"{what} exited while starting; the end of {log}:\n{tail(log)}")
        time.sleep(0.3)
    raise StackError(f"{what} was not ready after {timeout:.0f} s; the end of {log}:\n{tail(log)}")


def stop(pid: int, started: str | None, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> bool:
    """Signal the process group `pid` leads, wait for the leader to exit, then SIGKILL the group; nothing
    when `pid` is not the process that started at `started`. True when it was running."""
    if not alive(pid, started):
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # what the leader left behind, or the leader itself
        os.killpg(pid, signal.SIGKILL)
    return True


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
