"""Data that grow, measured: the incremental ingest and DVC's check of an unchanged source.

1. A folder set of `--images` generated pairs (RGB PNG, `--size` px) is ingested, then `--grow` more
   pairs are added and it is ingested again: the second ingest reuses the unchanged samples, so its
   time over the first's should be near grow / images (the issue's bar: <= 20% for 1,200 + 120).
2. `dvc status` on a stage whose dependency is a folder of `--files` unchanged files (after `dvc repro`
   hashed them once): DVC's state database (inode, size, mtime -> hash) skips re-reading them.

Both on this machine, in one run; the ratios are what to compare across machines.

Usage: python bench/data_growth.py [--images 1200 --grow 120 --size 256 --files 10000 --work /tmp/growth]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import labelled_pairs  # noqa: E402
from unetpp.data.ingest import ingest, read_record  # noqa: E402
from unetpp.params import Params  # noqa: E402

BIN = Path(sys.executable).parent


def timed_ingest(params: Params, out: Path, ledger: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    ingest(params, out, ledger)
    return time.perf_counter() - start, read_record(out)


def growth(work: Path, images: int, grow: int, size: int) -> None:
    source = work / "source"
    labelled_pairs(source, range(images), size)
    params = Params.model_validate(
        {
            "model": {"class_names": ["disc"]},
            "data": {"source": "folder", "path": str(source)},
            "validate": {"min_train": 1},
        }
    )
    import great_expectations  # noqa: F401  -- the one-time import is not the first ingest's work

    first, record = timed_ingest(params, work / "prepared", work / "splits.csv")
    print(f"ingest of {images} new samples: {first:.1f} s ({record['new']})")
    labelled_pairs(source, range(images, images + grow), size)
    second, record = timed_ingest(params, work / "prepared", work / "splits.csv")
    print(f"ingest after {grow} more: {second:.1f} s (new {record['new']}, reused {sum(record['reused'].values())})")
    print(f"second / first = {second / first:.3f} (the new samples are {grow / images:.3f} of the first set)")


def dvc_status(work: Path, files: int) -> None:
    project = work / "dvc"
    (project / "source").mkdir(parents=True)
    for i in range(files):
        (project / "source" / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
    (project / "dvc.yaml").write_text(
        "stages:\n  list:\n    cmd: ls source | wc -l > count.txt\n    deps: [source]\n    outs: [count.txt]\n"
    )
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def dvc(*args: str) -> float:
        start = time.perf_counter()
        subprocess.run([str(BIN / "dvc"), *args], cwd=project, env=env, check=True, capture_output=True)
        return time.perf_counter() - start

    dvc("init", "--no-scm", "-q")
    print(f"dvc repro, hashing {files} files once: {dvc('repro'):.1f} s")
    print(f"dvc status, {files} unchanged files: {dvc('status'):.1f} s, again {dvc('status'):.1f} s")
    (project / "source" / "new.bin").write_bytes(os.urandom(4096))
    start = time.perf_counter()
    out = subprocess.run([str(BIN / "dvc"), "status"], cwd=project, env=env, capture_output=True, text=True)
    print(f"dvc status after adding one file: {time.perf_counter() - start:.1f} s, reports: {out.stdout.split()[:4]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--grow", type=int, default=120)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/unetpp-growth"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    growth(args.work, args.images, args.grow, args.size)
    dvc_status(args.work, args.files)


if __name__ == "__main__":
    main()
