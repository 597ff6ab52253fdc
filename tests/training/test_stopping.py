"""How long a run trains: the planned epochs, then on while the last validations beat the best before them."""

from __future__ import annotations

from unetpp.training.stopping import ending, goes_on, improvement


def _curve(*dice: float) -> list[dict]:
    return [{"epoch": e, "dice_mean": d} for e, d in enumerate(dice, start=1)]


def test_a_run_goes_on_past_its_plan_while_it_improves_and_stops_at_the_cap() -> None:
    rising, flat = _curve(0.5, 0.6, 0.7, 0.8, 0.9), _curve(0.5, 0.9, 0.9, 0.9004, 0.8)
    assert improvement(rising, 2) == 0.9 - 0.7 and improvement(flat, 2) == 0.9004 - 0.9
    assert improvement(rising[:3], 5) == 0.7 - 0.5 and improvement(rising[:1], 5) == 0  # fewer than patience
    assert goes_on(3, flat[:3], planned=4, cap=8, patience=2, min_delta=0.001)  # before the plan's end: always
    assert goes_on(5, rising, planned=4, cap=8, patience=2, min_delta=0.001)
    assert not goes_on(5, flat, planned=4, cap=8, patience=2, min_delta=0.001)  # +0.0004: a plateau
    assert not goes_on(8, rising, planned=4, cap=8, patience=2, min_delta=0.001)


def test_the_ending_says_why_and_whether_it_was_still_learning() -> None:
    rising, flat = _curve(0.5, 0.6, 0.7, 0.8, 0.9), _curve(0.5, 0.9, 0.9, 0.9, 0.9)
    assert ending(5, rising, planned=2, cap=5, patience=2, min_delta=0.001).still_learning
    assert ending(5, flat, planned=2, cap=5, patience=2, min_delta=0.001).reason == "cap"
    assert not ending(5, flat, planned=2, cap=5, patience=2, min_delta=0.001).still_learning
    assert ending(4, flat[:4], planned=2, cap=8, patience=2, min_delta=0.001).reason == "plateau"
    assert ending(2, flat[:2], planned=2, cap=8, patience=2, min_delta=0.001).as_dict()["reason"] == "planned"
