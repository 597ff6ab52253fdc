"""The pipeline on kinds of data unlike the default, as a new user would run it: a generated folder set,
a copy of the project with only `data.source`, `data.path` and `model.class_names` changed, `dvc repro`.
Prints each kind's plan (the recipe and its rules), the validation Dice it reached, and the time.

Kinds:
- `cells12`: 14 gray 400x400 images, 16-bit TIFF holding a 12-bit range (0..4095), 20-40 bright blobs
  of 9-16 px on a dark, noisy background (microscopy-like).
- `unrelated`: 24 fundus photographs whose disc masks belong to other images (the learning guard's case).

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

import numpy as np
import tifffile
import yaml
from PIL import Image, ImageFilter

from unetpp.data.synthetic import generate_fundus

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SKIP = {".venv", ".git", ".dvc", ".prefect", "data", "models", "metrics", "plots", "mlruns", "dvc.lock"}
SKIP |= {"model-store", "reports", "plans.json", ".torchserve"}


def cells12(root: Path, count: int = 14, side: int = 400) -> list[str]:
    """Gray 16-bit TIFFs with a 12-bit range; binary masks 0/255."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:side, :side]
    for i in range(count):
        rng = np.random.default_rng(1000 + i)
        mask = np.zeros((side, side), bool)
        signal = np.zeros((side, side))
        for _ in range(int(rng.integers(20, 41))):
            cy, cx, r = rng.uniform(10, side - 10), rng.uniform(10, side - 10), rng.uniform(4.5, 8)
            blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
            mask |= blob
            signal += blob * rng.uniform(0.5, 1.0)
        smooth = np.asarray(Image.fromarray((signal * 255).astype(np.float32)).filter(ImageFilter.GaussianBlur(1.2)))
        image = 300 + 2600 * smooth / 255 + rng.normal(0, 120, (side, side))
        tifffile.imwrite(root / "images" / f"field{i:02d}.tif", np.clip(image, 0, 4095).astype(np.uint16))
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"field{i:02d}.png")
    return ["cell"]


def unrelated(root: Path, count: int = 24) -> list[str]:
    """Fundus photographs, each with the disc mask of another image."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    samples = [generate_fundus(i, 256, seed=31) for i in range(count)]
    for i, s in enumerate(samples):
        Image.fromarray(s.image).save(root / "images" / f"eye{i:02d}.png")
        other = samples[(i + count // 2) % count].masks[0]
        Image.fromarray(other.astype(np.uint8) * 255).save(root / "masks" / f"eye{i:02d}.png")
    return ["disc"]


KINDS = {"cells12": cells12, "unrelated": unrelated}


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
    if (project / "metrics/train.json").is_file():
        result["train"] = json.loads((project / "metrics/train.json").read_text())
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
