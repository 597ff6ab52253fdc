"""Dice, IoU and BCE per class and their mean, accumulated over batches.

Dice and IoU are computed per sample and class on predictions binarized like the served masks
(`unetpp.runtime.readout.binarize`, probability >= 0.5) with MONAI's `compute_dice` / `compute_iou`,
then averaged over samples. Empty masks follow MONAI's
`ignore_empty=False`: when a sample's ground truth for a class is empty, the score is 1 if the
prediction is empty too and 0 otherwise, so a false detection on an empty mask is punished and
every sample counts. BCE is the mean binary cross-entropy of the probabilities (not thresholded;
clamped to [1e-7, 1 - 1e-7]) against the mask, per class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_iou
from scipy.stats import bootstrap
from torch import Tensor

from unetpp.runtime.readout import binarize

EPS = 1e-7


class SegmentationMetrics:
    """Accumulates per-sample scores with `update`; `compute` returns plain floats per class."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self._dice: list[Tensor] = []
        self._iou: list[Tensor] = []
        self._bce: list[Tensor] = []

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Add a batch: `probs` in [0, 1] and binary `target`, both (N, classes, H, W)."""
        if probs.shape != target.shape or probs.shape[1] != len(self.class_names):
            raise ValueError(
                f"probs {tuple(probs.shape)} and target {tuple(target.shape)} must match and have "
                f"{len(self.class_names)} channels ({', '.join(self.class_names)})"
            )
        probs, target = probs.detach().float(), target.detach().float()
        pred = binarize(probs).float()
        self._dice.append(compute_dice(pred, target, include_background=True, ignore_empty=False))
        self._iou.append(compute_iou(pred, target, include_background=True, ignore_empty=False))
        p = probs.clamp(EPS, 1 - EPS)
        bce = -(target * p.log() + (1 - target) * (1 - p).log())
        self._bce.append(bce.mean(dim=(2, 3)))

    def compute(self) -> dict[str, dict[str, float]]:
        """{"dice"|"iou"|"bce": {class name: value, ..., "mean": mean over classes}}."""
        if not self._dice:
            raise ValueError("no batch was added to the metrics")
        out: dict[str, dict[str, float]] = {}
        for name, rows in (("dice", self._dice), ("iou", self._iou), ("bce", self._bce)):
            per_class = torch.cat(rows).mean(dim=0)
            out[name] = {c: float(v) for c, v in zip(self.class_names, per_class, strict=True)}
            out[name]["mean"] = float(per_class.mean())
        return out


BOOTSTRAP_RESAMPLES = 2000


def bootstrap_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean over the finite values, with a percentile-bootstrap 95% interval over them (scipy, seeded) and
    their count, unrounded (what a decision compares). The percentile interval is somewhat narrow for a
    handful of cases: read intervals over fewer than ~10 cases as indicative."""
    data = np.array([v for v in values if math.isfinite(v)], float)
    if data.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    if data.size == 1 or np.ptp(data) == 0:
        return {"mean": float(data.mean()), "ci95": [float(data[0])] * 2, "n": int(data.size)}
    ci = bootstrap(
        (data,), np.mean, confidence_level=0.95, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", random_state=0
    ).confidence_interval
    return {"mean": float(data.mean()), "ci95": [float(ci.low), float(ci.high)], "n": int(data.size)}


def mean_with_interval(values: Sequence[float]) -> dict[str, Any]:
    """`bootstrap_interval` rounded to 4 decimals, as reports print it: how far the mean of this many cases
    can be trusted."""
    out = bootstrap_interval(values)
    if out["mean"] is None:
        return out
    return out | {"mean": round(out["mean"], 4), "ci95": [round(v, 4) for v in out["ci95"]]}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """`a - b` case by case (the same cases, in the same order): the mean difference with its percentile-
    bootstrap 95% interval over cases, unrounded. Pairing removes what the cases share (an easy image is
    easy for both models), so the interval is far narrower than two overlapping intervals of the means."""
    if len(a) != len(b) or not a:
        raise ValueError(f"a paired difference needs the same non-empty cases; got {len(a)} and {len(b)}")
    return bootstrap_interval([x - y for x, y in zip(a, b, strict=True)])
