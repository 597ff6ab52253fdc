"""The monitor flow for real: a served champion (TorchServe on loopback) answers a window of requests like
its training data, then a window of foreign ones; the flow finds no drift, then drift, and with no new
labels in the source exports the least confident kept inputs to label. New labels are what DVC sees."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from pipelines.monitor import monitor, new_labels
from tests.project import run, tiny_project
from tests.serving.conftest import make_project, serve_champion
from unetpp.data.synthetic import generate_fundus
from unetpp.scoring.foreign import foreign
from unetpp.serving.server import Server

pytestmark = pytest.mark.slow
MONITOR = {"window": 24, "min_requests": 12, "export": 5}


def _send(server: Server, images: list[np.ndarray]) -> list[dict]:
    headers = {"Authorization": f"Bearer {server.keys()['inference']}", "Content-Type": "image/png"}
    answers = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        resp = requests.post(f"{server.inference}/predictions/{server.name}", data=buf.getvalue(), headers=headers)
        assert resp.status_code == 200, resp.text
        answers.append(resp.json())
    return answers


def test_a_foreign_window_is_drift_and_its_least_confident_inputs_are_exported(
    tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store, as the server's
    project = tiny_project(tmp_path / "repo")
    make_project(project, {"serve": {"keep_images": True}, "monitor": MONITOR, "data": {"synthetic": {"count": 20}}})
    done = run(["dvc", "repro", "ingest"], project)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not new_labels.fn(project, "params.yaml")  # the source as the last ingest saw it
    with serve_champion(project) as server:
        _send(server, [generate_fundus(i, 96, seed=100).image for i in range(14)])
        calm = monitor(str(project))
        assert calm["verdict"]["drift"] is False and calm["started"] == {"action": "none"}, str(calm["verdict"])
        assert Path(calm["verdict"]["report"]).is_file()  # Evidently's HTML
        base = generate_fundus(0, 96, seed=100).image
        kinds = ("blank", "noise", "spots")
        answers = _send(server, [foreign(base, kinds[k % 3], seed=k) for k in range(MONITOR["window"])])
        assert np.mean([a["out_of_distribution"] for a in answers]) > 0.5
        drifted = monitor(str(project))
    verdict, started = drifted["verdict"], drifted["started"]
    assert verdict["drift"] and verdict["requests"] == MONITOR["window"] and verdict["flagged_share"] > 0.5
    assert started["action"] == "export" and started["exported"] == MONITOR["export"]
    folder = Path(started["folder"])
    with (folder / "requests.csv").open() as fh:
        listed = list(csv.DictReader(fh))
    assert len(listed) == MONITOR["export"] and all((folder / r["file"]).is_file() for r in listed)
    scores = [float(r["ood_score"]) for r in listed]
    assert scores[0] > 1 and scores == sorted(scores, reverse=True)  # flagged first, the farthest first
    assert Image.open(folder / listed[0]["file"]).size == (96, 96)  # the request's own bytes, as sent
    source = project / "src/unetpp/data/synthetic.py"  # the synthetic source's path: its generator
    source.write_text(source.read_text() + "\n# new labels\n")
    assert new_labels.fn(project, "params.yaml")
