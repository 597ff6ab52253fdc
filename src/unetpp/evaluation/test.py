"""The test stage: the selected model on the held-out test split, through the code path that serves.

Each test case is read from its **source** file (decoded as a request is;
`unetpp.data.prepared.heldout_cases`), segmented by the served model (`unetpp.runtime.served.load_served`, the
one loader the TorchServe handler and the registry gate use: the plan's grid, back to the source size, the
same post-processing) and scored against its **source-resolution** masks (`unetpp.scoring.cases`, as
`evaluate` and the registry gate score val): Dice, IoU, HD95 and BCE per class, the failed cases per class,
and for disc + cup the vertical cup-to-disc ratio and its absolute error. The summary gives each mean with a
percentile-bootstrap 95% interval over cases (scipy). Where the source gives them (Drishti-GS1), the served
ratio is also scored against the experts' own ratios with their spread beside it as the human floor, and the
Dice against the pixels every expert marked (`dice_<class>_all_experts`: what published baselines on that set
report). No other stage reads this split: ingest stores no arrays
for it, and `PreparedDataset` refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unetpp import layout as L
from unetpp.data.heldout import heldout_cases
from unetpp.data.prepared import Case
from unetpp.data.sources import RawSample, consensus_masks, mask_reference
from unetpp.errors import UserError
from unetpp.files import replacing, write_csv, write_json
from unetpp.params import Params
from unetpp.runtime.served import ServedModel, load_served
from unetpp.scoring.cases import case_scores, per_case_dice, score_cases, summarize
from unetpp.scoring.foreign import KINDS, foreign
from unetpp.scoring.plots import overlay_grid
from unetpp.scoring.risk import risk_figures

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
            "level": fitted["ood_level"],
            "calibration": fitted["ood_calibration"],
        },
    }


CONSENSUS = "all_experts"  # the suffix of the Dice against the pixels every expert marked


def expert_columns(rows: list[dict[str, Any]], samples: list[RawSample]) -> None:
    """Where the source gives each expert's vertical cup-to-disc ratio for every case (Drishti-GS1), add to each
    row the served ratio's error against the experts' mean (`cdr_abs_error_vs_experts`; a missed disc or cup:
    the largest error the mean allows) and the human floor beside it: each expert against the mean of the
    others, averaged over the experts (`cdr_abs_error_experts_spread`)."""
    if not rows or any(len(s.expert_cdrs) < 2 for s in samples):
        return
    for row, sample in zip(rows, samples, strict=True):
        experts = np.array(sample.expert_cdrs, float)
        mean, others = experts.mean(), (experts.sum() - experts) / (len(experts) - 1)
        got = row.get("cdr_pred", float("nan"))
        row["cdr_abs_error_vs_experts"] = max(mean, 1 - mean) if np.isnan(got) else abs(got - mean)
        row["cdr_abs_error_experts_spread"] = float(np.abs(experts - others).mean())


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


def score_test_split(
    params: Params, prepared: Path, models_dir: Path, metrics_dir: Path, reports_dir: Path
) -> dict[str, Any]:
    """Score the selected model (models/pruned/model.pt) on the test split; write metrics/test.json,
    reports/test_cases.csv, each case's served masks (reports/test_masks/) and the worst cases' overlays
    (reports/test_worst.png); log them to the MLflow run."""
    from unetpp import tracking

    model = load_served(L.served_checkpoint(models_dir))
    names = model.names
    masks_dir = reports_dir / "test_masks"
    masks_dir.mkdir(parents=True, exist_ok=True)

    samples, cases = heldout_cases(params.data, params.model.class_names, prepared)
    by_id = {s.id: s for s in samples}
    consensus: dict[str, dict[str, float]] = {}  # Drishti-GS1: the Dice against the pixels all experts marked

    def keep(case: Case, pred: np.ndarray) -> None:
        for c, m in zip(names, pred, strict=True):
            with replacing(masks_dir / f"{case.id}_{c}.png") as tmp:
                Image.fromarray(m.astype(np.uint8) * 255).save(tmp, format="PNG")
        if params.data.source == "drishti":
            scores = case_scores(pred, consensus_masks(by_id[case.id]), names)
            consensus[case.id] = {f"dice_{c}_{CONSENSUS}": scores[f"dice_{c}"] for c in names}

    rows = score_cases(model, cases, keep=keep)
    for row, sample in zip(rows, samples, strict=True):
        row |= consensus.get(sample.id, {})
        row["source_image"] = sample.source_image
    expert_columns(rows, samples)
    selected = json.loads((L.selected_file(models_dir)).read_text())
    config = model.config
    flips = config.flips
    summary = {
        "split": "test",
        "resolution": "source (each image's own size), masks as served",
        "reference": mask_reference(params.data),
        "arch": selected["arch"],
        "variant": f"L{selected['level']} {selected['mode']}" + (f" + mirroring {list(flips)}" if flips else ""),
        "geometry": config.geometry.as_dict(),
        "region": None if model.region is None else model.region.as_dict(),  # a cascade's second stage
        "intensity": config.intensity.as_dict(),
        "cases": len(rows),
        **summarize(rows, names),
    }
    summary["guard"] = guard_figures(model, rows, samples, selected["guard"])
    worst = worst_cases(rows, samples, names, model)
    summary["worst_cases"] = [case[0] for case in worst]
    overlay_grid(worst, names, reports_dir / "test_worst.png", "test, worst cases by mean Dice")
    write_json(metrics_dir / "test.json", summary)
    write_csv(reports_dir / "test_cases.csv", rows)
    with tracking.pipeline_run(params.tracking, models_dir):
        tracking.mlflow.log_metrics(
            {f"test.{k}": v["mean"] for k, v in summary.items() if isinstance(v, dict) and v.get("mean") is not None}
            | {f"test.{k}": v for k, v in summary.items() if k.startswith("failed_")}
        )
        for path in (metrics_dir / "test.json", reports_dir / "test_cases.csv", reports_dir / "test_worst.png"):
            tracking.mlflow.log_artifact(str(path), "test")
    return summary
