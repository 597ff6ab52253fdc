"""How long a run trains: the plan's epochs, then on while validation still improves, up to the cap.

The plan buys its epochs with `train.budget_tflop` (`unetpp.planning.recipe`): the same compute for a
set of 40 images or of 400, which leaves a large set still climbing. So at the planned end the run
itself decides: it goes on while the best val mean Dice of the last `patience` validations beats the
best before them by `train.min_delta`, and stops at the first validation where it does not, or at the
cap (`train.cap_tflop`, the plan's `cap_epochs`). A run stopped by the cap while still improving is
said to be so (`Ending`), which the learning guard reads: still learning is not "did not learn".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


def improvement(history: list[dict[str, Any]], patience: int) -> float:
    """The best val mean Dice of the last `patience` validations (all but the first, when there are no more)
    minus the best before them; 0 with one validation."""
    window = min(patience, len(history) - 1)
    if window < 1:
        return 0.0
    before = max(r["dice_mean"] for r in history[:-window])
    return max(r["dice_mean"] for r in history[-window:]) - before


def goes_on(epoch: int, history: list[dict[str, Any]], planned: int, cap: int, patience: int, min_delta: float) -> bool:
    """Whether the run trains another epoch after `epoch` (epochs done): always before the planned end,
    never at the cap, in between while the last validation shows it improving."""
    if epoch < planned:
        return True
    return epoch < cap and improvement(history, patience) >= min_delta


@dataclass(frozen=True)
class Ending:
    """Why a run stopped: `planned` (its planned epochs, no longer improving), `plateau` (past them, when
    it stopped improving), `cap` (the cap, `gain` being how much it still improved: `improvement`; with
    `train.epochs` set, the cap is those epochs)."""

    reason: str
    epochs: int
    planned: int
    cap: int
    patience: int
    gain: float
    improving: bool  # gain >= train.min_delta: what would have trained it on

    @property
    def still_learning(self) -> bool:
        return self.reason == "cap" and self.improving

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"still_learning": self.still_learning}


def ending(
    epochs: int, history: list[dict[str, Any]], planned: int, cap: int, patience: int, min_delta: float
) -> Ending:
    """The `Ending` of a run that stopped after `epochs` epochs."""
    reason = "cap" if epochs >= cap else "planned" if epochs == planned else "plateau"
    gain = improvement(history, patience)
    return Ending(reason, epochs, planned, cap, patience, round(gain, 6), gain >= min_delta)
