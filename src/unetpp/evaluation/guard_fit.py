"""Fitting the served guard (`unetpp.runtime.guard`) on the training data: part of the `select` stage.

- **estimator**: of those the variant offers (`runtime.guard.ESTIMATORS`), the one with the lowest area
  under the risk-coverage curve on val (risk 1 - Dice, mean over classes; `unetpp.scoring.risk`);
- **calibration**: each class's confidence offset by the median of (val Dice - raw confidence);
- **low-confidence threshold** and **failure**: `unetpp.scoring.risk`'s rules on val;
- **out of distribution**: per block of the guard's features (the pooled bottleneck features; the input's
  descriptors, `unetpp.runtime.descriptors`), a Mahalanobis reference: the train split's mean, each feature
  standardised by its train spread (the descriptors' at least their `RESOLUTION`) and the covariance shrunk by
  Ledoit-Wolf (scikit-learn: a few hundred features from about a hundred images make the plain covariance
  singular; standardising first lets the shrinkage weigh every feature alike). Each threshold is a robust
  bound (`unetpp.scoring.risk.ood_threshold`) of calibration distances from more cases than val holds: the
  val cases' distances to that reference, and each train case's to a reference fitted without its fold
  (`OOD_FOLDS`: cross-fitting, so no case is scored by a reference that holds it); 50 photographs give 40
  calibration cases instead of 10. An input is flagged when either block is over its bound, so each bound
  is at the level 1 - (1 - `OOD_LEVEL`) / 2 (Bonferroni): the two together flag at most 1 - `OOD_LEVEL` of
  inputs like the training data.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetpp.data.prepared import Case, prepared_cases
from unetpp.runtime.descriptors import blocks
from unetpp.runtime.guard import Guard, Reference, mahalanobis
from unetpp.runtime.requestlog import record
from unetpp.runtime.served import ServedModel
from unetpp.scoring.cases import score_cases
from unetpp.scoring.risk import OOD_LEVEL, columns, failure_dice, low_threshold, ood_threshold, risk_figures


def features(model: ServedModel, cases: Iterable[Case]) -> np.ndarray:
    """(cases, F): what the guard reads of each case, as served."""
    return np.stack([model.inspect([case.image])[0].features.double().numpy() for case in cases])


def fit_guard(model: ServedModel, prepared: Path) -> tuple[Guard, dict[str, Any]]:
    """The guard of `model` from the prepared train (features) and val (estimator, calibration, thresholds)
    splits, and what it was chosen on."""
    names = model.names
    rows = score_cases(model, prepared_cases(prepared, "val"))
    failing = failure_dice(rows, names)
    figures = risk_figures(rows, names, failing)
    estimator = min(figures, key=lambda e: figures[e]["aurc_mean"])
    raw = {c: columns(rows, f"confidence_{estimator}_{c}") for c in names}
    offset = {c: float(np.median(columns(rows, f"dice_{c}") - raw[c])) for c in names}
    low = {c: low_threshold(np.clip(raw[c] + offset[c], 0, 1), columns(rows, f"dice_{c}") < failing[c]) for c in names}
    train = features(model, prepared_cases(prepared, "train"))
    val = features(model, prepared_cases(prepared, "val"))
    layout = blocks(train.shape[1])
    level = 1 - (1 - OOD_LEVEL) / len(layout)  # Bonferroni: flagged when either block is over its bound
    fits = {name: fit_reference(train, val, block, floor, level) for name, (block, floor) in layout.items()}
    guard = Guard(estimator, offset, low, tuple(ref for ref, _ in fits.values()))
    fitted = {
        "split": "val (estimator, calibration, thresholds); train (feature reference, out-of-fold distances)",
        "estimator": estimator,
        "offset": offset,
        "failure_dice": failing,
        "low_confidence_below": low,
        "val": figures,
        "ood_level": OOD_LEVEL,
        "ood_blocks": {name: shown for name, (_, shown) in fits.items()},
        "ood_calibration": f"{len(train) + len(val)} distances a block: val {len(val)}, train out-of-fold {len(train)}",
    }
    return guard, fitted


OOD_FOLDS = 5  # cross-fitted train distances: each from a reference of the other 4/5


def fit_reference(
    train: np.ndarray, val: np.ndarray, block: slice, floor: float, level: float
) -> tuple[Reference, dict[str, Any]]:
    """One block's `Reference` (train's mean and precision, the bound of out-of-fold train and val distances at
    `level`) and what it was fitted with."""
    center, precision, shrinkage = reference(train[:, block], floor)
    val_distances = mahalanobis(torch.from_numpy(val[:, block]), center, precision).numpy()
    calibration = np.concatenate([cross_fitted_distances(train[:, block], floor=floor), val_distances])
    threshold = ood_threshold(calibration, level)
    ref = Reference(block.start, block.stop, center, precision, threshold)
    return ref, {"features": block.stop - block.start, "threshold": threshold, "shrinkage": shrinkage}


def reference(feats: np.ndarray, floor: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The Mahalanobis reference of (cases, F) features: their mean, the precision of their standardised
    Ledoit-Wolf covariance (in raw feature units; each spread at least `floor`), and its shrinkage."""
    from sklearn.covariance import LedoitWolf

    spread = np.maximum(feats.std(0), floor)
    scale = spread + 1e-6 * spread.max() + 1e-12  # channels never active keep a finite scale
    cov = LedoitWolf().fit(feats / scale)  # standardised: shrinkage toward the identity weighs every feature alike
    precision = cov.precision_ / np.outer(scale, scale)  # the same distance on raw features
    return torch.from_numpy(feats.mean(0)), torch.from_numpy(precision), float(cov.shrinkage_)


def cross_fitted_distances(feats: np.ndarray, folds: int = OOD_FOLDS, floor: float = 0.0) -> np.ndarray:
    """Each case's Mahalanobis distance to the reference of the other folds (case i in fold i mod `folds`)."""
    fold = np.arange(len(feats)) % folds
    out = np.empty(len(feats))
    for k in range(min(folds, len(feats))):
        center, precision, _ = reference(feats[fold != k], floor)
        out[fold == k] = mahalanobis(torch.from_numpy(feats[fold == k]), center, precision).numpy()
    return out


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
