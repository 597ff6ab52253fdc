"""Fitting the served guard (`unetpp.runtime.guard`) on the training data, and scoring it.

The rules, each from the data (none tuned to a data set):

- **failure**: a case fails a class when its Dice is under that class's `FAILURE_QUANTILE` (10th
  percentile) on val: the worst decile as val saw it. It is what the failure AUROC detects and what the
  `low_confidence` flag aims at.
- **estimator**: of those the variant offers (`runtime.guard.ESTIMATORS`), the one with the lowest area
  under the risk-coverage curve on val (risk 1 - Dice, mean over classes).
- **low-confidence threshold**, per class: the confidence that best separates val's failures from the
  rest (Youden's J on the ROC curve); where val holds no failure or no success, the lowest val confidence.
- **out of distribution**: Mahalanobis distance of the pooled bottleneck features to the train split's
  mean, each feature standardised by its train spread and the covariance shrunk by Ledoit-Wolf
  (scikit-learn: a few hundred features from about a hundred images make the plain covariance singular;
  standardising first lets the shrinkage weigh every feature alike); flagged over the split-conformal
  quantile of the n val distances at `OOD_ALPHA` (5%): an input exchangeable with them is flagged with
  probability at most max(5%, 1 / (n + 1)) (the largest val distance decides below 19 val cases).

The area under the risk-coverage curve is written here (its four lines): no library of the stack has it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetpp.evaluation.served import Case, ServedModel, prepared_cases, score_cases
from unetpp.runtime.guard import ESTIMATORS, Guard
from unetpp.runtime.predict import served_masks
from unetpp.runtime.readout import readout
from unetpp.runtime.requestlog import record

FAILURE_QUANTILE = 0.1
OOD_ALPHA = 0.05


def features(model: ServedModel, cases: Iterable[Case]) -> np.ndarray:
    """(cases, F): each case's pooled bottleneck features, as served."""
    return np.stack([model.inspect([case.image])[0].features.double().numpy() for case in cases])


def risk_coverage(confidence: np.ndarray, dice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve: keeping the most confident cases first, at each coverage 1/n..1 the mean
    risk (1 - Dice) of the cases kept. Cases of equal confidence share their mean risk (the expected curve
    over the orders they could be kept in), so ties carry no hidden order."""
    order = np.argsort(-confidence, kind="stable")
    _, start, count = np.unique(-confidence[order], return_index=True, return_counts=True)
    risk = np.repeat(np.add.reduceat(1.0 - dice[order], start) / count, count)
    kept = np.arange(1, len(dice) + 1)
    return kept / len(dice), np.cumsum(risk) / kept


def aurc(confidence: np.ndarray, dice: np.ndarray) -> float:
    """Area under the risk-coverage curve, the mean of its risks (lower is better; a perfect ranking reaches
    the optimum, a random one the mean risk)."""
    return float(risk_coverage(confidence, dice)[1].mean())


def failure_auroc(confidence: np.ndarray, failed: np.ndarray) -> float | None:
    """AUROC of low confidence for failed cases; None where the cases hold only one kind."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(failed, -confidence)) if 0 < failed.sum() < len(failed) else None


def low_threshold(confidence: np.ndarray, failed: np.ndarray) -> float:
    """The confidence under which an answer is flagged: Youden's J on these cases (see the module doc)."""
    from sklearn.metrics import roc_curve

    if not 0 < failed.sum() < len(failed):
        return float(confidence.min())
    fpr, tpr, thresholds = roc_curve(failed, -confidence)
    best = int(np.argmax(tpr - fpr))
    return float(np.nextafter(-thresholds[best], np.inf))  # flagged: confidence <= -threshold


def conformal_rank(n: int, alpha: float = OOD_ALPHA) -> int:
    """Which of n calibration distances is the threshold: the ceil((n + 1)(1 - alpha))-th smallest (the
    largest when n is small)."""
    return min(n, math.ceil((n + 1) * (1 - alpha)))


def conformal_threshold(distances: np.ndarray, alpha: float = OOD_ALPHA) -> float:
    """The `conformal_rank`-th smallest of the calibration distances."""
    return float(np.sort(distances)[conformal_rank(len(distances), alpha) - 1])


def flag_rate_bound(n: int, alpha: float = OOD_ALPHA, delta: float = OOD_ALPHA) -> float:
    """The rate at which inputs like the calibration cases are flagged, bounded with probability 1 - delta
    over the draw of the n calibration cases: the threshold is the k-th smallest of n, so the share of such
    inputs above it follows Beta(n + 1 - k, k) (Vovk, 2012). Marginally the rate is at most alpha; for one
    fitted threshold it can be higher, the more so the fewer the cases (n = 5: up to 45%; n = 29: 10%)."""
    from scipy.stats import beta

    k = conformal_rank(n, alpha)
    return float(beta.ppf(1 - delta, n + 1 - k, k))


def failure_dice(rows: list[dict[str, Any]], names: list[str]) -> dict[str, float]:
    """Per class, the Dice under which a case failed (`FAILURE_QUANTILE` of these rows)."""
    return {c: float(np.quantile([r[f"dice_{c}"] for r in rows], FAILURE_QUANTILE)) for c in names}


def columns(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([r[key] for r in rows], dtype=float)


def estimators(rows: list[dict[str, Any]], names: list[str]) -> dict[str, str]:
    """The confidence columns the rows hold, by label: each raw estimator, and `shipped` (calibrated) where a
    fitted guard scored them; label -> column prefix."""
    found = {e: f"confidence_{e}_" for e in ESTIMATORS if f"confidence_{e}_{names[0]}" in rows[0]}
    return found | ({"shipped": "confidence_"} if f"confidence_{names[0]}" in rows[0] else {})


def risk_figures(rows: list[dict[str, Any]], names: list[str], failing: dict[str, float]) -> dict[str, Any]:
    """Per confidence column set (`estimators`) and class: AURC (beside the optimal and a random ranking's),
    failure AUROC (Dice under `failing`), and the mean absolute error of the confidence as the Dice."""
    out: dict[str, Any] = {}
    for label, prefix in estimators(rows, names).items():
        per = {}
        for c in names:
            conf, dice = columns(rows, f"{prefix}{c}"), columns(rows, f"dice_{c}")
            per[c] = {
                "aurc": aurc(conf, dice),
                "aurc_optimal": aurc(dice, dice),
                "aurc_random": float(np.mean(1 - dice)),
                "failure_auroc": failure_auroc(conf, dice < failing[c]),
                "failures": int((dice < failing[c]).sum()),
                "mae": float(np.mean(np.abs(conf - dice))),
            }
        out[label] = per | {"aurc_mean": float(np.mean([per[c]["aurc"] for c in names]))}
    return out


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
        seen = model.inspect([case.image])[0]
        answer = readout(served_masks(seen.probs, *case.image.shape[:2], model.names), model.names)
        rows.append(record("reference", case.image, seen.features, answer | model.guard.verdict(seen, model.names)))
    return rows
