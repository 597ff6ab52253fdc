"""Scoring as served: per-case figures that count a missed object, and their summary."""

from __future__ import annotations

import math

import numpy as np

from unetpp.data.synthetic import generate_fundus
from unetpp.scoring.cases import case_scores, summarize


def _truth() -> np.ndarray:
    return generate_fundus(0, 64, seed=1).masks


def test_a_perfect_case_and_an_empty_prediction() -> None:
    truth = _truth()
    perfect = case_scores(truth, truth, ["disc", "cup"])
    assert perfect["dice_disc"] == perfect["iou_cup"] == 1.0 and perfect["hd95_disc"] == 0.0
    assert perfect["cdr_abs_error"] == 0.0 and 0 < perfect["cdr_true"] < 1 and perfect["failed_cup"] == 0.0
    empty = case_scores(np.zeros_like(truth), truth, ["disc", "cup"])
    true = perfect["cdr_true"]
    assert empty["dice_disc"] == 0.0 and empty["cdr_abs_error"] == max(true, 1 - true)  # a miss, not dropped
    assert empty["hd95_disc"] == math.hypot(64, 64) and empty["failed_disc"] == 1.0  # the diagonal, not dropped


def test_a_miss_counts_in_the_mean_and_as_a_failed_case() -> None:
    truth = _truth()
    rows = [case_scores(truth, truth, ["disc", "cup"]) for _ in range(3)]
    rows.append(case_scores(np.zeros_like(truth), truth, ["disc", "cup"]))
    summary = summarize(rows, ["disc", "cup"])
    assert summary["failed_disc"] == summary["failed_cup"] == 1
    assert summary["hd95_disc"]["n"] == 4 and summary["hd95_disc"]["mean"] > 20  # the miss is in the mean
    assert summary["dice_mean"]["mean"] == 0.75
