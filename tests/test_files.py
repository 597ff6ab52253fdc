"""Stage outputs are written aside, then renamed: a failing writer leaves the old file and no litter."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from unetpp.files import replacing, write_csv, write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    out = tmp_path / "metrics" / "eval.json"
    write_json(out, {"dice": 0.9})
    with pytest.raises(RuntimeError), replacing(out) as tmp:
        tmp.write_text('{"dice": ')
        raise RuntimeError("killed mid-write")
    assert out.read_text() == '{\n  "dice": 0.9\n}\n'
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]


def test_a_value_json_cannot_hold_is_refused_unless_converted(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_json(tmp_path / "a.json", {"path": tmp_path})
    assert not (tmp_path / "a.json").exists()
    write_json(tmp_path / "a.json", {"path": tmp_path}, default=str)
    assert str(tmp_path) in (tmp_path / "a.json").read_text()


def test_csv_columns_are_every_rows_keys_in_first_seen_order(tmp_path: Path) -> None:
    write_csv(tmp_path / "rows.csv", [{"key": "L1", "dice": 0.5}, {"key": "L2_tta", "tta_flips": "[1]", "dice": 0.6}])
    with (tmp_path / "rows.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["key", "dice", "tta_flips"]
    assert rows[0]["tta_flips"] == "" and rows[1]["tta_flips"] == "[1]"
