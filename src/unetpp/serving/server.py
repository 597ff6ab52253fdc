"""TorchServe around the registry: package a version into a .mar, start/stop/status, hot swap.

The server runs from `.torchserve/` (its logs, temp files, pid file and token key file stay there),
binds to 127.0.0.1 only and keeps token authorisation on. Readiness is read from the management
API (a worker READY), not `/ping`, which turns healthy before workers load.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from unetpp.errors import UserError
from unetpp.params import Params
from unetpp.runtime.requestlog import ENV

HERE = Path(__file__).resolve().parent  # the handler and TorchServe's config live beside this file
PACKAGE = HERE.parent
# what the archive ships: the network and the runtime rooms whole (they import nothing else), so no
# file list can fall out of step with the handler's imports (tests/test_rooms.py)
SHIPPED = ("__init__.py", "errors.py", "files.py", "nn", "runtime")
RUNTIME = ".torchserve"
BIN = Path(sys.executable).parent


class ServeError(RuntimeError):
    """TorchServe is not ready or refused a management call (what was asked of it was right: may pass later)."""


class Server:
    """One TorchServe for the project, configured from `params.serve`."""

    def __init__(self, params: Params, root: Path | None = None) -> None:
        self.params, self.root = params, (root or Path.cwd()).resolve()
        self.cfg = params.serve
        self.name = params.promote.model_name
        self.runtime = self.root / RUNTIME
        self.store = self.root / self.cfg.model_store
        self.requests = self.runtime / "requests"  # the request log: kept across restarts
        self.inference = f"http://127.0.0.1:{self.cfg.inference_port}"
        self.management = f"http://127.0.0.1:{self.cfg.management_port}"

    # --- packaging -----------------------------------------------------------------------
    def package(self, version: str | None = None) -> tuple[Path, str]:
        """Build `model-store/<name>-v<version>.mar` from the registry's champion (or `version`).

        The archive holds the weights (`model.pt`: the variant's level, mode and every served setting, stored
        once), model-config.yaml (batching, the registry version, threads and limits), the handler, and what
        the served model needs of `unetpp` (`SHIPPED`).
        """
        # here, not at the top: the registry's gate brings MONAI, seconds that start, stop and status never need
        from unetpp.registry.promotion import CHAMPION, Registry, RegistryError

        registry = Registry(self.params, self.root)
        mv = registry.version(version) if version else registry.by_alias(CHAMPION)
        if mv is None:
            raise RegistryError(f"registered model {self.name!r} has no {CHAMPION!r}; run the retrain flow first")
        v = str(mv.version)
        mar = self.archive_path(v)
        self.store.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            weights = registry.download(mv, work / "download")
            code = work / "code"
            for name in SHIPPED:
                src, dst = PACKAGE / name, code / "unetpp" / name
                if src.is_dir():
                    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
            config = {
                "batchSize": self.cfg.batch_size,
                "maxBatchDelay": self.cfg.max_batch_delay_ms,
                "minWorkers": self.cfg.workers,
                "maxWorkers": self.cfg.workers,
                "responseTimeout": 120,
                "handler": {
                    "name": self.name,
                    "version": v,
                    "threads": self.cfg.threads,
                    "max_bytes": self.cfg.max_bytes,
                    "max_pixels": self.cfg.max_pixels,
                    "keep_images": self.cfg.keep_images,
                },
            }
            (work / "model-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            shutil.copy2(weights, work / "model.pt")
            _call(
                [
                    str(BIN / "torch-model-archiver"),
                    "--model-name", self.name,
                    "--version", v,
                    "--serialized-file", str(work / "model.pt"),
                    "--handler", str(HERE / "handler.py"),
                    "--extra-files", str(code),
                    "--config-file", str(work / "model-config.yaml"),
                    "--export-path", str(work),
                    "--force",
                ]
            )  # fmt: skip
            (work / f"{self.name}.mar").replace(mar)
        return mar, v

    # --- process -------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        tmp = self.runtime / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "TEMP": str(tmp),
            "TMPDIR": str(tmp),
            "LOG_LOCATION": str(self.runtime / "logs"),
            "METRICS_LOCATION": str(self.runtime / "logs"),
            "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={tmp}",
            ENV: str(self.requests),  # the workers' request log (unetpp.runtime.requestlog)
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def _metrics_config(self) -> Path:
        """TorchServe's own metrics config with ours (serving/metrics.yaml) added: the file replaces the
        default as a whole, and the installed default stays the one source of TorchServe's metrics."""
        import ts

        merged = yaml.safe_load((Path(ts.__file__).parent / "configs" / "metrics.yaml").read_text())
        for kind, metrics in yaml.safe_load((HERE / "metrics.yaml").read_text())["model_metrics"].items():
            merged.setdefault("model_metrics", {}).setdefault(kind, []).extend(metrics)
        path = self.runtime / "metrics.yaml"
        path.write_text(yaml.safe_dump(merged, sort_keys=False))
        return path

    def pid(self) -> int | None:
        """The running frontend's pid (from TorchServe's pid file), or None."""
        path = self.runtime / "tmp" / ".model_server.pid"
        if not path.is_file():
            return None
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            return None
        return pid

    def start(self, mar: Path | None = None, timeout: float = 180) -> dict[str, Any]:
        """Start TorchServe with `mar` (default: the newest archive of the model) and wait until READY."""
        if shutil.which("java") is None:
            raise UserError("TorchServe needs Java 17: install it (apt-get install openjdk-17-jre-headless)")
        if self.pid() is not None:
            raise UserError(f"TorchServe already runs (pid {self.pid()}); `unetpp serve stop` first")
        mar = mar or self.newest_archive()
        if mar.resolve().parent != self.store.resolve() or not mar.is_file():
            raise UserError(f"{mar}: expected an archive inside the model store {self.store}")
        self.runtime.mkdir(parents=True, exist_ok=True)
        template = (HERE / "config.properties").read_text()
        fields = self.cfg.model_dump() | {
            "model_store": self.store,
            "load_models": f"{self.name}={mar.name}",
            "metrics_config": self._metrics_config(),
        }
        (self.runtime / "config.properties").write_text(template.format(**fields))
        console = self.runtime / "logs" / "console.log"
        console.parent.mkdir(parents=True, exist_ok=True)
        with console.open("ab") as out:  # a file, not a pipe: the server outlives this call and keeps it open
            done = subprocess.run(
                [str(BIN / "torchserve"), "--start", "--ncs", "--ts-config", str(self.runtime / "config.properties")],
                cwd=self.runtime,
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done.returncode:
            raise ServeError(f"torchserve --start failed ({done.returncode}); see {console}")
        return self.wait_ready(timeout)

    def stop(self, timeout: float = 60) -> bool:
        """Stop the frontend by its pid (its workers follow); False when none ran."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        (self.runtime / "tmp" / ".model_server.pid").unlink(missing_ok=True)
        return True

    def archive_path(self, version: str) -> Path:
        return self.store / f"{self.name}-v{version}.mar"

    def newest_archive(self) -> Path:
        found = sorted(self.store.glob(f"{self.name}-v*.mar"), key=lambda p: int(p.stem.rsplit("-v", 1)[1]))
        if not found:
            raise UserError(f"no {self.name}-v*.mar in {self.store}; run `unetpp serve package` first")
        return found[-1]

    # --- management API ------------------------------------------------------------------
    def keys(self) -> dict[str, str]:
        path = self.runtime / "key_file.json"
        if not path.is_file():
            raise ServeError(f"{path} not found: is TorchServe running (`unetpp serve start`)?")
        try:  # TorchServe writes it while starting: an empty or partial file means "not yet"
            data = json.loads(path.read_text())
            return {"management": data["management"]["key"], "inference": data["inference"]["key"]}
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ServeError(f"{path} is not a complete TorchServe key file yet ({err})") from None

    def _manage(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys()['management']}"}
        try:
            resp = requests.request(method, f"{self.management}{path}", headers=headers, timeout=300, **kw)
        except requests.ConnectionError as err:
            raise ServeError(f"TorchServe management API at {self.management} is not answering ({err})") from None
        if resp.status_code >= 400:
            raise ServeError(f"{method} {path}: {resp.status_code} {resp.text.strip()}")
        return resp.json()

    def status(self) -> dict[str, Any]:
        """Versions of the model, the default one, and their workers."""
        described = self._manage("GET", f"/models/{self.name}/all")
        default = self._manage("GET", f"/models/{self.name}")[0]["modelVersion"]
        return {
            "pid": self.pid(),
            "inference": self.inference,
            "versions": [
                {
                    "version": m["modelVersion"],
                    "default": m["modelVersion"] == default,
                    "batch_size": m.get("batchSize"),
                    "workers": [{"pid": w.get("pid"), "status": w["status"]} for w in m.get("workers", [])],
                }
                for m in described
            ],
        }

    def wait_ready(self, timeout: float = 180, version: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                info = self.status()
                ready = [v for v in info["versions"] if version in (None, v["version"]) and _ready(v)]
                if ready:
                    return info
                last = info
            except ServeError as err:
                last = err
            time.sleep(0.5)
        log = self.runtime / "logs" / "model_log.log"
        tail = log.read_text()[-3000:] if log.is_file() else ""
        raise ServeError(f"TorchServe not ready in {timeout:.0f} s (last: {last})\n{tail}")

    def swap(self, mar: Path, version: str) -> dict[str, Any]:
        """Hot swap: register `mar` beside the running version, wait READY, make it default, drop the others.

        Requests keep going to the old default until the new one is READY, so none fails.
        """
        info = self.status()
        old = [v["version"] for v in info["versions"] if v["version"] != version]
        if version not in [v["version"] for v in info["versions"]]:
            params = {"url": mar.name, "initial_workers": self.cfg.workers, "synchronous": "true"}
            self._manage("POST", "/models", params=params)
        self.wait_ready(version=version)
        self._manage("PUT", f"/models/{self.name}/{version}/set-default")
        for v in old:
            self._drain(v)
            self._manage("DELETE", f"/models/{self.name}/{v}")
        return self.status()

    def _drain(self, version: str, timeout: float = 60, grace: float = 2.0) -> None:
        """Wait until `version` has no queued request, then `grace` seconds for the batch in its worker
        (TorchServe does not report that one): unregistering fails whatever the version still holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (described,) = self._manage("GET", f"/models/{self.name}/{version}")
            if described.get("jobQueueStatus", {}).get("pendingRequests", 0) == 0:
                break
            time.sleep(0.1)
        time.sleep(grace)


def load_archive(mar: Path) -> tuple[Any, dict[str, Any]]:
    """The model an archive serves (its `model.pt`, weights_only) and its checkpoint entries."""
    import zipfile

    from unetpp.nn.checkpoint import load_checkpoint

    with zipfile.ZipFile(mar) as archive, tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.pt").write_bytes(archive.read("model.pt"))
        return load_checkpoint(Path(tmp) / "model.pt")


def _ready(version: dict[str, Any]) -> bool:
    return any(w["status"] == "READY" for w in version["workers"])


def _call(args: list[str], **kw: Any) -> None:
    done = subprocess.run(args, capture_output=True, text=True, **kw)
    if done.returncode:
        raise ServeError(
            f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )
