"""Server processes are known by PID and start time: a reused PID is neither taken for the server nor signalled."""

from __future__ import annotations

import subprocess
import sys

from unetpp.stack.processes import alive, started_at, stop


def test_a_pid_with_another_start_time_is_not_the_server_and_is_not_signalled() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        started = started_at(proc.pid)
        assert started is not None and alive(proc.pid, started)
        other = str(int(started) - 1)  # what stack.json would hold had the PID been reused since
        assert not alive(proc.pid, other)
        assert stop(proc.pid, other) is False and proc.poll() is None  # left alone
        assert stop(proc.pid, started, timeout=10) is True
        assert not alive(proc.pid, started)  # (stop reaped it: a child of ours)
    finally:
        proc.kill()
