"""A real TorchServe on loopback, serving a tiny registered champion from a temporary project."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.models import TINY_PARAMS, fit_tiny, log_selection
from tests.params import project_params
from tests.project import free_ports
from unetpp.data.ingest import ingest
from unetpp.params import Params
from unetpp.registry.promotion import Registry
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.intensity import RGB, Intensity
from unetpp.serving.server import Server

LIMITS = {"max_bytes": 300_000, "max_pixels": 512 * 512}


def make_project(root: Path, *overrides: dict[str, Any]) -> Path:
    """params.yaml (tiny model, free ports, small limits, `overrides`) and prepared data in `root`."""
    if shutil.which("java") is None:
        pytest.fail("TorchServe needs Java 17 (apt-get install openjdk-17-jre-headless)")
    names = ("inference_port", "management_port", "metrics_port", "grpc_inference_port", "grpc_management_port")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    raw = project_params(TINY_PARAMS, {"serve": {**ports, **LIMITS}}, *overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    ingest(Params.model_validate(raw), root / "data" / "prepared")
    return root


@contextlib.contextmanager
def serve_champion(
    project: Path, geometry: Geometry | None = None, tta_flips: tuple[int, ...] = (), intensity: Intensity = RGB
) -> Iterator[Server]:
    """Version 1 (a fitted tiny UNet++, L2 fast with its guard, on `geometry`: whole by default; mirrored along
    `tta_flips`; reading images by `intensity`) promoted to champion, packaged and served; stopped after."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store
        params = Params.model_validate(yaml.safe_load((project / "params.yaml").read_text()))
        model = fit_tiny(params, project / "data" / "prepared", intensity=intensity)
        registry = Registry(params, project)
        selection = log_selection(
            model,
            project / "selected-1",
            params,
            geometry=geometry,
            tta_flips=tta_flips,
            intensity=intensity,
            prepared=project / "data" / "prepared",
        )
        version, _ = registry.register(selection)
        assert registry.gate(str(version.version), project / "data" / "prepared").promoted
        server = Server(params, project)
        mar, _ = server.package()
        try:
            server.start(mar)
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def serving_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="session")
def served(serving_project: Path) -> Iterator[Server]:
    with serve_champion(serving_project) as server:
        yield server
