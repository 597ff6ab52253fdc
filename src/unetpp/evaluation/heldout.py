"""The test stage: the selected model on the held-out test split, through the code path that serves.

Each test case is read from its **source** file (decoded as a request is), segmented by
`unetpp.runtime.predict` exactly as the TorchServe handler does it (the plan's grid, back to the
source size, the same post-processing) and scored against its **source-resolution** masks
(`unetpp.evaluation.served`, as `evaluate` and the registry gate score val): Dice, IoU, HD95 and BCE
per class, the failed cases per class, and for disc + cup the vertical cup-to-disc ratio and its
absolute error. The summary gives each mean with a percentile-bootstrap 95% interval over cases
(scipy). No other stage reads this split: ingest stores no arrays for it, and `PreparedDataset` refuses it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unetpp.data.ingest import load_manifest, sha256
from unetpp.data.sources import READERS, RawSample
from unetpp.errors import UserError
from unetpp.evaluation.foreign import KINDS, foreign
from unetpp.evaluation.guard import risk_figures
from unetpp.evaluation.plots import overlay_grid
from unetpp.evaluation.served import Case, ServedModel, per_case_dice, score_cases, summarize
from unetpp.params import Params
from unetpp.runtime.preprocess import resize_image


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
    if sha256(resize_image(image, params.data.image_size)) != hashes[sample.id]:
        raise UserError(f"{sample.source_image}: changed since ingest; run `dvc repro` from ingest")


WORST = 4  # test cases drawn in reports/test_worst.png
FOREIGN_SOURCES = 8  # test images each foreign kind is made from


def guard_figures(model: ServedModel, rows: list[dict[str, Any]], samples: list[RawSample], fitted: dict) -> dict:
    """The shipped guard on the test split and on the foreign set made from its first images: per estimator
    and class AURC, failure AUROC (Dice under val's failure Dice) and error as a Dice estimate; the share of
    answers flagged low-confidence; the share flagged out of distribution, test against each foreign kind."""
    if model.guard is None:
        raise UserError("models/pruned/model.pt holds no guard; run `unetpp select` (or `dvc repro select`) again")
    names, guard = model.names, model.guard
    foreign_scores: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for k, sample in enumerate(samples[:FOREIGN_SOURCES]):
        image = sample.load().image
        for kind in KINDS:
            seen = model.inspect([foreign(image, kind, seed=k)])[0]
            foreign_scores[kind].append(guard.ood_score(seen.features))
    flagged = {kind: float(np.mean(np.array(v) > 1.0)) for kind, v in foreign_scores.items()}
    low = {c: float(np.mean([r[f"confidence_{c}"] < guard.low[c] for r in rows])) for c in names}
    return {
        "estimator": guard.estimator,
        "failure_dice (val)": fitted["failure_dice"],
        "test": risk_figures(rows, names, fitted["failure_dice"]),
        "low_confidence_share": low,
        "ood": {
            "test_flagged": float(np.mean([r["ood_score"] > 1.0 for r in rows])),
            "foreign_flagged": float(np.mean([s > 1.0 for v in foreign_scores.values() for s in v])),
            "foreign_by_kind": flagged,
            "foreign_sources": min(FOREIGN_SOURCES, len(samples)),
            "alpha": fitted["ood_alpha"],
        },
    }


def worst_cases(
    rows: list[dict[str, Any]], samples: list[RawSample], names: list[str], model: ServedModel
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """The `WORST` cases by mean Dice, re-read and segmented again (keeping every image would not scale)."""
    mean = per_case_dice(rows, names)
    chosen = sorted(range(len(rows)), key=lambda k: mean[k])[:WORST]
    out = []
    for k in chosen:
        loaded = samples[k].load()
        out.append((f"{rows[k]['id']} (Dice {mean[k]:.3f})", loaded.image, model.masks(loaded.image), loaded.masks))
    return out


def test_cases(params: Params, prepared: Path) -> tuple[list[RawSample], Iterator[Case]]:
    """The test split's samples, and their cases read from the source files (each checked unchanged)."""
    samples = heldout_samples(params, prepared)
    hashes = load_manifest(prepared).set_index("id")["image_sha256"].to_dict()

    def cases() -> Iterator[Case]:
        for sample in samples:
            loaded = sample.load()
            unchanged(sample, loaded.image, params, hashes)
            yield Case(sample.id, loaded.image, loaded.masks)

    return samples, cases()


def heldout(params: Params, prepared: Path, models_dir: Path, metrics_dir: Path, reports_dir: Path) -> dict[str, Any]:
    """Score the selected model (models/pruned/model.pt) on the test split; write metrics/test.json,
    reports/test_cases.csv, each case's served masks (reports/test_masks/) and the worst cases' overlays
    (reports/test_worst.png); log them to the MLflow run."""
    from unetpp import tracking

    model = ServedModel.load(models_dir / "pruned" / "model.pt")
    names = model.names
    masks_dir = reports_dir / "test_masks"
    masks_dir.mkdir(parents=True, exist_ok=True)

    def keep(case: Case, pred: np.ndarray) -> None:
        for c, m in zip(names, pred, strict=True):
            Image.fromarray(m.astype(np.uint8) * 255).save(masks_dir / f"{case.id}_{c}.png")

    samples, cases = test_cases(params, prepared)
    rows = score_cases(model, cases, keep=keep)
    for row, sample in zip(rows, samples, strict=True):
        row["source_image"] = sample.source_image
    selected = json.loads((models_dir / "selected.json").read_text())
    flips = model.flips
    summary = {
        "split": "test",
        "resolution": "source (each image's own size), masks as served",
        "arch": selected["arch"],
        "variant": f"L{selected['level']} {selected['mode']}" + (f" + mirroring {list(flips)}" if flips else ""),
        "geometry": model.geometry.as_dict(),
        "intensity": model.intensity.as_dict(),
        "cases": len(rows),
        **summarize(rows, names),
    }
    summary["guard"] = guard_figures(model, rows, samples, selected["guard"])
    worst = worst_cases(rows, samples, names, model)
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
            | {f"test.{k}": v for k, v in summary.items() if k.startswith("failed_")}
        )
        for path in (metrics_dir / "test.json", reports_dir / "test_cases.csv", reports_dir / "test_worst.png"):
            tracking.mlflow.log_artifact(str(path), "test")
    return summary
