"""The risk-coverage area, failure AUROC, the low-confidence threshold and split-conformal calibration."""

from __future__ import annotations

import numpy as np
import pytest

from unetpp.scoring.risk import aurc, failure_auroc, flag_rate_bound, low_threshold, ood_threshold


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


def test_the_ood_threshold_is_a_log_normal_bound_one_far_case_cannot_move() -> None:
    logs = np.random.default_rng(0).normal(2.0, 0.3, 40)
    d = np.exp(logs)
    median = np.median(logs)
    expected = np.exp(median + 2.3263 * (np.quantile(logs, 0.75) - median) / 0.67449)
    assert ood_threshold(d) == pytest.approx(expected, rel=1e-4)
    assert ood_threshold(np.append(d[:-1], 1e6)) == pytest.approx(ood_threshold(d), rel=0.05)  # one far case
    assert np.exp(2.0 + 2.3263 * 0.3) * 0.8 < ood_threshold(d) < np.exp(2.0 + 2.3263 * 0.3) * 1.25


def test_the_ood_bound_of_a_one_feature_block_stays_near_its_normal_quantile() -> None:
    """Distances of one Gaussian feature are |z|: their logarithms reach far below the median, which a
    symmetric spread reads as width (a bound of about 10 sd); the upper half gives about 2.6 (99%: 2.58)."""
    d = np.abs(np.random.default_rng(1).normal(0, 1, 400))
    assert 2.0 < ood_threshold(d) < 3.2
    assert flag_rate_bound(5) == pytest.approx(1 - 0.05 ** (1 / 5))  # the largest of 5: Beta(1, 5)
    assert 0.05 < flag_rate_bound(400) < 0.07 and flag_rate_bound(400) < flag_rate_bound(40)
