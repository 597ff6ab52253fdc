"""Fitting and scoring the served guard: the risk-coverage area, the thresholds' rules, and a guard fitted
on a small trained model flagging generated foreign inputs while leaving held-out images alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.models import TINY_PARAMS, fit_tiny
from tests.params import project_params
from unetpp.data.ingest import ingest
from unetpp.evaluation.foreign import KINDS, foreign
from unetpp.evaluation.guard import (
    aurc,
    conformal_threshold,
    failure_auroc,
    fit_guard,
    flag_rate_bound,
    low_threshold,
    risk_figures,
)
from unetpp.evaluation.served import ServedModel, prepared_cases, score_cases
from unetpp.nn.checkpoint import model_payload
from unetpp.params import Params


def test_aurc_rewards_ranking_the_bad_cases_last() -> None:
    dice = np.array([0.9, 0.8, 0.2, 0.95])
    perfect, reversed_ = aurc(dice, dice), aurc(-dice, dice)
    assert perfect < aurc(np.zeros(4), dice) < reversed_
    assert aurc(np.zeros(4), dice) == pytest.approx(np.mean(1 - dice))  # all tied: no ranking, the mean risk
    risks = [0.05, (0.05 + 0.1) / 2, (0.05 + 0.1 + 0.2) / 3, (0.05 + 0.1 + 0.2 + 0.8) / 4]
    assert perfect == pytest.approx(np.mean(risks))


def test_failure_auroc_and_the_low_threshold_separate_failures() -> None:
    conf = np.array([0.9, 0.95, 0.3, 0.85, 0.4])
    failed = np.array([False, False, True, False, True])
    assert failure_auroc(conf, failed) == 1.0
    assert failure_auroc(conf, np.zeros(5, bool)) is None  # no failure: nothing to detect
    low = low_threshold(conf, failed)
    assert ((conf < low) == failed).all()
    assert low_threshold(conf, np.zeros(5, bool)) == 0.3  # no failure on val: flag under what val saw


def test_the_conformal_threshold_is_the_rank_the_level_asks() -> None:
    d = np.arange(1.0, 41.0)  # 40 calibration distances: ceil(41 * 0.95) = 39th smallest
    assert conformal_threshold(d, 0.05) == 39.0
    assert conformal_threshold(d[:5], 0.05) == 5.0  # too few to leave any out: the largest
    assert flag_rate_bound(5) == pytest.approx(1 - 0.05 ** (1 / 5))  # the largest of 5: Beta(1, 5)
    assert 0.05 < flag_rate_bound(400) < 0.07 and flag_rate_bound(400) < flag_rate_bound(40)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServedModel, dict, Path]:
    params = Params.model_validate(project_params(TINY_PARAMS, {"data": {"synthetic": {"count": 40}}}))
    prepared = tmp_path_factory.mktemp("guard") / "prepared"
    ingest(params, prepared)
    model = fit_tiny(params, prepared, steps=150)
    pruned = model.prune(2, "fast", probes=True)
    meta = model_payload(pruned, "unetpp_pruned", class_names=params.model.class_names, image_size=48)
    guard, fitted = fit_guard(ServedModel.of(pruned, meta), prepared)
    served = ServedModel.of(pruned, meta | {"guard": guard.as_meta()})
    assert served.guard is not None
    return served, fitted, prepared


def test_a_fitted_guard_flags_foreign_inputs_and_not_the_training_kind(guarded: tuple) -> None:
    served, fitted, prepared = guarded
    assert fitted["estimator"] in fitted["val"]  # the lowest val AURC among those this variant offers
    assert set(fitted["val"]) == {"agreement", "soft_dice", "combined"}  # L2 with probes: two heads agree or not
    images = [case.image for case in prepared_cases(prepared, "val")]
    val_scores = [served.guard.ood_score(served.inspect([im])[0].features) for im in images]
    assert max(val_scores) == pytest.approx(1.0)  # the threshold is val's largest distance (few cases)
    for kind in ("blank", "saturated", "noise", "spots"):
        scores = [
            served.guard.ood_score(served.inspect([foreign(im, kind, k)])[0].features) for k, im in enumerate(images)
        ]
        assert min(scores) > 1.0, f"{kind}: {scores}"
    rows = score_cases(served, prepared_cases(prepared, "train"))
    assert np.mean([r["ood_score"] > 1.0 for r in rows]) <= 0.2  # the reference split itself: within bounds
    figures = risk_figures(rows, served.names, fitted["failure_dice"])
    assert set(figures) == {"agreement", "soft_dice", "combined", "shipped"}
    assert all(0 <= figures["shipped"][c]["aurc"] <= 1 for c in served.names)


def test_foreign_inputs_keep_the_source_shape_and_dtype() -> None:
    image = np.random.default_rng(0).integers(30000, 36000, (40, 30, 2), dtype=np.uint16)
    for kind in KINDS:
        made = foreign(image, kind, seed=1)
        assert made.dtype == image.dtype and made.shape[2] == 2, kind
        assert not np.array_equal(made, image), kind
    assert foreign(image, "rotated").shape[:2] == (30, 40)
