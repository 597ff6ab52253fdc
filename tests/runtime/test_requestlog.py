"""The request log: records from several processes at once, all kept, and still there when reopened."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import torch

from unetpp.runtime.requestlog import DB, RequestLog, intensity_stats

ANSWER = {"classes": {"a": {"area": 12}}, "confidence": {"a": 0.9}, "out_of_distribution": False, "ood_score": 0.4}


def _append(folder: str, worker: int, batches: int) -> None:
    log = RequestLog(Path(folder), keep_images=True)
    image = np.full((8, 6, 2), worker, np.uint16)
    for _ in range(batches):
        log.append([log.record(str(worker), image, torch.ones(4), ANSWER, b"\x89PNG...") for _ in range(3)])


def test_two_processes_append_at_once_and_nothing_is_lost(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append, args=(str(tmp_path), w, 20)) for w in (1, 2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    with sqlite3.connect(tmp_path / DB) as db:  # a new connection: what a restarted worker or the monitor sees
        rows = db.execute("SELECT version, height, width, channels, dtype, readout, image FROM requests").fetchall()
    assert len(rows) == 2 * 20 * 3
    assert {r[0] for r in rows} == {"1", "2"} and {r[1:5] for r in rows} == {(8, 6, 2, "uint16")}
    assert json.loads(rows[0][5]) == {"a": 12}
    assert all(Path(r[6]).suffix == ".png" and Path(r[6]).read_bytes() == b"\x89PNG..." for r in rows)


def test_no_image_is_kept_unless_asked(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    row = log.record("1", np.zeros((4, 4, 1), np.uint8), torch.zeros(2), ANSWER, b"\x89PNG...")
    assert row["image"] is None and not (tmp_path / "images").exists()


def test_intensity_statistics_are_per_channel_in_source_units() -> None:
    image = np.stack([np.full((40, 40), 100, np.uint16), np.full((40, 40), 30000, np.uint16)], -1)
    stats = intensity_stats(image)
    assert [s["mean"] for s in stats] == [100.0, 30000.0] and [s["std"] for s in stats] == [0.0, 0.0]
