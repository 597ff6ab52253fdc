"""Scoring as served: every figure that chooses or reports a model — `evaluate` and `select` on val, the
registry gate on val, `test` on test — is the mask a request gets back, at the source resolution, against
the source masks, per case.

A case (`unetpp.data.prepared.Case`) is a decoded source image (what a request decodes to) and its masks.
A served model (`unetpp.runtime.served.ServedModel`) segments it exactly as the TorchServe handler does
(the checkpoint's grid and mirroring, back to the image's size, the same post-processing); `case_scores`
gives per class Dice, IoU (MONAI), HD95 and BCE. Per-case rows are what paired comparisons (the gate, the
report) difference.

A missed object is never dropped from a mean: the HD95 of an empty prediction (or of a prediction on an
empty mask) is the image's diagonal, the largest distance it can have (MONAI returns inf there, which a
mean over finite values would silently skip), and a missed disc or cup gives the largest cup-to-disc
ratio error the truth allows, max(ratio, 1 - ratio). A case *fails* a class when its
prediction is empty or its Dice is below `FAILED_DICE`; every summary counts them beside the mean.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

from unetpp.data.prepared import Case
from unetpp.runtime.forward import Inspection
from unetpp.runtime.guard import confidences
from unetpp.runtime.readout import vertical_cdr
from unetpp.runtime.served import ServedModel
from unetpp.scoring.metrics import EPS, mean_with_interval

FAILED_DICE = 0.5  # a case under this Dice for a class (or with nothing predicted) failed that class


def case_scores(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    """Dice, IoU and HD95 (px; the image diagonal where either mask is empty) per class of one case, and
    for disc + cup the vertical cup-to-disc ratios and their absolute error."""
    p, t = torch.from_numpy(pred[None]).float(), torch.from_numpy(truth[None]).float()
    dice = compute_dice(p, t, include_background=True, ignore_empty=False)[0]
    iou = compute_iou(p, t, include_background=True, ignore_empty=False)[0]
    with warnings.catch_warnings():  # MONAI warns, and returns inf or nan, for an empty mask
        warnings.simplefilter("ignore")
        hd95 = compute_hausdorff_distance(p, t, include_background=True, percentile=95)[0]
    diagonal = math.hypot(*truth.shape[1:])
    row: dict[str, float] = {}
    for k, c in enumerate(names):
        h = float(hd95[k])
        both_empty = not pred[k].any() and not truth[k].any()
        row |= {
            f"dice_{c}": float(dice[k]),
            f"iou_{c}": float(iou[k]),
            f"hd95_{c}": 0.0 if both_empty else h if math.isfinite(h) else diagonal,
            f"failed_{c}": float(not pred[k].any() or float(dice[k]) < FAILED_DICE),
        }
    if names == ["disc", "cup"]:
        true, got = vertical_cdr(truth[0], truth[1]), vertical_cdr(pred[0], pred[1])
        row["cdr_true"] = math.nan if true is None else true
        row["cdr_pred"] = math.nan if got is None else got
        missed = true is not None and got is None
        row["cdr_abs_error"] = max(true, 1 - true) if missed else abs(row["cdr_pred"] - row["cdr_true"])
    return row


def bce(probs: torch.Tensor, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    """Per class, the mean binary cross-entropy of source-size probabilities against the source masks."""
    p, t = probs.clamp(EPS, 1 - EPS), torch.from_numpy(truth).float()
    loss = -(t * p.log() + (1 - t) * (1 - p).log()).mean(dim=(1, 2))
    return {f"bce_{c}": float(v) for c, v in zip(names, loss, strict=True)}


Keep = Callable[[Case, np.ndarray], None]


def score_cases(model: ServedModel, cases: Iterable[Case], batch: int = 1, keep: Keep | None = None) -> list[dict]:
    """Per case: its id, size, `case_scores` + `bce` of the served answer and its `guard_row`; `keep(case,
    masks)` sees each prediction (the test stage saves them). `batch` cases go to the model at a time (a
    whole-image model segments them in one forward)."""
    rows: list[dict] = []
    pending: list[Case] = []

    def flush() -> None:
        for case, answer in zip(pending, model.answers([c.image for c in pending]), strict=True):
            height, width = case.image.shape[:2]
            if keep is not None:
                keep(case, answer.masks)
            rows.append(
                {"id": case.id, "height": height, "width": width}
                | case_scores(answer.masks, case.masks, model.names)
                | bce(answer.probs.cpu(), case.masks, model.names)
                | guard_row(model, answer.seen)
            )
        pending.clear()

    for case in cases:
        pending.append(case)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    if not rows:
        raise ValueError("no cases to score")
    return rows


def guard_row(model: ServedModel, inspection: Inspection) -> dict[str, float]:
    """Every raw confidence estimator per class (`confidence_<estimator>_<class>`) and, with a fitted guard,
    what the answer carries: `confidence_<class>` and the out-of-distribution score."""
    names = model.names
    row = {
        f"confidence_{e}_{c}": float(v)
        for e, t in confidences(inspection).items()
        for c, v in zip(names, t, strict=True)
    }
    if model.guard is not None:
        row |= {f"confidence_{c}": v for c, v in model.guard.confidence(inspection, names).items()}
        row["ood_score"] = model.guard.ood_score(inspection.features)
    return row


def per_case_dice(rows: list[dict], names: list[str]) -> list[float]:
    """Each case's Dice averaged over classes: what paired comparisons difference."""
    return [float(np.mean([r[f"dice_{c}"] for c in names])) for r in rows]


def summarize(rows: list[dict], names: list[str]) -> dict[str, Any]:
    """Each metric's mean with its 95% bootstrap interval over cases, the failed cases per class, and the
    mean Dice over classes."""
    metrics = [k for k in rows[0] if k.startswith(("dice_", "iou_", "hd95_", "bce_", "cdr_abs"))]
    out: dict[str, Any] = {k: mean_with_interval([r[k] for r in rows]) for k in metrics}
    out |= {f"failed_{c}": int(sum(r[f"failed_{c}"] for r in rows)) for c in names}
    out["dice_mean"] = mean_with_interval(per_case_dice(rows, names))
    return out
