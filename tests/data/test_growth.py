"""Data that grow: unchanged samples are reused, splits never move, the ledger refuses a silent move."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import folder_params, labelled_pairs
from unetpp.data.ingest import INGEST_RECORD, ingest
from unetpp.data.synthetic import generate_fundus
from unetpp.data.validate import DataValidationError


@pytest.fixture
def grown(tmp_path: Path) -> tuple[Path, Path, Path]:
    source, out, ledger = tmp_path / "source", tmp_path / "prepared", tmp_path / "splits.csv"
    labelled_pairs(source, range(20))
    ingest(folder_params(source), out, ledger)
    return source, out, ledger


def test_a_grown_set_reuses_unchanged_samples_and_moves_none(grown: tuple[Path, Path, Path]) -> None:
    source, out, ledger = grown
    before = pd.read_csv(ledger, dtype=str)
    inode = {p.name: p.stat().st_ino for p in (out / "samples").glob("*.npz")}
    labelled_pairs(source, range(20, 25))
    edited = generate_fundus(0, 64, seed=5).image // 2 + 10  # the same eye, re-exposed
    Image.fromarray(edited).save(source / "images" / "eye000.png")
    manifest = ingest(folder_params(source), out, ledger)
    record = json.loads((out / INGEST_RECORD).read_text())
    assert sum(record["new"].values()) == 5 and sum(record["changed"].values()) == 1
    assert sum(record["reused"].values()) == 19 and record["samples"] == 25
    after = pd.read_csv(ledger, dtype=str)
    assert after.iloc[: len(before)].equals(before.sort_values("id").reset_index(drop=True))  # 20 ids sort first
    assert len(after) == 25 and set(after["id"]) == set(manifest["id"])
    kept = {p.name: p.stat().st_ino for p in (out / "samples").glob("*.npz")}
    assert all(kept[n] == i for n, i in inode.items() if n != "eye000.npz")  # the same files, not rewritten
    if "eye000.npz" in inode:
        assert kept["eye000.npz"] != inode["eye000.npz"]


def test_the_ledger_refuses_a_move_and_a_deleted_ledger_resplits(grown: tuple[Path, Path, Path]) -> None:
    source, out, ledger = grown
    manifest, before = (out / "manifest.csv").read_bytes(), ledger.read_bytes()
    with pytest.raises(DataValidationError, match=r"ledger[\s\S]*eye0[\s\S]*delete splits.csv") as refused:
        ingest(folder_params(source, seed=1), out, ledger)  # another seed would move samples
    assert "split / ledger_split" in str(refused.value)
    assert (out / "manifest.csv").read_bytes() == manifest and ledger.read_bytes() == before  # nothing lost
    ledger.unlink()  # a re-split on purpose
    resplit = ingest(folder_params(source, seed=1), out, ledger)
    assert resplit.set_index("id")["split"].to_dict() == pd.read_csv(ledger).set_index("id")["split"].to_dict()
    assert json.loads((out / INGEST_RECORD).read_text())["reused"]  # the arrays themselves did not change
