"""The key file TorchServe writes while starting: read only once complete, so readiness polling waits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unetpp.params import Params
from unetpp.serving.server import RUNTIME, ServeError, Server


def test_a_key_file_being_written_reads_as_not_ready_then_gives_both_keys(tmp_path: Path) -> None:
    server = Server(Params(), tmp_path)
    with pytest.raises(ServeError, match="not found"):
        server.keys()
    path = tmp_path / RUNTIME / "key_file.json"
    path.parent.mkdir(parents=True)
    for partial in ("", '{"management": {"key": "m"'):
        path.write_text(partial)
        with pytest.raises(ServeError, match="not a complete TorchServe key file yet"):
            server.keys()
    path.write_text(json.dumps({"management": {"key": "m"}, "inference": {"key": "i"}, "API": {"key": "a"}}))
    assert server.keys() == {"management": "m", "inference": "i"}
