"""Data that grow: unchanged samples are reused, splits never move, the ledger refuses a silent move."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import folder_params, labelled_pairs, tree_digest
from unetpp.data.ingest import ingest, read_record
from unetpp.data.synthetic import generate_fundus
from unetpp.data.validate import DataValidationError
from unetpp.errors import UserError


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
    record = read_record(out)
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
    assert "split / ledger_split" in str(refused.value)  # by id (and by the image's bytes)
    assert (out / "manifest.csv").read_bytes() == manifest and ledger.read_bytes() == before  # nothing lost
    ledger.unlink()  # a re-split on purpose
    resplit = ingest(folder_params(source, seed=1), out, ledger)
    assert resplit.set_index("id")["split"].to_dict() == pd.read_csv(ledger).set_index("id")["split"].to_dict()
    assert read_record(out)["reused"]  # the arrays themselves did not change


def test_an_ingest_that_changes_no_sample_leaves_the_prepared_folder_as_it_was(grown: tuple[Path, Path, Path]) -> None:
    """Nothing downstream re-runs: the bookkeeping lives beside the folder, the manifest holds content only."""
    source, out, ledger = grown
    before = tree_digest(out)
    (source / "notes.txt").write_text("a file that is not an image")  # DVC re-runs ingest for it
    params = folder_params(source)
    params = params.model_copy(update={"validate_": params.validate_.model_copy(update={"fg_max": 0.7})})
    ingest(params, out, ledger)  # a validate param changed: ingest re-runs, no sample changes
    assert tree_digest(out) == before and sum(read_record(out)["reused"].values()) == 20


def test_a_file_moved_to_another_split_folder_is_refused(tmp_path: Path, folder_dataset: Path) -> None:
    ledger, out = tmp_path / "splits.csv", tmp_path / "prepared"
    ingest(folder_params(folder_dataset), out, ledger)
    for sub in ("images", "masks"):  # eye0 leaves train for val: a new id, the same bytes
        (folder_dataset / sub / "train" / "eye0.png").rename(folder_dataset / sub / "val" / "eye0.png")
    with pytest.raises(DataValidationError, match=r"ledger_split_of_image[\s\S]*val/eye0.png") as refused:
        ingest(folder_params(folder_dataset), out, ledger)
    assert "delete splits.csv" in str(refused.value)


def test_two_files_of_one_id_are_refused_and_nothing_is_lost(grown: tuple[Path, Path, Path]) -> None:
    source, out, ledger = grown
    before = tree_digest(out)
    Image.open(source / "images" / "eye003.png").save(source / "images" / "eye003.jpg")
    with pytest.raises(UserError, match=r"two source files give one sample id.*eye003\.jpg and .*eye003\.png"):
        ingest(folder_params(source), out, ledger)
    assert tree_digest(out) == before
