"""The learning guard: trivial predictors' Dice, a learned history passes, and a pipeline on masks that
do not belong to their images stops at `train` with exit 3 and a message naming the class."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.background import Background, heavy_run
from tests.kinds import unrelated
from tests.params import TINY, project_params, tiny_params
from tests.project import run, tiny_project
from unetpp.data.dataset import PreparedDataset
from unetpp.data.ingest import ingest
from unetpp.data.prepared import source_arrays, write_sample
from unetpp.errors import DidNotLearn
from unetpp.planning.recipe import Recipe
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.intensity import RGB
from unetpp.runtime.preprocess import resize_masks
from unetpp.training.learning_guard import check_learning, grid_masks, stacked_masks, trivial_dice
from unetpp.training.stopping import Ending, ending

WHOLE = Geometry("whole", 48)  # tiny_params' data.image_size
PLANNED = Ending("planned", epochs=3, planned=3, cap=12, patience=1, gain=0.0, improving=False)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("guard") / "prepared"
    ingest(tiny_params(), out)
    return out


def test_trivial_dice_of_empty_full_and_prior_masks(prepared: Path) -> None:
    train, val = PreparedDataset(prepared, "train", RGB, WHOLE), PreparedDataset(prepared, "val", RGB, WHOLE)
    trivial = trivial_dice(stacked_masks(train), stacked_masks(val), ["disc", "cup"])
    for c, index in (("disc", 0), ("cup", 1)):
        masks = [resize_masks(source_arrays(prepared, i)[1], 48)[index] for i in val.ids]  # as ingest measured
        expected = np.mean([2 * m.sum() / (m.sum() + m.size) for m in masks])
        assert trivial[c]["empty"] == 0.0  # the gate lets no empty mask through
        assert trivial[c]["all_foreground"] == pytest.approx(expected)
        assert 0.0 <= trivial[c]["training_prior"] < 0.9


def test_the_prior_predictor_scores_a_fixed_position_as_well_as_a_model_would(tmp_path: Path) -> None:
    """Masks always in the same place: the prior alone scores 1, so nothing less counts as learning."""
    for split, n in (("train", 3), ("val", 2)):
        (tmp_path / "samples").mkdir(exist_ok=True)
        for i in range(n):
            mask = np.zeros((1, 16, 16), np.uint8)
            mask[0, 4:9, 5:11] = 1
            write_sample(tmp_path, f"{split}{i}", np.zeros((16, 16, 3), np.uint8), mask.astype(bool))
    rows = [f"{s}{i},{s}," for s, n in (("train", 3), ("val", 2)) for i in range(n)]
    (tmp_path / "manifest.csv").write_text("id,split,error\n" + "\n".join(rows) + "\n")
    train, val = (
        stacked_masks(PreparedDataset(tmp_path, split, RGB, Geometry("whole", 16))) for split in ("train", "val")
    )
    trivial = trivial_dice(train, val, ["spot"])
    assert trivial["spot"]["training_prior"] == 1.0


def _history(disc: float, cup: float) -> list[dict]:
    rows = [{"epoch": e, "dice_disc": disc * e / 3, "dice_cup": cup * e / 3} for e in (1, 2, 3)]
    return [r | {"dice_mean": (r["dice_disc"] + r["dice_cup"]) / 2} for r in rows]


def test_a_learned_model_passes_and_an_unlearned_class_is_named(prepared: Path) -> None:
    params, val = tiny_params({"train": {"learning_guard": True}}), PreparedDataset(prepared, "val", RGB, WHOLE)
    recipe = Recipe(
        batch_size=4,
        epochs=3,
        steps=6,
        cap_epochs=3,
        patience=1,
        step_size=2,
        ema_decay=0.9,
        flip_axes=(1,),
        translate_px=4,
        geometry=Geometry("whole", 48),
        intensity=RGB,
        val_every=1,
    )
    train = PreparedDataset(prepared, "train", RGB, WHOLE)
    assert check_learning(_history(0.9, 0.8), params, recipe, PLANNED, train, val) is None
    with pytest.raises(DidNotLearn) as failed:
        check_learning(_history(0.9, 0.0), params, recipe, PLANNED, train, val)
    message = str(failed.value)
    assert "class 'cup': validation Dice 0.0000 at the kept epoch 3/3" in message and "'disc'" not in message
    assert "train.min_skill 0.25 of the gap to 1" in message and "Likely causes:" in message
    assert "only 6 optimizer steps" in message
    # the cup learned at epoch 1 and forgot by the kept epoch 3 (the best mean): the served model fails it
    forgot = [r | {"dice_cup": 0.8 if r["epoch"] == 1 else 0.0} for r in _history(0.9, 0.0)]
    forgot = [r | {"dice_mean": 0.3 if r["epoch"] == 1 else r["dice_disc"] / 2 + 0.01} for r in forgot]
    with pytest.raises(DidNotLearn, match=r"class 'cup': validation Dice 0\.0000 at the kept epoch 3/3"):
        check_learning(forgot, params, recipe, PLANNED, train, val)
    assert "the weight average (ema_decay 0.9, a horizon of ~10 steps) is long for a run of 6" in message


def test_still_learning_at_the_cap_is_a_warning_and_a_model_at_the_prior_is_refused(prepared: Path) -> None:
    """Under the bar but over every trivial predictor and still rising at the cap: passed, with the figures.
    The same curve stopped on a plateau, or a class no better than the prior, is refused."""
    params, val = tiny_params({"train": {"learning_guard": True}}), PreparedDataset(prepared, "val", RGB, WHOLE)
    train = PreparedDataset(prepared, "train", RGB, WHOLE)
    base = max(trivial_dice(stacked_masks(train), grid_masks(val), ["disc", "cup"])["disc"].values())
    bar = base + params.train.min_skill * (1 - base)
    rows = [{"epoch": e, "dice_disc": base + (bar - base) * e / 4, "dice_cup": 0.99} for e in (1, 2, 3)]
    rising = [r | {"dice_mean": (r["dice_disc"] + r["dice_cup"]) / 2} for r in rows]
    recipe = Recipe(4, epochs=1, steps=2, cap_epochs=3, patience=1, step_size=1, ema_decay=None, flip_axes=(1,),
                    translate_px=4, geometry=WHOLE, intensity=RGB, val_every=1)  # fmt: skip
    at_cap = ending(3, rising, planned=1, cap=3, patience=1, min_delta=params.train.min_delta)
    assert at_cap.reason == "cap" and at_cap.still_learning and at_cap.gain == pytest.approx((bar - base) / 8, abs=1e-6)
    warning = check_learning(rising, params, recipe, at_cap, train, val)
    assert warning and warning.startswith("still learning at the cap: class 'disc' validation Dice")
    assert f"over the best trivial predictor's {base:.4f}" in warning and "raise train.cap_tflop" in warning

    plateau = Ending("plateau", epochs=3, planned=1, cap=9, patience=1, gain=0.0, improving=False)
    with pytest.raises(DidNotLearn, match="class 'disc': validation Dice"):
        check_learning(rising, params, recipe, plateau, train, val)
    prior = [r | {"dice_disc": base, "dice_mean": (base + 0.99) / 2 + r["epoch"] * 1e-3} for r in rising]
    with pytest.raises(DidNotLearn, match="class 'disc': validation Dice"):  # rising only in the other class
        check_learning(prior, params, recipe, ending(3, prior, 1, 3, 1, 0.001), train, val)


@heavy_run("unrelated-masks")
def _unrelated(tmp: Path, environ: Mapping[str, str]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`dvc repro` of a tiny project on fundus images whose masks belong to other images: the project and
    the finished command (its exit code in `exit.json` beside the project)."""
    project = tiny_project(tmp / "repo", environ=environ)
    source = tmp / "unrelated"
    unrelated(source, count=10, side=96)
    raw = project_params(
        TINY,
        {
            "model": {"class_names": ["disc"]},
            "data": {"source": "folder", "path": str(source), "val_fraction": 0.3},
            "train": {"learning_guard": True, "epochs": 4},
        },
    )
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    return project, run(["dvc", "repro"], project, environ, UNETPP_EXIT_FILE=str(tmp / "exit.json"))


@pytest.mark.slow
@pytest.mark.background("unrelated-masks")
def test_dvc_repro_stops_at_train_when_masks_do_not_match_images(background: Background) -> None:
    project, proc = background.result("unrelated-masks")
    exit_file = project.parent / "exit.json"
    assert proc.returncode != 0
    assert "Running stage 'train'" in proc.stdout and "Running stage 'evaluate'" not in proc.stdout
    assert json.loads(exit_file.read_text())["code"] == 3
    assert "the model did not learn: class 'disc': validation Dice" in proc.stderr, proc.stderr[-3000:]
    assert "at the kept epoch" in proc.stderr
    assert not (project / "models/selected.json").exists()
