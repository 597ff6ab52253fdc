"""The selection policy: fastest within the Dice tolerance, latency cap, ties, nothing eligible."""

from __future__ import annotations

import pytest

from unetpp.evaluation.select import SelectionError, choose
from unetpp.params import SelectParams


def _row(level: int, mode: str, dice: float, latency: float, gflops: float = 1.0, spread: float = 0.0) -> dict:
    return dict(
        key=f"L{level}_{mode}",
        level=level,
        mode=mode,
        dice_mean=dice,
        latency_ms=latency,
        gflops=gflops,
        latency_spread_ms=spread,
    )


ROWS = [
    _row(1, "fast", 0.90, 10.0),
    _row(2, "fast", 0.955, 20.0),
    _row(3, "fast", 0.962, 40.0),
    _row(4, "fast", 0.960, 70.0),
    _row(4, "accurate", 0.963, 72.0),
]


def test_fastest_within_tolerance() -> None:
    chosen, reason = choose(ROWS, SelectParams(max_dice_drop=0.01))
    assert chosen["key"] == "L2_fast"
    assert "L2_fast is the fastest" in reason and "best 0.9630" in reason


def test_zero_tolerance_takes_the_best() -> None:
    assert choose(ROWS, SelectParams(max_dice_drop=0.0))[0]["key"] == "L4_accurate"


def test_latency_cap_excludes_slow_variants() -> None:
    chosen, reason = choose(ROWS, SelectParams(max_dice_drop=0.001, max_latency_ms=50))
    assert chosen["key"] == "L3_fast" and "latency <= 50" in reason


def test_nothing_within_tolerance_and_cap() -> None:
    with pytest.raises(
        SelectionError, match=r"no variant has mean Dice >= 0.9620.*fastest within tolerance is L3_fast"
    ):
        choose(ROWS, SelectParams(max_dice_drop=0.001, max_latency_ms=30))


def test_exact_ties_prefer_higher_dice_then_lower_level_then_fast() -> None:
    tied = [_row(3, "accurate", 0.95, 20.0), _row(2, "accurate", 0.95, 20.0), _row(2, "fast", 0.95, 20.0)]
    assert choose(tied, SelectParams())[0]["key"] == "L2_fast"
    tied.append(_row(4, "fast", 0.951, 20.0))
    assert choose(tied, SelectParams())[0]["key"] == "L4_fast"


def test_latencies_within_the_noise_tie_and_fewer_gflops_win_on_every_rerun() -> None:
    """Two runs measure L2 and L3 in either order, 0.3 ms apart with 0.5 ms of spread: the same choice."""
    first = [_row(2, "fast", 0.95, 10.0, gflops=0.8, spread=0.5), _row(3, "fast", 0.951, 10.3, gflops=1.6, spread=0.5)]
    rerun = [_row(2, "fast", 0.95, 10.3, gflops=0.8, spread=0.5), _row(3, "fast", 0.951, 10.0, gflops=1.6, spread=0.5)]
    assert choose(first, SelectParams())[0]["key"] == choose(rerun, SelectParams())[0]["key"] == "L2_fast"
    apart = [_row(2, "fast", 0.95, 12.0, gflops=0.8, spread=0.5), _row(3, "fast", 0.951, 10.0, gflops=1.6, spread=0.5)]
    assert choose(apart, SelectParams())[0]["key"] == "L3_fast"  # beyond the noise, latency decides


def test_no_rows() -> None:
    with pytest.raises(SelectionError, match="no evaluated variants"):
        choose([], SelectParams())
