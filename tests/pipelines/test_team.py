"""The retraining loop of a team on one stack (`unetpp stack`): hosts are working directories (git clones
of one project), the servers are real and every flow runs in its own process, as on its own machine.

A retrains on a folder of labelled pairs against the stack's MLflow and Prefect servers and pushes to
the DVC remote. B, a fresh clone, pulls, reproduces nothing and serves the champion. A month of labels
later, A and C retrain at the same moment: each ingests only the new pairs, and their gates take the
promotion limit one after the other. (A rerun with nothing new: tests/test_pipeline.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import requests
import yaml

from tests.background import Background, heavy_run
from tests.conftest import labelled_pairs, running_stack
from tests.params import TINY, project_params
from tests.project import BUSY, ROOT, command_env, commit, free_ports, run, tiny_project
from unetpp.stack.servers import Stack

PY = sys.executable
GATE_TAGS = {
    "gate.decision", "gate.reason", "gate.data_sha256", "gate.cases", "gate.challenger_dice", "gate.champion_version",
    "gate.champion_dice", "gate.difference", "gate.difference_ci95", "gate.policy", "gate.started", "gate.at",
}  # fmt: skip


def _clone(origin: Path, dest: Path, environ: Mapping[str, str]) -> Path:
    """A colleague's fresh clone with the remote's data and models (`git clone && dvc pull`)."""
    assert run(["git", "clone", "-q", str(origin), str(dest)], origin.parent, environ).returncode == 0
    pulled = run(["dvc", "pull"], dest, environ)
    assert pulled.returncode == 0, pulled.stdout[-2000:] + pulled.stderr[-2000:]
    return dest


def _serve_and_ask(project: Path, environ: Mapping[str, str], env: dict[str, str], image: Path) -> dict:
    """`unetpp serve package && unetpp serve start` on free ports, one `unetpp predict`, stop: the answer."""
    names = ("inference_port", "management_port", "metrics_port", "grpc_inference_port", "grpc_management_port")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["serve"] |= dict(zip(names, free_ports(len(names)), strict=True))
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        for action in ("package", "start"):
            done = run(["unetpp", "serve", action], project, environ, **env)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        overlay = str(project / "overlay.png")
        asked = run(["unetpp", "predict", str(image), "--overlay", overlay], project, environ, **env)
        assert asked.returncode == 0, asked.stderr[-2000:]
        return json.loads(asked.stdout)
    finally:
        run(["unetpp", "serve", "stop"], project, environ, **env)


class Flow:
    """`python -m pipelines.retrain` in a host's folder, its output collected line by line as it comes."""

    def __init__(self, project: Path, environ: Mapping[str, str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([PY, "-m", "pipelines.retrain"], cwd=project,
                                     env=command_env(project, environ, **env), text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or []), daemon=True)
        self.reader.start()

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait(self) -> str:
        self.proc.wait(timeout=BUSY)
        self.reader.join()
        out = "".join(self.lines)
        assert self.proc.returncode == 0, out[-4000:]
        return out


@heavy_run("team")
def _a_team_month(tmp_path: Path, environ: Mapping[str, str]) -> str:
    """The whole scenario of the module doc, each step checked as it comes, on a stack of its own (the
    session's is stopped and started by tests/stack); what the two gates did, as lines."""
    with running_stack() as stack:
        return _scenario(stack, tmp_path, environ)


@pytest.mark.slow
@pytest.mark.timeout(BUSY)
@pytest.mark.background("team")
def test_a_team_retrains_a_growing_folder_on_one_stack(background: Background) -> None:
    """The scenario's checks run as it goes (`_scenario`); a failed one is raised here."""
    gates = background.result("team")
    assert gates.count("gate of version") == 2, gates
    print(gates)


def _scenario(team_stack: Stack, tmp_path: Path, environ: Mapping[str, str]) -> str:
    from mlflow.tracking import MlflowClient

    from unetpp.registry.lock import PROMOTION_LIMIT

    env = team_stack.client_env()
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    source = tmp_path / "source"
    labelled_pairs(source, range(12), size=96)  # by rank: 8 train, 2 val, 2 test
    a = tiny_project(tmp_path / "a", git=True, environ=environ)
    folder = {"model": {"class_names": ["disc"]}, "data": {"source": "folder", "path": str(source)}}
    (a / "params.yaml").write_text(yaml.safe_dump(project_params(TINY, folder)))
    assert run(["dvc", "remote", "add", "-d", "team", str(tmp_path / "remote")], a, environ).returncode == 0
    commit(a, "the project, with its DVC remote", environ)

    first = run([PY, "-m", "pipelines.retrain", "--push"], a, environ, **env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "12 samples: new 12 (test 2, train 8, val 2)" in first.stdout
    assert "promotion: promoted: no champion yet" in first.stdout and "remote:    team:" in first.stdout
    assert client.get_registered_model("unetpp").aliases == {"challenger": "1", "champion": "1"}
    assert any(p.name == "model.pt" for p in Path(team_stack.state().artifacts).rglob("*")), "in the stack's store"
    assert not (a / "mlruns").exists()  # nothing tracked in a private SQLite file
    found = requests.post(f"{env['PREFECT_API_URL']}/artifacts/filter", json={"artifacts": {"key": {"any_": [
        "promotion"]}}}, timeout=10).json()  # fmt: skip
    assert found and "champion now: version 1" in found[0]["data"]  # the flow's artifacts, on the team's server
    commit(a, "retrained", environ)
    ledger = (a / "splits.csv").read_text().splitlines()

    b = _clone(a, tmp_path / "b", environ)
    again = run(["dvc", "repro"], b, environ, **env)
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout[-3000:]
    answer = _serve_and_ask(b, environ, env, source / "images" / "eye000.png")
    assert answer["model"]["version"] == "1" and set(answer["classes"]) == {"disc"}

    c = _clone(a, tmp_path / "c", environ)
    labelled_pairs(source, range(12, 20), size=96)  # a month of labelling, by hash: 4 train, 3 val, 1 test
    holder = subprocess.Popen([PY, "-m", "tests.registry.holder", "-", str(tmp_path / "holder")], cwd=ROOT,
                              env=command_env(tmp_path, environ, **env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().startswith("held")  # a third host holds the registry ...
    flows = [Flow(host, environ, env) for host in (a, c)]  # ... while A and C retrain, and both wait for it
    deadline = time.monotonic() + BUSY
    while not all(f.saw("register: taking the promotion lock") for f in flows):
        assert all(f.proc.poll() is None for f in flows) and time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(2)  # from the log line to the request for a slot
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=60) == 0
    logs = [f.wait() for f in flows]
    for log in logs:
        assert f"'{PROMOTION_LIMIT}' on {env['PREFECT_API_URL']}" in log  # not a file lock
        assert "20 samples: new 8 (test 1, train 4, val 3), changed 0, reused 12" in log, log[-3000:]

    tags = {v: client.get_model_version("unetpp", v).tags for v in ("2", "3")}
    for version, held in tags.items():
        assert held.keys() >= GATE_TAGS and "info.test.champion_dice" in held, (version, GATE_TAGS - held.keys())
        assert held["gate.cases"] == "5" and held["gate.difference_ci95"].startswith("["), held
    first_gate, second_gate = sorted(tags, key=lambda v: tags[v]["gate.started"])
    aliases = client.get_registered_model("unetpp").aliases
    gates = "\n".join(
        [f"gate of version {v}: {tags[v]['gate.started']} .. {tags[v]['gate.at']}, champion then "
         f"{tags[v]['gate.champion_version']}: {tags[v]['gate.decision']}" for v in (first_gate, second_gate)]
        + [f"aliases after both: {dict(sorted(aliases.items()))}"]
    )  # fmt: skip
    assert tags[first_gate]["gate.at"] <= tags[second_gate]["gate.started"]  # one gate at a time
    assert tags[first_gate]["gate.champion_version"] == "1"
    after_first = first_gate if tags[first_gate]["gate.decision"] == "promoted" else "1"
    assert tags[second_gate]["gate.champion_version"] == after_first  # the second saw the first's outcome
    champion = second_gate if tags[second_gate]["gate.decision"] == "promoted" else after_first
    assert aliases["champion"] == champion
    if champion != "1":
        replaced = client.get_model_version("unetpp", champion).tags["replaced"]
        assert aliases["previous"] == replaced and replaced in {"1", first_gate}
    for host in (a, c):  # 20 ids: the first 12 sort first and kept their splits
        assert (host / "splits.csv").read_text().splitlines()[: len(ledger)] == ledger
    return gates
