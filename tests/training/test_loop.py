"""Training: resume after SIGKILL (moving average included) ends where an uninterrupted run ends; DDP on gloo,
one node or two."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.params import TINY as TINY_RECIPE
from tests.params import project_params
from tests.project import free_ports
from unetpp.data.dataset import PreparedDataset
from unetpp.data.ingest import ingest
from unetpp.nn.checkpoint import load_checkpoint
from unetpp.params import Params
from unetpp.planning.plan import plan
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.intensity import RGB
from unetpp.training.loop import evaluate_epoch
from unetpp.training.losses import DeepSupervisionLoss
from unetpp.training.stopping import improvement

BIN = Path(sys.executable).parent
TINY = project_params(
    TINY_RECIPE,
    {"data": {"synthetic": {"count": 12}}, "train": {"epochs": 4, "step_size": 2, "ema_decay": 0.9}},
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    ingest(Params.model_validate(TINY), root / "data/prepared")
    plan(Params.model_validate(TINY), root / "data/prepared", root / "plans.json")
    return root


def _copy(workspace: Path, name: str) -> Path:
    work = workspace.parent / f"{workspace.name}-{name}"
    shutil.copytree(workspace, work)
    return work


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }


def _train(work: Path, *prefix: str) -> subprocess.CompletedProcess[str]:
    cmd = [*prefix, str(BIN / "unetpp"), "train"] if prefix else ["unetpp", "train"]
    return subprocess.run(cmd, cwd=work, env=_env(work), capture_output=True, text=True, timeout=600)


def _killed_after(work: Path, saves: int) -> int:
    """Start `unetpp train` in `work`, SIGKILL it once models/last.pt was written `saves` times; the epoch saved."""
    proc = subprocess.Popen(
        ["unetpp", "train"], cwd=work, env=_env(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = work / "models/last.pt"
    saved: set[tuple[int, int]] = set()  # each epoch's save, renamed onto last.pt: a new (inode, mtime)
    deadline = time.time() + 300
    while len(saved) < saves and time.time() < deadline:  # by stat alone: a torch.load here let epochs slip by
        with contextlib.suppress(FileNotFoundError):
            stat = last.stat()
            saved.add((stat.st_ino, stat.st_mtime_ns))
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = torch.load(last, weights_only=True)["epoch"]
    assert interrupted_at < TINY["train"]["epochs"] - 1, "the run finished before it could be killed"
    return interrupted_at


def _best_weights(work: Path) -> dict[str, torch.Tensor]:
    return torch.load(work / "models/best.pt", weights_only=True)["state_dict"]


def _val_loss(work: Path, state_dict: dict[str, torch.Tensor]) -> float:
    """Validation loss of `state_dict` (in best.pt's architecture), computed as training does."""
    model, meta = load_checkpoint(work / "models/best.pt")
    model.load_state_dict(state_dict)
    geometry = Geometry.of(meta)
    loader = torch.utils.data.DataLoader(PreparedDataset(work / "data/prepared", "val", RGB, geometry), batch_size=4)
    loss_fn = DeepSupervisionLoss(dice_per_image=TINY["train"]["dice_per_image"])
    return evaluate_epoch(model, loader, loss_fn, ["disc", "cup"], torch.device("cpu"), geometry)[0]


@pytest.mark.slow
def test_past_the_planned_epochs_a_run_goes_on_while_val_improves_up_to_the_cap(workspace: Path) -> None:
    """`train.min_delta` 0: a curve that does not fall counts as improving (this tiny run's Dice stays flat),
    so the run goes on past its plan to the cap, validating at each epoch it decides on."""
    work = _copy(workspace, "extended")
    params = project_params(TINY, {"train": {"epochs": "auto", "budget_tflop": 0.002, "min_delta": 0.0}})
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    plan(Params.model_validate(params), work / "data/prepared", work / "plans.json")
    recipe = json.loads((work / "plans.json").read_text())["recipe"]
    planned, cap, patience = (recipe[k]["value"] for k in ("epochs", "cap_epochs", "patience"))
    assert cap > planned and recipe["val_every"]["value"] == 1
    done = _train(work)
    assert done.returncode == 0, done.stderr
    summary = json.loads((work / "metrics/train.json").read_text())
    end, curve = summary["ended"], list(csv.DictReader((work / "metrics/train_curve.csv").open()))
    history = [{"dice_mean": float(r["dice_mean"])} for r in curve]
    assert all(improvement(history[:epoch], patience) >= 0 for epoch in range(planned, cap))
    assert len(curve) == summary["epochs"] == end["epochs"] == cap and end["reason"] == "cap"
    assert f"epoch {planned + 1}/{planned}+ (improving; cap {cap})" in done.stdout
    assert f"stopped by the cap (planned {planned}, cap {cap} epochs" in done.stdout, done.stdout[-2000:]


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(workspace: Path) -> None:
    straight = _copy(workspace, "straight")
    done = _train(straight)
    assert done.returncode == 0, done.stderr
    # the moving average is what is validated and kept: last epoch's row is the average's, best.pt its best
    summary = json.loads((straight / "metrics/train.json").read_text())
    average = torch.load(straight / "models/last.pt", weights_only=True)["ema"]
    average = {k.removeprefix("module."): v for k, v in average.items() if k.startswith("module.")}
    last_row = list(csv.DictReader((straight / "metrics/train_curve.csv").open()))[-1]
    assert _val_loss(straight, average) == pytest.approx(float(last_row["val_loss"]), rel=1e-5)
    assert _val_loss(straight, _best_weights(straight)) == pytest.approx(summary["best"]["val_loss"], rel=1e-5)

    killed = _copy(workspace, "killed")
    interrupted_at = _killed_after(killed, saves=2)

    resumed = _train(killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from models/last.pt after epoch {interrupted_at + 1}" in resumed.stdout
    assert json.loads((killed / "metrics/train.json").read_text()) == json.loads(
        (straight / "metrics/train.json").read_text()
    )
    for name, tensor in _best_weights(straight).items():
        assert torch.equal(tensor, _best_weights(killed)[name]), name
    ends = [torch.load(w / "models/last.pt", weights_only=True) for w in (straight, killed)]
    for part in ("state_dict", "ema"):
        for name, tensor in ends[0][part].items():
            assert torch.equal(tensor, ends[1][part][name]), f"{part}: {name}"


@pytest.mark.slow
def test_two_nodes_train_the_weights_of_one_node_with_two_processes(workspace: Path) -> None:
    """DDP on gloo: `torchrun --standalone --nproc_per_node=2`, then two torchrun nodes of one process each
    (two hosts, simulated: each its own copy of the project, rendezvous on 127.0.0.1); the same weights."""
    one = _copy(workspace, "ddp")
    proc = _train(one, str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((one / "metrics/train.json").read_text())
    assert summary["epochs"] == TINY["train"]["epochs"]
    assert len(re.findall(r"^epoch 1/", proc.stdout, flags=re.M)) == 1  # rank 0 alone reports
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{one / 'mlflow.db'}")
    run_id = json.loads((one / "models/run.json").read_text())["run_id"]
    assert mlflow.get_run(run_id).data.tags["world_size"] == "2"

    nodes = [_copy(workspace, f"node{rank}") for rank in (0, 1)]
    rendezvous = ["--nnodes=2", "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={free_ports(1)[0]}"]
    logs = [node / "torchrun.log" for node in nodes]
    procs = []
    try:
        for rank, node in enumerate(nodes):
            with logs[rank].open("w") as out:  # files, not pipes: neither node can block on a full one
                command = [str(BIN / "torchrun"), *rendezvous, f"--node_rank={rank}", str(BIN / "unetpp"), "train"]
                procs.append(subprocess.Popen(command, cwd=node, env=_env(node), stdout=out, stderr=subprocess.STDOUT))
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0, 0], "\n".join(log.read_text()[-2000:] for log in logs)
    assert not (nodes[1] / "models/best.pt").exists()  # rank 0's host alone writes checkpoints
    two = _best_weights(nodes[0])
    for name, tensor in _best_weights(one).items():
        assert torch.equal(tensor, two[name]), name


@pytest.mark.slow
def test_a_cascade_killed_in_its_second_stage_resumes_there_and_ends_as_an_uninterrupted_run(
    workspace: Path,
) -> None:
    """The plan's own choice on these images (a cascade): the first stage, finished, is taken as it is while the
    second is under way; a rerun after both finished trains both again (the code may have changed)."""
    params = project_params(TINY, {"train": {"scale": "auto"}})
    works = {}
    for name in ("cascade-straight", "cascade-killed"):
        works[name] = _copy(workspace, name)
        (works[name] / "params.yaml").write_text(yaml.safe_dump(params))
        plan(Params.model_validate(params), works[name] / "data/prepared", works[name] / "plans.json")
    straight, killed = works.values()
    assert json.loads((straight / "plans.json").read_text())["recipe"]["region"]["value"] is not None
    done = _train(straight)
    assert done.returncode == 0, done.stderr
    assert "coarse epoch 1/" in done.stdout and "region epoch 1/" in done.stdout

    interrupted_at = _killed_after(killed, saves=1)  # models/last.pt: the second stage's (the first's in coarse/)

    resumed = _train(killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "coarse finished before, as models/coarse/last.pt says; taken as it is" in resumed.stdout
    assert f"region resuming from models/last.pt after epoch {interrupted_at + 1}" in resumed.stdout
    assert json.loads((killed / "metrics/train.json").read_text()) == json.loads(
        (straight / "metrics/train.json").read_text()
    )
    for name, tensor in _best_weights(straight).items():
        assert torch.equal(tensor, _best_weights(killed)[name]), name
    again = _train(killed)
    assert again.returncode == 0 and "coarse epoch 1/" in again.stdout and "finished before" not in again.stdout
