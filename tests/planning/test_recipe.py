"""The plan: a fingerprint of the prepared data, and a recipe whose every value says its rule."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.params import tiny_params
from unetpp.data.ingest import ingest
from unetpp.errors import UserError
from unetpp.params import Params
from unetpp.planning.plan import plan
from unetpp.planning.recipe import CLIP_PERCENTILES, EMA_MIN_HORIZON, derive, intensity_rule, recipe_of
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.intensity import RGB, Intensity

GFLOP = 10**9
WHOLE = Geometry("whole", 128)
WHOLE_ENTRY = (WHOLE, {"value": WHOLE.as_dict(), "from": "plan", "rule": "the resolution rule"})


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("plan")
    params = tiny_params({"train": {"epochs": "auto", "batch_size": "auto"}})
    ingest(params, root / "prepared")
    return plan(params, root / "prepared", root / "plans.json") | {"file": root / "plans.json"}


def test_the_fingerprint_counts_and_measures_objects(planned: dict) -> None:
    fp = planned["fingerprint"]
    assert fp["images"] == {"train": 6, "val": 2, "test": 2}
    assert fp["channels"] == [3] and fp["bit_depth"] == [8] and fp["dtype"] == ["uint8"]
    assert len(fp["intensity"]) == 3 and all(0 <= c["p0.5"] <= c["p50"] <= c["p99.5"] <= 255 for c in fp["intensity"])
    assert planned["recipe"]["intensity"]["value"] == {"channels": 3, "in_channels": 3, "clip": None}
    disc = fp["classes"]["disc"]
    assert disc["objects_per_image"] == 1.0
    # 96 px sources trained at 48: every diameter halves
    assert disc["diameter_trained_px"]["p50"] == pytest.approx(disc["diameter_source_px"]["p50"] / 2, rel=0.01)
    assert json.loads(planned["file"].read_text())["recipe"] == planned["recipe"]


def test_every_value_has_a_rule_and_a_source(planned: dict) -> None:
    for name, entry in planned["recipe"].items():
        assert entry["rule"] and entry["from"] in ("plan", "params"), name
    recipe = recipe_of(planned)
    assert recipe.batch_size == 6 and recipe.steps == recipe.epochs  # 6 images: one step an epoch


def _fingerprint(n_train: int) -> dict:
    return {
        "images": {"train": n_train, "val": 2, "test": 0},
        "bit_depth": [8],
        "channels": [3],
        "intensity": [{"outlier_tail": 0.1}] * 3,
        "classes": {},
    }


def test_training_length_is_steps_whatever_the_number_of_images() -> None:
    params = Params()  # params.yaml
    small, large = (
        recipe_of({"recipe": derive(params, _fingerprint(n), 4 * GFLOP, WHOLE_ENTRY, RGB)}) for n in (10, 1000)
    )
    assert small.batch_size == large.batch_size == 8
    assert abs(small.steps - large.steps) <= 125  # one epoch of rounding at most
    assert small.epochs > 40 * large.epochs


def test_the_cap_is_the_compute_train_cap_tflop_buys_and_a_set_epochs_is_exact() -> None:
    params = Params()  # params.yaml: the cap 4x the budget
    planned = derive(params, _fingerprint(96), 3.7 * GFLOP, WHOLE_ENTRY, RGB)
    recipe = recipe_of({"recipe": planned})
    assert (
        recipe.cap_epochs == pytest.approx(4 * recipe.epochs, abs=2)
        and "train.cap_tflop 170 (4 x train.budget_tflop)" in planned["cap_epochs"]["rule"]
    )
    assert recipe.patience == max(3, -(-recipe.epochs // 10))  # a tenth of the planned validations (one an epoch)
    fixed = recipe_of({"recipe": derive(Params.model_validate({"train": {"epochs": 3}}), _fingerprint(96), 3.7 * GFLOP,
                                        WHOLE_ENTRY, RGB)})  # fmt: skip
    assert fixed.epochs == fixed.cap_epochs == 3
    with pytest.raises(ValueError, match=r"train\.cap_tflop 10\.0 is under train\.budget_tflop 42\.5"):
        Params.model_validate({"train": {"cap_tflop": 10}})


def test_the_weight_average_follows_the_run_and_is_off_when_too_short() -> None:
    params = Params()
    long = recipe_of({"recipe": derive(params, _fingerprint(96), 3.7 * GFLOP, WHOLE_ENTRY, RGB)})
    assert long.ema_decay == pytest.approx(1 - 1 / min(50, long.steps // 10), abs=1e-6)
    short_params = copy.deepcopy(params)
    short_params.train.budget_tflop = 0.5
    short = derive(short_params, _fingerprint(96), 3.7 * GFLOP, WHOLE_ENTRY, RGB)
    assert short["steps"]["value"] // 10 < EMA_MIN_HORIZON and short["ema_decay"]["value"] is None
    assert "off below" in short["ema_decay"]["rule"]


def test_a_number_in_params_wins_and_says_so() -> None:
    params = Params.model_validate({"train": {"epochs": 3, "batch_size": 2, "ema_decay": None}})
    recipe = derive(params, _fingerprint(96), 3.7 * GFLOP, WHOLE_ENTRY, RGB)
    assert recipe["epochs"] == recipe["epochs"] | {"value": 3, "from": "params"}
    assert recipe["batch_size"]["value"] == 2 and recipe["steps"]["value"] == 3 * 48
    assert recipe["ema_decay"] == recipe["ema_decay"] | {"value": None, "from": "params"}


def test_flips_follow_the_task() -> None:
    fundus = derive(Params(), _fingerprint(8), GFLOP, WHOLE_ENTRY, RGB)
    cells = derive(
        Params.model_validate({"model": {"class_names": ["cell"]}, "data": {"source": "folder", "path": "x"}}),
        _fingerprint(8),
        GFLOP,
        WHOLE_ENTRY,
        RGB,
    )
    assert fundus["flip_axes"]["value"] == [1] and cells["flip_axes"]["value"] == [0, 1]


def test_small_objects_are_flagged(tmp_path: Path) -> None:
    fp = _fingerprint(8) | {"classes": {"cell": {"diameter_trained_px": {"p5": 3.2, "p50": 6.0}}}}
    params = Params.model_validate({"model": {"class_names": ["cell"]}, "data": {"source": "folder", "path": "x"}})
    assert "cell 3.2 px" in derive(params, fp, GFLOP, WHOLE_ENTRY, RGB)["geometry"]["warning"]


def test_the_channels_and_the_clipping_follow_the_fingerprint() -> None:
    cells = Params.model_validate({"model": {"class_names": ["cell"]}, "data": {"source": "folder", "path": "x"}})
    two = _fingerprint(8) | {"channels": [2], "intensity": [{"outlier_tail": 0.2}, {"outlier_tail": 0.3}]}
    assert intensity_rule(cells, two) == Intensity(2, 2)
    hot = two | {"intensity": [{"outlier_tail": 0.2}, {"outlier_tail": 40.0}]}  # hot pixels in channel 2
    assert intensity_rule(cells, hot) == Intensity(2, 2, CLIP_PERCENTILES)
    assert (
        "clipped at the image's own"
        in derive(cells, hot, GFLOP, WHOLE_ENTRY, intensity_rule(cells, hot))["intensity"]["rule"]
    )
    gray = Params.model_validate({"model": {"in_channels": 1}})
    assert intensity_rule(gray, _fingerprint(8)) == Intensity(3, 1)
    with pytest.raises(UserError, match="cannot be made from 2-channel images"):
        intensity_rule(gray, two)
    with pytest.raises(UserError, match=r"have \[1, 3\] channels"):
        intensity_rule(cells, _fingerprint(8) | {"channels": [1, 3]})
