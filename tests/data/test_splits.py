"""Splits: folders give them; a set's first ingest draws the rest by hash rank (the fractions held, small sets
included); groups added later draw by their hash alone, so no old sample moves; the ledger keeps both."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import folder_params, labelled_pairs
from unetpp.data.ingest import ingest
from unetpp.data.ledger import read_ledger
from unetpp.data.sources import folder_samples
from unetpp.data.splits import assign_splits, rank_splits, split_of
from unetpp.data.synthetic import generate_fundus
from unetpp.data.validate import DataValidationError
from unetpp.errors import UserError
from unetpp.params import Params


def _splits(params: Params, ledger: pd.DataFrame | None = None) -> dict[str, str]:
    samples = folder_samples(params.data, params.model.class_names)
    assign_splits(samples, params.data, read_ledger(None) if ledger is None else ledger)
    return {s.id: s.split for s in samples}


def _flat(root: Path, count: int, start: int = 0) -> Path:
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for i in range(start, start + count):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(root / "images" / f"x{i:02d}.png")
    return root


def test_split_subfolders_are_the_splits(folder_dataset: Path) -> None:
    assert _splits(folder_params(folder_dataset)) == {
        **{f"train_eye{i}": "train" for i in range(4)},
        **{f"val_eye{i}": "val" for i in (4, 5)},
        **{f"test_eye{i}": "test" for i in (6, 7)},
    }


def test_small_sets_keep_their_fractions() -> None:
    for n, expected in ((14, (3, 3, 8)), (20, (4, 4, 12)), (10, (2, 2, 6)), (3, (1, 1, 1))):
        shares = Counter(rank_splits({f"g{i}" for i in range(n)}, {"test": 0.2, "val": 0.2}, 0).values())
        assert (shares["test"], shares["val"], shares["train"]) == expected, n
    independent = Counter(split_of(f"g{i}", {"test": 0.2, "val": 0.2}, 0) for i in range(14))
    print(f"14 groups, test/val/train by rank 3/3/8; each by its hash alone {independent}")


def test_hashed_shares_approach_the_fractions() -> None:
    fractions = {"test": 0.2, "val": 0.2}
    shares = Counter(split_of(f"img_{i:05d}", fractions, 0) for i in range(10_000))
    assert abs(shares["test"] / 10_000 - 0.2) < 0.02 and abs(shares["val"] / 10_000 - 0.2) < 0.02


def test_a_seed_changes_the_draw_and_growth_moves_no_sample(tmp_path: Path) -> None:
    flat = _flat(tmp_path / "flat", 10)
    params = folder_params(flat, val_fraction=0.3, seed=4)
    first = _splits(params)
    assert first == rank_splits(set(first), {"test": 0.2, "val": 0.3}, 4) and first != _splits(
        folder_params(flat, val_fraction=0.3, seed=5)
    )
    rows = {"id": list(first), "group": list(first), "split": list(first.values())}
    ledger = pd.DataFrame(rows | {"image_file_sha256": "-", "rule": "rank"})
    _flat(flat, 20, start=10)  # the set grows: no existing sample moves, the new ones draw by their hash
    grown = _splits(params, ledger)
    assert {i: grown[i] for i in first} == first and len(grown) == 30
    assert {i: grown[i] for i in grown if i not in first} == {
        i: split_of(i, {"test": 0.2, "val": 0.3}, 4) for i in grown if i not in first
    }


def test_the_ledger_records_each_rule_and_an_old_ledger_reads_as_hashed(tmp_path: Path) -> None:
    source, out, path = tmp_path / "source", tmp_path / "prepared", tmp_path / "splits.csv"
    labelled_pairs(source, range(14))
    ingest(folder_params(source), out, path)
    first = pd.read_csv(path, dtype=str)
    assert set(first["rule"]) == {"rank"} and Counter(first["split"]) == {"train": 8, "val": 3, "test": 3}
    labelled_pairs(source, range(14, 20))
    grown = ingest(folder_params(source), out, path)
    ledger = pd.read_csv(path, dtype=str).set_index("id")
    assert ledger.loc[first["id"], "split"].tolist() == first["split"].tolist()
    assert set(ledger.drop(first["id"])["rule"]) == {"hash"} and set(grown["rule"]) == {"rank", "hash"}

    first.drop(columns="rule").to_csv(path, index=False)  # written before the rule column
    assert set(read_ledger(path)["rule"]) == {"hash"}

    other = tmp_path / "other"  # another set, under a ledger that knows only the first (a clone's default)
    _flat(other, 14)
    assert Counter(_splits(folder_params(other), read_ledger(path)).values()) == {"train": 8, "val": 3, "test": 3}


def test_a_group_stays_in_one_split(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    (flat / "masks").mkdir(parents=True)
    (flat / "images").mkdir()
    for patient, k in ((p, k) for p in range(12) for k in range(3)):
        Image.fromarray(np.full((8, 8, 3), 10 * patient + k, np.uint8)).save(flat / "images" / f"P{patient}_{k}.png")
    splits = _splits(folder_params(flat, group_pattern=r"^(P\d+)_"))
    by_patient: dict[str, set[str]] = {}
    for sample_id, split in splits.items():
        by_patient.setdefault(sample_id.split("_")[0], set()).add(split)
    ranked = rank_splits(set(by_patient), {"test": 0.2, "val": 0.2}, 0)
    assert by_patient == {p: {ranked[p]} for p in by_patient}
    assert Counter(ranked.values()) == {"train": 8, "test": 2, "val": 2}


def test_the_gate_refuses_a_group_that_split_folders_put_in_two_splits(tmp_path: Path) -> None:
    split_folders = tmp_path / "folders"
    for split, name in (("train", "P1_a"), ("train", "P2_a"), ("val", "P3_a"), ("test", "P1_b")):
        for sub in ("images", "masks"):
            (split_folders / sub / split).mkdir(parents=True, exist_ok=True)
        s = generate_fundus(len(name), 64, seed=2)
        Image.fromarray(s.image).save(split_folders / "images" / split / f"{name}.png")
        Image.fromarray(s.masks[0].astype(np.uint8) * 255).save(split_folders / "masks" / split / f"{name}.png")
    with pytest.raises(DataValidationError, match="group 'P1' in test and train"):
        ingest(folder_params(split_folders, group_pattern=r"^(P\d+)_"), tmp_path / "prepared")
    with pytest.raises(UserError, match="does not match this file name"):
        folder_samples(folder_params(split_folders, group_pattern=r"^Q").data, ["disc"])
