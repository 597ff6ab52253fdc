"""The request log (`unetpp.runtime.requestlog`) and the champion's reference, as tables to compare.

Each record becomes one row of numbers: the image's height, width and per-channel intensity statistics,
the out-of-distribution score, the confidence and the area fraction of each class (and the cup-to-disc
ratio for disc + cup), and the features the out-of-distribution flag reads as `feature_<k>` (the embedding).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from unetpp.runtime.requestlog import DB

FEATURE = "feature_"


def table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records (log rows or reference rows) to numeric columns, one row each."""
    rows = []
    for r in records:
        row: dict[str, Any] = {"height": r["height"], "width": r["width"], "ood_score": r["ood_score"]}
        for k, stats in enumerate(json.loads(r["intensity"])):
            row |= {f"intensity{k}_{name}": v for name, v in stats.items()}
        for name, v in json.loads(r["confidence"] or "{}").items():
            row[f"confidence_{name}"] = v
        for name, v in json.loads(r["readout"]).items():
            row[name if name == "vertical_cdr" else f"area_{name}"] = (
                v if name == "vertical_cdr" else v / (r["height"] * r["width"])
            )
        row |= {f"{FEATURE}{k}": v for k, v in enumerate(json.loads(r["features"]))}
        rows.append(row)
    return pd.DataFrame(rows)


def recent(folder: Path, version: str, size: int) -> list[dict[str, Any]]:
    """The `size` most recent records answered by `version`, oldest first (none when no log exists yet)."""
    if not (folder / DB).is_file():
        return []
    with contextlib.closing(sqlite3.connect(folder / DB, timeout=30)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT * FROM requests WHERE version = ? ORDER BY id DESC LIMIT ?", (version, size)
        ).fetchall()
    return [dict(r) for r in reversed(rows)]


def versions(folder: Path) -> set[str]:
    """The registry versions the log holds requests of (a server pinned to another version than the
    champion answers under its own)."""
    if not (folder / DB).is_file():
        return set()
    with contextlib.closing(sqlite3.connect(folder / DB, timeout=30)) as db:
        return {v for (v,) in db.execute("SELECT DISTINCT version FROM requests")}
