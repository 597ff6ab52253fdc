"""A real TorchServe on loopback, serving a tiny registered champion from a temporary project."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.models import fit_tiny, log_selection
from tests.project import ROOT
from unetpp.data.prepare import ingest
from unetpp.params import Params
from unetpp.registry import Registry
from unetpp.serve import Server

LIMITS = {"max_bytes": 300_000, "max_pixels": 512 * 512}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="session")
def serving_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """params.yaml (tiny model, free ports, small limits), the serving/ folder, prepared data, a store."""
    if shutil.which("java") is None:
        pytest.fail("TorchServe needs Java 17 (apt-get install openjdk-17-jre-headless)")
    root = tmp_path_factory.mktemp("serving")
    shutil.copytree(ROOT / "serving", root / "serving")
    inference, management, metrics = _free_ports(3)
    raw = {
        "model": {"widths": [4, 8, 16, 32, 64], "norm": "instance"},
        "data": {"image_size": 48, "synthetic": {"count": 10, "size": 64}},
        "validate": {"min_train": 2},
        "promote": {"min_dice": 0.0},
        "tracking": {"store": "mlruns"},
        "serve": {"inference_port": inference, "management_port": management, "metrics_port": metrics, **LIMITS},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    ingest(Params.model_validate(raw), root / "data" / "prepared")
    return root


@pytest.fixture(scope="session")
def served(serving_project: Path) -> Iterator[Server]:
    """Version 1 (a fitted tiny UNet++, L2 fast) promoted to champion, packaged and served."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store under serving_project
        params = Params.model_validate(yaml.safe_load((serving_project / "params.yaml").read_text()))
        model = fit_tiny(params, serving_project / "data" / "prepared")
        registry = Registry(params, serving_project)
        version, _ = registry.register(log_selection(model, serving_project / "selected-1", params))
        assert registry.gate(str(version.version), serving_project / "data" / "prepared").promoted
        server = Server(params, serving_project)
        mar, _ = server.package()
        try:
            server.start(mar)
            yield server
        finally:
            server.stop()
