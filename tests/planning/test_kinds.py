"""Data unlike the default learns with every recipe value `auto` (the plan decides): raw 16-bit camera
frames, as well as their 8-bit stretched copies; a small 2-channel set of 12-bit range whose target only the
second channel shows (where a fixed weight average and 65535-scaling had given Dice 0); and large images
with small targets, which the plan trains on patches and segments with sliding windows."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch
import yaml

from tests.background import Background, heavy_run
from tests.kinds import offset16, specks, two_channel
from tests.params import project_params
from tests.project import BUSY, run, tiny_project
from unetpp.data.prepared import split_ids
from unetpp.nn.checkpoint import load_checkpoint
from unetpp.runtime.images import read_array
from unetpp.runtime.intensity import Intensity

# Logs each file under the watched folder that a `unetpp` process opens, with its subcommand.
AUDIT = """
import os, sys
_watch, _log = os.environ["UNETPP_AUDIT_WATCH"], os.environ["UNETPP_AUDIT_LOG"]
def _hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if path.startswith(_watch) and os.path.basename(sys.argv[0]) == "unetpp":
            with open(_log, "a") as fh:
                fh.write(sys.argv[1] + " " + path + "\\n")
sys.addaudithook(_hook)
"""


def _trained(
    tmp_path: Path,
    name: str,
    kind: Callable[[Path], list[str]],
    budget: float,
    stage: str = "train",
    side: int = 64,
    widths: list[int] | None = None,
    env: dict[str, str] | None = None,
    cap: float | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict, dict]:
    """`dvc repro <stage>` on a generated folder set with only source, path and class names changed (and a
    short budget; `side`: the network's grid, `data.image_size`, 64 px, where a step costs a quarter of one at
    128 px and each kind reaches the Dice it did there within 0.05; `widths`: a narrower network than the
    shipped one; `cap`: `train.cap_tflop`, the budget unless given: no run past its plan; `environ`: the
    commands' environment, `tests.project.run`'s); plans.json (with the project's folder) and train.json's best
    epoch and `ended`. Each kind's run is a background run (`tests.background`): its tests only read it."""
    source = tmp_path / name
    names = kind(source)
    project = tiny_project(tmp_path / f"{name}-repo", environ=environ)
    raw = project_params(
        {
            "model": {"class_names": names, **({"widths": widths} if widths else {})},
            "data": {"source": "folder", "path": str(source), "image_size": side},
            "validate": {"min_train": 2},
            "train": {"budget_tflop": budget, "cap_tflop": budget if cap is None else cap},  # the recipe `auto`
            "evaluate": {"repeats": 2, "warmup": 1},
        }
    )
    assert raw["model"]["in_channels"] == "auto"
    assert all(raw["train"][k] == "auto" for k in ("epochs", "batch_size", "step_size", "ema_decay"))
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    done = run(["dvc", "repro", stage], project, environ, **(env or {}))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    plan = json.loads((project / "plans.json").read_text()) | {"project": project}
    summary = json.loads((project / "metrics/train.json").read_text())
    return plan, summary["best"] | {"ended": summary["ended"]}


FRAMES = {"count": 20, "side": 64}


@heavy_run("kind-raw16")
def _frames(tmp: Path, environ: Mapping[str, str]) -> tuple[dict, dict]:
    half = [8, 16, 32, 64, 128]  # 134 steps planned: val Dice 0.67 and rising
    frames = lambda root: offset16(root, **FRAMES)  # noqa: E731
    return _trained(tmp, "raw", frames, 1.5, widths=half, cap="auto", environ=environ)


@pytest.mark.slow
@pytest.mark.timeout(BUSY)
@pytest.mark.background("kind-raw16")
def test_raw_16bit_frames_learn_and_reach_the_network_as_their_8bit_copies(
    background: Background, tmp_path: Path
) -> None:
    """A camera offset near 33,000 with objects a few hundred counts above: scaled by the container's bit
    depth to 8 bits these frames kept 2-3 grey levels of signal. Read in the source's units by the plan's
    rule, each frame reaches the network as its contrast-stretched 8-bit copy does, and the set learns.
    (Both trained to the end, test Dice within 0.01: `python bench/data_kinds.py --kinds offset16 offset16_png`.)"""
    plan, best = background.result("kind-raw16")
    assert best["ended"]["epochs"] > best["ended"]["planned"], best["ended"]  # trained on while val still rose
    fp = plan["fingerprint"]
    assert fp["dtype"] == ["uint16"] and 32_000 < fp["intensity"][0]["p50"] < 34_000  # the source's units
    reading = Intensity.of({"intensity": plan["recipe"]["intensity"]["value"]}, 1)
    assert reading.clip == (0.5, 99.5)  # its hot pixels
    offset16(tmp_path / "png", **FRAMES, stretched=True)
    for name in ("frame00", "frame07", "frame13"):
        raw = reading.tensor(read_array(plan["project"].parent / "raw" / "images" / f"{name}.tif")).ravel()
        eight = Intensity(1, 1).tensor(read_array(tmp_path / "png" / "images" / f"{name}.png")).ravel()
        assert torch.corrcoef(torch.stack([raw, eight]))[0, 1] > 0.99, name
    assert best["dice_nucleus"] > 0.75, best


@heavy_run("kind-2channel")
def _wells(tmp: Path, environ: Mapping[str, str]) -> tuple[dict, dict]:
    """Through `test`, each `unetpp` process watched by the audit hook (its log beside the project)."""
    hooks, log = tmp / "hooks", tmp / "opened.log"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    audit = {"PYTHONPATH": str(hooks), "UNETPP_AUDIT_WATCH": str(tmp / "wells"), "UNETPP_AUDIT_LOG": str(log)}
    wells = lambda root: two_channel(root, count=10, side=64, radius=(2.5, 4.5))  # noqa: E731
    return _trained(tmp, "wells", wells, 2.5, "test", env=audit, environ=environ)


@pytest.mark.slow
@pytest.mark.timeout(BUSY)
@pytest.mark.background("kind-2channel")
def test_a_12bit_target_in_the_second_channel_only_is_learned_and_only_ingest_and_test_open_test_files(
    background: Background,
) -> None:
    """Through `test`, on 16-bit TIFFs holding a 12-bit range (read in its units, not scaled by 65535): the
    selected, pruned model carries the 2-channel reading and scores the held-out split as served, at the
    source resolution. Each `unetpp` process is watched by an audit hook: `ingest` measures the test files
    for the gate, `test` scores them, no other stage opens one."""
    plan, best = background.result("kind-2channel")
    source, log = plan["project"].parent / "wells", plan["project"].parent / "opened.log"
    assert plan["fingerprint"]["channels"] == [2] and len(plan["fingerprint"]["intensity"]) == 2
    assert plan["fingerprint"]["bit_depth"] == [12] and plan["recipe"]["flip_axes"]["value"] == [0, 1]
    assert plan["recipe"]["in_channels"]["value"] == 2 and best["dice_target"] > 0.8, best
    _, meta = load_checkpoint(plan["project"] / "models/pruned/model.pt")
    assert meta["intensity"] == plan["recipe"]["intensity"]["value"]
    held_out = json.loads((plan["project"] / "metrics/test.json").read_text())
    assert held_out["intensity"] == meta["intensity"] and held_out["dice_target"]["mean"] > 0.8, held_out

    opened = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert {stage for stage, _ in opened} == {"ingest", "test"}  # the hook saw the source being read
    test_ids = set(split_ids(plan["project"] / "data/prepared", "test"))
    expected = {f"{sub}/{i}.{ext}" for i in test_ids for sub, ext in (("images", "tif"), ("masks", "png"))}
    test_files = {(stage, str(Path(p).relative_to(source))) for stage, p in opened if Path(p).stem in test_ids}
    assert test_ids and {stage for stage, _ in test_files} == {"ingest", "test"}, sorted(test_files)
    assert {f for stage, f in test_files if stage == "test"} == expected


@heavy_run("kind-patches")
def _slides(tmp: Path, environ: Mapping[str, str]) -> tuple[dict, dict]:
    slides = lambda root: specks(root, count=8, side=256, radius=(3, 5))  # noqa: E731
    return _trained(tmp, "slides", slides, 2.0, environ=environ)  # ~180 steps of 4 patches of 64 px


@pytest.mark.slow
@pytest.mark.timeout(BUSY)
@pytest.mark.background("kind-patches")
def test_large_images_with_small_targets_train_on_patches(background: Background) -> None:
    plan, best = background.result("kind-patches")
    geometry = plan["recipe"]["geometry"]
    assert geometry["value"]["mode"] == "patch" and geometry["tried"][0]["ceiling"]["target"] < 0.95, geometry
    assert best["dice_target"] > 0.6, (best, {k: v["value"] for k, v in plan["recipe"].items()})
    _, meta = load_checkpoint(plan["project"] / "models/best.pt")  # what evaluate, select and serving read it from
    assert meta["geometry"] == geometry["value"]
