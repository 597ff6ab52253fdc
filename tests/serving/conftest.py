"""A real TorchServe on loopback, serving a tiny registered champion from a temporary project."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.models import TINY_PARAMS, fit_tiny, log_selection
from tests.params import project_params
from tests.project import free_ports
from unetpp.data.ingest import ingest
from unetpp.params import Params
from unetpp.registry.promotion import Registry
from unetpp.serving.server import Server

LIMITS = {"max_bytes": 300_000, "max_pixels": 512 * 512}


@pytest.fixture(scope="session")
def serving_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """params.yaml (tiny model, free ports, small limits), prepared data, a store."""
    if shutil.which("java") is None:
        pytest.fail("TorchServe needs Java 17 (apt-get install openjdk-17-jre-headless)")
    root = tmp_path_factory.mktemp("serving")
    inference, management, metrics = free_ports(3)
    ports = {"inference_port": inference, "management_port": management, "metrics_port": metrics}
    raw = project_params(TINY_PARAMS, {"serve": {**ports, **LIMITS}})
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
