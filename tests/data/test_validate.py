"""The data gate: each kind of bad input fails, naming the file; nothing already written changes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import folder_params, tree_digest
from unetpp.data.ingest import ingest
from unetpp.data.validate import DataValidationError


def _corrupt(root: Path) -> Path:
    path = root / "images/train/eye1.png"
    path.write_bytes(b"this is not an image at all")
    return path


def _truncated(root: Path) -> Path:
    path = root / "images/train/eye2.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _size_mismatch(root: Path) -> Path:
    path = root / "masks/val/eye4.png"
    Image.open(path).resize((40, 64), Image.NEAREST).save(path)
    return root / "images/val/eye4.png"


def _non_binary(root: Path) -> Path:
    path = root / "masks/train/eye3.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[mask > 0] = 128
    mask[0, :5] = 255
    Image.fromarray(mask).save(path)
    return root / "images/train/eye3.png"


def _duplicate_across_splits(root: Path) -> Path:
    shutil.copy(root / "images/train/eye0.png", root / "images/val/copy_of_eye0.png")
    shutil.copy(root / "masks/train/eye0.png", root / "masks/val/copy_of_eye0.png")
    return root / "images/val/copy_of_eye0.png"


def _empty_mask(root: Path) -> Path:
    path = root / "masks/val/eye5.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    return root / "images/val/eye5.png"


def _missing_mask(root: Path) -> Path:
    (root / "masks/train/eye2.png").unlink()
    return root / "masks/train/eye2.png"


BAD_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "corrupt image": (_corrupt, "not a readable image"),
    "truncated png": (_truncated, "not a readable image"),
    "image/mask size mismatch": (_size_mismatch, "expect_column_pair_values_to_be_equal on width / mask_width"),
    "non-binary mask": (_non_binary, "expect_column_values_to_be_in_set on mask_valid"),
    "duplicate across splits": (_duplicate_across_splits, "expect_column_values_to_be_unique on image_sha256"),
    "empty mask": (_empty_mask, "expect_column_values_to_be_between on fg_disc"),
    "missing mask": (_missing_mask, "mask not found"),
}


def test_the_clean_dataset_passes(folder_dataset: Path, tmp_path: Path) -> None:
    manifest = ingest(folder_params(folder_dataset), tmp_path / "prepared")
    assert len(manifest) == 8


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_fails_naming_the_file(folder_dataset: Path, tmp_path: Path, case: str) -> None:
    out = tmp_path / "prepared"
    ingest(folder_params(folder_dataset), out)
    prepared_before = tree_digest(out)
    spoil, expectation = BAD_CASES[case]
    bad_file = spoil(folder_dataset)
    source_before = tree_digest(folder_dataset)

    with pytest.raises(DataValidationError) as err:
        ingest(folder_params(folder_dataset), out)
    message = str(err.value)
    assert expectation in message
    assert str(bad_file) in message
    assert tree_digest(folder_dataset) == source_before  # the source is only read
    assert tree_digest(out) == prepared_before  # the earlier prepared data is intact
    assert not list(tmp_path.glob(".prepared.*"))  # no staging left behind


def test_too_few_rows_in_a_split(folder_dataset: Path, tmp_path: Path) -> None:
    params = folder_params(folder_dataset)
    params.validate_.min_val = 5
    with pytest.raises(DataValidationError, match=r"(?s)rows / min_rows.*split val"):
        ingest(params, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()
