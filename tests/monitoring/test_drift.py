"""The monitor's pieces on generated records: log rows to a table, Evidently's verdicts on a calm and a
shifted window, and the flag-rate alarm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from unetpp.monitoring.drift import compare
from unetpp.monitoring.monitor import flagged
from unetpp.monitoring.requests import FEATURE, table
from unetpp.runtime.requestlog import record


def _records(n: int, shift: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        image = (rng.normal(100 + shift, 10, (32, 32, 2))).clip(0, 65535).astype(np.uint16)
        features = torch.from_numpy(rng.normal(shift / 10, 1, 12))
        score = float(abs(rng.normal(0.5 + shift / 20, 0.2)))
        answer = {
            "classes": {"a": {"area": int(rng.integers(90, 110))}},
            "confidence": {"a": float(rng.uniform(0.8, 0.95))},
            "out_of_distribution": score > 1,
            "ood_score": score,
        }
        rows.append(record("1", image, features, answer))
    return rows


def test_a_record_becomes_one_row_of_numbers() -> None:
    frame = table(_records(3, 0.0, 0))
    assert len(frame) == 3 and sum(c.startswith(FEATURE) for c in frame) == 12
    assert {"height", "width", "ood_score", "intensity1_p99", "confidence_a", "area_a"} <= set(frame)
    assert frame["area_a"].between(90 / 1024, 110 / 1024).all()  # areas as a fraction of the image
    assert json.loads(_records(1, 0.0, 0)[0]["intensity"])[0].keys() == {"mean", "std", "p1", "p99"}


def test_a_calm_window_is_no_drift_and_a_shifted_one_is(tmp_path: Path) -> None:
    reference = table(_records(40, 0.0, 1))
    calm = compare(reference, table(_records(40, 0.0, 2)), tmp_path / "calm.html")
    assert not calm["drift"] and calm["data_drift_share"] < 0.5 and calm["embedding_drift_share"] < 0.5
    shifted = compare(reference, table(_records(40, 30.0, 3)), tmp_path / "shifted.html")
    assert shifted["drift"] and shifted["data_drift"] and shifted["embedding_drift"]
    assert (tmp_path / "shifted.html").stat().st_size > 10_000 and shifted["embedding_classifier_auc"] > 0.9


def test_the_flag_rate_alarm_allows_what_the_threshold_allows() -> None:
    def window(flags: int, n: int = 40) -> pd.DataFrame:
        return pd.DataFrame({"ood_score": [2.0] * flags + [0.5] * (n - flags)})

    assert not flagged(window(4), 400)["ood_drift"]  # 10% where the threshold of 400 cases allows ~6.7%: chance
    assert flagged(window(12), 400)["ood_drift"]
    small = flagged(window(12), 5)  # 5 reference cases: one fitted threshold may flag up to 45% of like inputs
    assert small["flag_rate_bound"] == pytest.approx(1 - 0.05 ** (1 / 5)) and not small["ood_drift"]
    assert flagged(window(30), 5)["ood_drift"]
