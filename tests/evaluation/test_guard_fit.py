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
from unetpp.data.synthetic import generate_fundus
from unetpp.evaluation.guard_fit import cross_fitted_distances, fit_guard, reference
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
    assert fitted["ood_calibration"] == "32 distances a block: val 8, train out-of-fold 24"  # 40 images, 8 test
    shares = {
        kind: np.mean([served.guard.ood_score(served.inspect([foreign(im, kind, k)])[0].features) > 1.0
                       for k, im in enumerate(images)])
        for kind in ("blank", "saturated", "noise", "spots")
    }  # fmt: skip
    unseen = [generate_fundus(i, 96, seed=0).image for i in range(40, 60)]  # the training kind, never fitted on
    in_kind = np.mean([served.guard.ood_score(served.inspect([im])[0].features) > 1.0 for im in unseen])
    print(f"flagged: foreign {shares}; new images of the training kind {in_kind:.0%} of {len(unseen)}")
    assert min(shares.values()) >= 0.9 and in_kind <= 0.2  # a tiny model: the product bars are on real sets
    wide = generate_fundus(60, 96, seed=0).image[:48]  # half the training frames' height: a shape never seen
    assert served.guard.references[1].ratio(served.inspect([wide])[0].features) > 1.0  # the descriptors see it
    rows = score_cases(served, prepared_cases(prepared, "train"))
    assert np.mean([r["ood_score"] > 1.0 for r in rows]) <= 0.2  # the reference split itself: within bounds
    figures = risk_figures(rows, served.names, fitted["failure_dice"])
    assert set(figures) == {"agreement", "soft_dice", "combined", "shipped"}
    assert all(0 <= figures["shipped"][c]["aurc"] <= 1 for c in served.names)


def test_each_train_distance_is_to_a_reference_fitted_without_its_fold() -> None:
    feats = np.random.default_rng(0).normal(size=(23, 6))
    distances = cross_fitted_distances(feats, folds=5)
    center, precision, _ = reference(feats[np.arange(23) % 5 != 2])
    d = feats[7] - center.numpy()  # case 7 is in fold 2
    assert distances[7] == pytest.approx(float(np.sqrt(d @ precision.numpy() @ d)))
    assert distances.shape == (23,) and (distances > 0).all()
