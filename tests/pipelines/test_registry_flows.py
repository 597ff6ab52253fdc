"""The registry's Prefect flows (show, promote, rollback) on a temporary store."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.registry import promote, rollback, show
from tests.models import TINY_PARAMS, fit_tiny, log_selection
from unetpp.data.ingest import ingest
from unetpp.params import Params
from unetpp.registry.promotion import Registry


def test_show_promote_rollback_flows(prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    params = Params.model_validate(TINY_PARAMS)
    ingest(params, tmp_path / "data" / "prepared")
    registry = Registry(params, tmp_path)
    weak = fit_tiny(params, tmp_path / "data" / "prepared", steps=0, seed=1)
    strong = fit_tiny(params, tmp_path / "data" / "prepared")
    for i, model in enumerate((weak, strong), start=1):
        registry.register(log_selection(model, tmp_path / f"m{i}", params))

    assert promote(version="1", project=str(tmp_path))["promoted"]
    decision = promote(project=str(tmp_path))  # the challenger: version 2
    assert decision["version"] == "2" and decision["promoted"]
    info = show(project=str(tmp_path))
    assert info["aliases"] == {"challenger": "2", "champion": "2", "previous": "1"}
    assert [v["gate.decision"] for v in info["versions"]] == ["promoted", "promoted"]
    assert [v["aliases"] for v in info["versions"]] == [["previous"], ["challenger", "champion"]]
    assert rollback(project=str(tmp_path)) == {"from": "2", "to": "1"}
    assert show(project=str(tmp_path))["aliases"] == {"challenger": "2", "champion": "1"}
