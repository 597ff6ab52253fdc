"""The test stage's summary: means with bootstrap intervals over the finite cases. (That no stage but `ingest`
and `test` opens a test file is watched on a real folder set in tests/planning/test_kinds.py.)"""

from __future__ import annotations

import pytest

from unetpp.scoring.metrics import mean_with_interval as summarize


def test_means_come_with_a_bootstrap_interval_over_finite_cases() -> None:
    values = [0.9, 0.8, 0.95, 0.7, float("nan")]
    s = summarize(values)
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.8375, abs=1e-4)
    assert 0.7 <= s["ci95"][0] < s["mean"] < s["ci95"][1] <= 0.95
    assert summarize(values) == s  # seeded
    assert summarize([float("nan")]) == {"mean": None, "ci95": None, "n": 0}
