"""Writing a stage output: beside it first, then renamed onto it, so a reader (or DVC) never sees a
half-written file and a run that fails mid-write leaves the previous output as it was. Shipped in the served
archive (the checkpoint writer uses it); the standard library only."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to, renamed onto `path` when the block ends without error
    (removed when it raises). The name is hidden and carries the PID: two writers never share it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any, indent: int = 2, default: Callable[[Any], Any] | None = None) -> None:
    """JSON with a final newline; a value JSON cannot hold raises, unless `default` converts it."""
    write_text(path, json.dumps(data, indent=indent, default=default) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV, the columns every row has in first-seen order (missing cells empty)."""
    with replacing(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
        writer.writeheader()
        writer.writerows(rows)
