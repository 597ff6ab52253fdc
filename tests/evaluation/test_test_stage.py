"""The test stage's summary: means with bootstrap intervals over the finite cases. (That no stage but `ingest`
and `test` opens a test file is watched on a real folder set in tests/planning/test_kinds.py.)"""

from __future__ import annotations

import pytest

from unetpp.data.sources import RawSample
from unetpp.evaluation.test import expert_columns
from unetpp.scoring.metrics import mean_with_interval as summarize


def test_means_come_with_a_bootstrap_interval_over_finite_cases() -> None:
    values = [0.9, 0.8, 0.95, 0.7, float("nan")]
    s = summarize(values)
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.8375, abs=1e-4)
    assert 0.7 <= s["ci95"][0] < s["mean"] < s["ci95"][1] <= 0.95
    assert summarize(values) == s  # seeded
    assert summarize([float("nan")]) == {"mean": None, "ci95": None, "n": 0}


def _sample(name: str, cdrs: tuple[float, ...]) -> RawSample:
    return RawSample(name, "test", f"{name}.png", lambda: None, expert_cdrs=cdrs)  # type: ignore[arg-type,return-value]


def test_the_served_ratio_is_scored_against_the_experts_mean_with_their_spread_beside_it() -> None:
    rows = [{"cdr_pred": 0.6}, {"cdr_pred": float("nan")}]
    expert_columns(rows, [_sample("a", (0.5, 0.7, 0.6, 0.6)), _sample("b", (0.4, 0.4))])
    assert rows[0]["cdr_abs_error_vs_experts"] == pytest.approx(0.0)
    # each expert against the others' mean: |0.5 - 0.633|, |0.7 - 0.567|, |0.6 - 0.6| twice
    assert rows[0]["cdr_abs_error_experts_spread"] == pytest.approx((0.4 / 3 * 2) / 4)
    assert rows[1]["cdr_abs_error_vs_experts"] == pytest.approx(0.6)  # nothing served: the largest error
    assert rows[1]["cdr_abs_error_experts_spread"] == pytest.approx(0.0)
    bare = [{"cdr_pred": 0.6}]
    expert_columns(bare, [_sample("c", ())])  # no expert ratios: nothing added
    assert bare == [{"cdr_pred": 0.6}]
