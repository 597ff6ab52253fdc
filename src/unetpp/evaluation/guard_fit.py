"""Fitting the served guard (`unetpp.runtime.guard`) on the training data: part of the `select` stage.

- **estimator**: of those the variant offers (`runtime.guard.ESTIMATORS`), the one with the lowest area
  under the risk-coverage curve on val (risk 1 - Dice, mean over classes; `unetpp.scoring.risk`);
- **calibration**: each class's confidence offset by the median of (val Dice - raw confidence);
- **low-confidence threshold** and **failure**: `unetpp.scoring.risk`'s rules on val;
- **out of distribution**: Mahalanobis distance of the pooled bottleneck features to the train split's
  mean, each feature standardised by its train spread and the covariance shrunk by Ledoit-Wolf
  (scikit-learn: a few hundred features from about a hundred images make the plain covariance singular;
  standardising first lets the shrinkage weigh every feature alike); the threshold the split-conformal
  quantile of the val distances (`unetpp.scoring.risk.conformal_threshold`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetpp.data.prepared import Case, prepared_cases
from unetpp.runtime.guard import Guard
from unetpp.runtime.requestlog import record
from unetpp.runtime.served import ServedModel
from unetpp.scoring.cases import score_cases
from unetpp.scoring.risk import OOD_ALPHA, columns, conformal_threshold, failure_dice, low_threshold, risk_figures


def features(model: ServedModel, cases: Iterable[Case]) -> np.ndarray:
    """(cases, F): each case's pooled bottleneck features, as served."""
    return np.stack([model.inspect([case.image])[0].features.double().numpy() for case in cases])


def fit_guard(model: ServedModel, prepared: Path) -> tuple[Guard, dict[str, Any]]:
    """The guard of `model` from the prepared train (features) and val (estimator, calibration, thresholds)
    splits, and what it was chosen on."""
    from sklearn.covariance import LedoitWolf

    names = model.names
    rows = score_cases(model, prepared_cases(prepared, "val"))
    failing = failure_dice(rows, names)
    figures = risk_figures(rows, names, failing)
    estimator = min(figures, key=lambda e: figures[e]["aurc_mean"])
    raw = {c: columns(rows, f"confidence_{estimator}_{c}") for c in names}
    offset = {c: float(np.median(columns(rows, f"dice_{c}") - raw[c])) for c in names}
    low = {c: low_threshold(np.clip(raw[c] + offset[c], 0, 1), columns(rows, f"dice_{c}") < failing[c]) for c in names}
    train = features(model, prepared_cases(prepared, "train"))
    scale = train.std(0) + 1e-6 * train.std(0).max() + 1e-12  # channels never active keep a finite scale
    cov = LedoitWolf().fit(train / scale)  # standardised: shrinkage toward the identity weighs every feature alike
    center = torch.from_numpy(train.mean(0))
    precision = torch.from_numpy(cov.precision_ / np.outer(scale, scale))  # the same distance on raw features
    unit = Guard(estimator, offset, low, center, precision, 1.0)
    val = np.array([unit.ood_score(torch.from_numpy(f)) for f in features(model, prepared_cases(prepared, "val"))])
    guard = Guard(estimator, offset, low, center, precision, conformal_threshold(val))
    fitted = {
        "split": "val (estimator, calibration, thresholds); train (feature reference)",
        "estimator": estimator,
        "offset": offset,
        "failure_dice": failing,
        "low_confidence_below": low,
        "val": figures,
        "ood_alpha": OOD_ALPHA,
        "ood_threshold": guard.ood_threshold,
        "features": int(center.numel()),
        "shrinkage": float(cov.shrinkage_),
    }
    return guard, fitted


def reference_records(model: ServedModel, cases: Iterable[Case]) -> list[dict[str, Any]]:
    """The request log's rows (`unetpp.runtime.requestlog.record`) for `cases` answered by `model` and its
    guard: what the monitor compares served requests with. Made from val: cases the Mahalanobis reference was
    not fitted on, so their scores are what new cases like the training data get."""
    if model.guard is None:
        raise ValueError("reference records need a model with a fitted guard")
    rows = []
    for case in cases:
        answer = next(model.answers([case.image]))
        rows.append(record("reference", case.image, answer.seen.features, answer.body))
    return rows
