"""The test stage: the selected model on the held-out test split, through the code path that serves.

Each test case is read from its **source** file (decoded as a request is), segmented by
`unetpp.runtime.predict` exactly as the TorchServe handler does it (the plan's grid, back to the
source size, the same post-processing) and scored against its **source-resolution** masks: Dice, IoU
and HD95 (MONAI) per class, and for disc + cup the vertical cup-to-disc ratio and its absolute error.
The summary gives each mean with a percentile-bootstrap 95% interval over cases (scipy). No other
stage reads this split: ingest stores no arrays for it, and `PreparedDataset` refuses it.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou
from PIL import Image

from unetpp.data.ingest import load_manifest, sha256
from unetpp.data.sources import READERS, RawSample
from unetpp.errors import UserError
from unetpp.evaluation.metrics import mean_with_interval
from unetpp.evaluation.plots import overlay_grid
from unetpp.nn.checkpoint import load_checkpoint
from unetpp.params import Params
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.inference import optimize_for_inference
from unetpp.runtime.predict import probabilities, served_masks, tta_flips
from unetpp.runtime.preprocess import prepare_image
from unetpp.runtime.readout import vertical_cdr


def heldout_samples(params: Params, prepared: Path) -> list[RawSample]:
    """The test split's samples from the source, as ingest saw them (the manifest's readable test rows;
    `unchanged` checks each one's pixels)."""
    manifest = load_manifest(prepared)
    expected = set(manifest[(manifest["split"] == "test") & manifest["error"].isna()]["id"])
    samples = [s for s in READERS[params.data.source](params.data) if s.id in expected]
    if {s.id for s in samples} != expected or not samples:
        missing = sorted(expected - {s.id for s in samples})[:10]
        raise UserError(
            f"the source no longer holds the test split ingest saw (missing: {', '.join(missing) or 'all'}); "
            "run `dvc repro` from ingest"
        )
    return samples


def unchanged(sample: RawSample, image: np.ndarray, params: Params, hashes: dict[str, str]) -> None:
    """Refuse a test image whose pixels differ from what ingest measured (the manifest's image_sha256)."""
    if sha256(prepare_image(image, params.data.image_size, params.model.in_channels)) != hashes[sample.id]:
        raise UserError(f"{sample.source_image}: changed since ingest; run `dvc repro` from ingest")


def case_scores(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    """Dice, IoU and HD95 (px, NaN where either mask is empty) per class of one case, and for disc + cup
    the vertical cup-to-disc ratios and their absolute error."""
    p, t = torch.from_numpy(pred[None]).float(), torch.from_numpy(truth[None]).float()
    dice = compute_dice(p, t, include_background=True, ignore_empty=False)[0]
    iou = compute_iou(p, t, include_background=True, ignore_empty=False)[0]
    with warnings.catch_warnings():  # MONAI warns, and returns inf or nan, for an empty mask
        warnings.simplefilter("ignore")
        hd95 = compute_hausdorff_distance(p, t, include_background=True, percentile=95)[0]
    row: dict[str, float] = {}
    for k, c in enumerate(names):
        h = float(hd95[k])
        row |= {
            f"dice_{c}": float(dice[k]),
            f"iou_{c}": float(iou[k]),
            f"hd95_{c}": h if math.isfinite(h) else math.nan,
        }
    if names == ["disc", "cup"]:
        true, got = vertical_cdr(truth[0], truth[1]), vertical_cdr(pred[0], pred[1])
        row["cdr_true"] = math.nan if true is None else true
        row["cdr_pred"] = math.nan if got is None else got
        row["cdr_abs_error"] = abs(row["cdr_pred"] - row["cdr_true"])
    return row


WORST = 4  # test cases drawn in reports/test_worst.png


def worst_cases(
    rows: list[dict[str, Any]], samples: list[RawSample], names: list[str], predict: Any
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """The `WORST` cases by mean Dice, re-read and segmented again (keeping every image would not scale)."""
    mean = [float(np.mean([r[f"dice_{c}"] for c in names])) for r in rows]
    chosen = sorted(range(len(rows)), key=lambda k: mean[k])[:WORST]
    out = []
    for k in chosen:
        loaded = samples[k].load()
        out.append((f"{rows[k]['id']} (Dice {mean[k]:.3f})", loaded.image, predict(loaded.image), loaded.masks))
    return out


def heldout(params: Params, prepared: Path, models_dir: Path, metrics_dir: Path, reports_dir: Path) -> dict[str, Any]:
    """Score the selected model (models/pruned/model.pt) on the test split; write metrics/test.json,
    reports/test_cases.csv, each case's served masks (reports/test_masks/) and the worst cases' overlays
    (reports/test_worst.png); log them to the MLflow run."""
    from unetpp.registry import tracking

    model, meta = load_checkpoint(models_dir / "pruned" / "model.pt")
    served, geometry, flips = optimize_for_inference(model), Geometry.of(meta), tta_flips(meta)
    names, in_channels = list(meta["class_names"]), int(model.config["in_channels"])
    masks_dir = reports_dir / "test_masks"
    masks_dir.mkdir(parents=True, exist_ok=True)

    def predict(image: np.ndarray) -> np.ndarray:
        """The served masks of one decoded image."""
        probs = probabilities(served, [image], geometry, in_channels, flips)[0]
        return served_masks(probs, *image.shape[:2], names)

    rows, samples = [], heldout_samples(params, prepared)
    hashes = load_manifest(prepared).set_index("id")["image_sha256"].to_dict()
    for sample in samples:
        loaded = sample.load()
        unchanged(sample, loaded.image, params, hashes)
        height, width = loaded.image.shape[:2]
        pred = predict(loaded.image)
        for c, m in zip(names, pred, strict=True):
            Image.fromarray(m.astype(np.uint8) * 255).save(masks_dir / f"{sample.id}_{c}.png")
        rows.append(
            {"id": sample.id, "source_image": sample.source_image, "height": height, "width": width}
            | case_scores(pred, loaded.masks, names)
        )
    metrics = [k for k in rows[0] if k.startswith(("dice_", "iou_", "hd95_", "cdr_abs"))]
    selected = json.loads((models_dir / "selected.json").read_text())
    summary = {
        "split": "test",
        "resolution": "source (each image's own size), masks as served",
        "arch": meta["arch"],
        "variant": f"L{selected['level']} {selected['mode']}" + (f" + mirroring {list(flips)}" if flips else ""),
        "geometry": geometry.as_dict(),
        "cases": len(rows),
        **{k: mean_with_interval([r[k] for r in rows]) for k in metrics},
    }
    summary["dice_mean"] = mean_with_interval([float(np.mean([r[f"dice_{c}"] for c in names])) for r in rows])
    worst = worst_cases(rows, samples, names, predict)
    summary["worst_cases"] = [case[0] for case in worst]
    overlay_grid(worst, names, reports_dir / "test_worst.png", "test, worst cases by mean Dice")
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / "test.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (reports_dir / "test_cases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tracking.configure(params.tracking)
    with tracking.mlflow.start_run(run_id=tracking.read_run_id(models_dir / "run.json")):
        tracking.mlflow.log_metrics(
            {f"test.{k}": v["mean"] for k, v in summary.items() if isinstance(v, dict) and v.get("mean") is not None}
        )
        for path in (metrics_dir / "test.json", reports_dir / "test_cases.csv", reports_dir / "test_worst.png"):
            tracking.mlflow.log_artifact(str(path), "test")
    return summary
