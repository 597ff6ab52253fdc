"""Which split each sample is in: given by the source's folders, or drawn from train by one of two rules.

- `rank` (a set's first ingest): the drawn groups ordered by their seeded hash, the first
  round(n * test_fraction) to test, the next round(n * val_fraction) to val, the rest to train. A set of
  14 images gets 3 test and 3 val, where independent draws could give it 1 (and a test figure resting on
  one case).
- `hash` (groups added later): each group alone by its seeded hash (`split_of`): a new group cannot move
  an old one, as a new rank order would.

The ledger (`splits.csv`, `unetpp.data.ledger`) keeps each sample's split and rule, so both rules' results
can be derived again: the rank of a later ingest is taken over the ledger's `rank` groups, and a changed
seed or fraction changes what either rule gives (the gate then refuses it instead of moving samples).
"""

from __future__ import annotations

import hashlib

import pandas as pd

from unetpp.data.sources import RawSample
from unetpp.params import DataParams

FOLDER, RANK, HASH = "folder", "rank", "hash"  # the `rule` column of the ledger


def _unit(group: str, seed: int) -> float:
    """The group's SHA-256, salted with the seed, read as a number in [0, 1)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(group: str, fractions: dict[str, float], seed: int) -> str:
    """A group's split by its hash alone: u < f1 the first split of `fractions`, u < f1 + f2 the second, ...,
    else train. The shares are the fractions on average, not in a small set."""
    u, bound = _unit(group, seed), 0.0
    for split, share in fractions.items():
        bound += share
        if u < bound:
            return split
    return "train"


def rank_splits(groups: set[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Each group's split by its hash's rank among `groups`: the fractions held to the nearest group."""
    order = sorted(groups, key=lambda g: (_unit(g, seed), g))
    splits, start = {}, 0
    for split, share in fractions.items():
        count = int(len(order) * share + 0.5)
        splits |= dict.fromkeys(order[start : start + count], split)
        start += count
    return splits | dict.fromkeys(order[start:], "train")


def drawn_fractions(samples: list[RawSample], data: DataParams) -> dict[str, float]:
    """The splits that no source folder gave (test, val), with their fractions: drawn from train."""
    given = {s.split for s in samples if not s.drawn}
    fractions = {"test": data.test_fraction, "val": data.val_fraction}
    return {split: share for split, share in fractions.items() if split not in given}


def assign_splits(samples: list[RawSample], data: DataParams, ledger: pd.DataFrame) -> None:
    """Set each drawn sample's split and every sample's `rule`: `rank` over the first ingest's drawn groups
    (a ledger that knows none of them, say the default data's in a fresh clone: this is it; else the
    ledger's `rank` groups), `hash` for groups added since."""
    fractions = drawn_fractions(samples, data)
    drawn = [s for s in samples if s.drawn and fractions]
    groups = {s.group for s in drawn}
    first = set(ledger.loc[ledger["rule"] == RANK, "group"]) if groups & set(ledger["group"]) else groups
    ranked = rank_splits(first, fractions, data.seed)
    for sample in samples:
        if not (sample.drawn and fractions):
            sample.rule = FOLDER
        elif sample.group in ranked:
            sample.split, sample.rule = ranked[sample.group], RANK
        else:
            sample.split, sample.rule = split_of(sample.group, fractions, data.seed), HASH
