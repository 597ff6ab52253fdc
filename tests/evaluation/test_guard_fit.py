"""Fitting the served guard: a guard fitted on a small trained model flags generated foreign inputs while
leaving held-out images alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.models import TINY_PARAMS, fit_tiny
from tests.params import project_params
from unetpp.data.ingest import ingest
from unetpp.data.prepared import prepared_cases
from unetpp.evaluation.guard_fit import fit_guard
from unetpp.nn.checkpoint import model_payload
from unetpp.params import Params
from unetpp.runtime.served import ServedModel
from unetpp.scoring.cases import score_cases
from unetpp.scoring.foreign import foreign
from unetpp.scoring.risk import risk_figures


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
