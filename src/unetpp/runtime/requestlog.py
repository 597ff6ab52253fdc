"""The served requests' log: one small record per answered request, in SQLite (WAL): it survives restarts,
and several TorchServe workers (processes) append to it at once, each batch in one transaction. No image
is kept unless the server is told to (`serve.keep_images`); then the request's bytes are written beside the
log and the record points to them. `unetpp.monitoring` reads it.

A record: when, which registry version answered, the input's size, dtype and per-channel intensity
(mean, standard deviation, 1st and 99th percentiles of the source values, on a subsample), the features
the out-of-distribution flag reads (pooled bottleneck, then the input's descriptors), its score and flag,
the confidence per class and the read-out (area per class; the cup-to-disc ratio for disc + cup).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

ENV = "UNETPP_REQUEST_LOG"  # the log's folder, set by `unetpp serve start` for the workers
DB = "requests.sqlite"
LOCK_SECONDS = 30  # how long a writer waits for another's transaction
STRIDE = 4  # intensity statistics read every 4th row and column: 1/16 of the pixels
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    version TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    intensity TEXT NOT NULL,
    features TEXT NOT NULL,
    ood_score REAL,
    out_of_distribution INTEGER,
    confidence TEXT,
    readout TEXT NOT NULL,
    image TEXT
)""",
    "CREATE INDEX IF NOT EXISTS by_version ON requests (version, id)",
)


def intensity_stats(image: np.ndarray) -> list[dict[str, float]]:
    """Per channel of a decoded (H, W, C) image: mean, std, 1st and 99th percentiles of a subsample."""
    sample = image[::STRIDE, ::STRIDE].reshape(-1, image.shape[-1]).astype(np.float64)
    p1, p99 = np.percentile(sample, [1, 99], axis=0)
    return [
        {"mean": float(m), "std": float(s), "p1": float(a), "p99": float(b)}
        for m, s, a, b in zip(sample.mean(0), sample.std(0), p1, p99, strict=True)
    ]


def connect(folder: Path) -> sqlite3.Connection:
    """The log in `folder` (created with its table when absent), in WAL mode: readers never block writers."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / DB, timeout=LOCK_SECONDS)
    for statement in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *SCHEMA):
        _patiently(db, statement)
    return db


def _patiently(db: sqlite3.Connection, statement: str) -> None:
    """Run `statement`, retrying while another connection holds the lock: two workers starting together race
    for the journal-mode change, which SQLite refuses at once ("database is locked") instead of waiting."""
    deadline = time.monotonic() + LOCK_SECONDS
    while True:
        try:
            db.execute(statement)
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def record(
    version: str, image: np.ndarray, features: torch.Tensor, answer: dict[str, Any], kept: Path | None = None
) -> dict[str, Any]:
    """The log's row for one answer (`answer`: the read-out and the guard's verdict) to a decoded image;
    the training reference (`unetpp.evaluation.guard_fit.reference_records`) is made of the same rows."""
    readout = {c: v["area"] for c, v in answer["classes"].items()}
    if "vertical_cdr" in answer:
        readout["vertical_cdr"] = answer["vertical_cdr"]
    return {
        "time": datetime.now(UTC).isoformat(),
        "version": version,
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "channels": int(image.shape[2]),
        "dtype": str(image.dtype),
        "intensity": json.dumps(intensity_stats(image)),
        "features": json.dumps([round(float(v), 5) for v in features]),
        "ood_score": answer.get("ood_score"),
        "out_of_distribution": answer.get("out_of_distribution"),
        "confidence": json.dumps(answer["confidence"]) if "confidence" in answer else None,
        "readout": json.dumps(readout),
        "image": None if kept is None else str(kept),
    }


class RequestLog:
    """Appends the records of one worker's answers to the log in `folder`."""

    def __init__(self, folder: Path, keep_images: bool = False) -> None:
        self.folder, self.keep_images = folder, keep_images
        self.db = connect(folder)

    def record(
        self, version: str, image: np.ndarray, features: torch.Tensor, answer: dict[str, Any], body: bytes
    ) -> dict[str, Any]:
        """One request's row; its bytes are written beside the log first when images are kept."""
        kept = None
        if self.keep_images:
            kept = self.folder / "images" / f"{uuid.uuid4().hex}{_suffix(body)}"
            kept.parent.mkdir(exist_ok=True)
            kept.write_bytes(body)
        return record(version, image, features, answer, kept)

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write `rows` in one transaction."""
        if not rows:
            return
        cols = list(rows[0])
        with self.db:
            self.db.executemany(
                f"INSERT INTO requests ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(r[c] for c in cols) for r in rows],
            )


MAGIC = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"II*\x00": ".tif", b"MM\x00*": ".tif"}


def _suffix(body: bytes) -> str:
    """The kept file's extension, from its first bytes (what a labelling tool opens it by)."""
    return next((ext for magic, ext in MAGIC.items() if body.startswith(magic)), ".bin")
