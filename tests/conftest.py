"""Shared fixtures: seeds and threads, trained-looking batch norms, small on-disk datasets."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.background import ONE_THREAD, Background, wanted
from unetpp.data.synthetic import generate_fundus
from unetpp.nn.networks import NodeNet
from unetpp.params import Params
from unetpp.stack.servers import Stack

CORES = min(torch.get_num_threads(), len(os.sched_getaffinity(0)))  # torch's default, within the CPUs we may use


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "background(name): reads the heavy run `name` started as the session starts (tests/background.py)"
    )
    os.environ.update(ONE_THREAD)  # the commands fixtures of any scope start, while background runs go ...
    torch.set_num_threads(1)  # ... and this process


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that read a background run last, so the foreground works while the runs do, instead of
    waiting for one halfway through (172 s for the team's run and 88 s for a data kind's before)."""
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)


@pytest.fixture(scope="session", autouse=True)
def background(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    """The heavy runs the collected tests read (`tests.background`), started as the session starts."""
    runs = Background(wanted(request.session.items), tmp_path_factory)
    try:
        yield runs
    finally:
        runs.close()


@pytest.fixture(autouse=True)
def _seed(background: Background, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded; one thread per process while background runs share the cores, all of them once they ended
    (tests/background.py), whatever a test before set."""
    torch.manual_seed(0)
    if background.busy():
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(CORES)
        for name in ONE_THREAD:  # the commands the test starts
            monkeypatch.delenv(name, raising=False)


def randomize_batchnorm(model: NodeNet) -> NodeNet:
    """Give batch norms non-trivial running statistics and affine terms, as after training."""
    gen = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
            mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
    return model


def tree_digest(root: Path) -> str:
    """One hash over every file's relative path and bytes: equal digests, untouched tree."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def folder_params(path: Path, **data: object) -> Params:
    return Params.model_validate(
        {
            "model": {"class_names": ["disc"]},
            "data": {"source": "folder", "path": str(path), "image_size": 48, **data},
            "validate": {"min_train": 1, "min_val": 1, "min_test": 1},
        }
    )


def labelled_pairs(root: Path, indices: range, size: int = 64) -> None:
    """Generated pairs `eye{i:03d}.png` (image, 0/255 disc mask) in a flat images/ + masks/ folder."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in indices:
        s = generate_fundus(i, size, seed=5)
        Image.fromarray(s.image).save(root / "images" / f"eye{i:03d}.png")
        Image.fromarray(s.masks[0].astype(np.uint8) * 255).save(root / "masks" / f"eye{i:03d}.png")


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    """images/{train,val,test}/*.png with binary 0/255 disc masks under masks/{train,val,test}/."""
    root = tmp_path / "source"
    for split, indices in (("train", range(4)), ("val", range(4, 6)), ("test", range(6, 8))):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in indices:
            s = generate_fundus(i, 64, seed=3)
            Image.fromarray(s.image).save(root / "images" / split / f"eye{i}.png")
            Image.fromarray(s.masks[0].astype(np.uint8) * 255).save(root / "masks" / split / f"eye{i}.png")
    return root


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """The team's servers (PostgreSQL, MLflow on it, Prefect) on loopback in a temporary folder, stopped by
    PID after. Skipped, with the reason in pytest's summary, only when the PostgreSQL server binaries are
    absent."""
    from unetpp.stack import postgres
    from unetpp.stack.processes import StackError

    try:
        postgres.binaries()
    except StackError as err:
        pytest.skip(f"the team stack's tests need PostgreSQL: {err}")
    folder = Path(tempfile.mkdtemp(prefix="unetpp-stack-"))
    os.chmod(folder, 0o755)  # as root, PostgreSQL runs as an unprivileged user, who must reach its cluster
    stack = Stack(folder=folder / ".stack")
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def team_stack() -> Iterator[Stack]:
    """One `running_stack` for the session."""
    with running_stack() as stack:
        yield stack
