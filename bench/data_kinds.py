"""The pipeline on kinds of data unlike the default, as a new user would run it: a generated folder set,
a copy of the project with only `data.source`, `data.path` and `model.class_names` changed, `dvc repro`.
Prints each kind's plan (the recipe and its rules), the validation Dice it reached, and the time.

Kinds:
- `cells12`: 14 gray 400x400 images, 16-bit TIFF holding a 12-bit range (0..4095), 20-40 bright blobs
  of 9-16 px on a dark, noisy background (microscopy-like).
- `specks`: 12 RGB 1024x1024 images, 8-20 small dark targets of 8-14 px on a textured, unevenly lit
  background (large images, small targets: the plan trains on patches).
- `unrelated`: 24 fundus photographs whose disc masks belong to other images (the learning guard's case).
- `offset16`: 20 raw 16-bit camera frames of 160x160 (offset near 33,000 counts, objects a few hundred
  above it, a few hot pixels); `offset16_png`: the same frames contrast-stretched to 8-bit PNGs.
- `two_channel`: 14 2-channel 16-bit TIFFs stored channel-first, the target in the second channel alone.

Usage: python bench/data_kinds.py [--kinds cells12 unrelated] [--work /tmp/kinds]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the generators live with the tests that use them too

from tests.kinds import cells12, offset16, specks, two_channel, unrelated  # noqa: E402

BIN = Path(sys.executable).parent
SKIP = {".venv", ".git", ".dvc", ".prefect", "data", "models", "metrics", "plots", "mlruns", "dvc.lock"}
SKIP |= {"model-store", "reports", "plans.json", ".torchserve", "splits.csv"}


KINDS = {
    "cells12": cells12,
    "specks": specks,
    "unrelated": unrelated,
    "offset16": offset16,
    "offset16_png": lambda root: offset16(root, stretched=True),
    "two_channel": two_channel,
}


def run_kind(kind: str, work: Path) -> dict:
    """Generate the kind, copy the project, change source/path/class names only, `dvc repro`."""
    data, project = work / f"{kind}-data", work / f"{kind}-project"
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(project, ignore_errors=True)
    names = KINDS[kind](data)
    shutil.copytree(ROOT, project, ignore=lambda d, n: {x for x in n if Path(d) == ROOT and x in SKIP})
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"] |= {"source": "folder", "path": str(data)}
    params["model"]["class_names"] = names
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / f'{kind}-mlflow.db'}"
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=project, check=True, env=env)
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "dvc"), "repro"], cwd=project, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    result: dict = {"kind": kind, "dvc_exit": done.returncode, "seconds": round(seconds, 1)}
    if (project / "plans.json").is_file():
        plan = json.loads((project / "plans.json").read_text())
        result["recipe"] = {k: v["value"] for k, v in plan["recipe"].items()}
        result["fingerprint"] = plan["fingerprint"]
    for stage in ("train", "test"):  # test: the held-out split, served, at the source resolution
        if (project / f"metrics/{stage}.json").is_file():
            result[stage] = json.loads((project / f"metrics/{stage}.json").read_text())
    result["log_tail"] = (done.stdout + done.stderr)[-2500:]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--work", type=Path, default=Path("/tmp/unetpp-kinds"))
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds:
        result = run_kind(kind, args.work)
        (args.work / f"{kind}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}, indent=2))
        print(result["log_tail"])


if __name__ == "__main__":
    main()
