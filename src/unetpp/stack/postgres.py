"""PostgreSQL for the stack, from the server binaries already on the machine (initdb, postgres).

PostgreSQL refuses to run as root: as root, the cluster belongs to, and the server runs as, the
unprivileged user $UNETPP_PG_USER (default `postgres`, which Debian's packages create), so the
stack's folder must be reachable by that user.

Where they are: $UNETPP_PG_BIN, else the folder of `postgres` on PATH, else the newest
/usr/lib/postgresql/*/bin (Debian's layout). The cluster is initialised once under the stack's
folder with password (SCRAM) authentication for one role; the password is generated and kept in a
0600 pgpass file that libpq (MLflow's psycopg2, Prefect's asyncpg) reads through $PGPASSFILE, so it
never appears on a command line. The server listens on 127.0.0.1 only (no Unix socket): only the
MLflow and Prefect servers talk to it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from unetpp.stack.processes import StackError, as_user, spawn

ROLE = "unetpp"
DATABASES = ("mlflow", "prefect")


def binaries() -> Path:
    """The folder holding `initdb` and `postgres`; a clear error naming what to install when absent."""
    candidates = [os.environ.get("UNETPP_PG_BIN")]
    found = shutil.which("postgres")
    candidates.append(str(Path(found).parent) if found else None)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    candidates += [str(p) for p in debian if p.parent.name.isdigit()]
    for folder in filter(None, candidates):
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "postgres")):
            return Path(folder)
    raise StackError(
        "no PostgreSQL server binaries (initdb, postgres) on PATH, in $UNETPP_PG_BIN or /usr/lib/postgresql/*/bin: "
        "install them (Debian/Ubuntu: apt-get install postgresql-15) or set UNETPP_PG_BIN to their folder"
    )


def server_user() -> int | None:
    """The uid the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    name = os.environ.get("UNETPP_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise StackError(
            f"PostgreSQL cannot run as root and there is no user {name!r} to run it as: create one "
            "(useradd --system postgres) or set UNETPP_PG_USER to an unprivileged user"
        ) from None


def _secret(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def pgpass(folder: Path) -> Path:
    return folder / "pgpass"


def initialise(folder: Path) -> None:
    """Create the cluster under `folder/data` once (a second call keeps the existing one and its data)."""
    data = folder / "data"
    if (data / "PG_VERSION").is_file():
        return
    if data.exists() and any(data.iterdir()):
        raise StackError(f"{data} exists but holds no PostgreSQL cluster (no PG_VERSION): move it away first")
    data.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    secret = folder / "password"
    _secret(secret, password + "\n")
    uid = server_user()
    if uid is not None:  # the server's user owns its cluster and reads the password once, for initdb
        for path in (data, secret):
            os.chown(path, uid, -1)
    _secret(pgpass(folder), f"127.0.0.1:*:*:{ROLE}:{password}\n")  # libpq ignores one that others can read
    done = subprocess.run(
        [str(binaries() / "initdb"), "-D", str(data), "-U", ROLE, "--auth=scram-sha-256", f"--pwfile={secret}",
         "-E", "UTF8", "--no-instructions"],
        capture_output=True, text=True, cwd=folder, **as_user(uid),
    )  # fmt: skip
    secret.unlink()  # the cluster holds its hash now; clients read the pgpass file
    if done.returncode:
        hint = "" if uid is None else f" (as user uid {uid}: every folder above {data} must be reachable by it)"
        raise StackError(f"initdb failed ({done.returncode}){hint}:\n{done.stderr[-2000:]}")


def start(folder: Path, port: int, log: Path) -> int:
    """Start the server on 127.0.0.1:`port`; its PID (SIGINT to it is PostgreSQL's fast shutdown)."""
    return spawn(
        [str(binaries() / "postgres"), "-D", str(folder / "data"), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
        log,
        user=server_user(),
    )  # fmt: skip


def _connect(folder: Path, port: int, database: str = "postgres") -> Any:  # psycopg2 has no type stubs
    import psycopg2

    return psycopg2.connect(
        host="127.0.0.1", port=port, user=ROLE, dbname=database, passfile=str(pgpass(folder)), connect_timeout=2
    )


def ready(folder: Path, port: int) -> bool:
    import psycopg2

    try:
        _connect(folder, port).close()
    except psycopg2.OperationalError:
        return False
    return True


def create_databases(folder: Path, port: int) -> None:
    """One database per server (MLflow's, Prefect's), made once."""
    conn = _connect(folder, port)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            present = {row[0] for row in cur.fetchall()}
            for name in DATABASES:
                if name not in present:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def url(port: int, database: str, driver: str = "postgresql+psycopg2") -> str:
    """A database URL without the password (libpq finds it in the pgpass file)."""
    return f"{driver}://{ROLE}@127.0.0.1:{port}/{database}"
