"""Scoring a confidence and an out-of-distribution threshold: the risk-coverage curve and its area, failure
AUROC, the low-confidence threshold (Youden's J), the out-of-distribution threshold and the flag rate.
What the `select` stage fits the served guard with (`unetpp.evaluation.guard_fit`), the `test` stage reports
and the monitor alarms on.

The rules, each from the data (none tuned to a data set):

- **failure**: a case fails a class when its Dice is under that class's `FAILURE_QUANTILE` (10th
  percentile) on val: the worst decile as val saw it. It is what the failure AUROC detects and what the
  `low_confidence` flag aims at.
- **low-confidence threshold**, per class: the confidence that best separates val's failures from the
  rest (Youden's J on the ROC curve); where val holds no failure or no success, the lowest val confidence.
- **out of distribution**: flagged over a robust log-normal bound of the calibration distances
  (`ood_threshold`): exp(median + z(`OOD_LEVEL`) x the upper spread) of their logarithms, the upper spread
  (upper quartile - median) / z(0.75): a 99% bound that one far calibration case cannot move (the quartiles
  ignore it). The upper half alone, because only the upper tail is bounded and the lower one stretches as a
  block's features get fewer: of a block of two descriptors, distances near 0 have logarithms toward minus
  infinity, and the symmetric MAD had set a generated set's bound at 36 standard deviations (uniform noise
  passed); the pooled features' log-distances are near symmetric and keep their bound within 10%. A
  split-conformal quantile is the largest distance below 19 cases, which a single unusual val image then
  sets: on a 50-photograph set it left 16% of in-distribution test photographs flagged, on another draw of a
  generated set a third of foreign ones unflagged. Mahalanobis distances of pooled features are skewed and
  positive: logarithms are near normal.

The area under the risk-coverage curve is written here (its four lines): no library of the stack has it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from unetpp.runtime.guard import ESTIMATORS

FAILURE_QUANTILE = 0.1
OOD_ALPHA = 0.05  # the monitor's test level
OOD_LEVEL = 0.99  # the out-of-distribution bound's quantile


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


def ood_threshold(distances: np.ndarray, level: float = OOD_LEVEL) -> float:
    """exp(median + z(level) x upper spread) of the calibration distances' logarithms, the upper spread
    (upper quartile - median) / z(0.75): a normal's standard deviation, from its upper half alone."""
    from scipy.stats import norm

    logs = np.log(np.asarray(distances, float))
    center = float(np.median(logs))
    spread = (float(np.quantile(logs, 0.75)) - center) / float(norm.ppf(0.75))
    return float(np.exp(center + norm.ppf(level) * spread))


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
