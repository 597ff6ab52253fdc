"""The splits ledger, `splits.csv`: every sample's split since it was first ingested, so data that grow,
a changed seed or fraction, or a file moved between split folders never move a sample silently.

A row per sample ever ingested (`id`, `group`, `split`, `image_file_sha256`: the bytes of its image
file, `rule`: how its split was decided, `unetpp.data.splits`), kept while the file is absent. The gate
compares each sample's split with the ledger's for its id, and for its image's bytes (a file moved to
another split folder gets a new id but keeps its bytes).
Deleting the ledger is how a user re-splits on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from unetpp.data.splits import HASH
from unetpp.errors import UserError
from unetpp.files import replacing

COLUMNS = ["id", "group", "split", "image_file_sha256", "rule"]


def read_ledger(path: Path | None) -> pd.DataFrame:
    """The ledger at `path` (empty when there is none yet). A ledger written before the `rule` column drew
    every split by hash alone: its rows read as `hash`."""
    if path is None or not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    ledger = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(ledger.columns) == COLUMNS[:-1]:
        ledger = ledger.assign(rule=HASH)
    if list(ledger.columns) != COLUMNS:
        raise UserError(f"{path}: expected the columns {COLUMNS}; got {list(ledger.columns)}")
    return ledger


def with_ledger_splits(manifest: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
    """The manifest with the ledger's split for each row's id (`ledger_split`) and for its image's bytes
    (`ledger_split_of_image`), missing where the ledger does not know them: what the gate compares."""
    by_id = dict(zip(ledger["id"], ledger["split"], strict=True))
    by_image = dict(zip(ledger["image_file_sha256"], ledger["split"], strict=True))
    return manifest.assign(
        ledger_split=manifest["id"].astype(str).map(by_id),
        ledger_split_of_image=manifest["image_file_sha256"].map(by_image),
    )


def write_ledger(ledger: pd.DataFrame, manifest: pd.DataFrame, path: Path) -> None:
    """The ledger with the manifest's new ids added (written aside, then renamed: never half-written)."""
    fresh = manifest[~manifest["id"].astype(str).isin(set(ledger["id"]))][COLUMNS].astype(str)
    out = pd.concat([ledger, fresh], ignore_index=True).sort_values("id", kind="stable")
    with replacing(path) as tmp:
        out.to_csv(tmp, index=False)
