"""The risk-coverage area, failure AUROC, the low-confidence threshold and split-conformal calibration."""

from __future__ import annotations

import numpy as np
import pytest

from unetpp.scoring.risk import aurc, conformal_threshold, failure_auroc, flag_rate_bound, low_threshold


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


def test_the_conformal_threshold_is_the_rank_the_level_asks() -> None:
    d = np.arange(1.0, 41.0)  # 40 calibration distances: ceil(41 * 0.95) = 39th smallest
    assert conformal_threshold(d, 0.05) == 39.0
    assert conformal_threshold(d[:5], 0.05) == 5.0  # too few to leave any out: the largest
    assert flag_rate_bound(5) == pytest.approx(1 - 0.05 ** (1 / 5))  # the largest of 5: Beta(1, 5)
    assert 0.05 < flag_rate_bound(400) < 0.07 and flag_rate_bound(400) < flag_rate_bound(40)
