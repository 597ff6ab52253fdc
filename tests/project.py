"""A tiny copy of the project for tests that run the real tools (dvc, the flows) on it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from tests.params import TINY, project_params

ROOT = Path(__file__).resolve().parents[1]
# per-test timeout of the tests that train for minutes: 3x the slowest quiet-machine time seen (4.4 min
# for a data kind on 2 cores), so a machine shared with another training does not fail them
BUSY = 1200
BIN = Path(sys.executable).parent


def _outside_the_checkout(folder: str, names: list[str]) -> set[str]:
    """What a fresh clone does not have: the venv, git and DVC state, pipeline outputs, caches."""
    top = {".venv", ".git", ".dvc", ".prefect", "reports", "data", "models", "metrics", "plots", "mlruns", "dvc.lock"}
    top |= {"model-store", "logs", "splits.csv", ".stack", ".torchserve"}
    return {n for n in names if (Path(folder) == ROOT and n in top) or "cache" in n}


def tiny_project(dest: Path, git: bool = False, environ: Mapping[str, str] | None = None) -> Path:
    """Copy the checkout to `dest` with the tiny params, and `dvc init` it (in a new git repository with `git`);
    `environ`: the commands' environment (see `command_env`)."""
    shutil.copytree(ROOT, dest, ignore=_outside_the_checkout)
    (dest / "params.yaml").write_text(yaml.safe_dump(project_params(TINY)))
    if git:
        for args in (["init", "-q"], ["config", "user.email", "ci@unetpp"], ["config", "user.name", "ci"]):
            assert run(["git", *args], dest, environ).returncode == 0
    assert run(["dvc", "init", "-q"] if git else ["dvc", "init", "--no-scm", "-q"], dest, environ).returncode == 0
    return dest


def commit(project: Path, message: str, environ: Mapping[str, str] | None = None) -> None:
    """`git add -A && git commit`: what a user does after a run (outputs in git, the rest in DVC)."""
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        done = run(["git", *args], project, environ)
        assert done.returncode == 0, done.stderr


def command_env(cwd: Path, environ: Mapping[str, str] | None = None, **env: str) -> dict[str, str]:
    """`environ` (this process's by default) with the venv first on PATH and MLflow on a store beside the
    project, unless `env` says otherwise."""
    base = os.environ if environ is None else environ
    return {
        **base,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{BIN}{os.pathsep}{base['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd.parent / 'mlflow.db'}",
        **env,
    }


def run(
    args: list[str], cwd: Path, environ: Mapping[str, str] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """A command in `cwd` (see `command_env`), waited for."""
    return subprocess.run(
        args, cwd=cwd, env=command_env(cwd, environ, **env), capture_output=True, text=True, timeout=BUSY
    )


def free_ports(n: int) -> list[int]:
    """n loopback ports free right now (held together while chosen, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
